#!/usr/bin/env bash
# The newcomer's first command: set everything up, then decompose the bundled sample photos
# into out/samples/ (one folder per photo: its layers as PNGs, a Photoshop and an OpenRaster
# document, a contact sheet and a manifest).
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh release
out="${1:-out/samples}"
status=0
target/release/lamina run assets/samples "$out" --formats png,psd,ora || status=$?
echo
echo "layers, documents and contact sheets are in $out/<photo>/ (open $out/coffee.png/preview.png, or layers.psd / layers.ora in an editor)"
exit "$status"
