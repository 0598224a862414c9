#!/usr/bin/env bash
# Regenerates the layered ground-truth set (eval/layered-set: inputs, true layers, README.md,
# LICENSE.md) with the deterministic generator in tests/src/bin/make_layered_set.rs. Commit
# the result with any change to the generator: the layered_set test compares the two.
#
# Usage: ops/make-layered-set.sh [OUT_DIR [--variant N]]   (default: eval/layered-set; a
# variant N >= 1 is the same table with other content drawn, for scoring on more images)
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh
out="${1:-eval/layered-set}"
cargo run --locked --quiet -p lamina-tests --bin make-layered-set -- "$out" "${@:2}"
echo "make-layered-set: $(du -sh "$out" | cut -f1) in $out" >&2
