#!/bin/bash
# PID 1 at the first boot of a firstboot image (aarch64; started by guest/bootstrap-init): mmdebstrap
# only extracted the packages on the host, so this installs them for real, with the guest's own
# dpkg and maintainer scripts, as mmdebstrap would in a chroot: unpack everything (Pre-Depends
# forced, as mmdebstrap and debootstrap do: every file is on disk already), then configure in
# dpkg's dependency order, no service started (policy-rc.d). linux-image's postinst makes the
# real initrd with initramfs-tools. Then guest/customize.sh, then power off. --force-unsafe-io:
# no fsync per file (an emulated CPU pays dearly for each); a failed boot discards the image.
# The host takes the image as built only if the console says "roboku-vm firstboot: ok" and the
# marker file exists.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C HOME=/root
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
HERE=/var/lib/roboku-vm
ARCHIVES=/var/cache/apt/archives
exec >/dev/console 2>&1
start=$(date +%s)

say() { echo "roboku-vm firstboot: $* ($(($(date +%s) - start)) s)"; }

# PID 1 must not exit (the kernel would panic): sync, remount read-only, power off. In a new
# bash: this one still maps the bash and libraries mmdebstrap extracted, which dpkg has replaced
# since, and those unlinked inodes make the remount fail ("mount point is busy").
finish() {
    sync
    exec /bin/bash -c 'mount -o remount,ro / || echo "roboku-vm firstboot: remount read-only failed"
        echo o >/proc/sysrq-trigger
        while :; do sleep 60; done'
}

fail() {
    say "FAILED: $*"
    finish
}

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || fail "mount /run failed"
mkdir -p /run/lock /dev/pts
mount -t devpts devpts /dev/pts || fail "mount /dev/pts failed"
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d ||
    fail "cannot write /usr/sbin/policy-rc.d"

debs=("$ARCHIVES"/*.deb)
[ -e "${debs[0]}" ] || fail "no packages in $ARCHIVES"
say "unpacking ${#debs[@]} packages"
dpkg --unpack --force-depends --force-unsafe-io "${debs[@]}" || fail "dpkg --unpack exited $?"
# The initrd for this very machine only (virtio-blk, ext4): initramfs-tools' default, "most",
# copies every storage and fs driver, which takes an emulated CPU a quarter of an hour.
mkdir -p /etc/initramfs-tools/conf.d
echo MODULES=dep >/etc/initramfs-tools/conf.d/roboku-vm.conf || fail "cannot write initramfs-tools config"
say "configuring"
dpkg --configure -a --force-unsafe-io || fail "dpkg --configure -a exited $?"
audit=$(dpkg --audit 2>&1)
[ -z "$audit" ] || fail "dpkg --audit: $(echo "$audit" | head -5 | tr '\n' ' ')"
ls /boot/initrd.img-* >/dev/null 2>&1 || fail "no /boot/initrd.img-* (initramfs-tools did not run)"
sh "$HERE/customize.sh" || fail "customize.sh exited $?"

rm -f /usr/sbin/policy-rc.d "${debs[@]}" "$HERE/customize.sh"
echo "configured $(date -u +%FT%TZ) in $(($(date +%s) - start)) s" >"$HERE/configured"
say "ok"
# This script stays in the image, a record of how it was made.
finish
