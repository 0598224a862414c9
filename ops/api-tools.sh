#!/usr/bin/env bash
# Installs Schemathesis, the schema-driven fuzzer that tests/tests/api.rs runs against a live
# coordinator from its OpenAPI document (docs/openapi.json), in a venv in the per-user cache,
# and prints the `export` line that names it; use it as
#   eval "$(ops/api-tools.sh)"
# Safe to run again: what is installed already is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/venv.sh

say() { printf 'lamina api tools: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

LAMINA_CACHE="${LAMINA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
API_VENV="$LAMINA_CACHE/venv-api"
SCHEMATHESIS_VERSION=4.32.5


st_ok() { "$API_VENV/bin/st" --version 2>/dev/null | grep -qx "st, version $SCHEMATHESIS_VERSION"; }
if ! st_ok; then
    lamina_make_venv "$API_VENV" || die "cannot make the venv $API_VENV"
    say "installing schemathesis==$SCHEMATHESIS_VERSION"
    "$API_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
    st_ok || die "schemathesis $SCHEMATHESIS_VERSION did not install into $API_VENV"
fi
say "schemathesis: $API_VENV/bin/st $SCHEMATHESIS_VERSION"
echo "export LAMINA_SCHEMATHESIS=$API_VENV/bin/st"
