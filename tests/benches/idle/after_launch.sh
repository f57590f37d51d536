#!/usr/bin/env bash
# Idle cost right after a launch: robokud's CPU and context switches in the 10 s window from 1.3 s
# after a scale 0 -> N (default 500) has every dyno running, counted as the peer bench does
# (schedstat run time, voluntary + involuntary switches, threads alive at both ends), on a warm
# agent (its spools exist), REPS windows. Root, cgroup v1 or v2. Compare two builds by running it
# for each, interleaved:  after_launch.sh OLD/robokud 2; after_launch.sh NEW/robokud 2; ...
# Usage: [ROBOKU=path/roboku] after_launch.sh ROBOKUD [REPS] [N]   (default: the roboku beside ROBOKUD)
set -euo pipefail
BIN=$(realpath "$1"); REPS=${2:-2}; N=${3:-500}
R=${ROBOKU:-$(dirname "$BIN")/roboku}
[ -x "$R" ] || { echo "no roboku beside $BIN: set ROBOKU=path" >&2; exit 2; }
work=$(mktemp -d /tmp/roboku-idle-XXXXXX)
chmod 755 "$work"; mkdir -m 755 "$work/data" "$work/app"
printf 'web: exec sleep 100000\n' > "$work/app/Procfile"
"$BIN" --data-dir "$work/data" --socket "$work/s.sock" --on-exit stop --cgroup-name rk-idle-after \
  --backoff-reset-secs 1 --grace-secs 2 > "$work/log" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null; while kill -0 $P 2>/dev/null; do sleep 0.2; done; rm -rf "$work"' EXIT
export ROBOKU_SOCKET=$work/s.sock
for _ in $(seq 50); do "$R" status >/dev/null 2>&1 && break; sleep 0.2; done
"$R" apps:create bench >/dev/null
"$R" deploy "$work/app" -a bench >/dev/null 2>&1
# The dynos: `sleep` processes in the app's cgroup (counted from robokud's ps, by state).
up() { "$R" ps -a bench --json | python3 -c 'import json,sys; print(sum(d["state"]=="up" for d in json.load(sys.stdin)))'; }
wait_for() { local want=$1; for _ in $(seq 1200); do [ "$(up)" -eq "$want" ] && return; sleep 0.05; done; echo "timed out waiting for $want dynos" >&2; exit 1; }
snap() { for t in /proc/$P/task/*; do echo "$(basename "$t") $(awk '/voluntary_ctxt_switches/{s+=$2} END{print s}' "$t/status") $(awk '{print $1}' "$t/schedstat")"; done | sort; }
"$R" ps:scale web="$N" -a bench >/dev/null; wait_for "$N"; sleep 2     # warm: spools exist
for _ in $(seq "$REPS"); do
  "$R" ps:scale web=0 -a bench >/dev/null; wait_for 0; sleep 12        # blocking threads gone
  "$R" ps:scale web="$N" -a bench >/dev/null
  # Not `ps` here: it would read the unread dynos itself. Count the agent's dynos by cgroup.
  for _ in $(seq 1200); do
    n=$(find /sys/fs/cgroup -path '*rk-idle-after*' -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | wc -l)
    [ "$n" -ge "$N" ] && break; sleep 0.02
  done
  sleep 1.3
  snap > "$work/s0"; sleep 10; snap > "$work/s1"
  join "$work/s0" "$work/s1" | awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$N" \
    '{dc+=$4-$2; dt+=$5-$3} END {printf "N=%d idle cpu %.4f %% of a core, %.1f switches/s (load %s)\n", n, dt/1e8, dc/10, l}'
done
