#!/bin/bash
# Builds the Debian 12 arm64 base root filesystem for Pearl2 images, once, and caches it outside the repository as a
# tarball keyed on the package list and this script: about 6 min on 2 cores from nothing. The .debs are downloaded once into the
# cache's debs/ folder, where debootstrap checks each against the Release file's SHA-256 and keeps it for later builds.
#
# debootstrap's second stage runs arm64 programs. Two ways to run them on an x86-64 host:
#  - a chroot in which the kernel hands each arm64 program to qemu-aarch64-static (binfmt_misc; when the host has no
#    handler, it is mounted and registered for the build and removed after), in a private mount namespace so that
#    nothing the build mounts outlives it;
#  - where binfmt_misc cannot be used (a container without the privilege): inside qemu-system-aarch64, Debian's own
#    arm64 kernel with a hand-made initramfs (arm64 busybox and the virtio/ext4 modules) whose /init chroots into the
#    root file system (an ext4 image made with mkfs.ext4 -d, no loop mounts), finishes debootstrap, and writes the
#    result as a tar stream to a second disk (25-40 min).
# The images' initramfs holds the drivers of the boards' boot media only (MODULES=list and the pearl2-boot-media hook:
# SD/MMC, USB mass storage, virtio, ext4). Debian's default, MODULES=most, spends 9 min in emulated module lookups,
# twice per build.
#
# usage: image/build-base.sh            prints the cached tarball's path on its last line
#        image/build-base.sh --cached   the same when it is cached, else exit status 1 and no build
# env:   PEARL2_IMAGE_CACHE (default /var/cache/pearl2-image), DEBIAN_MIRROR, PEARL2_BASE_QEMU_SYSTEM=1 (the slow way)
set -euo pipefail

CACHE=${PEARL2_IMAGE_CACHE:-/var/cache/pearl2-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What every image has: systemd, networking by DHCP, the FFmpeg 5.1 runtime, libgpiod, libssl3, ALSA, the kernel.
PACKAGES=systemd,systemd-sysv,udev,dbus,kmod,iproute2,ifupdown,isc-dhcp-client,ca-certificates,\
libavcodec59,libavformat59,libavutil57,libswscale6,libgpiod2,gpiod,libssl3,libasound2,alsa-utils,\
linux-image-arm64,busybox-static
# Keyed on the package list, the mirror and this script (which also writes the initramfs configuration).
KEY=$( { printf '%s %s %s\n' "$SUITE" "$PACKAGES" "$MIRROR"; cat "$0"; } | sha256sum | cut -c1-16)
OUT=$CACHE/base-$KEY.tar.gz

step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ -s "$OUT" ]; then [ "${1:-}" = --cached ] || step "base rootfs cached"; echo "$OUT"; exit 0; fi
[ "${1:-}" != --cached ] || exit 1
for tool in debootstrap qemu-system-aarch64 mkfs.ext4 dpkg-deb cpio depmod; do
  command -v "$tool" >/dev/null || { echo "build-base: $tool is missing (make image installs it)" >&2; exit 2; }
done

WORK=$CACHE/work-$KEY
rm -rf --one-file-system "$WORK"; mkdir -p "$WORK"
ROOT=$WORK/rootfs

step "debootstrap first stage ($SUITE arm64, $MIRROR)"
# The downloaded .debs are kept (debootstrap checks each against the Release file's hashes), so a rebuild fetches nothing.
mkdir -p "$CACHE/debs"
debootstrap --foreign --arch=arm64 --variant=minbase --cache-dir="$CACHE/debs" --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
# The first stage may leave /proc as a symlink to the host's; the guest needs a real directory.
if [ -L "$ROOT/proc" ]; then rm "$ROOT/proc"; mkdir "$ROOT/proc"; fi

# The images' initramfs: the boot media's drivers only (see the top). A hook and a conf.d file, which no package owns.
mkdir -p "$ROOT/etc/initramfs-tools/conf.d" "$ROOT/etc/initramfs-tools/hooks"
echo 'MODULES=list' >"$ROOT/etc/initramfs-tools/conf.d/pearl2"
cat >"$ROOT/etc/initramfs-tools/hooks/pearl2-boot-media" <<'HOOK'
#!/bin/sh
# Pearl2: the drivers of the boards' boot media (SD/MMC and USB mass storage on the Raspberry Pi 4, virtio on qemu),
# with ext4 for the root, and the boards' Ethernet (pearl2-hostname names a board without a serial number after its
# MAC address, early in the boot); udev loads them by modalias. Everything else loads from the root file system.
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
auto_add_modules mmc usb_storage
manual_add_modules ext4 crc32c_generic virtio_pci virtio_mmio virtio_blk virtio_scsi sd_mod \
  xhci_pci xhci_plat_hcd dwc2 reset_raspberrypi virtio_net genet
HOOK
chmod 0755 "$ROOT/etc/initramfs-tools/hooks/pearl2-boot-media"

BINFMT=/proc/sys/fs/binfmt_misc
REGISTERED=
# Whether the kernel runs arm64 programs here, after mounting binfmt_misc and registering qemu-aarch64-static (with the
# F flag: the kernel opens the interpreter now, so the chroot needs no copy of it) where they are missing.
arm64_runs() {
  [ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || return 1
  if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] && cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$BINFMT/register" 2>/dev/null || return 1
    REGISTERED=1
  fi
  chroot "$ROOT" /bin/true 2>/dev/null
}
unregister() { if [ -n "$REGISTERED" ] && [ -e "$BINFMT/qemu-aarch64" ]; then echo -1 >"$BINFMT/qemu-aarch64"; fi; }

if [ -z "${PEARL2_BASE_QEMU_SYSTEM:-}" ] && arm64_runs; then
  trap unregister EXIT
  # dpkg skips its fsyncs: nothing here outlives a crash of the build.
  mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
  echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/pearl2-build"
  step "debootstrap second stage in a chroot, arm64 programs run by qemu-aarch64-static (about 5 min)"
  unshare --mount --propagation private chroot "$ROOT" /debootstrap/debootstrap --second-stage >"$WORK/second-stage.log" 2>&1 \
    || { tail -30 "$WORK/second-stage.log" >&2; tail -30 "$ROOT/debootstrap/debootstrap.log" >&2 || true; echo "build-base: the second stage failed" >&2; exit 1; }
  unshare --mount --propagation private chroot "$ROOT" /usr/bin/apt-get clean
  rm "$ROOT/etc/dpkg/dpkg.cfg.d/pearl2-build"
  unregister; trap - EXIT
  KVER=$(ls "$ROOT/lib/modules" | head -1)
  [ -s "$ROOT/boot/initrd.img-$KVER" ] || { echo "build-base: no initramfs was made" >&2; exit 1; }
  rm -rf "$ROOT/debootstrap" "$ROOT/lost+found"
  step "writing the tarball"
  tar -C "$ROOT" --one-file-system --numeric-owner -cf - . | gzip -1 >"$OUT.tmp"
  tar -tzf "$OUT.tmp" ./usr/lib/systemd/systemd >/dev/null || { echo "build-base: the tarball is incomplete" >&2; exit 1; }
  mv "$OUT.tmp" "$OUT"
  cp "$ROOT/boot/vmlinuz-$KVER" "$CACHE/vmlinuz-$KEY"
  rm -rf --one-file-system "$WORK"
  step "base rootfs ready ($(du -h "$OUT" | cut -f1))"
  echo "$OUT"
  exit 0
fi
unregister
step "binfmt_misc cannot run arm64 programs here: the second stage runs in qemu-system-aarch64 instead"
step "kernel and busybox for the installer initramfs"
ARCHIVES=$ROOT/var/cache/apt/archives
dpkg-deb -x "$(ls "$ARCHIVES"/linux-image-6.*-arm64_*.deb | grep -v dbg | head -1)" "$WORK/kernel"
dpkg-deb -x "$(ls "$ARCHIVES"/busybox-static_*.deb | head -1)" "$WORK/busybox"
KVER=$(ls "$WORK/kernel/lib/modules" | head -1)
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

INITRD=$WORK/initrd
mkdir -p "$INITRD"/{bin,dev,proc,sys,mnt,modules}
cp "$WORK/busybox/bin/busybox" "$INITRD/bin/busybox"
for applet in sh mount umount mkdir chroot insmod poweroff sleep cat tar gzip sync echo ls; do ln -sf busybox "$INITRD/bin/$applet"; done
# The modules for a virtio disk with ext4, in dependency order (from modules.dep).
MODDIR=$WORK/kernel/lib/modules/$KVER
depmod -b "$WORK/kernel" "$KVER"   # the package leaves modules.dep to the target's depmod
declare -A seen=()
order=()
add_module() {
  local name=$1 line path dep
  line=$(grep -E "(^|/)$name\.ko:" "$MODDIR/modules.dep" | head -1 || true)
  [ -n "$line" ] || return 0                    # built into the kernel
  path=${line%%:*}
  [ -z "${seen[$path]:-}" ] || return 0
  seen[$path]=1
  for dep in ${line#*:}; do add_module "$(basename "$dep" .ko)"; done
  order+=("$path")
}
for m in virtio virtio_ring virtio_mmio virtio_pci virtio_blk crc32c_generic ext4; do add_module "$m"; done
: >"$INITRD/modules/order"
for p in "${order[@]}"; do
  cp "$MODDIR/$p" "$INITRD/modules/"
  basename "$p" >>"$INITRD/modules/order"
done
cat >"$INITRD/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "PEARL2-BASE: insmod $m failed"; done
sleep 1
mount -t ext4 /dev/vda /mnt || { echo "PEARL2-BASE: cannot mount the root image"; poweroff -f; }
mount -t proc proc /mnt/proc; mount -t sysfs sys /mnt/sys; mount --bind /dev /mnt/dev
echo "PEARL2-BASE: second stage"
if chroot /mnt /debootstrap/debootstrap --second-stage; then
  chroot /mnt apt-get clean
  umount /mnt/dev /mnt/sys /mnt/proc
  echo "PEARL2-BASE: writing the tarball"
  # The guest's own GNU tar and bash (busybox tar has no --exclude, and its sh no pipefail).
  chroot /mnt /bin/bash -c 'set -o pipefail; tar -C / --one-file-system --numeric-owner --exclude=./lost+found --exclude=./debootstrap -cf - . | gzip -1' >/dev/vdb \
    && sync && echo "PEARL2-BASE: done"
else
  echo "PEARL2-BASE: second stage failed"; tail -30 /mnt/debootstrap/debootstrap.log
fi
sync; poweroff -f
EOF
chmod +x "$INITRD/init"
(cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"

step "root image ($(du -sh "$ROOT" | cut -f1) unpacked) and the output disk"
mkfs.ext4 -q -F -L pearl2-base -d "$ROOT" "$WORK/root.img" 3G
truncate -s 1G "$WORK/out.img"

step "debootstrap second stage in qemu-system-aarch64 (25-40 min on 2 cores, one vCPU busy most of it; the guest's console goes to $WORK/console.log)"
# (-nic none: no network is needed, and the default NIC wants an option ROM that --no-install-recommends leaves out.)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 -nographic -no-reboot -nic none \
  -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.gz" -append "console=ttyAMA0 panic=-1 quiet" \
  -drive file="$WORK/root.img",if=virtio,format=raw,cache=unsafe \
  -drive file="$WORK/out.img",if=virtio,format=raw,cache=unsafe \
  </dev/null >"$WORK/console.log" 2>&1 &
QEMU=$!
trap 'kill $QEMU 2>/dev/null || true' EXIT
while kill -0 $QEMU 2>/dev/null; do
  sleep 30
  step "  $(grep -a -E 'PEARL2-BASE|^I: (Configuring|Unpacking)' "$WORK/console.log" | tail -1 | tr -d '\r')"
done
trap - EXIT
grep -a -q "PEARL2-BASE: done" "$WORK/console.log" || { tail -40 "$WORK/console.log" >&2; echo "build-base: the second stage did not finish" >&2; exit 1; }

# gzip stops at the end of its stream; the rest of the disk is zeros.
gzip -dc <"$WORK/out.img" 2>/dev/null | gzip -1 >"$OUT.tmp" || true
tar -tzf "$OUT.tmp" ./usr/lib/systemd/systemd >/dev/null || { echo "build-base: the tarball is incomplete" >&2; exit 1; }
mv "$OUT.tmp" "$OUT"
cp "$WORK/vmlinuz" "$CACHE/vmlinuz-$KEY"
rm -rf --one-file-system "$WORK"
step "base rootfs ready ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
