#!/usr/bin/env bash
# The newcomer's first command: set everything up, then decompose the bundled sample photos
# twice: into colour layers (fscs) in out/samples/ and into objects over a filled background
# (objects, IS-Net mattes) in out/objects/; then the bundled design graphic into its
# background, image, shape and text layers (design) in out/designs/. One folder per image:
# its layers as PNGs, a Photoshop and an OpenRaster document, a contact sheet and a manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh release
out="${1:-out}"
status=0
target/release/lamina run assets/samples "$out/samples" --formats png,psd,ora || status=$?
target/release/lamina run assets/samples "$out/objects" --model objects --formats png,psd,ora || status=$?
target/release/lamina run assets/designs "$out/designs" --model design --formats png,psd,ora || status=$?
echo
echo "colour layers are in $out/samples/<photo>/, object layers in $out/objects/<photo>/,"
echo "design layers in $out/designs/poster.png/"
echo "(open $out/objects/chelsea.png/preview.png, or layers.psd / layers.ora in an editor)"
exit "$status"
