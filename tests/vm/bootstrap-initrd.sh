#!/usr/bin/env bash
# Makes the bootstrap initramfs of a firstboot image (tests/vm/image.sh, aarch64) on the host,
# without running any guest binary: /init (guest/bootstrap-init), the static busybox of the
# extracted root, and the kernel modules that reach an ext4 root on virtio-blk-pci with their
# dependencies (read from each module's .modinfo), in load order in /modules/order.
#
# Usage: tests/vm/bootstrap-initrd.sh ROOT KERNEL_VERSION INIT OUT.cpio.gz
set -euo pipefail

ROOT=${1:?usage: bootstrap-initrd.sh ROOT KERNEL_VERSION INIT OUT}
KVER=${2:?kernel version}
INIT=${3:?init script}
OUT=${4:?output file}
# crc32c: ext4's metadata checksums ask the crypto API for it (a module in Debian's kernel).
WANT=(crc32c_generic virtio_pci virtio_blk ext4)

moddir="$ROOT/lib/modules/$KVER"
[ -d "$moddir" ] || { echo "bootstrap initrd: no $moddir" >&2; exit 1; }
busybox="$ROOT/bin/busybox"
[ -x "$busybox" ] || { echo "bootstrap initrd: no $busybox (is busybox-static in the image?)" >&2; exit 1; }

# Module name -> file (names use _ where file names may use -).
declare -A file_of
while IFS= read -r ko; do
    name=${ko##*/}
    name=${name%.ko}
    file_of[${name//-/_}]=$ko
done < <(find "$moddir/kernel" -name '*.ko')

declare -A seen
order=()
add() {
    local name=${1//-/_} ko deps dep
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    ko=${file_of[$name]:-}
    [ -n "$ko" ] || { echo "bootstrap initrd: module $name not found under $moddir" >&2; exit 1; }
    deps=$(readelf -p .modinfo "$ko" | sed -n 's/.*\]  depends=//p')
    for dep in ${deps//,/ }; do
        add "$dep"
    done
    order+=("$name")
}
for m in "${WANT[@]}"; do
    add "$m"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/modules" "$stage/dev" "$stage/proc" "$stage/sys" "$stage/root"
install -m 0755 "$INIT" "$stage/init"
install -m 0755 "$busybox" "$stage/bin/busybox"
for name in "${order[@]}"; do
    cp "${file_of[$name]}" "$stage/modules/$name.ko"
    echo "$name.ko" >>"$stage/modules/order"
done
(cd "$stage" && find . -print0 | cpio --null --create --format=newc --quiet) | gzip -1 >"$OUT"
echo "vm image: bootstrap initramfs with ${order[*]}" >&2
