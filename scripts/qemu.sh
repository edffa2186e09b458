#!/usr/bin/env bash
# Makes this machine able to run real guests through libvirt's QEMU driver: installs
# qemu-system-x86, qemu-utils and the QEMU driver of libvirt when missing, writes the QEMU
# driver's configuration when this machine needs one (below), and has scripts/libvirtd.sh
# start virtlogd and libvirtd by hand (no systemd; libvirt-daemon-system would pull its
# units). Idempotent; prints the URI to use.
set -euo pipefail
cd "$(dirname "$0")/.."

URI=qemu:///system
CONF=/etc/libvirt/qemu.conf
MARK="# Written by necos scripts/qemu.sh; removed or rewritten by it."
need=()
for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils util-linux; do
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
mkdir -p /var/log/libvirt/qemu /run/libvirt /var/lib/libvirt /etc/libvirt

# The emulator of TCG guests (scripts/qemu-tcg-single: QEMU with single-threaded TCG, so
# that a live add-cpu cannot abort it), where vim-xen looks for it by default
# (DefaultTCGEmulator) and the guests' user can run it. Rewritten only when it changes:
# libvirt probes an emulator again (~4 s) whenever its file is newer than its cache.
TCG_EMULATOR=/var/lib/necos/qemu/qemu-system-x86_64-tcg-single
mkdir -p "$(dirname "$TCG_EMULATOR")"
sed "s|@QEMU@|$(command -v qemu-system-x86_64)|" scripts/qemu-tcg-single > "$TCG_EMULATOR.tmp"
chmod 755 "$TCG_EMULATOR.tmp"
if cmp -s "$TCG_EMULATOR.tmp" "$TCG_EMULATOR"; then
  rm -f "$TCG_EMULATOR.tmp"
else
  mv "$TCG_EMULATOR.tmp" "$TCG_EMULATOR"
fi

# The QEMU driver's own configuration, for libvirtd, which this script starts. Without
# udev, /dev/kvm keeps the kernel's root-only mode: libvirt then probes QEMU with
# CAP_DAC_OVERRIDE (KVM seen) but checks its cache as the guests' user (KVM not usable),
# finds the cache stale at every call and probes again, ~11 s each, several times per
# domain defined. The device is the machine's and is left as it is; instead our daemon
# runs its guests as root, for whom both views agree. Where the guests' user can open
# /dev/kvm (udev's rule, or no /dev/kvm at all) libvirt's defaults stand.
want=""
if [ -c /dev/kvm ] && ! setpriv --reuid=libvirt-qemu --regid=libvirt-qemu --init-groups \
     test -r /dev/kvm -a -w /dev/kvm 2>/dev/null; then
  want=$(printf '%s\n%s\n%s\n%s\n' "$MARK" \
    "# /dev/kvm is root-only here: run guests as root so that libvirt's capability cache stays valid." \
    'user = "root"' 'group = "root"')
fi
changed=0
if [ -e "$CONF" ] && [ "$(head -n1 "$CONF")" != "$MARK" ]; then
  [ -z "$want" ] || echo "qemu.sh: $CONF is not ours, left as it is; libvirt may re-probe QEMU at every call (see this script)" >&2
elif [ -z "$want" ]; then
  [ -e "$CONF" ] && rm -f "$CONF" && changed=1
elif [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
  printf '%s\n' "$want" > "$CONF.tmp" && mv "$CONF.tmp" "$CONF" && changed=1
fi

# A daemon started before the configuration changed has not read it: restart it. Its
# guests keep running (libvirtd reconnects to them); the test driver's state is dropped.
pid=$(pgrep -x libvirtd || true)
if [ -n "$pid" ]; then
  started=$(( $(date +%s) - $(ps -o etimes= -p "$pid") ))
  conf_time=$(stat -c %Y "$CONF" 2>/dev/null || echo 0)
  if [ "$changed" = 1 ] || [ "$started" -lt "$conf_time" ]; then
    echo "qemu.sh: restarting libvirtd ($pid) to apply $CONF" >&2
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
fi
# One daemon serves both the test driver and QEMU; libvirtd.sh starts it (and virtlogd,
# qemu's console and logs).
pgrep -x virtlogd >/dev/null || "$(dirname "$0")"/detach.sh virtlogd -d
./scripts/libvirtd.sh >/dev/null
for _ in $(seq 1 100); do
  virsh -c "$URI" uri >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c "$URI" uri >/dev/null
echo "$URI"
