#!/usr/bin/env bash
# Measures what rendering other outputs from stored layers costs against decomposing: makes
# N distinct photos from the bundled samples (crops, flips and scales of them, 0.3 to 0.8 MP),
# then with the release build
#   1. decomposes them:                      lamina run IN OUT
#   2. adds the documents to that output:     lamina run IN OUT --formats png,psd,ora
#   3. makes the same documents afresh:       lamina run IN FRESH --formats png,psd,ora
# and prints the three times, the ratio of 2 to 1 (the target is at most 1/20), how many
# images step 2 re-rendered, and whether every document of step 2 is byte for byte the one
# step 3 wrote.
#
# Usage: ops/bench-render.sh [N]   (default 100; needs `ops/bootstrap.sh` first)
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh

n="${1:-100}"
lamina=target/release/lamina
[ -x "$lamina" ] || { echo "bench-render: $lamina is not built (run ops/bootstrap.sh)" >&2; exit 1; }
python="$LAMINA_VENV/bin/python"
"$python" -c "import PIL" 2>/dev/null || "$python" -m pip install --quiet pillow

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" - "$n" "$work/in" <<'PY'
import os, random, sys
from PIL import Image, ImageOps
n, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
samples = sorted(f for f in os.listdir("assets/samples") if f.endswith((".png", ".jpg")))
rng = random.Random(7)
for i in range(n):
    img = Image.open(os.path.join("assets/samples", samples[i % len(samples)])).convert("RGB")
    w, h = img.size
    # A different window, scale and orientation for every image.
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x, y, x + cw, y + ch))
    side = rng.randint(640, 1000)
    img = img.resize((side, int(side * ch / cw)), Image.LANCZOS)
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    img.save(os.path.join(out, f"photo-{i:03d}.png"))
PY

calc() { "$python" -c "print(round($1, 4))"; }
seconds() { local start end; start=$(date +%s.%N); "$@" > "$work/last.txt"; end=$(date +%s.%N); calc "$end - $start"; }
export LAMINA_DEVICE="${LAMINA_DEVICE:-cpu}" LAMINA_PROGRESS=none
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "images: $n ($(du -sh "$work/in" | cut -f1))"
t1=$(seconds "$lamina" run "$work/in" "$work/out"); echo "1. decompose:          ${t1} s  ($(cat "$work/last.txt"))"
t2=$(seconds "$lamina" run "$work/in" "$work/out" --formats png,psd,ora); echo "2. add psd,ora:        ${t2} s  ($(cat "$work/last.txt"))"
t3=$(seconds "$lamina" run "$work/in" "$work/fresh" --formats png,psd,ora); echo "3. fresh with psd,ora: ${t3} s  ($(cat "$work/last.txt"))"
echo "ratio 2/1: $(calc "$t2 / $t1") (target <= 0.05)"
differ=0
for doc in "$work"/fresh/*/layers.psd "$work"/fresh/*/layers.ora; do
    cmp -s "$doc" "$work/out/${doc#"$work"/fresh/}" || differ=$((differ + 1))
done
echo "documents differing from a fresh run's: $differ of $(ls "$work"/fresh/*/layers.* | wc -l)"
[ "$differ" = 0 ]
