#!/usr/bin/env bash
# Builds the roboku .deb for one architecture with plain dpkg-deb (no cargo-deb, no debhelper).
#
# Usage: packaging/build-deb.sh amd64|arm64
# Output: target/deb/roboku_<version>_<arch>.deb (override the dir with ROBOKU_DEB_DIR)
#
# Binaries (release builds) are taken from, unless ROBOKU_BIN_DIR names another dir:
#   amd64: ${CARGO_TARGET_DIR:-target}/release                 (built here if missing)
#   arm64: ${ROBOKU_AARCH64_TARGET_DIR:-/var/tmp/roboku-aarch64}/aarch64-unknown-linux-gnu/release
#          (built with cross/build-aarch64.sh if missing)
set -euo pipefail

ARCH=${1:?usage: packaging/build-deb.sh amd64|arm64}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"

case "$ARCH" in
amd64)
    bin_dir=${ROBOKU_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
    if [ -z "${ROBOKU_BIN_DIR:-}" ] && { [ ! -x "$bin_dir/robokud" ] || [ ! -x "$bin_dir/roboku" ]; }; then
        cargo build --locked --release -p robokud -p roboku --bins
    fi
    machine="X86-64"
    strip=strip
    ;;
arm64)
    bin_dir=${ROBOKU_BIN_DIR:-${ROBOKU_AARCH64_TARGET_DIR:-/var/tmp/roboku-aarch64}/aarch64-unknown-linux-gnu/release}
    if [ -z "${ROBOKU_BIN_DIR:-}" ] && { [ ! -x "$bin_dir/robokud" ] || [ ! -x "$bin_dir/roboku" ]; }; then
        "$ROOT/cross/build-aarch64.sh"
    fi
    machine="AArch64"
    strip=aarch64-linux-gnu-strip
    ;;
*)
    echo "build-deb: unknown architecture '$ARCH' (amd64 or arm64)" >&2
    exit 2
    ;;
esac

for b in robokud roboku; do
    [ -x "$bin_dir/$b" ] || { echo "build-deb: $bin_dir/$b missing" >&2; exit 1; }
    # A binary for the wrong machine would install fine and fail at boot: refuse it here.
    readelf -h "$bin_dir/$b" | grep -q "Machine:.*$machine" ||
        { echo "build-deb: $bin_dir/$b is not an $ARCH binary" >&2; exit 1; }
done

# ROBOKU_DEB_VERSION overrides (tests/vm builds a "newer" package of the same tree to upgrade to).
version=${ROBOKU_DEB_VERSION:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)}
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml [workspace.package]" >&2; exit 1; }

# The newest glibc symbol version the binaries need is the libc6 they depend on.
glibc=$(readelf --dyn-syms -W "$bin_dir/robokud" "$bin_dir/roboku" |
    grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)

out_dir=${ROBOKU_DEB_DIR:-$ROOT/target/deb}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/roboku"

install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" \
    "$pkg/usr/lib/sysusers.d" "$pkg/usr/lib/tmpfiles.d" "$pkg/etc/roboku" \
    "$pkg/usr/share/roboku/buildpacks" "$pkg/usr/share/doc/roboku"
install -m 0755 "$bin_dir/robokud" "$bin_dir/roboku" "$pkg/usr/bin/"
# The release profile strips already; an unstripped build (ROBOKU_KEEP_SYMBOLS=1) must not ship.
"$strip" --strip-all "$pkg/usr/bin/robokud" "$pkg/usr/bin/roboku"
install -m 0644 systemd/robokud.service "$pkg/lib/systemd/system/robokud.service"
install -m 0644 systemd/roboku-dynos.service "$pkg/lib/systemd/system/roboku-dynos.service"
install -m 0644 systemd/roboku.sysusers "$pkg/usr/lib/sysusers.d/roboku.conf"
install -m 0644 systemd/roboku.tmpfiles "$pkg/usr/lib/tmpfiles.d/roboku.conf"
install -m 0644 etc/robokud.toml "$pkg/etc/roboku/robokud.toml"
if [ -d buildpacks ]; then
    cp -r buildpacks/. "$pkg/usr/share/roboku/buildpacks/"
    chmod -R u=rwX,go=rX "$pkg/usr/share/roboku/buildpacks"
fi
install -m 0644 docs/install.md "$pkg/usr/share/doc/roboku/install.md"
[ -f README.md ] && install -m 0644 README.md "$pkg/usr/share/doc/roboku/README.md"
{
    cat <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: roboku
Source: roboku

Files: *
Copyright: the roboku authors
License: MIT or Apache-2.0
 roboku is dual-licensed: use it under either license, at your option.

License: MIT
COPYRIGHT
    sed 's/^$/./; s/^/ /' LICENSE-MIT
    printf '\nLicense: Apache-2.0\n On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n'
} >"$pkg/usr/share/doc/roboku/copyright"
chmod 0644 "$pkg/usr/share/doc/roboku/copyright"

install -m 0755 "$HERE/maintscripts/postinst" "$HERE/maintscripts/prerm" "$HERE/maintscripts/postrm" "$pkg/DEBIAN/"
echo /etc/roboku/robokud.toml >"$pkg/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: roboku
Version: $version
Architecture: $ARCH
Maintainer: roboku developers <roboku@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= $glibc), libgcc-s1, systemd | adduser
Recommends: systemd
Section: admin
Priority: optional
Description: Heroku for one robot: Procfile apps under cgroups with releases and rollback
 robokud runs the processes of Procfile apps (dynos) on a robot under systemd: crash restarts
 with backoff, cgroup limits, releases in SQLite with rollback, per-app logs, and re-adoption
 of running dynos when the agent restarts or is upgraded. roboku is its command-line client.
CONTROL
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb="$out_dir/roboku_${version}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
