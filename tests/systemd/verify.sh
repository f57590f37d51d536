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

# 1. Each unit, verified with the other beside it (robokud.service requires roboku-dynos.service).
mkdir -p "$scratch/bin" "$scratch/unit"
cp "$BIN" "$scratch/bin/robokud"
cp "$UNIT" "$ROOT/systemd/roboku-dynos.service" "$scratch/unit/"
verify() {
    unshare --mount --propagation private sh -c '
        mount -t overlay overlay -o "lowerdir=$1:/usr/bin" /usr/bin &&
        systemd-analyze verify "$2" 2>&1' sh "$scratch/bin" "$1"
}
version=$(systemctl --version | awk 'NR == 1 {print $2}')
for unit in robokud.service roboku-dynos.service; do
    out=$(verify "$scratch/unit/$unit") || { echo "$out"; echo "FAIL: systemd-analyze verify $unit exited non-zero" >&2; fail=1; }
    if [ -n "$out" ]; then
        echo "$out"
        echo "FAIL: systemd-analyze verify printed warnings for $unit" >&2
        fail=1
    else
        echo "ok: systemd-analyze verify $unit is clean (systemd $version)"
    fi
done
grep -q '^Requires=roboku-dynos.service$' "$UNIT" && grep -q '^After=.*roboku-dynos.service' "$UNIT" &&
    echo "ok: robokud.service requires and starts after roboku-dynos.service" ||
    { echo "FAIL: robokud.service does not require roboku-dynos.service" >&2; fail=1; }

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

if [ $fail = 0 ]; then echo "systemd: 6 passed, 0 failed"; else echo "systemd: checks failed" >&2; fi
exit $fail
