#!/usr/bin/env bash
# Installs Schemathesis, the schema-driven fuzzer that tests/tests/api.rs runs against a live
# coordinator from its OpenAPI document (docs/openapi.json), in a venv in the per-user cache,
# and prints the `export` line that names it; use it as
#   eval "$(ops/api-tools.sh)"
# Safe to run again: what is installed already is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'lamina api tools: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

LAMINA_CACHE="${LAMINA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
API_VENV="$LAMINA_CACHE/venv-api"
SCHEMATHESIS_VERSION=4.32.5

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

st_ok() { "$API_VENV/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION"; }
if ! st_ok; then
    if [ ! -x "$API_VENV/bin/python" ]; then
        say "creating the venv $API_VENV"
        mkdir -p "$LAMINA_CACHE"
        if ! python3 -m venv "$API_VENV" 2>/dev/null; then
            say "python3 cannot make venvs; installing python3-venv"
            as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 \
                || die "cannot install python3-venv (run: apt-get install python3-venv)"
            rm -rf "$API_VENV"
            python3 -m venv "$API_VENV"
        fi
    fi
    say "installing schemathesis==$SCHEMATHESIS_VERSION"
    "$API_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
    st_ok || die "schemathesis $SCHEMATHESIS_VERSION did not install into $API_VENV"
fi
say "schemathesis: $API_VENV/bin/st $SCHEMATHESIS_VERSION"
echo "export LAMINA_SCHEMATHESIS=$API_VENV/bin/st"
