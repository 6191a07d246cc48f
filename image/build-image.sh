#!/bin/bash
# Builds the SD-card image of one board from the cached Debian base (image/build-base.sh), without loop mounts:
# every partition is made as a file (mkfs.ext4 -d, mkfs.vfat + mcopy) and copied into a sparse disk image with
# an MBR table, then a .bmap for bmaptool and a .sha256 beside it.
#
#   partition 1  PEARL2-BOOT  FAT32, 256 MiB   the board's boot files, kernel and initrd (both slots)
#   partition 2  slot A       ext4,  1.5 GiB   the running firmware, mounted read-only (label pearl2-VERSION)
#   partition 3  slot B       ext4,  1.5 GiB   the other slot, written by updates (empty on a new card: pearl2-empty)
#   partition 4  pearl2-data  ext4,  256 MiB   config and recordings; grown to fill the card at first boot
#
# usage: image/build-image.sh BOARD VERSION PEARL2D OUTDIR
# env:   PEARL2_IMAGE_CACHE (default /var/cache/pearl2-image), DEBIAN_MIRROR,
#        PEARL2_UPDATE_KEY (the PEM public key the image trusts for updates),
#        PEARL2_SLOT=1 (also write OUTDIR/pearl2-BOARD-VERSION.slot, the update payload), PEARL2_SLOT_ONLY=1 (only that)
set -euo pipefail

BOARD=$1 VERSION=$2 PEARL2D=$3 OUTDIR=$4
REPO=$(cd "$(dirname "$0")/.." && pwd)
BOARD_DIR=$REPO/board/$BOARD
CACHE=${PEARL2_IMAGE_CACHE:-/var/cache/pearl2-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "build-image: $*" >&2; exit 1; }

[ -f "$BOARD_DIR/board.json" ] && [ -f "$BOARD_DIR/image.conf" ] || die "board '$BOARD' has no board.json or image.conf in board/$BOARD"
[ -x "$PEARL2D" ] || die "$PEARL2D is missing (make publish RID=linux-arm64)"
file -b "$PEARL2D" | grep -q 'ARM aarch64' || die "$PEARL2D is not an aarch64 executable"
for tool in mkfs.ext4 mkfs.vfat mcopy sfdisk bmaptool depmod dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool is missing (make image installs it)"
done
BOOT= CONSOLE= MODULES=
# shellcheck source=/dev/null
. "$BOARD_DIR/image.conf"

BASE=$("$REPO/image/build-base.sh" | tail -1)
STAGE=$CACHE/stage-$BOARD
ROOT=$STAGE/rootfs
rm -rf "$STAGE"; mkdir -p "$ROOT" "$STAGE/boot" "$STAGE/data"

step "root file system from $(basename "$BASE")"
tar -xzf "$BASE" -C "$ROOT" --numeric-owner --same-permissions
KVER=$(ls "$ROOT/lib/modules" | head -1)
KPKGVER=$(awk -v p="linux-image-$KVER" '$1 == "Package:" { hit = ($2 == p) } hit && $1 == "Version:" { print $2; exit }' "$ROOT/var/lib/dpkg/status")
# What an appliance never reads: documentation, manuals, translations, the package downloads.
rm -rf "$ROOT"/usr/share/{doc,man,info,locale,lintian}/* "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/*
cp -a "$REPO/image/rootfs/." "$ROOT/"
[ -d "$BOARD_DIR/rootfs" ] && cp -a "$BOARD_DIR/rootfs/." "$ROOT/"
chown -R 0:0 "$ROOT/etc/systemd/system" "$ROOT/usr/lib/pearl2" "$ROOT/etc/fstab" "$ROOT/etc/udev/rules.d"
mkdir -p "$ROOT/data" "$ROOT/boot/firmware" "$ROOT/etc/pearl2" "$ROOT/usr/share/pearl2"
install -d -o 992 -g 992 -m 0750 "$STAGE/data/pearl2"   # the data partition's one directory, pearl2's

step "pearl2d $VERSION for $BOARD"
install -m 0755 "$PEARL2D" "$ROOT/usr/lib/pearl2/pearl2d"
ln -sf /usr/lib/pearl2/pearl2d "$ROOT/usr/bin/pearl2d"
install -m 0644 "$BOARD_DIR/board.json" "$ROOT/etc/pearl2/board.json"
install -m 0644 "$BOARD_DIR/config.json" "$ROOT/usr/share/pearl2/config.json"
# PEARL2_UPDATE_URL: the update server the default config polls (update.url), written into the board's config.
if [ -n "${PEARL2_UPDATE_URL:-}" ]; then
  /usr/bin/python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c.setdefault("update", {})["url"]=sys.argv[2]; json.dump(c, open(sys.argv[1], "w"), indent=2)' \
    "$ROOT/usr/share/pearl2/config.json" "$PEARL2_UPDATE_URL"
fi
install -m 0644 "$REPO/README.md" "$ROOT/usr/share/pearl2/README.md"
printf 'version=%s\nboard=%s\n' "$VERSION" "$BOARD" >"$ROOT/etc/pearl2/release"
# The key update manifests must be signed with (PEARL2_UPDATE_KEY: a PEM public key; without it, no updates).
if [ -n "${PEARL2_UPDATE_KEY:-}" ]; then install -m 0644 "$PEARL2_UPDATE_KEY" "$ROOT/etc/pearl2/update-key.pem"
else echo "WARNING: no PEARL2_UPDATE_KEY: this image will never take a firmware update" >&2; fi
printf 'Pearl2 %s (%s)\n' "$VERSION" "$BOARD" >"$ROOT/etc/issue"

# The firmware's own user (fixed ids, so the data partition's owners survive an update), and the groups
# the udev rule gives the GPIO chips and I2C buses.
add_group() { grep -q "^$1:" "$ROOT/etc/group" || { echo "$1:x:$2:$3" >>"$ROOT/etc/group"; echo "$1:!::$3" >>"$ROOT/etc/gshadow"; }; }
add_group gpio 990 pearl2
add_group i2c 991 pearl2
add_group pearl2 992 ""
sed -i -E 's/^(video|audio):x:([0-9]+):(.*)$/\1:x:\2:\3,pearl2/; s/:,pearl2$/:pearl2/' "$ROOT/etc/group"
grep -q '^pearl2:' "$ROOT/etc/passwd" || {
  echo "pearl2:x:992:992:Pearl2 firmware:/data/pearl2:/usr/sbin/nologin" >>"$ROOT/etc/passwd"
  echo "pearl2:!:20000:0:99999:7:::" >>"$ROOT/etc/shadow"
}
# No password logins anywhere, and no SSH server is installed.
sed -i -E 's/^root:[^:]*:/root:*:/' "$ROOT/etc/shadow"

# The root is read-only: an empty machine-id is made up at each boot (systemd mounts it), the hostname comes
# from the board serial (pearl2-hostname.service). The name servers are the DHCP lease's (pearl2-resolv), never
# the build host's.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/etc/hostname" "$ROOT/var/lib/dbus/machine-id"
ln -sfn ../run/pearl2/resolv.conf "$ROOT/etc/resolv.conf"

step "services"
wants() { mkdir -p "$ROOT/etc/systemd/system/$1.wants"; ln -sf "$2" "$ROOT/etc/systemd/system/$1.wants/$(basename "$2")"; }
mask() { ln -sf /dev/null "$ROOT/etc/systemd/system/$1"; rm -f "$ROOT"/etc/systemd/system/*.wants/"$1"; }
wants multi-user.target /lib/systemd/system/systemd-networkd.service
wants sockets.target /lib/systemd/system/systemd-networkd.socket
wants network-online.target /lib/systemd/system/systemd-networkd-wait-online.service
wants sysinit.target /etc/systemd/system/pearl2-hostname.service
wants multi-user.target /etc/systemd/system/pearl2-growdata.service
wants multi-user.target /etc/systemd/system/pearl2-board.service
wants multi-user.target /etc/systemd/system/pearl2d.service
wants multi-user.target /etc/systemd/system/pearl2-boot-select.service
wants multi-user.target /etc/systemd/system/pearl2-reboot.path
wants multi-user.target /etc/systemd/system/pearl2-resolv.path
wants multi-user.target /etc/systemd/system/pearl2-resolv.service
for unit in "$BOARD_DIR"/rootfs/etc/systemd/system/*.service; do   # the board's own services
  [ -f "$unit" ] && grep -q '^WantedBy=multi-user.target' "$unit" && wants multi-user.target "/etc/systemd/system/$(basename "$unit")"
done
# ifupdown is replaced by networkd; timers that would write to the read-only root never run.
for unit in networking.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            e2scrub_reap.service fstrim.timer systemd-random-seed.service; do mask "$unit"; done

for module in $MODULES; do
  step "kernel module $module for $KVER"
  ko=$("$REPO/image/build-module.sh" "$module" "$KVER" "$KPKGVER")
  install -D -m 0644 "$ko" "$ROOT/lib/modules/$KVER/updates/$(basename "$ko")"
done
depmod -b "$ROOT" "$KVER"

step "boot partition ($BOOT)"
PARTUUID_BASE=50524c32   # the MBR disk identifier: root=PARTUUID=50524c32-02 is slot A, -03 slot B
CMDLINE="ro rootwait console=${CONSOLE:-tty1} quiet"
cp "$ROOT/boot/initrd.img-$KVER" "$STAGE/boot/initrd.img"
case "$BOOT" in
  uboot-extlinux)
    # Debian's arm64 vmlinuz is the uncompressed Image that U-Boot's booti wants (a gzip one is unpacked).
    if gzip -t "$ROOT/boot/vmlinuz-$KVER" 2>/dev/null; then gzip -dc <"$ROOT/boot/vmlinuz-$KVER" >"$STAGE/boot/Image"
    else cp "$ROOT/boot/vmlinuz-$KVER" "$STAGE/boot/Image"; fi
    mkdir -p "$STAGE/boot/extlinux"
    cat >"$STAGE/boot/extlinux/extlinux.conf" <<EOF
# Pearl2 $VERSION ($BOARD). The updater changes "default" to switch slots.
default slot-a
timeout 1
menu title Pearl2

label slot-a
  kernel /Image
  initrd /initrd.img
  append root=PARTUUID=$PARTUUID_BASE-02 $CMDLINE pearl2.slot=a

label slot-b
  kernel /Image
  initrd /initrd.img
  append root=PARTUUID=$PARTUUID_BASE-03 $CMDLINE pearl2.slot=b
EOF
    ;;
  raspi)
    fw=$("$REPO/image/fetch-deb.sh" non-free-firmware raspi-firmware all)
    dpkg-deb -x "$fw" "$STAGE/raspi-firmware"
    cp "$STAGE"/raspi-firmware/usr/lib/raspi-firmware/{start4.elf,fixup4.dat} "$STAGE/boot/"
    cp "$ROOT/usr/lib/linux-image-$KVER/broadcom/bcm2711-rpi-4-b.dtb" "$STAGE/boot/"
    cp "$ROOT/boot/vmlinuz-$KVER" "$STAGE/boot/vmlinuz"
    cp "$BOARD_DIR"/boot/* "$STAGE/boot/"
    echo "root=PARTUUID=$PARTUUID_BASE-02 $CMDLINE pearl2.slot=a" >"$STAGE/boot/cmdline-a.txt"
    echo "root=PARTUUID=$PARTUUID_BASE-03 $CMDLINE pearl2.slot=b" >"$STAGE/boot/cmdline-b.txt"
    ;;
  *) die "image.conf: BOOT='$BOOT' is not uboot-extlinux or raspi" ;;
esac
printf 'version=%s\nboard=%s\nslot_a=%s\nslot_b=\n' "$VERSION" "$BOARD" "$VERSION" >"$STAGE/boot/pearl2-slots.txt"

MiB=$((1024 * 1024))
BOOT_MB=256 ROOT_MB=1536 DATA_MB=256
step "file systems (root: $(du -sm "$ROOT" | cut -f1) MiB of $ROOT_MB)"
mkfs.vfat -F 32 -n PEARL2-BOOT -C "$STAGE/boot.img" $((BOOT_MB * 1024)) >/dev/null
mcopy -s -i "$STAGE/boot.img" "$STAGE"/boot/* ::/
E2OPTS=(-q -F -t ext4 -O ^metadata_csum_seed -E root_owner=0:0)
# The root file system is the same bytes in slot A of the card and in the update payload, and is made the same way
# for every version of a board: big enough for its contents, with the board's fixed UUID and directory hash
# seed and a fixed creation time. Files that did not change between two versions then sit at the same places, so
# an update copies those chunks from the running slot instead of fetching them (SlotDownloader). Its label names
# the version it holds (blkid shows which firmware each slot carries).
FS_UUID=$(printf 'pearl2-root-%s' "$BOARD" | sha256sum | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/')
ROOT_FS_MB=$(( ( $(du -sm "$ROOT" | cut -f1) * 115 / 100 + 64 + 127 ) / 128 * 128 ))   # in 128 MiB steps: a release a little larger keeps the layout
[ "$ROOT_FS_MB" -le "$ROOT_MB" ] || { echo "build-image: the root file system needs $ROOT_FS_MB MiB, the slots are $ROOT_MB MiB" >&2; exit 1; }
E2FSPROGS_FAKE_TIME=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 1700000000)} \
  mkfs.ext4 "${E2OPTS[@]}" -U "$FS_UUID" -E hash_seed="$FS_UUID" -L "pearl2-${VERSION:0:9}" -d "$ROOT" "$STAGE/rootfs-a.img" ${ROOT_FS_MB}M
mkfs.ext4 "${E2OPTS[@]}" -L pearl2-empty "$STAGE/rootfs-b.img" ${ROOT_MB}M
mkfs.ext4 "${E2OPTS[@]}" -L pearl2-data -d "$STAGE/data" "$STAGE/data.img" ${DATA_MB}M

if [ -n "${PEARL2_SLOT:-}" ] || [ -n "${PEARL2_SLOT_ONLY:-}" ]; then
  # The update payload for this version: slot A's file system (the updater writes it to the other slot's partition,
  # which keeps its size).
  SLOT=$OUTDIR/pearl2-$BOARD-$VERSION.slot
  mkdir -p "$OUTDIR"; rm -f "$SLOT"
  cp --sparse=always "$STAGE/rootfs-a.img" "$SLOT"
  step "update payload ready: $SLOT ($(du -h --apparent-size "$SLOT" | cut -f1))"
  if [ -n "${PEARL2_SLOT_ONLY:-}" ]; then rm -rf "$STAGE"; echo "$SLOT"; exit 0; fi
fi

step "disk image"
mkdir -p "$OUTDIR"
IMG=$OUTDIR/pearl2-$BOARD-$VERSION.img
rm -f "$IMG" "$IMG.bmap" "$IMG.sha256"
START=4   # MiB: room for the table and a boot loader
truncate -s $(( (START + BOOT_MB + 2 * ROOT_MB + DATA_MB) * MiB )) "$IMG"
sfdisk -q "$IMG" <<EOF
label: dos
label-id: 0x$PARTUUID_BASE
unit: sectors
start=$((START * 2048)), size=$((BOOT_MB * 2048)), type=c, bootable
start=$(((START + BOOT_MB) * 2048)), size=$((ROOT_MB * 2048)), type=83
start=$(((START + BOOT_MB + ROOT_MB) * 2048)), size=$((ROOT_MB * 2048)), type=83
start=$(((START + BOOT_MB + 2 * ROOT_MB) * 2048)), size=$((DATA_MB * 2048)), type=83
EOF
off=$START
for part in boot:$BOOT_MB rootfs-a:$ROOT_MB rootfs-b:$ROOT_MB data:$DATA_MB; do
  dd if="$STAGE/${part%%:*}.img" of="$IMG" bs=1M seek="$off" conv=notrunc,sparse status=none
  off=$((off + ${part##*:}))
done
bmaptool -q create -o "$IMG.bmap" "$IMG"
(cd "$OUTDIR" && sha256sum "$(basename "$IMG")" >"$(basename "$IMG").sha256")
rm -rf "$STAGE"
step "image ready: $IMG ($(du -h --apparent-size "$IMG" | cut -f1), $(du -h "$IMG" | cut -f1) written)"
echo "$IMG"
