#!/usr/bin/env bash
# Runs aarch64 builds of roboku under qemu user-mode emulation on an amd64 host:
#   1. the release robokud and roboku from cross/build-aarch64.sh: `--version`
#   2. the unit tests of the pure modules (procfile, supervisor::backoff, engine::reconcile,
#      engine::formation (limits), cgroup::limits, settings) plus the store (SQLite is the one C
#      dependency: this runs the cross-compiled SQLite) and the wire types, built for aarch64
#      and run with qemu-aarch64-static as cargo's runner.
# Env: ROBOKU_AARCH64_TARGET_DIR as for build-aarch64.sh.
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${ROBOKU_AARCH64_TARGET_DIR:-/var/tmp/roboku-aarch64}
out="$CARGO_TARGET_DIR/$TARGET/release"
if [ ! -x "$out/robokud" ] || [ ! -x "$out/roboku" ]; then
    "$HERE/build-aarch64.sh"
fi

CARGO=/usr/bin/cargo
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# qemu runs the aarch64 test binaries; it finds the aarch64 ld.so and libc under this prefix.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu

start=$(date +%s)
for b in robokud roboku; do
    v=$(qemu-aarch64-static "$out/$b" --version)
    case "$v" in
        "$b "*) echo "ok: $b --version under qemu: $v" ;;
        *) echo "FAIL: $b --version printed '$v'" >&2; exit 1 ;;
    esac
done

# The test harness runs every test on its own thread. On some hosts qemu-user cannot run
# threaded aarch64 programs at all (seen on a Firecracker VM, kernel 6.18, with qemu 7.2 and
# 10.0: pthread_create spins forever in a compare-and-swap loop), and every test would hang.
# Find out with a five-line pthread program first, and say so instead of hanging.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
cat >"$probe/probe.c" <<'C'
#include <pthread.h>
#include <stdio.h>
static void *run(void *arg) { return arg; }
int main(void) {
    pthread_t t; void *r = 0;
    if (pthread_create(&t, 0, run, (void *)42) || pthread_join(t, &r)) return 1;
    printf("%ld\n", (long)r);
    return 0;
}
C
aarch64-linux-gnu-gcc -O1 -o "$probe/probe" "$probe/probe.c" -lpthread
if [ "$(timeout 20 qemu-aarch64-static "$probe/probe" || true)" != 42 ]; then
    echo "FAIL: qemu-aarch64-static cannot run a threaded aarch64 program on this host" \
        "($(qemu-aarch64-static --version | head -1)); the unit tests cannot run here." >&2
    exit 1
fi
echo "ok: qemu runs threaded aarch64 programs"

cd "$ROOT"
"$CARGO" test --locked --target "$TARGET" -p robokud --lib -- \
    procfile:: supervisor::backoff:: engine::reconcile:: engine::formation:: cgroup::limits:: \
    settings:: store::
"$CARGO" test --locked --target "$TARGET" -p roboku-wire
echo "cross: aarch64 tests took $(( $(date +%s) - start ))s (including the debug build)" >&2
