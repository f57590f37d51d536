#!/usr/bin/env bash
# Builds (once) the raw guest image for tests/vm/run and prints its directory.
#
# Usage: tests/vm/image.sh TARGET     (x86_64 = Debian 12 bookworm, x86_64-trixie = Debian 13)
# Cache: ${ROBOKU_VM_CACHE:-/var/tmp/roboku-vm}/image-<target>-<hash>/{root.img,vmlinuz,initrd.img}
# where <hash> covers this script and guest/roboku-vm-suite.service, so a changed recipe builds
# a new image (older ones are deleted). Needs root, mmdebstrap and mkfs.ext4 (e2fsprogs).
set -euo pipefail

TARGET=${1:?usage: tests/vm/image.sh x86_64|x86_64-trixie}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${ROBOKU_VM_CACHE:-/var/tmp/roboku-vm}
case "$TARGET" in
x86_64) suite=bookworm ;;
x86_64-trixie) suite=trixie ;;
*) echo "vm image: unknown target '$TARGET' (x86_64 or x86_64-trixie)" >&2; exit 2 ;;
esac

# What the guest suite needs: systemd as init (cgroup v2 by default), a Debian kernel with an
# initramfs that finds a virtio disk, python3 + venv + pip and node + npm for the buildpacks,
# procps/iproute2 for the checks, and nothing that starts network services.
packages=systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,python3,python3-venv,python3-pip,nodejs,npm,procps,iproute2,psmisc,less

key=$(cat "$0" "$HERE/guest/roboku-vm-suite.service" | sha256sum | cut -c1-12)
dir="$CACHE/image-$TARGET-$key"
if [ -s "$dir/root.img" ] && [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ]; then
    echo "$dir"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "vm image: building the image needs root" >&2; exit 1; }
for tool in mmdebstrap mkfs.ext4; do
    command -v "$tool" >/dev/null || { echo "vm image: $tool missing (apt-get install mmdebstrap e2fsprogs)" >&2; exit 1; }
done
mkdir -p "$CACHE"
# Older recipes of this target are stale.
for old in "$CACHE"/image-"$TARGET"-*; do
    [ -d "$old" ] && [ "$old" != "$dir" ] && rm -rf "$old"
done
work=$(mktemp -d "$CACHE/build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
# Only the image's path goes to stdout (the caller reads it): everything the build tools print
# goes to stderr (mkfs.ext4 -q still says "Creating regular file" on stdout; seen on a cold CI).
exec 3>&1 1>&2
echo "vm image: building $TARGET ($suite) into $dir (several minutes, once)" >&2
start=$(date +%s)
mmdebstrap --quiet --variant=minbase --include="$packages" \
    --customize-hook='echo roboku-vm >"$1/etc/hostname"' \
    --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 roboku-vm\n" >"$1/etc/hosts"' \
    --customize-hook='printf "/dev/vda / ext4 rw,errors=remount-ro 0 1\n" >"$1/etc/fstab"' \
    --customize-hook='chroot "$1" passwd -d root >/dev/null' \
    --customize-hook="copy-in $HERE/guest/roboku-vm-suite.service /etc/systemd/system" \
    --customize-hook='chroot "$1" systemctl enable roboku-vm-suite.service' \
    --customize-hook='chroot "$1" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer 2>/dev/null || true' \
    --customize-hook='rm -f "$1"/etc/machine-id; : >"$1/etc/machine-id"' \
    "$suite" "$root" http://deb.debian.org/debian
mkdir -p "$work/out"
cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$work/out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$work/out/initrd.img"
# 6 GiB sparse: room for slugs, venvs and node_modules of the suite's apps.
mkfs.ext4 -q -L roboku-vm -d "$root" "$work/out/root.img" 6G
rm -rf "$dir"
mv "$work/out" "$dir"
echo "vm image: built in $(( $(date +%s) - start )) s" >&2
echo "$dir" >&3
