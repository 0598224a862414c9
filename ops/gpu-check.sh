#!/usr/bin/env bash
# The one-shot GPU check: on a machine with an NVIDIA GPU and Lamina's release binary (built
# here, or unpacked from the bundle ops/gpu-build.sh makes), in about five minutes it
# measures, with `lamina bench`:
#   1. model only: FSCS per batch size and precision (fp32, bf16, fp16) at 1024^2 and 2048^2;
#   2. end to end (`lamina run` in one process: decode, inference, PNG encoding, writes) on
#      the bundled photos and at 1024^2 and 2048^2, reference and fast mode, at the best
#      batch size, with the GPU's utilisation and memory (nvidia-smi, every 200 ms) and the
#      CPU cores' utilisation (/proc/stat) sampled while it runs;
#   3. design layers (when the text models are in LAMINA_MODELS): the repository's poster
#      decomposed on the device and on the CPU, their layers' roles, words, boxes and colours
#      compared, and `lamina bench --model design` at the first end-to-end size;
# and prints one Markdown table, ready for BENCHMARKS.md, with the GPU's name.
#
# Usage: ops/gpu-check.sh [--device cuda|cpu] [--quick]
#   --device cpu --quick rehearses the whole script on a CPU with small sizes (CI does).
# Environment:
#   LAMINA_BIN       the lamina binary (default: the bundle's, else target/release/lamina)
#   LAMINA_LIBTORCH  folder of libtorch's shared libraries (default: the torch package of
#                    the first python3 that has one)
#   LAMINA_MODELS    object and design models' weights folder (objects-small and design are
#                    measured when present)
#   GPU_CHECK_OUT    folder for the raw logs and the table (default: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        *) echo "usage: ops/gpu-check.sh [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
    esac
done
say() { printf '\033[1mgpu-check:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
out="${GPU_CHECK_OUT:-$(mktemp -d)}"
mkdir -p "$out"

# The binary: the bundle (ops/gpu-build.sh), else a local release build.
bin="${LAMINA_BIN:-}"
if [ -z "$bin" ] && [ -f .gpu/lamina-gpu.tar.xz ]; then
    mkdir -p /tmp/lamina-gpu
    tar -xJf .gpu/lamina-gpu.tar.xz -C /tmp/lamina-gpu
    bin=/tmp/lamina-gpu/lamina
    [ -d /tmp/lamina-gpu/models ] && export LAMINA_MODELS="${LAMINA_MODELS:-/tmp/lamina-gpu/models}"
fi
bin="${bin:-target/release/lamina}"
[ -x "$bin" ] || die "no lamina binary at $bin: build it (cargo build --release) or unpack ops/gpu-build.sh's bundle"

# libtorch: the bundle is linked against libtorch's sonames, found at run time.
if [ -z "${LAMINA_LIBTORCH:-}" ]; then
    for py in python3 "${LAMINA_VENV:-/nonexistent}/bin/python"; do
        dir=$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) && { LAMINA_LIBTORCH="$dir"; break; }
    done
fi
[ -n "${LAMINA_LIBTORCH:-}" ] && export LD_LIBRARY_PATH="$LAMINA_LIBTORCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$bin" --version >/dev/null 2>"$out/version.err" || die "$bin does not start: $(head -c 300 "$out/version.err")"

gpu_name=cpu
if [ "$device" = cuda ]; then
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: is this a machine with an NVIDIA GPU?"
    gpu_name=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)
fi
cores=$(nproc)

if [ "$quick" = 1 ]; then
    sizes_model=256,512; batches=1,2; e2e_sizes=(256 512); e2e_images=(6 3); seconds=0.5; precisions=fp32,bf16
else
    sizes_model=1024,2048; batches=1,4,8,16; e2e_sizes=(1024 2048); e2e_images=(160 40); seconds=1.5; precisions=fp32,bf16,fp16
fi
[ "$device" = cpu ] && precisions=fp32,bf16

# Samplers: the GPU every 200 ms, the CPU's jiffies at the start and end of a run.
cpu_jiffies() { awk '/^cpu /{idle=$5+$6; total=0; for(i=2;i<=NF;i++) total+=$i; print total, idle}' /proc/stat; }
start_sampling() {
    : > "$out/smi-$1.csv"
    if [ "$device" = cuda ]; then
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 > "$out/smi-$1.csv" 2>/dev/null &
        smi_pid=$!
    fi
    read -r cpu_t0 cpu_i0 < <(cpu_jiffies)
}
stop_sampling() {
    [ -n "${smi_pid:-}" ] && kill "$smi_pid" 2>/dev/null && wait "$smi_pid" 2>/dev/null || true
    smi_pid=
    read -r cpu_t1 cpu_i1 < <(cpu_jiffies)
    cpu_busy=$(awk -v t="$((cpu_t1 - cpu_t0))" -v i="$((cpu_i1 - cpu_i0))" 'BEGIN{ printf "%.0f", (t > 0 ? 100 * (t - i) / t : 0) }')
    read -r gpu_util gpu_mem < <(awk -F', *' '{u+=$1; n++; if ($2>m) m=$2} END{ if (n) printf "%.0f %d\n", u/n, m; else print "- -" }' "$out/smi-$1.csv")
}

bench() { "$bin" bench --device "$device" "$@"; }

say "model only: $sizes_model, batches $batches, precisions $precisions"
bench --model fscs --sizes "$sizes_model" --batches "$batches" --precisions "$precisions" --seconds "$seconds" --model-only \
    | tee "$out/model-only.md" >&2

# The best batch at 1024^2 (or the quick run's first size), at the precision auto picks.
best_batch=$(awk -F'|' '/model only, best batch/ { gsub(/ /, "", $3); gsub(/ /, "", $4); if (!seen[$3]++) print $3, $4 }' "$out/model-only.md" | head -1 | cut -d' ' -f2)
best_batch=${best_batch:-1}
say "end to end at batch $best_batch"

rows=()
for i in "${!e2e_sizes[@]}"; do
    size=${e2e_sizes[$i]}
    n=${e2e_images[$i]}
    tag="e2e-$size"
    start_sampling "$tag"
    bench --model fscs --sizes "$size" --batches "$best_batch" --e2e-batch "$best_batch" --e2e-images "$n" \
        --seconds "$seconds" --compare-fast > "$out/$tag.md" 2>"$out/$tag.err" || { cat "$out/$tag.err" >&2; die "end-to-end run at $size failed"; }
    stop_sampling "$tag"
    cat "$out/$tag.md" >&2
    rows+=("$size|$gpu_util|$gpu_mem|$cpu_busy")
done

if [ -f "${LAMINA_MODELS:-$HOME/.cache/lamina/models}/u2netp.onnx" ]; then
    say "objects-small, model only and end to end at 1024^2"
    bench --model objects-small --sizes "${e2e_sizes[0]}" --batches 1,"$best_batch" --e2e-batch "$best_batch" \
        --e2e-images "${e2e_images[1]}" --seconds "$seconds" > "$out/objects.md" 2>"$out/objects.err" || say "objects-small failed: $(tail -1 "$out/objects.err")"
fi

models_dir="${LAMINA_MODELS:-$HOME/.cache/lamina/models}"
if [ -f "$models_dir/ppocr_det.pt" ] && [ -f "$models_dir/ppocr_rec.pt" ]; then
    say "design: the poster on $device and on the CPU, compared; model only and end to end at ${e2e_sizes[0]}^2"
    for on in "$device" cpu; do
        [ -d "$out/design-$on" ] && continue
        "$bin" run assets/designs "$out/design-$on" --model design --device "$on" --progress none >/dev/null 2>"$out/design-$on.err" \
            || say "design on $on failed: $(tail -1 "$out/design-$on.err")"
    done
    python3 - "$out/design-$device" "$out/design-cpu" "$device" > "$out/design-compare.txt" <<'PY' || say "design: the two runs could not be compared"
import glob, json, os, sys
def layers(folder):
    return json.load(open(glob.glob(os.path.join(folder, "**", "manifest.json"), recursive=True)[0]))["layers"]
a, b = layers(sys.argv[1]), layers(sys.argv[2])
same = len(a) == len(b) and all(x.get("role") == y.get("role") and x.get("text") == y.get("text") for x, y in zip(a, b))
boxes = max((abs(x["bbox"][k] - y["bbox"][k]) for x, y in zip(a, b) if x["bbox"] and y["bbox"] for k in ("x", "y", "width", "height")), default=0)
colours = max((abs(p - q) for x, y in zip(a, b) for p, q in zip(x["color"], y["color"])), default=0)
words = " / ".join(x["text"].replace("\n", " ") for x in a if x.get("text"))
print(f"design on {sys.argv[3]} against the CPU: {len(a)} and {len(b)} layers, roles and words {'the same' if same else 'DIFFERENT'} ({words}), boxes within {boxes} px, mean colours within {colours}/255")
PY
    cat "$out/design-compare.txt" >&2
    bench --model design --images assets/designs --sizes "${e2e_sizes[0]}" --batches 1 --seconds "$seconds" > "$out/design.md" 2>"$out/design.err" \
        || say "design bench failed: $(tail -1 "$out/design.err")"
fi

{
    echo "### GPU check: $gpu_name, $cores cores ($(date -u +%Y-%m-%d))"
    echo
    echo "Command: \`ops/gpu-check.sh --device $device$([ "$quick" = 1 ] && echo ' --quick')\`, binary \`$bin\`."
    echo
    echo "| measurement | size | batch | precision | images/s | ms/image |"
    echo "| --- | --- | --- | --- | --- | --- |"
    grep '^| model only' "$out/model-only.md" || true
    for size in "${e2e_sizes[@]}"; do
        grep '^| lamina run' "$out/e2e-$size.md" | sed "s/^| lamina run/| e2e ($size^2 job) lamina run/" || true
    done
    [ -f "$out/objects.md" ] && grep '^| ' "$out/objects.md" | grep -v -- '---\|measurement' | sed 's/^| /| objects-small: /' || true
    [ -f "$out/design.md" ] && grep '^| ' "$out/design.md" | grep -v -- '---\|measurement' | sed 's/^| /| design: /' || true
    echo
    echo "| end-to-end run | GPU busy (mean) | GPU memory (peak MiB) | CPU busy ($cores cores) |"
    echo "| --- | --- | --- | --- |"
    for row in "${rows[@]}"; do
        IFS='|' read -r size util mem cpu <<< "$row"
        echo "| ${size}^2 and bundled photos, reference + fast | ${util}% | $mem | ${cpu}% |"
    done
    echo
    grep -h 'end to end\|wall time outside\|fast mode:' "$out"/e2e-*.md || true
    [ -f "$out/design-compare.txt" ] && cat "$out/design-compare.txt" || true
} | tee "$out/table.md"
say "table and raw logs in $out"
