# Sourced by the idle scripts: starts robokud (BIN, extra flags in the array FLAGS) on a fresh data dir
# with an app `bench` whose web dyno is `sleep`, and gives them `up` (dynos up, from ps),
# `wait_for N` (until N are up), `wait_cgroups N` (until N dynos are in the agent's cgroups:
# unlike `ps` it reads no unread dyno) and P (robokud's pid), R (roboku), work (the temp dir).
# Needs BIN (robokud), NAME (cgroup name, temp dir prefix).
R=${ROBOKU:-$(dirname "$BIN")/roboku}
[ -x "$R" ] || { echo "no roboku beside $BIN: set ROBOKU=path" >&2; exit 2; }
work=$(mktemp -d "/tmp/roboku-$NAME-XXXXXX")
chmod 755 "$work"; mkdir -m 755 "$work/data" "$work/app"
printf 'web: exec sleep 100000\n' > "$work/app/Procfile"
"$BIN" --data-dir "$work/data" --socket "$work/s.sock" --on-exit stop --cgroup-name "rk-$NAME" \
  --backoff-reset-secs 1 --grace-secs 2 ${FLAGS[@]+"${FLAGS[@]}"} > "$work/log" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null; while kill -0 $P 2>/dev/null; do sleep 0.2; done; rm -rf "$work"' EXIT
export ROBOKU_SOCKET=$work/s.sock
for _ in $(seq 50); do "$R" status >/dev/null 2>&1 && break; sleep 0.2; done
"$R" apps:create bench >/dev/null
"$R" deploy "$work/app" -a bench >/dev/null 2>&1
up() { "$R" ps -a bench --json | python3 -c 'import json,sys; print(sum(d["state"]=="up" for d in json.load(sys.stdin)))'; }
wait_for() { local want=$1; for _ in $(seq 1200); do [ "$(up)" -eq "$want" ] && return; sleep 0.05; done; echo "timed out waiting for $want dynos" >&2; exit 1; }
wait_cgroups() {
  local n
  for _ in $(seq 1200); do
    n=$(find /sys/fs/cgroup -path "*rk-$NAME*" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | wc -l)
    [ "$n" -ge "$1" ] && return; sleep 0.02
  done
  echo "timed out waiting for $1 dynos in the cgroups" >&2; exit 1
}
