#!/usr/bin/env bash
# robokud's memory at N dynos after CYCLES scale cycles (10, 0, 100, 0, 500, 0 each), as the peer
# bench counts it (PSS from /proc/PID/smaps_rollup, 1.3 s after the last scale has every dyno
# running), plus the heap's share (Pss_Anon) and the thread count. Root, cgroup v1 or v2.
# Compare two builds by running it for each, interleaved.
# Usage: [ROBOKU=path/roboku] pss_after_cycles.sh ROBOKUD [N] [CYCLES]   (default 500, 2)
set -euo pipefail
BIN=$(realpath "$1"); N=${2:-500}; CYCLES=${3:-2}
R=${ROBOKU:-$(dirname "$BIN")/roboku}
[ -x "$R" ] || { echo "no roboku beside $BIN: set ROBOKU=path" >&2; exit 2; }
work=$(mktemp -d /tmp/roboku-pss-XXXXXX)
chmod 755 "$work"; mkdir -m 755 "$work/data" "$work/app"
printf 'web: exec sleep 100000\n' > "$work/app/Procfile"
"$BIN" --data-dir "$work/data" --socket "$work/s.sock" --on-exit stop --cgroup-name rk-pss-after \
  --dyno-user nobody --backoff-reset-secs 1 --grace-secs 2 --dashboard off > "$work/log" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null; while kill -0 $P 2>/dev/null; do sleep 0.2; done; rm -rf "$work"' EXIT
export ROBOKU_SOCKET=$work/s.sock
for _ in $(seq 50); do "$R" status >/dev/null 2>&1 && break; sleep 0.2; done
"$R" apps:create bench >/dev/null
"$R" deploy "$work/app" -a bench >/dev/null 2>&1
up() { "$R" ps -a bench --json | python3 -c 'import json,sys; print(sum(d["state"]=="up" for d in json.load(sys.stdin)))'; }
scale() {
  "$R" ps:scale web="$1" -a bench >/dev/null
  for _ in $(seq 1200); do [ "$(up)" -eq "$1" ] && return; sleep 0.05; done
  echo "timed out waiting for $1 dynos" >&2; exit 1
}
for _ in $(seq "$CYCLES"); do for n in 10 0 100 0 500 0; do scale "$n"; sleep 1; done; done
"$R" ps:scale web="$N" -a bench >/dev/null
# Not `ps` here (it reads every unread dyno): count the agent's dynos by cgroup, as the bench does.
for _ in $(seq 1200); do
  n=$(find /sys/fs/cgroup -path '*rk-pss-after*' -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | wc -l)
  [ "$n" -ge "$N" ] && break; sleep 0.02
done
sleep 1.3
awk -v n="$N" -v c="$CYCLES" -v t="$(ls /proc/$P/task | wc -l)" \
  '/^Pss:/{p=$2} /^Pss_Anon:/{a=$2} END {printf "N=%d after %d cycles: PSS %.1f MiB, heap (Pss_Anon) %.1f MiB, %d threads\n", n, c, p/1024, a/1024, t}' \
  /proc/$P/smaps_rollup
