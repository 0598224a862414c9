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
# The TorchScript fixtures are made by a script run with the venv's python; the layered
# documents are read back with psd-tools (tests/tools/check_documents.py) and the matting
# network is checked against onnxruntime (worker/tests/objects.rs), from the same venv.
export LAMINA_PYTHON="$LAMINA_VENV/bin/python"
if ! "$LAMINA_PYTHON" -c "import psd_tools, numpy, PIL, onnxruntime" 2>/dev/null; then
    echo "lamina test: installing psd-tools and onnxruntime into $LAMINA_VENV" >&2
    "$LAMINA_PYTHON" -m pip install --quiet "psd-tools==1.26.0" "onnxruntime==1.32.0" numpy pillow \
        || { echo "lamina test: cannot install psd-tools and onnxruntime (run: $LAMINA_PYTHON -m pip install psd-tools onnxruntime)" >&2; exit 1; }
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
# promtool checks and unit-tests the alert rules (ops/prometheus/): Debian's prometheus
# package has it. Only the tool is wanted: stop the daemon if the package started one.
if ! command -v promtool >/dev/null; then
    echo "lamina test: installing prometheus (for promtool)" >&2
    as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
        || { echo "lamina test: cannot install prometheus (run: apt-get install prometheus)" >&2; exit 1; }
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
        as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
fi
# Headless Chromium renders the coordinator's status page in its end-to-end test.
if ! command -v chromium >/dev/null; then
    echo "lamina test: installing chromium (for the status page test)" >&2
    as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || { echo "lamina test: cannot install chromium (run: apt-get install chromium)" >&2; exit 1; }
fi
# GIMP opens the PSDs in batch mode (tests/tools/check_documents.py --gimp).
if ! command -v gimp-console >/dev/null; then
    echo "lamina test: installing gimp (a real editor opens the PSDs)" >&2
    as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gimp >/dev/null \
        || { echo "lamina test: cannot install gimp (run: apt-get install gimp)" >&2; exit 1; }
fi
eval "$(ops/k8s-tools.sh)"   # kustomize and kubernetes-validate for tests/tests/k8s_manifests.rs
eval "$(ops/api-tools.sh)"   # Schemathesis, the API fuzzer of tests/tests/api.rs
# The GPU machines' build (PyTorch 2.11, tch 0.24) must keep compiling: type-check it.
ops/gpu-build.sh check
cargo test --locked --workspace "$@"
