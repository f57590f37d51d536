#!/usr/bin/env bash
# Idle cost of robokud supervising N idle dynos (`sleep`), from the outside: CPU time
# (schedstat run time) and wake-ups (voluntary + involuntary context switches), both summed
# over robokud's threads alive at both ends of a window, after the dynos are up. Usage: tests/benches/idle/run.sh [N] [SECS] [ROBOKUD_BIN...]
# Each binary given is measured in turn (e.g. an old and a new build), interleaved REPS times.
# Needs root (cgroups, dyno users). Prints one line per run, then medians per binary.
set -euo pipefail
n=${1:-500}; secs=${2:-30}; shift 2 || true
bins=("$@"); [ ${#bins[@]} -gt 0 ] || bins=("$(dirname "$0")/../../../target/release/robokud")
reps=${REPS:-3}
roboku=${ROBOKU_BIN:-$(dirname "${bins[0]}")/roboku}
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
# "tid switches run_ns" for each thread of pid (run time from schedstat: ns, not 10 ms ticks).
switches() {
  for t in /proc/"$1"/task/*; do
    local ns; ns=$(awk '{ print $1 }' "$t/schedstat" 2>/dev/null) || continue
    awk -v t="${t##*/}" -v ns="$ns" '/^(voluntary|nonvoluntary)_ctxt_switches/ { s += $2 } END { print t, s, ns }' "$t/status" 2>/dev/null || true
  done
}
run_one() {
  local bin=$1 dir; dir=$(mktemp -d /var/tmp/roboku-idle.XXXXXX); chmod 755 "$dir"
  local cg="rk-idle-$$-$RANDOM"
  "$bin" --data-dir "$dir/data" --socket "$dir/data/robokud.sock" --cgroup-name "$cg" \
    --port-range 41000-41999 --dashboard off --on-exit stop >"$dir/log" 2>&1 &
  local pid=$!
  for _ in $(seq 200); do [ -S "$dir/data/robokud.sock" ] && break; sleep 0.05; done
  export ROBOKU_SOCKET="$dir/data/robokud.sock"
  mkdir -p "$dir/app"; printf 'web: sleep 100000\n' >"$dir/app/Procfile"
  "$roboku" apps:create idle >/dev/null
  "$roboku" deploy "$dir/app" -a idle >/dev/null
  "$roboku" ps:scale web="$n" -a idle >/dev/null
  "$roboku" ps:wait -a idle >/dev/null 2>&1 || true
  for _ in $(seq 600); do
    up=$("$roboku" --json ps -a idle | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin) if d.get("state")=="up"))')
    [ "$up" -ge "$n" ] && break; sleep 0.5
  done
  sleep 3 # let start-up work end before the window (the window, not synchronisation)
  local c0 s0 c1 s1; c0=$(cpu_ticks $pid); s0=$(switches $pid)
  sleep "$secs"
  c1=$(cpu_ticks $pid); s1=$(switches $pid)
  local joined; joined=$(join <(echo "$s0" | sort) <(echo "$s1" | sort))
  local wake; wake=$(echo "$joined" | awk '{ d += $4 - $2 } END { print d + 0 }')
  local run_ns; run_ns=$(echo "$joined" | awk '{ d += $5 - $3 } END { printf "%d", d + 0 }')
  local rss; rss=$(awk '/^VmRSS/ { print $2 }' /proc/$pid/status)
  local shells; shells=$(pgrep -c -P "$pid" -x sh || true)
  # PSS of robokud plus the shells it leaves per dyno (the manager's own cost, helpers included).
  local pss; pss=$(for p in $pid $(pgrep -P "$pid" -x sh || true); do
    awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }')
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  python3 - "$bin" "$n" "$secs" "$((c1 - c0))" "$hz" "$wake" "$rss" "$up" "$shells" "$pss" "$run_ns" "$load" <<'PY'
import sys
bin, n, secs, ticks, hz, wake, rss, up, shells, pss, run_ns, load = sys.argv[1:]
cpu = int(run_ns) / 1e9 / float(secs) * 100
ticks_cpu = int(ticks) / int(hz) / float(secs) * 100
print(f"RESULT {bin} n={n} up={up} idle_cpu={cpu:.4f}% (ticks {ticks_cpu:.2f}%) wakeups_per_s={int(wake)/float(secs):.2f} rss_mb={int(rss)/1024:.1f} shells={shells} manager_plus_shells_pss_mib={int(pss)/1024:.1f} load={load}")
PY
  kill -TERM $pid; wait $pid || true
  rm -rf "$dir"
}
for r in $(seq "$reps"); do for b in "${bins[@]}"; do run_one "$b"; done; done | tee /tmp/idle-bench.out
# Medians per binary.
python3 - /tmp/idle-bench.out <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"RESULT (\S+) n=(\d+) .*idle_cpu=([\d.]+)% .*wakeups_per_s=([\d.]+) .*load=([\d.]+)", line)
    if m:
        runs.setdefault((m[1], m[2]), []).append((float(m[3]), float(m[4]), float(m[5])))
for (b, n), rs in runs.items():
    med = lambda i: statistics.median(r[i] for r in rs)
    print(f"MEDIAN {b} n={n} runs={len(rs)} idle_cpu={med(0):.4f}% wakeups_per_s={med(1):.2f} load={min(r[2] for r in rs):.1f}-{max(r[2] for r in rs):.1f}")
PY
