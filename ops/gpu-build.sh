#!/usr/bin/env bash
# Builds Lamina for a GPU machine whose PyTorch is 2.11 (tch 0.24) rather than the 2.13 this
# tree builds against (tch 0.26), and packs the stripped `lamina` with the small object
# model and the design family's text models (32 MB of them before compression) into
# .gpu/lamina-gpu.tar.xz: the bundle that
# ops/gpu-check.sh unpacks and runs against that machine's own libtorch.
#
# The tree itself stays on tch 0.26: this script builds a copy of the working tree whose
# workspace manifest pins tch and torch-sys to 0.24, against a PyTorch 2.11 venv kept in the
# per-user cache, with its own target folder there (so later builds are incremental).
#
# Usage: ops/gpu-build.sh [check]
#   check   type-check every crate against tch 0.24 only (no bundle); the test suite runs
#           this so the GPU build keeps compiling.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh

mode="${1:-bundle}"
GPU_TORCH_VERSION="2.11.0"
GPU_TCH_VERSION="0.24.0"
say() { printf '\033[1mlamina gpu-build:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

venv="$LAMINA_CACHE/venv-torch-$GPU_TORCH_VERSION"
torch_ok() { "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$GPU_TORCH_VERSION')" 2>/dev/null; }
if ! torch_ok; then
    say "installing torch==$GPU_TORCH_VERSION into $venv (about 4.7 GB, once per machine)"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || die "cannot create $venv (apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "torch==$GPU_TORCH_VERSION"
    torch_ok || die "torch $GPU_TORCH_VERSION did not install into $venv"
fi

work="$LAMINA_CACHE/gpu-build"
src="$work/src"
rm -rf "$src"
mkdir -p "$src"
# The working tree's files (edits included; tar keeps their times, so cargo rebuilds only
# what changed).
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$src"
sed -i -e "s/^tch = \".*\"/tch = \"=$GPU_TCH_VERSION\"/" -e "s/^torch-sys = \".*\"/torch-sys = \"=$GPU_TCH_VERSION\"/" "$src/Cargo.toml"
grep -q "^tch = \"=$GPU_TCH_VERSION\"" "$src/Cargo.toml" || die "the workspace manifest no longer names tch as expected"

export PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 CARGO_TARGET_DIR="$work/target"
unset LIBTORCH LIBTORCH_LIB LIBTORCH_INCLUDE
cd "$src"
if [ "$mode" = check ]; then
    say "type-checking the workspace against tch $GPU_TCH_VERSION (PyTorch $GPU_TORCH_VERSION)"
    cargo check --workspace --all-targets --quiet
    say "the tree builds against tch $GPU_TCH_VERSION"
    exit 0
fi

say "building lamina (release) against tch $GPU_TCH_VERSION"
cargo build --release --quiet -p lamina-cli --bin lamina
cd - >/dev/null
stage="$work/bundle"
rm -rf "$stage"
mkdir -p "$stage/models" .gpu
cp "$work/target/release/lamina" "$stage/lamina"
strip "$stage/lamina"
# The binary loads libtorch's CUDA library by its soname when a CUDA device is named
# (worker/src/runtime/device.rs: load_cuda), found through LD_LIBRARY_PATH on the GPU machine.
grep -q 'libtorch_cuda.so' "$stage/lamina" || die "the binary does not name libtorch_cuda.so: CUDA would be unavailable"
models="${LAMINA_MODELS:-$LAMINA_CACHE/models}"
[ -f "$models/u2netp.onnx" ] && cp "$models/u2netp.onnx" "$stage/models/"
# The design family's text detector and recogniser, with the records that pin them.
for f in ppocr_det.pt ppocr_det.pt.source ppocr_rec.pt ppocr_rec.pt.source ppocr_rec.txt; do
    [ -f "$models/$f" ] && cp "$models/$f" "$stage/models/"
done
tar -cJf .gpu/lamina-gpu.tar.xz -C "$stage" .
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
say "bundle: .gpu/lamina-gpu.tar.xz ($(du -h .gpu/lamina-gpu.tar.xz | cut -f1)); on the GPU machine: ops/gpu-check.sh"
