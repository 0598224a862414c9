#!/usr/bin/env bash
# Sets up everything Lamina needs to build and run on a fresh Debian machine with Rust and
# Python: a venv with the PyTorch that tch wants (libtorch comes from it) and the object
# models' matting weights, kept in a per-user cache outside the clone so every clone and CI
# run reuses them, then builds the workspace.
#
# Usage: ops/bootstrap.sh [release|dev]   (default: release; dev fetches only the small
# object model, which the tests use)
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/venv.sh
. ops/env.sh

profile="${1:-release}"
say() { printf '\033[1mlamina bootstrap:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
command -v python3 >/dev/null || die "python3 not found: install Python 3.9 or newer first"


torch_ok() { "$LAMINA_VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$LAMINA_TORCH_VERSION')" 2>/dev/null; }

if ! torch_ok; then
    lamina_make_venv "$LAMINA_VENV" || die "cannot make the venv $LAMINA_VENV"
    say "installing torch==$LAMINA_TORCH_VERSION (about 4.7 GB, once per machine)"
    "$LAMINA_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$LAMINA_VENV/bin/python" -m pip install --quiet "torch==$LAMINA_TORCH_VERSION"
    torch_ok || die "torch $LAMINA_TORCH_VERSION did not install into $LAMINA_VENV"
fi
say "libtorch from $("$LAMINA_VENV/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"

if [ "$profile" = release ]; then ops/fetch-models.sh all; else ops/fetch-models.sh small; fi

if [ "$profile" = release ]; then
    say "building lamina (release; the first build takes a few minutes)"
    cargo build --release --locked --workspace --bins
else
    say "building the workspace and its tests"
    cargo build --locked --workspace --all-targets
fi
