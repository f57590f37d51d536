#!/usr/bin/env bash
# Builds the amd64 .deb from release binaries and installs, upgrades, removes and purges it on
# this machine, checking files, modes, the conffile, the users, the data dir's fate at each step,
# and that the installed robokud accepts the packaged config and serves its socket to group
# `roboku`. systemd need not be PID 1 (the service is enabled, not started, when it is not).
#
# Idempotent: a roboku package left by an earlier run is purged first. Cleans up after itself:
# purges the package and deletes the group/user if this script created them.
# Needs root. Usage: tests/deb/check.sh   (CARGO_TARGET_DIR is honoured)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "deb check: needs root" >&2; exit 1; }
STATE=/var/tmp/roboku-deb-check.created   # what an earlier run created, if it died half way
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

scratch=$(mktemp -d)
# mktemp makes it 0700: app users could not reach a data dir inside, and robokud refuses such a
# data dir at start (checked below); the scratch data dir is meant to be usable, as
# /var/lib/roboku is.
chmod 0711 "$scratch"
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    if dpkg-query -W -f='${Status}' roboku 2>/dev/null | grep -qv 'not-installed'; then
        dpkg -P roboku >/dev/null 2>&1 || true
    fi
    # Users this script created go again, unless something still runs as them (another robokud
    # on this machine may have started dynos as roboku-dyno meanwhile): then the state file
    # stays, and the next run removes them.
    if [ -f "$STATE" ]; then
        local left=
        if grep -qx user "$STATE"; then
            userdel roboku-dyno 2>/dev/null || left="$left user"
        fi
        if grep -qx dyno-group "$STATE" && getent group roboku-dyno >/dev/null; then
            groupdel roboku-dyno 2>/dev/null || left="$left dyno-group"
        fi
        if grep -qx group "$STATE"; then
            groupdel roboku 2>/dev/null || left="$left group"
        fi
        if [ -n "$left" ]; then
            printf '%s\n' $left >"$STATE"
            echo "note: could not delete roboku-dyno/roboku yet (in use); the next run will" >&2
        else
            rm -f "$STATE"
        fi
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# An earlier run that died: undo it first, so this run starts from the same place.
if dpkg-query -W -f='${Status}' roboku 2>/dev/null | grep -qv 'not-installed'; then
    echo "deb check: purging a roboku package left installed" >&2
    dpkg -P roboku >/dev/null
fi
# Leftovers an earlier run could not delete are still ours to delete.
touch "$STATE"
getent group roboku >/dev/null || echo group >>"$STATE"
getent passwd roboku-dyno >/dev/null || echo user >>"$STATE"
getent group roboku-dyno >/dev/null || echo dyno-group >>"$STATE"

# 1. Build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --locked --release -p robokud -p roboku --bins
deb=$(ROBOKU_DEB_DIR="$scratch/deb" packaging/build-deb.sh amd64)
check "built $(basename "$deb")" test -s "$deb"
contents=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')
for f in ./usr/bin/robokud ./usr/bin/roboku ./lib/systemd/system/robokud.service \
    ./lib/systemd/system/roboku-dynos.service \
    ./usr/lib/sysusers.d/roboku.conf ./usr/lib/tmpfiles.d/roboku.conf ./etc/roboku/robokud.toml \
    ./usr/share/roboku/buildpacks/ ./usr/share/doc/roboku/copyright ./usr/share/doc/roboku/install.md; do
    grep -q " $f\$" <<<"$contents" || bad "package lacks $f"
done
grep -q 'root/root' <<<"$contents" && ! grep -qv 'root/root' <<<"$contents" && ok "package: every file root:root" || bad "package: files not owned by root"
check "conffiles lists /etc/roboku/robokud.toml" test "$(dpkg-deb -I "$deb" conffiles)" = /etc/roboku/robokud.toml
check "control: Architecture amd64, Depends libc6" \
    sh -c "dpkg-deb -f '$deb' Architecture | grep -qx amd64 && dpkg-deb -f '$deb' Depends | grep -q 'libc6 (>= 2\.'"

# 2. Install.
dpkg -i "$deb" >"$scratch/install.log" 2>&1 || { cat "$scratch/install.log"; bad "dpkg -i"; exit 1; }
ok "dpkg -i"
mode() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
check "/usr/bin/robokud 755 root" test "$(mode /usr/bin/robokud)" = "755 root:root"
check "/usr/bin/roboku 755 root" test "$(mode /usr/bin/roboku)" = "755 root:root"
check "unit installed 644" test "$(mode /lib/systemd/system/robokud.service)" = "644 root:root"
check "sysusers.d entry 644" test "$(mode /usr/lib/sysusers.d/roboku.conf)" = "644 root:root"
check "tmpfiles.d entry 644" test "$(mode /usr/lib/tmpfiles.d/roboku.conf)" = "644 root:root"
check "config 644 and identical to etc/robokud.toml" sh -c \
    "test \"\$(stat -c '%a %U' /etc/roboku/robokud.toml)\" = '644 root' && cmp -s /etc/roboku/robokud.toml etc/robokud.toml"
check "dpkg knows the config as a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' roboku | grep -q /etc/roboku/robokud.toml"
check "data dir /var/lib/roboku 755 root" test "$(mode /var/lib/roboku)" = "755 root:root"
check "group roboku exists" getent group roboku
user=$(getent passwd roboku-dyno || true)
check "user roboku-dyno: system uid, no home, nologin ($user)" sh -c \
    "echo '$user' | awk -F: '\$3 < 1000 && \$6 == \"/nonexistent\" && \$7 == \"/usr/sbin/nologin\" {ok=1} END {exit !ok}'"
check "roboku-dyno is not in group roboku" sh -c "! id -nG roboku-dyno | tr ' ' '\n' | grep -qx roboku"
check "service enabled (multi-user.target.wants)" test -L /etc/systemd/system/multi-user.target.wants/robokud.service
check "dyno holder enabled (multi-user.target.wants)" test -L /etc/systemd/system/multi-user.target.wants/roboku-dynos.service
if [ -d /run/systemd/system ]; then
    check "service started (systemd is running)" systemctl is-active --quiet robokud.service
else
    check "service not started (systemd is not running): no socket" test ! -e /var/lib/roboku/robokud.sock
fi
check "robokud --version" sh -c "/usr/bin/robokud --version | grep -q '^robokud '"

# 3. The installed agent with the packaged config, in a scratch data dir. First under a private
# (0700) parent: refused, naming the directory.
private=$(mktemp -d -p "$scratch")
/usr/bin/robokud --config /etc/roboku/robokud.toml --data-dir "$private/data" --no-cgroups \
    </dev/null >"$scratch/refused.log" 2>&1 || true
check "a data dir under a 0700 parent is refused, naming it" grep -q "$private (mode 0700" "$scratch/refused.log"
data="$scratch/data"
ROBOKU_LOG=warn /usr/bin/robokud --config /etc/roboku/robokud.toml --data-dir "$data" --no-cgroups \
    </dev/null >"$scratch/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 300); do [ -S "$data/robokud.sock" ] && break; sleep 0.1; done
check "installed robokud starts with the packaged config" test -S "$data/robokud.sock"
check "API socket is 660 root:roboku" test "$(mode "$data/robokud.sock")" = "660 root:roboku"
check "roboku status answers" sh -c "ROBOKU_SOCKET='$data/robokud.sock' /usr/bin/roboku status >/dev/null"
kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=

# 4. Upgrade (reinstall): data and a changed conffile survive.
echo keep >/var/lib/roboku/marker
echo '# local edit' >>/etc/roboku/robokud.toml
dpkg -i "$deb" >"$scratch/upgrade.log" 2>&1 || { cat "$scratch/upgrade.log"; bad "dpkg -i (upgrade)"; }
check "upgrade keeps the data dir" test -f /var/lib/roboku/marker
check "upgrade keeps a locally edited conffile" grep -q '^# local edit' /etc/roboku/robokud.toml

# 5. Remove: binaries go, data dir and config stay.
dpkg -r roboku >"$scratch/remove.log" 2>&1 || { cat "$scratch/remove.log"; bad "dpkg -r"; }
check "dpkg -r removes the binaries" test ! -e /usr/bin/robokud
check "dpkg -r keeps the data dir" test -f /var/lib/roboku/marker
check "dpkg -r keeps the config" test -f /etc/roboku/robokud.toml
check "package state is config-files" sh -c "dpkg-query -W -f='\${db:Status-Status}' roboku | grep -qx config-files"

# 6. Purge: data dir, config and enablement go.
dpkg -P roboku >"$scratch/purge.log" 2>&1 || { cat "$scratch/purge.log"; bad "dpkg -P"; }
check "dpkg -P removes the data dir" test ! -e /var/lib/roboku
check "dpkg -P removes /etc/roboku" test ! -e /etc/roboku
check "dpkg -P removes the enablement symlinks" sh -c "test ! -e /etc/systemd/system/multi-user.target.wants/robokud.service && test ! -e /etc/systemd/system/multi-user.target.wants/roboku-dynos.service"
gone=$(dpkg-query -W -f='${db:Status-Status}' roboku 2>/dev/null || true)
check "package gone (status '${gone:-unknown}')" sh -c "[ -z '$gone' ] || [ '$gone' = not-installed ]"

echo "deb: $passed passed, $failed failed"
[ "$failed" = 0 ] && status=0 || status=1
exit $status
