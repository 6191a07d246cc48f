#!/bin/bash
# Downloads one Debian 12 package into the image cache, checked against the SHA256 in the mirror's Packages index,
# and prints its path. The index is kept for a day; the .deb for good (a kernel ABI's packages leave the mirror
# at the next point release, and the cached base still needs them).
#
# usage: image/fetch-deb.sh COMPONENT PACKAGE ARCH [VERSION]
set -euo pipefail
COMPONENT=$1 PACKAGE=$2 ARCH=$3 VERSION=${4:-}
CACHE=${PEARL2_IMAGE_CACHE:-/var/cache/pearl2-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DL=$CACHE/dl
mkdir -p "$DL"
index_arch=$ARCH; [ "$ARCH" = all ] && index_arch=arm64
INDEX=$DL/Packages-bookworm-$COMPONENT-$index_arch
if [ ! -s "$INDEX" ] || [ -n "$(find "$INDEX" -mmin +1440)" ]; then
  curl -sfSL "$MIRROR/dists/bookworm/$COMPONENT/binary-$index_arch/Packages.xz" | xz -dc >"$INDEX.tmp"
  mv "$INDEX.tmp" "$INDEX"
fi
read -r filename sha version < <(awk -v p="$PACKAGE" -v a="$ARCH" -v v="$VERSION" '
  /^Package: / { pkg = $2; arch = ""; ver = ""; file = ""; sha = "" }
  /^Architecture: / { arch = $2 } /^Version: / { ver = $2 } /^Filename: / { file = $2 } /^SHA256: / { sha = $2 }
  /^$/ { if (pkg == p && arch == a && (v == "" || v == ver)) { print file, sha, ver; exit } }' "$INDEX")
if [ -z "${filename:-}" ]; then
  # Not in today's index (an older kernel ABI): the cached copy, if there is one.
  cached=$(ls "$DL/${PACKAGE}_${VERSION:-*}_$ARCH.deb" 2>/dev/null | tail -1 || true)
  [ -n "$cached" ] || { echo "fetch-deb: $PACKAGE ${VERSION:-} ($ARCH) is not in bookworm/$COMPONENT" >&2; exit 1; }
  echo "$cached"; exit 0
fi
OUT=$DL/$(basename "$filename")
if [ ! -s "$OUT" ] || ! echo "$sha  $OUT" | sha256sum -c --quiet 2>/dev/null; then
  curl -sfSL -o "$OUT.tmp" "$MIRROR/$filename"
  echo "$sha  $OUT.tmp" | sha256sum -c --quiet || { rm -f "$OUT.tmp"; echo "fetch-deb: $filename does not match its SHA256" >&2; exit 1; }
  mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
