#!/usr/bin/env bash
# Installs what the `vm` lane needs: QEMU (Debian's qemu-system-x86) and a guest kernel with its
# modules, unpacked into a cache folder. Nothing of the kernel is installed into the host: the
# packages are fetched with `apt-get download` and unpacked with `dpkg -x`.
#
# Idempotent; needs root for apt-get. A missing piece is a clear error.
#
# Cache layout (OPENSHELL_VM_CACHE, default /var/cache/openshell/vm; the gateway's
# --vm-cache-dir defaults to the same folder):
#   kernel/            dpkg -x of linux-image-6.1.0-*-cloud-amd64
#   vmlinuz            -> kernel/boot/vmlinuz-<version>
#   modules            -> kernel/lib/modules/<version>
#   initramfs/         packed image roots (written by the VM driver, one per image id; the
#                      least recently used beyond 2 GiB are removed after each pack)
set -euo pipefail

cache=${OPENSHELL_VM_CACHE:-/var/cache/openshell/vm}
die() {
    echo "setup-vm: ERROR: $*" >&2
    exit 1
}
say() { echo "setup-vm: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs qemu-system-x86)"

# 1. QEMU, only when missing.
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    say "installing qemu-system-x86"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null ||
        die "apt-get install qemu-system-x86 failed"
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 is not installed (package qemu-system-x86)"
qemu-system-x86_64 -machine help | grep -q '^microvm' || die "this QEMU has no microvm machine"

# 2. The kernel: the package linux-image-cloud-amd64 depends on names (linux-image-6.1.0-N-...).
modules_ok() {
    local dir=$1
    for m in kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko \
        kernel/drivers/virtio/virtio_mmio.ko kernel/net/core/failover.ko \
        kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko; do
        [ -f "$dir/$m" ] || return 1
    done
}
if [ -e "$cache/vmlinuz" ] && [ -d "$cache/modules" ] && modules_ok "$cache/modules"; then
    say "kernel already unpacked: $(readlink "$cache/vmlinuz")"
else
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/.download.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # apt-get download fetches as the _apt user where it exists.
    if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
    fi
    package=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-cloud-amd64\)$/\1/p' | head -n 1)
    [ -n "$package" ] || die "linux-image-cloud-amd64 names no linux-image-6.1.0-*-cloud-amd64 (apt-cache depends)"
    say "downloading $package"
    (cd "$work" && apt-get download -qq "$package" >/dev/null) || die "apt-get download $package failed"
    deb=$(ls "$work"/*.deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || die "apt-get download $package left no .deb"
    rm -rf "$work/root"
    dpkg -x "$deb" "$work/root" || die "dpkg -x $deb failed"
    vmlinuz=$(ls "$work"/root/boot/vmlinuz-* 2>/dev/null | head -n 1)
    [ -n "$vmlinuz" ] || die "$package holds no /boot/vmlinuz-*"
    version=${vmlinuz##*/vmlinuz-}
    modules_ok "$work/root/lib/modules/$version" || die "$package lacks the virtio modules"
    rm -rf "$cache/kernel"
    mv "$work/root" "$cache/kernel"
    ln -sfn "kernel/boot/vmlinuz-$version" "$cache/vmlinuz"
    ln -sfn "kernel/lib/modules/$version" "$cache/modules"
    say "kernel $version unpacked into $cache"
fi
mkdir -p "$cache/initramfs"
say "ready: $(qemu-system-x86_64 --version | head -n 1), kernel $(readlink "$cache/vmlinuz"), cache $cache"
