#!/bin/bash
# Started at every guest boot by roboku-vm-suite.service (baked into the image): runs the suite
# from the 9p share as root under systemd, then powers the guest off. The suite decides whether
# this is the first boot or the one after its reboot test (state in /mnt/vm/state).
V=/mnt/vm
mkdir -p "$V/logs"
python3 "$V/suite/suite.py" >>"$V/logs/suite.log" 2>&1
rc=$?
echo "suite.py exited $rc" >>"$V/logs/suite.log"
# suite.py asked for a reboot: the next boot goes on with the second phase.
if grep -qx rebooting "$V/state" 2>/dev/null && ! grep -qx 'suite done' "$V/state"; then
    sync
    systemctl reboot
    exit 0
fi
grep -qx 'suite done' "$V/state" 2>/dev/null || echo 'suite aborted' >>"$V/state"
sync
systemctl poweroff
