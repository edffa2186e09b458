#!/usr/bin/env bash
# Builds the project's small guest image from Debian packages and caches it: Debian's
# cloud kernel, and an initramfs of busybox-static, dropbear (SSH server), the virtio and
# Xen front-end modules, and necos-guest (plugins/vim-xen/guest), which applies the
# node's NoCloud seed at boot as cloud-init would. Also a small ext4 data disk (qcow2)
# that nodes get copy-on-write overlays of. Cold: about a minute; warm: instant.
#
# Prints the directory holding vmlinuz, initrd.img and disk.qcow2 (NECOS_GUEST_IMAGE).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/go/bin ] && export PATH=/usr/local/go/bin:$PATH

CACHE=${NECOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/necos}
KERNEL_PKG=${NECOS_GUEST_KERNEL:-linux-image-cloud-amd64}
# The command line the image is meant to boot with (catalogues repeat it): no zeroing of
# every allocation and 4-level paging make a TCG boot cheaper, and touch less memory; the
# crypto self-tests cost 0.4-0.6 s of every boot under TCG (crypto_algapi_init alone
# 0.32 s with initcall_debug) and test algorithms the guest barely uses.
CMDLINE="console=ttyS0 quiet init_on_alloc=0 no5lvl cryptomgr.notests"
# The cache key covers this script and the agent's sources: change either, get a new image.
key=$(cat "$0" plugins/vim-xen/guest/*.go plugins/vim-xen/seed/*.go cmd/necos-cdn/*.go go.sum | sha256sum | cut -c1-16)
OUT=$CACHE/guest/$key
if [ -f "$OUT/.done" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$CACHE/guest"
exec 9>"$CACHE/guest/.lock"
flock 9
if [ -f "$OUT/.done" ]; then echo "$OUT"; exit 0; fi

need=()
for p in busybox-static qemu-utils e2fsprogs kmod lz4; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  # busybox-static replaces busybox; only its .deb is needed: skip installing it.
  inst=()
  for p in "${need[@]}"; do [ "$p" = busybox-static ] || inst+=("$p"); done
  if [ "${#inst[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${inst[@]}" >&2
  fi
fi

work=$(mktemp -d "$CACHE/guest/build.XXXXXX")
# apt-get download runs as _apt: it needs a directory it can write to.
dl=$(mktemp -d /tmp/necos-guest-debs.XXXXXX)
chmod 777 "$dl"
trap 'rm -rf "$work" "$dl"' EXIT
kver=$(apt-cache depends "$KERNEL_PKG" | sed -n 's/.*Depends: linux-image-\(.*\)$/\1/p' | head -1)
[ -n "$kver" ] || { echo "cannot resolve $KERNEL_PKG (run apt-get update)" >&2; exit 1; }
echo "guest image: kernel $kver, building in $work" >&2
(cd "$dl" && apt-get download -q "linux-image-$kver" busybox-static dropbear-bin libtomcrypt1 libtommath1 \
   libgmp10 zlib1g libcrypt1 libc6 >&2)
mkdir -p "$work/x"
for d in "$dl"/*.deb; do dpkg-deb -x "$d" "$work/x"; done
X=$work/x
R=$work/root
mkdir -p "$R"/{bin,sbin,etc/dropbear,proc,sys,dev,run,tmp,root,data,lib64,usr/sbin,usr/bin,var/log,var/run}
chmod 700 "$R/root"
cp "$X/bin/busybox" "$R/bin/busybox"
for a in $("$X/bin/busybox" --list); do
  [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
cp "$X/usr/sbin/dropbear" "$R/usr/sbin/"
cp "$X/usr/bin/dropbearkey" "$R/usr/bin/"
# dropbear's shared libraries, from the packages' files.
for lib in libtomcrypt.so.1 libtommath.so.1 libgmp.so.10 libz.so.1 libcrypt.so.1 libc.so.6; do
  f=$(find "$X" -name "$lib" | head -1)
  [ -n "$f" ] || { echo "missing $lib" >&2; exit 1; }
  mkdir -p "$R/lib/x86_64-linux-gnu"
  cp -L "$f" "$R/lib/x86_64-linux-gnu/$lib"
done
cp -L "$(find "$X" -name 'ld-linux-x86-64.so.2' | head -1)" "$R/lib64/ld-linux-x86-64.so.2"

# Kernel modules: virtio (qemu/KVM) and Xen front-ends, the balloon, virtio-mem (memory
# hot-plug), ISO 9660 and FAT for seeds.
M=$X/lib/modules/$kver
for m in failover net_failover virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
         virtio_net virtio_blk virtio_balloon virtio_mem cdrom isofs fat vfat xen-netfront xen-blkfront; do
  f=$(find "$M/kernel" -name "$m.ko*" | head -1)
  [ -n "$f" ] || { echo "module $m not in $kver" >&2; exit 1; }
  mkdir -p "$R/lib/modules/$kver/$(dirname "${f#$M/}")"
  cp "$f" "$R/lib/modules/$kver/${f#$M/}"
done
cp "$M/modules.order" "$M/modules.builtin" "$R/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$R" "$kver" 2>/dev/null

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$R/sbin/necos-guest" ./plugins/vim-xen/guest >&2

cat > "$R/etc/passwd" <<'P'
root::0:0:root:/root:/bin/sh
P
echo "root:x:0:" > "$R/etc/group"
echo "/bin/sh" > "$R/etc/shells"
cat > "$R/etc/inittab" <<'P'
::sysinit:/etc/rcS
::respawn:/etc/sshd
::respawn:/sbin/necos-guest watch-cpus
ttyS0::respawn:/bin/sh
::ctrlaltdel:/bin/poweroff -f
P
cat > "$R/etc/rcS" <<'P'
#!/bin/sh
# Boot: kernel file systems, drivers, the seed (necos-guest), then CPU hot-plug.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
# Memory the hypervisor hot-plugs (virtio-mem: a node grown past the memory it booted
# with) is onlined at once, movable so that it can be unplugged again on a shrink. The
# kernel's default leaves it offline; a standard image gets the same from
# memhp_default_state=online_movable on its command line.
echo online_movable > /sys/devices/system/memory/auto_online_blocks 2>/dev/null
# One modprobe for all (each process costs tens of ms under TCG), and Xen's front-ends
# only in a Xen domain, where its bus exists (built in): elsewhere they cost ~0.15 s for
# nothing. 0.37-0.44 s before, 0.11-0.14 s after under TCG.
modprobe -qa virtio_pci virtio_blk virtio_net virtio_balloon virtio_mem isofs vfat 2>/dev/null
[ -d /sys/bus/xen ] && modprobe -qa xen-blkfront xen-netfront 2>/dev/null
# Free page reporting (the balloon's) hands back free blocks of 2 MiB and more only; at
# order 0 the host gets back every page the guest frees (an idle guest's RSS: -20 MB).
echo 0 > /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null
/sbin/necos-guest boot
echo "necos-guest: boot done"
P
cat > "$R/etc/sshd" <<'P'
#!/bin/sh
# The seed's host key, and only it, when there is one (it is pinned); else keys of its own.
k=/etc/dropbear/dropbear_ed25519_host_key
if [ -s "$k" ]; then exec /usr/sbin/dropbear -F -E -s -r "$k" -p 22; fi
exec /usr/sbin/dropbear -F -E -s -R -p 22
P
chmod 755 "$R/etc/rcS" "$R/etc/sshd"
ln -s bin/busybox "$R/init"

mkdir -p "$OUT.tmp"
# LZ4 (the legacy format the kernel reads): a guest under TCG unpacks it in a fraction of
# gzip's time, for a fifth more bytes.
(cd "$R" && find . | sort | "$X/bin/busybox" cpio -o -H newc 2>/dev/null) | lz4 -l -9 -q > "$OUT.tmp/initrd.img"
cp "$X/boot/vmlinuz-$kver" "$OUT.tmp/vmlinuz"
# The data disk: a small ext4 file system that overlays grow to storage-gb. It carries
# the programs services start (necos-cdn: the Touristic CDN's servers, which
# examples/services/touristic-cdn-xen.yaml configures and runs), off the initramfs so
# that a guest that runs none holds none of them in memory.
mkdir -p "$work/data/bin"
echo "necos guest data disk" > "$work/data/README"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/data/bin/necos-cdn" ./cmd/necos-cdn >&2
truncate -s 64M "$work/data.raw"
mkfs.ext4 -q -F -L necos-data -d "$work/data" "$work/data.raw"
qemu-img convert -q -f raw -O qcow2 "$work/data.raw" "$OUT.tmp/disk.qcow2"
cat > "$OUT.tmp/image.txt" <<I
kernel: $kver
cmdline: $CMDLINE
built: $(date -u +%FT%TZ)
I
chmod -R a+rX "$OUT.tmp"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
touch "$OUT/.done"
echo "$OUT"
