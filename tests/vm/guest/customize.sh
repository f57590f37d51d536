#!/bin/sh
# Run once inside the guest's root while its image is built (tests/vm/image.sh), for every
# target: chrooted by mmdebstrap on the host (x86-64), or by guest/firstboot.sh at the guest's
# first boot (aarch64). Expects roboku-vm-suite.service in /etc/systemd/system already.
set -eu
echo roboku-vm >/etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 roboku-vm\n' >/etc/hosts
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >/etc/fstab
passwd -d root >/dev/null
systemctl enable roboku-vm-suite.service
# Nothing that wakes up during a test run and competes for the guest's CPUs.
systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    fstrim.timer man-db.timer 2>/dev/null || true
# Every boot of the image is a new machine (systemd makes the id at boot).
rm -f /etc/machine-id
: >/etc/machine-id
