#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests, the FSCS conformance test,
# the TorchScript backend tests, the S3 store against a real S3 server (Garage), and the
# end-to-end tests of the real binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh dev
. ops/env.sh
# Real services on loopback for the S3 tests (installed and started when missing).
eval "$(ops/services.sh)"
# The TorchScript fixtures are made by a script run with the venv's python.
export LAMINA_PYTHON="$LAMINA_VENV/bin/python"
cargo test --locked --workspace "$@"
