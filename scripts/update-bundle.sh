#!/bin/bash
# Makes a firmware update for the update server: the slot image as compressed chunks, their index, the manifest
# and the manifest's signature.
#
# usage: scripts/update-bundle.sh BOARD VERSION PRIVATE-KEY.pem OUTDIR [IMAGE]
#   IMAGE defaults to out/pearl2-BOARD-VERSION.slot (make image), or out/linux-x64/pearl2d for BOARD=host.
#   Writes OUTDIR/BOARD/{manifest.json, manifest.json.sig, pearl2-BOARD-VERSION.chunks, .index}; put OUTDIR on
#   any static HTTP server (it must answer Range requests to resume and skip chunks; one that does not still works)
#   and set update.url to its URL. The chunking is pearl2d's own (pearl2d pack), so device and tooling agree on it. The key is an ECDSA P-256 private key (openssl ecparam -genkey
#   -name prime256v1); it stays with whoever releases and is never committed. The image carries the public half.
set -euo pipefail
BOARD=$1 VERSION=$2 KEY=$3 OUTDIR=$4
REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${5:-}
if [ -z "$IMAGE" ]; then
  if [ "$BOARD" = host ]; then IMAGE=$REPO/out/linux-x64/pearl2d; else IMAGE=$REPO/out/pearl2-$BOARD-$VERSION.slot; fi
fi
PACK=${PEARL2D:-$REPO/out/linux-x64/pearl2d}
[ -f "$IMAGE" ] || { echo "update-bundle: $IMAGE is missing (make image BOARD=$BOARD VERSION=$VERSION)" >&2; exit 1; }
[ -x "$PACK" ] || { echo "update-bundle: $PACK is missing (make publish)" >&2; exit 1; }
[ -f "$KEY" ] || { echo "update-bundle: the private key $KEY is missing" >&2; exit 1; }
echo "$VERSION" | grep -Eq '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$' || { echo "update-bundle: VERSION must be MAJOR.MINOR.PATCH" >&2; exit 1; }
DIR=$OUTDIR/$BOARD
NAME=pearl2-$BOARD-$VERSION
mkdir -p "$DIR"
"$PACK" pack "$IMAGE" "$DIR/$NAME.chunks" "$DIR/$NAME.index"
SIZE=$(stat -c %s "$IMAGE")
SHA=$(sha256sum "$IMAGE" | cut -c1-64)
INDEX_SHA=$(sha256sum "$DIR/$NAME.index" | cut -c1-64)
printf '{"version":"%s","board":"%s","size":%s,"sha256":"%s","payload":"%s","index":"%s","indexSha256":"%s","notes":"%s"}\n' \
  "$VERSION" "$BOARD" "$SIZE" "$SHA" "$NAME.chunks" "$NAME.index" "$INDEX_SHA" "${NOTES:-Pearl2 $VERSION}" >"$DIR/manifest.json.tmp"
openssl dgst -sha256 -sign "$KEY" -out "$DIR/manifest.json.sig.tmp" "$DIR/manifest.json.tmp"
# Two renames: a device polling between them gets a pair that does not verify, refuses it and tries at its next poll.
mv "$DIR/manifest.json.sig.tmp" "$DIR/manifest.json.sig"
mv "$DIR/manifest.json.tmp" "$DIR/manifest.json"
echo "update-bundle: $DIR/manifest.json ($VERSION, image $SIZE bytes, sha256 $SHA; payload $(stat -c %s "$DIR/$NAME.chunks") bytes)"
