#!/usr/bin/env bash
# Makes this machine able to run real guests through libvirt's QEMU driver: installs
# qemu-system-x86, qemu-utils and the QEMU driver of libvirt when missing, and starts
# virtlogd and libvirtd by hand (no systemd; libvirt-daemon-system would pull its units),
# as scripts/libvirtd.sh does for the test driver. Idempotent; prints the URI to use.
set -euo pipefail

URI=qemu:///system
need=()
for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
# The QEMU driver runs guests as libvirt-qemu; the package that creates the user also
# pulls systemd units we do not use.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt/qemu /run/libvirt /var/lib/libvirt
# /dev/kvm as Debian's udev rule leaves it (group kvm, 0660). Without udev it keeps the
# kernel's 0600 root: libvirt then probes QEMU as root (KVM seen) but checks its cache as
# the guests' user (KVM not usable), finds the cache stale at every call and probes QEMU
# again, ~11 s each, several times per domain defined.
if [ -c /dev/kvm ] && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
# qemu's console and logs go through virtlogd.
[ -S /run/libvirt/virtlogd-sock ] && pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 1 100); do
  virsh -c "$URI" uri >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c "$URI" uri >/dev/null
echo "$URI"
