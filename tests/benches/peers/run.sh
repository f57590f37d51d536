#!/usr/bin/env bash
# The peer benchmark in one command (root, cgroup v1): installs the peers that are missing
# (Debian supervisor, ruby-foreman, uwsgi-core, a C compiler, mosquitto for the MQTT workload;
# honcho is pip-installed by the bench into $CARGO_TARGET_DIR/bench-venv), runs
# `cargo bench -p roboku-tests --bench peers` and writes docs/BENCHMARKS.md and docs/bench-*.svg (plus JSON in the target dir).
# ROBOKU_BENCH_TINY=1: CI's tiny configuration; it writes only into the target dir.
# Other knobs (ROBOKU_BENCH_ITERS, _NS, _IDLE_SECS, _KILLS, _NO_BUILD, _ONLY): see
# benches/peers/main.rs; ROBOKU_BENCH_WORKLOADS (cycle,chatty,slug,mqtt) and _LOG_MB: extra.rs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

need=()
command -v supervisord >/dev/null 2>&1 || need+=(supervisor)
command -v foreman >/dev/null 2>&1 || need+=(ruby-foreman)
command -v uwsgi >/dev/null 2>&1 || command -v uwsgi-core >/dev/null 2>&1 || need+=(uwsgi-core)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The MQTT workload starts its own broker on loopback (the system instance is unused).
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v tar >/dev/null 2>&1 || need+=(tar)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing the peers: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ -z "${ROBOKU_BENCH_TINY:-}" ]; then
  export ROBOKU_BENCH_DOCS="$PWD/docs"
fi
exec cargo bench -p roboku-tests --bench peers
