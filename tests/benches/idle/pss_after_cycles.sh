#!/usr/bin/env bash
# robokud's memory at N dynos after CYCLES scale cycles (10, 0, 100, 0, 500, 0 each), as the peer
# bench counts it (PSS from /proc/PID/smaps_rollup, 1.3 s after the last scale has every dyno
# running), plus the heap's share (Pss_Anon) and the thread count. Root, cgroup v1 or v2.
# Compare two builds by running it for each, interleaved.
# Usage: [ROBOKU=path/roboku] pss_after_cycles.sh ROBOKUD [N] [CYCLES]   (default 500, 2)
set -euo pipefail
BIN=$(realpath "$1"); N=${2:-500}; CYCLES=${3:-2}
NAME=pss-after FLAGS=(--dyno-user nobody --dashboard off)
. "$(dirname "$0")/agent.sh"
scale() { "$R" ps:scale web="$1" -a bench >/dev/null; wait_for "$1"; }
for _ in $(seq "$CYCLES"); do for n in 10 0 100 0 500 0; do scale "$n"; sleep 1; done; done
"$R" ps:scale web="$N" -a bench >/dev/null
wait_cgroups "$N"   # not `ps`: it would read the unread dynos itself
sleep 1.3
awk -v n="$N" -v c="$CYCLES" -v t="$(ls /proc/$P/task | wc -l)" \
  '/^Pss:/{p=$2} /^Pss_Anon:/{a=$2} END {printf "N=%d after %d cycles: PSS %.1f MiB, heap (Pss_Anon) %.1f MiB, %d threads\n", n, c, p/1024, a/1024, t}' \
  /proc/$P/smaps_rollup
