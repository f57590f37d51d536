#!/usr/bin/env bash
# Cross-builds robokud and roboku for aarch64-unknown-linux-gnu (64-bit ARM robots: Raspberry Pi 4/5,
# Jetson, most industrial ARM boards) in release mode, on a Debian 12 (bookworm) amd64 host.
#
# Uses Debian's own Rust (rustc-web/cargo-web 1.96 from bookworm-security) because its
# libstd-rust-web-dev:arm64 ships the aarch64 standard library: rustup cannot fetch one here.
# Installs what is missing (needs root), then builds into $ROBOKU_AARCH64_TARGET_DIR.
#
# Output: $ROBOKU_AARCH64_TARGET_DIR/aarch64-unknown-linux-gnu/release/{robokud,roboku}
# Env: ROBOKU_AARCH64_TARGET_DIR (default /var/tmp/roboku-aarch64)
#      ROBOKU_KEEP_SYMBOLS=1  build unstripped (to see what the size is made of), then write
#                             stripped copies next to them as robokud.stripped / roboku.stripped
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${ROBOKU_AARCH64_TARGET_DIR:-/var/tmp/roboku-aarch64}

# Debian's toolchain lives in /usr/bin; a rustup install earlier on PATH must not shadow it.
CARGO=/usr/bin/cargo
export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
[ -x "$CARGO" ] || need+=(cargo-web)
[ -x "$RUSTC" ] || need+=(rustc-web)
[ -d /usr/lib/rustlib/$TARGET/lib ] || need+=(libstd-rust-web-dev:arm64)
if [ ${#need[@]} -gt 0 ]; then
    echo "cross: installing ${need[*]}" >&2
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

"$RUSTC" --version >&2
"$CARGO" --version >&2

# The linker, and the C compiler for rusqlite's bundled SQLite (built by the cc crate).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
if [ "${ROBOKU_KEEP_SYMBOLS:-0}" = 1 ]; then
    export CARGO_PROFILE_RELEASE_STRIP=none
fi

cd "$ROOT"
start=$(date +%s)
"$CARGO" build --locked --release --target "$TARGET" -p robokud -p roboku --bins
echo "cross: built in $(( $(date +%s) - start ))s" >&2

out="$CARGO_TARGET_DIR/$TARGET/release"
if [ "${ROBOKU_KEEP_SYMBOLS:-0}" = 1 ]; then
    for b in robokud roboku; do
        aarch64-linux-gnu-strip -o "$out/$b.stripped" "$out/$b"
    done
fi
for b in robokud roboku; do
    file "$out/$b" 2>/dev/null || true
    ls -l "$out/$b"* >&2
done
