#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests, the FSCS conformance test,
# the TorchScript backend tests and the end-to-end tests of the real binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh dev
. ops/env.sh
# The TorchScript fixtures are made by a script run with the venv's python.
export LAMINA_PYTHON="$LAMINA_VENV/bin/python"
cargo test --locked --workspace "$@"
