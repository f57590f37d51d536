# Sourced by tests/vm/run and tests/vm/image.sh: the one place that knows what differs between
# the guest targets. `vm_target TARGET` sets
#   SUITE         Debian codename of the guest
#   DEB_ARCH      dpkg architecture (of the guest, its kernel package and the roboku .deb)
#   QEMU          the qemu-system binary that boots it
#   QEMU_MACHINE  machine and CPU arguments (an array; run adds -accel/-cpu where KVM may apply)
#   CONSOLE       the serial console's device name in the guest
#   CONFIGURE     how the image's packages get installed:
#                 chroot     mmdebstrap runs the maintainer scripts on the host (same architecture)
#                 firstboot  mmdebstrap only extracts (the host cannot run the guest's binaries:
#                            qemu-user hangs on threaded dynamic aarch64 programs here), and the
#                            guest configures itself at its first boot (guest/firstboot.sh)
#   LEAVE_OUT     packages of the common list (image.sh) this image goes without
# and returns 1 for an unknown target.
VM_TARGETS="x86_64 x86_64-trixie aarch64"

vm_target() {
    case "$1" in
    x86_64 | x86_64-trixie)
        SUITE=bookworm
        [ "$1" = x86_64-trixie ] && SUITE=trixie
        DEB_ARCH=amd64
        QEMU=qemu-system-x86_64
        QEMU_MACHINE=()
        CONSOLE=ttyS0
        CONFIGURE=chroot
        LEAVE_OUT=
        ;;
    aarch64)
        SUITE=bookworm
        DEB_ARCH=arm64
        QEMU=qemu-system-aarch64
        # TCG (an x86-64 host cannot run an arm64 guest with KVM). Cortex-A72 is the Raspberry
        # Pi 4's core; it also spares TCG the pointer-authentication emulation of `-cpu max`.
        QEMU_MACHINE=(-M virt -cpu cortex-a72 -accel tcg)
        CONSOLE=ttyAMA0
        CONFIGURE=firstboot
        # npm brings 350 of the 524 packages (node-*), and each costs the emulated first
        # boot seconds: the smoke suite needs no npm (only the node app test, by filter, does).
        LEAVE_OUT=npm
        ;;
    *) return 1 ;;
    esac
}
