#!/usr/bin/env bash
# Checks systemd/: `systemd-analyze verify` of robokud.service must print nothing at all (an
# unknown key is only a warning to systemd, an error here), and the sysusers.d and tmpfiles.d
# entries must apply cleanly in a scratch root and create what they promise.
#
# `verify` insists that ExecStart= (/usr/bin/robokud) exists. Rather than install anything, the
# check runs in a private mount namespace where an overlay puts the built binary into /usr/bin.
#
# Usage: tests/systemd/verify.sh [ROBOKUD_BINARY]   (default: $CARGO_TARGET_DIR/debug/robokud)
# Needs root (unshare, mount) and systemd's tools (apt-get install systemd).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UNIT="$ROOT/systemd/robokud.service"
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/robokud}
command -v systemd-analyze >/dev/null || { echo "verify: systemd-analyze missing (apt-get install systemd)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "verify: $BIN missing: cargo build -p robokud first" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail=0

# 1. The unit alone (copied, so the drop-in beside it is not read), then with its drop-in.
mkdir -p "$scratch/bin" "$scratch/unit"
cp "$BIN" "$scratch/bin/robokud"
cp "$UNIT" "$scratch/unit/robokud.service"
verify() {
    unshare --mount --propagation private sh -c '
        mount -t overlay overlay -o "lowerdir=$1:/usr/bin" /usr/bin &&
        systemd-analyze verify "$2" 2>&1' sh "$scratch/bin" "$1"
}
version=$(systemctl --version | awk 'NR == 1 {print $2}')
out=$(verify "$scratch/unit/robokud.service") || { echo "$out"; echo "FAIL: systemd-analyze verify exited non-zero" >&2; fail=1; }
if [ -n "$out" ]; then
    echo "$out"
    echo "FAIL: systemd-analyze verify printed warnings for $UNIT" >&2
    fail=1
else
    echo "ok: systemd-analyze verify robokud.service is clean (systemd $version)"
fi
# The drop-in sets DelegateSubgroup= (systemd 254+); older systemd must warn about that key only.
out=$(verify "$UNIT") || { echo "$out"; fail=1; }
drop_in_ok=0
if [ "$version" -ge 254 ]; then
    [ -z "$out" ] && drop_in_ok=1
else
    case "$out" in
        "$ROOT/systemd/robokud.service.d/delegate-subgroup.conf:"*": Unknown key 'DelegateSubgroup' in section [Service], ignoring.") drop_in_ok=1 ;;
    esac
fi
if [ $drop_in_ok = 1 ]; then
    echo "ok: with the delegate-subgroup drop-in: ${out:-clean}"
else
    printf '%s\n' "$out"
    echo "FAIL: with the drop-in, systemd $version printed more than the expected DelegateSubgroup note" >&2
    fail=1
fi

# 2. sysusers.d and tmpfiles.d in a scratch root.
r="$scratch/root"
mkdir -p "$r/etc" "$r/usr/lib/sysusers.d" "$r/usr/lib/tmpfiles.d"
cp "$ROOT/systemd/roboku.sysusers" "$r/usr/lib/sysusers.d/roboku.conf"
cp "$ROOT/systemd/roboku.tmpfiles" "$r/usr/lib/tmpfiles.d/roboku.conf"
systemd-sysusers --root="$r" >/dev/null 2>"$scratch/sysusers.err" || { cat "$scratch/sysusers.err"; echo "FAIL: systemd-sysusers" >&2; fail=1; }
grep -q '^roboku:' "$r/etc/group" || { echo "FAIL: no group roboku" >&2; fail=1; }
line=$(grep '^roboku-dyno:' "$r/etc/passwd" || true)
case "$line" in
    *:/nonexistent:/usr/sbin/nologin) echo "ok: sysusers creates group roboku and user roboku-dyno (no home, nologin)" ;;
    *) echo "FAIL: roboku-dyno entry is '$line'" >&2; fail=1 ;;
esac
if grep -q '^roboku:.*roboku-dyno' "$r/etc/group"; then echo "FAIL: roboku-dyno is in group roboku" >&2; fail=1; fi
systemd-tmpfiles --create --root="$r" 2>"$scratch/tmpfiles.err" || { cat "$scratch/tmpfiles.err"; echo "FAIL: systemd-tmpfiles" >&2; fail=1; }
[ -s "$scratch/tmpfiles.err" ] && { cat "$scratch/tmpfiles.err"; echo "FAIL: systemd-tmpfiles warned" >&2; fail=1; }
for d in var/lib/roboku run/roboku; do
    mode=$(stat -c %a "$r/$d" 2>/dev/null || echo missing)
    if [ "$mode" = 755 ]; then echo "ok: tmpfiles creates /$d 0755"; else echo "FAIL: /$d is $mode" >&2; fail=1; fi
done

if [ $fail = 0 ]; then echo "systemd: 5 passed, 0 failed"; else echo "systemd: checks failed" >&2; fi
exit $fail
