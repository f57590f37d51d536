#!/usr/bin/env bash
# Builds (once) the raw guest image for tests/vm/run and prints its directory.
#
# Usage: tests/vm/image.sh TARGET     (x86_64, x86_64-trixie or aarch64: see targets.sh)
# Cache: ${ROBOKU_VM_CACHE:-/var/tmp/roboku-vm}/image-<target>-<hash>/{root.img,vmlinuz,initrd.img}
# where <hash> covers this script, targets.sh and the guest files baked into the image, so a
# changed recipe builds a new image (older ones of the same target are deleted).
# Needs root, mmdebstrap and mkfs.ext4 (e2fsprogs); a firstboot target (aarch64) also cpio,
# debugfs (e2fsprogs) and its qemu-system binary, and ROBOKU_VM_IMAGE_TIMEOUT (default 3600) s
# for its first boot.
#
# Two ways to install the packages (CONFIGURE in targets.sh):
#   chroot     mmdebstrap installs everything and runs guest/customize.sh in a chroot.
#   firstboot  mmdebstrap only downloads and extracts (the host cannot run the guest's binaries);
#              the image is booted once with a bootstrap initramfs made here (busybox-static and
#              the kernel modules that reach the disk), and guest/firstboot.sh, as PID 1, installs
#              the packages with the guest's dpkg, runs guest/customize.sh and powers off. The
#              kernel is the extracted one; the initrd is the one initramfs-tools made in the
#              guest, read back out of the image with debugfs.
set -euo pipefail

TARGET=${1:?usage: tests/vm/image.sh x86_64|x86_64-trixie|aarch64}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${ROBOKU_VM_CACHE:-/var/tmp/roboku-vm}
# shellcheck source=targets.sh
. "$HERE/targets.sh"
vm_target "$TARGET" || { echo "vm image: unknown target '$TARGET' ($VM_TARGETS)" >&2; exit 2; }

# What the guest suite needs: systemd as init (cgroup v2 by default), a Debian kernel with an
# initramfs that finds a virtio disk, python3 + venv + pip and node + npm for the buildpacks,
# procps/iproute2 for the checks, and nothing that starts network services.
packages=systemd,systemd-sysv,udev,dbus,kmod,linux-image-$DEB_ARCH,initramfs-tools,python3,python3-venv,python3-pip,nodejs,npm,procps,iproute2,psmisc,less
for pkg in $LEAVE_OUT; do
    packages=$(echo ",$packages," | sed "s/,$pkg,/,/; s/^,//; s/,\$//")
done

baked=("$HERE/guest/roboku-vm-suite.service" "$HERE/guest/customize.sh")
[ "$CONFIGURE" = firstboot ] && baked+=("$HERE/bootstrap-initrd.sh" "$HERE/guest/firstboot.sh" "$HERE/guest/bootstrap-init")
key=$(cat "$0" "$HERE/targets.sh" "${baked[@]}" | sha256sum | cut -c1-12)
dir="$CACHE/image-$TARGET-$key"
if [ -s "$dir/root.img" ] && [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ]; then
    echo "$dir"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "vm image: building the image needs root" >&2; exit 1; }
tools=(mmdebstrap mkfs.ext4)
[ "$CONFIGURE" = firstboot ] && tools+=(cpio debugfs readelf "$QEMU")
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null ||
        { echo "vm image: $tool missing (apt-get install mmdebstrap e2fsprogs cpio binutils qemu-system-x86 qemu-system-arm)" >&2; exit 1; }
done
mkdir -p "$CACHE"
# Older recipes of this target are stale.
for old in "$CACHE"/image-"$TARGET"-*; do
    [ -d "$old" ] && [ "$old" != "$dir" ] && rm -rf "$old"
done
# Only the image's path goes to stdout (the caller reads it): everything the build tools print
# goes to stderr (mkfs.ext4 -q still says "Creating regular file" on stdout; seen on a cold CI).
exec 3>&1 1>&2
work=$(mktemp -d "$CACHE/build-$TARGET-XXXXXX")
qemu_pid=
cleanup() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
root="$work/root"
mkdir -p "$work/out"
echo "vm image: building $TARGET ($SUITE, $DEB_ARCH) into $dir (once; x86-64 ~5-7 min, aarch64 ~25-35)" >&2
start=$(date +%s)
mirror=http://deb.debian.org/debian

case "$CONFIGURE" in
chroot)
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --customize-hook="copy-in $HERE/guest/roboku-vm-suite.service /etc/systemd/system" \
        --customize-hook="copy-in $HERE/guest/customize.sh /tmp" \
        --customize-hook='chroot "$1" sh /tmp/customize.sh' \
        --customize-hook='rm "$1/tmp/customize.sh"' \
        "$SUITE" "$root" "$mirror"
    ;;
firstboot)
    # minbase's package set (Essential, Priority required, apt) plus ours, only extracted; the
    # .debs stay in /var/cache/apt/archives for firstboot.sh. Merged /usr as minbase has it,
    # made before extraction (usr-is-merged then checks it, instead of usrmerge converting).
    # (An --include holding an apt pattern is not split at commas: one option each.)
    mmdebstrap --quiet --variant=extract --architectures="$DEB_ARCH" --skip=check/qemu \
        --skip=cleanup/apt/cache \
        --setup-hook='for d in bin sbin lib; do ln -s usr/$d "$1/$d"; mkdir -p "$1/usr/$d"; done' \
        --include='?essential' --include='?priority(required)' \
        --include="apt,usr-is-merged,busybox-static,$packages" \
        --extract-hook="copy-in $HERE/guest/roboku-vm-suite.service /etc/systemd/system" \
        --extract-hook='mkdir -p "$1/var/lib/roboku-vm"' \
        --extract-hook="copy-in $HERE/guest/customize.sh $HERE/guest/firstboot.sh /var/lib/roboku-vm" \
        "$SUITE" "$root" "$mirror"
    echo "vm image: extracted in $(( $(date +%s) - start )) s" >&2
    ;;
esac

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
kver=${kernel##*/vmlinuz-}
cp "$kernel" "$work/out/vmlinuz"
# 6 GiB sparse: room for slugs, venvs and node_modules of the suite's apps.
# (mkfs says "Creating regular file" on stdout, which is this script's answer: keep it off.)
mkfs.ext4 -q -L roboku-vm -d "$root" "$work/out/root.img" 6G >&2

if [ "$CONFIGURE" = chroot ]; then
    cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$work/out/initrd.img"
else
    "$HERE/bootstrap-initrd.sh" "$root" "$kver" "$HERE/guest/bootstrap-init" "$work/bootstrap.cpio.gz"
    rm -rf "$root"
    boot_start=$(date +%s)
    log="$work/out/firstboot.log"
    echo "vm image: first boot configures the guest (console: $log)" >&2
    timeout -k 10 "${ROBOKU_VM_IMAGE_TIMEOUT:-3600}" "$QEMU" "${QEMU_MACHINE[@]}" -smp 2 -m 2048 \
        -nodefaults -no-user-config -display none -no-reboot -serial "file:$log" \
        -kernel "$work/out/vmlinuz" -initrd "$work/bootstrap.cpio.gz" \
        -append "console=$CONSOLE panic=-1" \
        -drive "file=$work/out/root.img,format=raw,if=virtio,cache=unsafe" \
        -device virtio-rng-pci -nic none &
    qemu_pid=$!
    rc=0
    wait "$qemu_pid" || rc=$?
    qemu_pid=
    if ! grep -q 'roboku-vm firstboot: ok' "$log" ||
        ! debugfs -R 'cat /var/lib/roboku-vm/configured' "$work/out/root.img" 2>/dev/null | grep -q configured; then
        echo "vm image: the first boot did not configure the guest (qemu exit $rc; last console lines:)" >&2
        { grep -a -e 'roboku-vm' -e '^dpkg: error' "$log" | tail -10; tail -5 "$log"; } | sed 's/^/  console: /' >&2
        cp "$log" "$CACHE/firstboot-$TARGET.log" && echo "vm image: whole console log in $CACHE/firstboot-$TARGET.log" >&2
        exit 1
    fi
    echo "vm image: first boot done in $(( $(date +%s) - boot_start )) s" >&2
    debugfs -R "dump /boot/initrd.img-$kver $work/out/initrd.img" "$work/out/root.img" 2>/dev/null
    [ -s "$work/out/initrd.img" ] || { echo "vm image: no /boot/initrd.img-$kver in the configured image" >&2; exit 1; }
fi
rm -rf "$dir"
mv "$work/out" "$dir"
echo "vm image: built in $(( $(date +%s) - start )) s" >&2
echo "$dir" >&3
