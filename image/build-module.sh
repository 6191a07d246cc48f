#!/bin/bash
# Builds an out-of-tree arm64 kernel module that Debian's kernel lacks, from Debian's own kernel source package
# for exactly the image's kernel, cross-compiled against linux-headers-<abi>-arm64 with the host's linux-kbuild
# (fixdep and modpost run on the host). Nothing of the kernel source is kept in the repository. Prints the .ko.
#
# usage: image/build-module.sh gpio-sim KVER PKGVERSION      e.g. gpio-sim 6.1.0-50-arm64 6.1.176-1
#   gpio-sim: drivers/gpio/gpio-sim.c with kernel/irq/irq_sim.c (CONFIG_IRQ_SIM is off in Debian's kernel).
#             irq_to_desc() is not exported to modules, so irq_sim's one call goes through generic_handle_irq().
set -euo pipefail
MODULE=$1 KVER=$2 PKGVER=$3
CACHE=${PEARL2_IMAGE_CACHE:-/var/cache/pearl2-image}
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$MODULE" = gpio-sim ] || { echo "build-module: no recipe for '$MODULE'" >&2; exit 2; }
ABI=${KVER%-arm64}
OUT=$CACHE/modules/$KVER/gpio-sim-pearl2.ko
[ -s "$OUT" ] && { echo "$OUT"; exit 0; }
command -v aarch64-linux-gnu-gcc >/dev/null || { echo "build-module: aarch64-linux-gnu-gcc is missing (make image installs it)" >&2; exit 2; }

W=$CACHE/modules/work-$KVER
rm -rf "$W"; mkdir -p "$W/k" "$W/m"
kmaj=$(echo "$PKGVER" | cut -d. -f1,2)   # 6.1
for spec in "linux-headers-$KVER arm64" "linux-headers-$ABI-common all" "linux-kbuild-$kmaj amd64" "linux-source-$kmaj all"; do
  deb=$("$HERE/fetch-deb.sh" main ${spec% *} ${spec#* } "$PKGVER")
  case "$spec" in linux-source*) SRC_DEB=$deb ;; *) dpkg-deb -x "$deb" "$W/k" ;; esac
done
H=$W/k/usr/src/linux-headers-$KVER
# The headers package includes its common half by an absolute path.
sed -i "s#/usr/src/#$W/k/usr/src/#" "$H/Makefile"
dpkg-deb --fsys-tarfile "$SRC_DEB" | tar -xO "./usr/src/linux-source-$kmaj.tar.xz" \
  | tar -xJ -C "$W" "linux-source-$kmaj/drivers/gpio/gpio-sim.c" "linux-source-$kmaj/drivers/gpio/gpiolib.h" "linux-source-$kmaj/kernel/irq/irq_sim.c"
S=$W/linux-source-$kmaj
cp "$S/drivers/gpio/gpio-sim.c" "$S/drivers/gpio/gpiolib.h" "$W/m/"
sed 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$S/kernel/irq/irq_sim.c" >"$W/m/irq_sim.c"
grep -q 'generic_handle_irq(irqnum);' "$W/m/irq_sim.c" || { echo "build-module: irq_sim.c changed upstream; the patch no longer applies" >&2; exit 1; }
printf 'obj-m := gpio-sim-pearl2.o\ngpio-sim-pearl2-y := gpio-sim.o irq_sim.o\n' >"$W/m/Kbuild"
make -s -C "$H" M="$W/m" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- modules >"$W/build.log" 2>&1 || { cat "$W/build.log" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
cp "$W/m/gpio-sim-pearl2.ko" "$OUT"
rm -rf "$W"
echo "$OUT"
