#!/usr/bin/env bash
# Idle cost right after a launch: robokud's CPU and context switches in the 10 s window from 1.3 s
# after a scale 0 -> N (default 500) has every dyno running, counted as the peer bench does
# (schedstat run time, voluntary + involuntary switches, threads alive at both ends), on a warm
# agent (its spools exist), REPS windows. Root, cgroup v1 or v2. Compare two builds by running it
# for each, interleaved:  after_launch.sh OLD/robokud 2; after_launch.sh NEW/robokud 2; ...
# Usage: [ROBOKU=path/roboku] after_launch.sh ROBOKUD [REPS] [N]   (default: the roboku beside ROBOKUD)
set -euo pipefail
BIN=$(realpath "$1"); REPS=${2:-2}; N=${3:-500}
NAME=idle-after
. "$(dirname "$0")/agent.sh"
snap() { for t in /proc/$P/task/*; do echo "$(basename "$t") $(awk '/voluntary_ctxt_switches/{s+=$2} END{print s}' "$t/status") $(awk '{print $1}' "$t/schedstat")"; done | sort; }
"$R" ps:scale web="$N" -a bench >/dev/null; wait_for "$N"; sleep 2     # warm: spools exist
for _ in $(seq "$REPS"); do
  "$R" ps:scale web=0 -a bench >/dev/null; wait_for 0; sleep 12        # blocking threads gone
  "$R" ps:scale web="$N" -a bench >/dev/null
  wait_cgroups "$N"   # not `ps`: it would read the unread dynos itself
  sleep 1.3
  snap > "$work/s0"; sleep 10; snap > "$work/s1"
  join "$work/s0" "$work/s1" | awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$N" \
    '{dc+=$4-$2; dt+=$5-$3} END {printf "N=%d idle cpu %.4f %% of a core, %.1f switches/s (load %s)\n", n, dt/1e8, dc/10, l}'
done
