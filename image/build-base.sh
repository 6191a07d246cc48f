#!/bin/bash
# Builds the Debian 12 arm64 base root filesystem for Pearl2 images, once, and caches it outside the
# repository as a tarball keyed on the package list. This machine cannot run arm64 programs in a chroot (no
# binfmt_misc). With PEARL2_BASE_PROOT=1, a faster way (27 min from nothing under load against 42; its image is not yet
# boot-tested, so it is not the default): the second stage under proot, which runs every arm64
# program through qemu-aarch64-static. Without proot, the old way: debootstrap's second stage runs inside qemu-system-aarch64: Debian's own arm64 kernel, a
# hand-made initramfs (arm64 busybox and the virtio/ext4 modules) whose /init chroots into the root file system
# (an ext4 image made with mkfs.ext4 -d, no loop mounts), finishes debootstrap, and writes the result as a tar
# stream to a second disk.
#
# usage: image/build-base.sh            prints the cached tarball's path on its last line
#        image/build-base.sh --cached   the same when it is cached, else exit status 1 and no build
# env:   PEARL2_IMAGE_CACHE (default /var/cache/pearl2-image), DEBIAN_MIRROR, PEARL2_BASE_PROOT=1 (the proot way)
set -euo pipefail

CACHE=${PEARL2_IMAGE_CACHE:-/var/cache/pearl2-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What every image has: systemd, networking by DHCP, the FFmpeg 5.1 runtime, libgpiod, libssl3, ALSA, the kernel.
PACKAGES=systemd,systemd-sysv,udev,dbus,kmod,iproute2,ifupdown,isc-dhcp-client,ca-certificates,\
libavcodec59,libavformat59,libavutil57,libswscale6,libgpiod2,gpiod,libssl3,libasound2,alsa-utils,\
linux-image-arm64,busybox-static
KEY=$(printf '%s %s %s v2' "$SUITE" "$PACKAGES" "$MIRROR" | sha256sum | cut -c1-16)
OUT=$CACHE/base-$KEY.tar.gz

step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ -s "$OUT" ]; then [ "${1:-}" = --cached ] || step "base rootfs cached"; echo "$OUT"; exit 0; fi
[ "${1:-}" != --cached ] || exit 1
for tool in debootstrap qemu-system-aarch64 mkfs.ext4 dpkg-deb cpio depmod; do
  command -v "$tool" >/dev/null || { echo "build-base: $tool is missing (make image installs it)" >&2; exit 2; }
done

WORK=$CACHE/work-$KEY
rm -rf "$WORK"; mkdir -p "$WORK"
ROOT=$WORK/rootfs

step "debootstrap first stage ($SUITE arm64, $MIRROR)"
# (-nic none: no network is needed, and the default NIC wants an option ROM that --no-install-recommends leaves out.)
# The downloaded .debs are kept (debootstrap checks each against the Release file's hashes), so a rebuild fetches nothing.
mkdir -p "$CACHE/debs"
debootstrap --foreign --arch=arm64 --variant=minbase --cache-dir="$CACHE/debs" --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
# The first stage may leave /proc as a symlink to the host's; the guest needs a real directory.
if [ -L "$ROOT/proc" ]; then rm "$ROOT/proc"; mkdir "$ROOT/proc"; fi

if [ "${PEARL2_BASE_PROOT:-0}" = 1 ] && command -v proot >/dev/null && command -v qemu-aarch64-static >/dev/null; then
  # The fast way (about a quarter of the time): the second stage in a chroot made by proot, each arm64 program run by
  # qemu-user. Two things for proot 5.1: systemd-tmpfiles is left out while dpkg runs (proot aborts on one of its
  # calls; the packages' scripts skip it when it is missing, and the booted image runs it at every start), and dpkg
  # skips its fsyncs (nothing here outlives a crash of the build).
  step "debootstrap second stage under proot and qemu-aarch64-static"
  mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
  printf 'path-exclude=/bin/systemd-tmpfiles\npath-exclude=/usr/bin/systemd-tmpfiles\nforce-unsafe-io\n' >"$ROOT/etc/dpkg/dpkg.cfg.d/pearl2-build"
  DEBOOTSTRAP_DIR=/debootstrap proot -q qemu-aarch64-static -r "$ROOT" -w / -b /proc -b /dev -b /sys \
    /debootstrap/debootstrap --second-stage >"$WORK/second-stage.log" 2>&1 \
    || { tail -30 "$WORK/second-stage.log" >&2; tail -30 "$ROOT/debootstrap/debootstrap.log" >&2 || true; echo "build-base: the second stage failed" >&2; exit 1; }
  rm "$ROOT/etc/dpkg/dpkg.cfg.d/pearl2-build"
  mkdir "$WORK/systemd"; dpkg-deb -x "$(ls "$CACHE"/debs/systemd_*_arm64.deb | head -1)" "$WORK/systemd"
  install -m 0755 "$(find "$WORK/systemd" -name systemd-tmpfiles -type f | head -1)" "$ROOT/usr/bin/systemd-tmpfiles"
  # Under proot, uname -r is the host's kernel, so initramfs-tools' trigger finds no kernel of its own: make it here.
  KVER=$(ls "$ROOT/lib/modules" | head -1)
  step "initramfs for $KVER"
  proot -q qemu-aarch64-static -r "$ROOT" -w / -b /proc -b /dev -b /sys /usr/sbin/update-initramfs -c -k "$KVER" >"$WORK/initramfs.log" 2>&1 \
    || { tail -20 "$WORK/initramfs.log" >&2; echo "build-base: update-initramfs failed" >&2; exit 1; }
  [ -s "$ROOT/boot/initrd.img-$KVER" ] || { echo "build-base: no initramfs was made" >&2; exit 1; }
  proot -q qemu-aarch64-static -r "$ROOT" -w / /usr/bin/apt-get clean
  rm -rf "$ROOT/debootstrap" "$ROOT/lost+found"
  step "writing the tarball"
  tar -C "$ROOT" --numeric-owner -cf - . | gzip -1 >"$OUT.tmp"
  tar -tzf "$OUT.tmp" ./usr/lib/systemd/systemd >/dev/null || { echo "build-base: the tarball is incomplete" >&2; exit 1; }
  mv "$OUT.tmp" "$OUT"
  cp "$ROOT/boot/vmlinuz-$KVER" "$CACHE/vmlinuz-$KEY"
  rm -rf "$WORK"
  step "base rootfs ready ($(du -h "$OUT" | cut -f1))"
  echo "$OUT"
  exit 0
fi

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
rm -rf "$WORK"
step "base rootfs ready ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
