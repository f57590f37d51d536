#!/usr/bin/env bash
# Runs aarch64 builds of roboku under qemu user-mode emulation on an amd64 host:
#   1. the release robokud and roboku from cross/build-aarch64.sh: `--version`
#   2. the unit tests of the pure modules (procfile, supervisor::backoff, engine::reconcile,
#      engine::formation (limits), cgroup::limits, settings) plus the store (SQLite is the one C
#      dependency: this runs the cross-compiled SQLite) and the wire types, built for aarch64
#      STATICALLY linked (see below) and run with qemu-aarch64-static as cargo's runner.
# Env: ROBOKU_AARCH64_TARGET_DIR as for build-aarch64.sh; the static test build goes to
#      $ROBOKU_AARCH64_TARGET_DIR/static-tests so it does not invalidate the release build.
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
# qemu runs the aarch64 binaries; it finds the aarch64 ld.so and libc of the dynamically
# linked ones (the release build) under this prefix.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu

for b in robokud roboku; do
    v=$(qemu-aarch64-static "$out/$b" --version)
    case "$v" in
        "$b "*) echo "ok: $b --version under qemu: $v" ;;
        *) echo "FAIL: $b --version printed '$v'" >&2; exit 1 ;;
    esac
done

# The test harness runs every test on its own thread. On some hosts qemu-user cannot run
# DYNAMICALLY linked threaded aarch64 programs (seen on a Firecracker VM, kernel 6.18, with qemu
# 7.2 and 10.0: pthread_create spins forever in a compare-and-swap loop; GLIBC_TUNABLES
# glibc.pthread.rseq=0 does not help), while the same program linked statically runs. So the
# tests are linked statically (crt-static, aarch64 only), and a five-line pthread program, also
# static, is tried first: if even that hangs, say so instead of hanging in every test.
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
aarch64-linux-gnu-gcc -static -O1 -o "$probe/probe" "$probe/probe.c" -lpthread
if [ "$(timeout 20 qemu-aarch64-static "$probe/probe" || true)" != 42 ]; then
    echo "FAIL: qemu-aarch64-static cannot run even a statically linked threaded aarch64" \
        "program on this host ($(qemu-aarch64-static --version | head -1));" \
        "the unit tests cannot run here." >&2
    exit 1
fi
echo "ok: qemu runs statically linked threaded aarch64 programs"
# For the record only: whether the dynamic build would have worked here.
aarch64-linux-gnu-gcc -O1 -o "$probe/probe-dyn" "$probe/probe.c" -lpthread
if [ "$(timeout 5 qemu-aarch64-static "$probe/probe-dyn" || true)" = 42 ]; then
    echo "note: dynamically linked threaded programs run under qemu here too"
else
    echo "note: dynamically linked threaded programs hang under qemu on this host (static is needed)"
fi

# Static glibc: getpwuid_r/getaddrinfo in the test binary would need the target's NSS libraries
# at run time (glibc's link warning is hidden by rustc); no test run here looks users or hosts up.
export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/static-tests
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
cd "$ROOT"
build_start=$(date +%s)
"$CARGO" test --locked --target "$TARGET" -p robokud --lib --no-run
"$CARGO" test --locked --target "$TARGET" -p roboku-wire --lib --no-run
build_secs=$(( $(date +%s) - build_start ))

log="$probe/test.log"
run_start=$(date +%s)
"$CARGO" test --locked --target "$TARGET" -p robokud --lib -- \
    procfile:: supervisor::backoff:: engine::reconcile:: engine::formation:: cgroup::limits:: \
    settings:: store:: 2>&1 | tee "$log"
"$CARGO" test --locked --target "$TARGET" -p roboku-wire --lib 2>&1 | tee -a "$log"
run_secs=$(( $(date +%s) - run_start ))
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i < NF; i++) {
    if ($(i + 1) ~ /^passed;/) p += $i; if ($(i + 1) ~ /^failed;/) f += $i } }
    END { print p + 0, f + 0 }' "$log")
echo "cross: aarch64 tests under qemu: $passed passed, $failed failed;" \
    "test build ${build_secs}s, qemu run ${run_secs}s" >&2
