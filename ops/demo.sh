#!/usr/bin/env bash
# The newcomer's first command: set everything up, then decompose the bundled sample photos
# into out/samples/ (one folder of layers per photo, with a contact sheet and a manifest).
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh release
out="${1:-out/samples}"
status=0
target/release/lamina run assets/samples "$out" || status=$?
echo
echo "layers and contact sheets are in $out/<photo>/ (open $out/coffee.png/preview.png)"
exit "$status"
