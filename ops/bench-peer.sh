#!/usr/bin/env bash
# Lamina beside the obvious alternative, measured in one run on this machine: the reference
# FSCS procedure in PyTorch with the same weights, Pillow for PNG, a plain loop over the
# photos (ops/peer/fscs_peer.py), against `lamina run` in reference and fast mode on the same
# photos (default precision, as a user runs it: on a CPU with bf16 instructions fast mode's
# networks run in bf16; and fast mode again with fp32 networks), the bundled ones and N
# photos resized to SIZE x SIZE. Prints a table for
# BENCHMARKS.md. The peer's packages (Pillow, NumPy, scikit-learn, safetensors) go into the
# project's PyTorch venv in the cache, once.
#
# Usage: ops/bench-peer.sh [SIZE] [N]   (defaults: 2048 4; needs ops/bootstrap.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh
size="${1:-2048}"
n="${2:-4}"
lamina=target/release/lamina
[ -x "$lamina" ] || { echo "bench-peer: $lamina missing: run ops/bootstrap.sh first" >&2; exit 1; }
py="$LAMINA_VENV/bin/python"
if ! "$py" -c "import PIL, numpy, sklearn, safetensors" 2>/dev/null; then
    echo "bench-peer: installing the peer's packages into $LAMINA_VENV" >&2
    "$py" -m pip install --quiet pillow numpy scikit-learn safetensors
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundled" "$work/square"
# The peer reads PNG and JPEG: the bundled photos are those.
cp assets/samples/*.png assets/samples/*.jpg "$work/bundled/"
"$py" - "$work/bundled" "$work/square" "$size" "$n" <<'PY'
import os, sys
from PIL import Image
src, dst, size, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
names = sorted(os.listdir(src))
for i in range(n):
    Image.open(os.path.join(src, names[i % len(names)])).convert("RGB").resize((size, size), Image.BILINEAR).save(os.path.join(dst, f"photo-{i:03d}.png"))
PY
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.3f", n / s }'; }
peer() {  # folder -> images/s
    rm -rf "$work/peer-out"
    set -- $("$py" ops/peer/fscs_peer.py models/fscs/fscs-k7.safetensors "$1" "$work/peer-out")
    rate "$2" "$4"
}
lamina() {  # folder quality [precision] -> images/s
    rm -rf "$work/lamina-out"
    "$lamina" run "$1" "$work/lamina-out" --device cpu --quality "$2" --precision "${3:-auto}" --progress none >/dev/null
    "$py" -c "import json,sys; print('%.3f' % json.load(open(sys.argv[1]))['images_per_second'])" "$work/lamina-out/_lamina/jobs/"*/summary.json
}
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), $(uname -m); torch $("$py" -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")')"
echo
x() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| photos | peer (PyTorch + Pillow) images/s | lamina reference images/s | x peer | lamina fast images/s | x peer | lamina fast, fp32 networks images/s | x peer |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for set in bundled square; do
    p=$(peer "$work/$set"); r=$(lamina "$work/$set" reference); f=$(lamina "$work/$set" fast); b=$(lamina "$work/$set" fast fp32)
    label=$([ "$set" = bundled ] && echo "bundled ($(ls "$work/bundled" | wc -l) photos)" || echo "$n photos at ${size}^2")
    echo "| $label | $p | $r | $(x "$r" "$p") | $f | $(x "$f" "$p") | $b | $(x "$b" "$p") |"
done
