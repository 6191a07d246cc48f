#!/bin/bash
# Makes a firmware update for the update server: the payload, its manifest and the manifest's signature.
#
# usage: scripts/update-bundle.sh BOARD VERSION PRIVATE-KEY.pem OUTDIR [PAYLOAD]
#   PAYLOAD defaults to out/pearl2-BOARD-VERSION.slot (make image), or out/linux-x64/pearl2d for BOARD=host.
#   Writes OUTDIR/BOARD/{manifest.json, manifest.json.sig, pearl2-BOARD-VERSION.slot}; put OUTDIR on any static
#   HTTP server and set update.url to its URL. The key is an ECDSA P-256 private key (openssl ecparam -genkey
#   -name prime256v1); it stays with whoever releases and is never committed. The image carries the public half.
set -euo pipefail
BOARD=$1 VERSION=$2 KEY=$3 OUTDIR=$4
REPO=$(cd "$(dirname "$0")/.." && pwd)
PAYLOAD=${5:-}
if [ -z "$PAYLOAD" ]; then
  if [ "$BOARD" = host ]; then PAYLOAD=$REPO/out/linux-x64/pearl2d; else PAYLOAD=$REPO/out/pearl2-$BOARD-$VERSION.slot; fi
fi
[ -f "$PAYLOAD" ] || { echo "update-bundle: $PAYLOAD is missing (make image BOARD=$BOARD VERSION=$VERSION)" >&2; exit 1; }
[ -f "$KEY" ] || { echo "update-bundle: the private key $KEY is missing" >&2; exit 1; }
echo "$VERSION" | grep -Eq '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$' || { echo "update-bundle: VERSION must be MAJOR.MINOR.PATCH" >&2; exit 1; }
DIR=$OUTDIR/$BOARD
NAME=pearl2-$BOARD-$VERSION.slot
mkdir -p "$DIR"
cp "$PAYLOAD" "$DIR/$NAME.tmp" && mv "$DIR/$NAME.tmp" "$DIR/$NAME"
SIZE=$(stat -c %s "$DIR/$NAME")
SHA=$(sha256sum "$DIR/$NAME" | cut -c1-64)
printf '{"version":"%s","board":"%s","image":"%s","size":%s,"sha256":"%s","notes":"%s"}\n' \
  "$VERSION" "$BOARD" "$NAME" "$SIZE" "$SHA" "${NOTES:-Pearl2 $VERSION}" >"$DIR/manifest.json.tmp"
openssl dgst -sha256 -sign "$KEY" -out "$DIR/manifest.json.sig.tmp" "$DIR/manifest.json.tmp"
# Two renames: a device polling between them gets a pair that does not verify, refuses it and tries at its next poll.
mv "$DIR/manifest.json.sig.tmp" "$DIR/manifest.json.sig"
mv "$DIR/manifest.json.tmp" "$DIR/manifest.json"
echo "update-bundle: $DIR/manifest.json ($VERSION, $SIZE bytes, sha256 $SHA)"
