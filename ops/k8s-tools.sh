#!/usr/bin/env bash
# Installs what renders and checks Lamina's Kubernetes manifests (infra/k8s) without a cluster,
# and prints `export ...` lines for them; use it as
#   eval "$(ops/k8s-tools.sh)"
# - LAMINA_KUSTOMIZE: a `kustomize` that takes `build DIR`: a standalone kustomize v5 when one
#   is on PATH, else a small wrapper around the kustomize built into kubectl (`kubectl
#   kustomize`, v5 since kubectl 1.27).
# - LAMINA_K8S_VALIDATE: kubernetes-validate (a Python package), which bundles the Kubernetes JSON schemas,
#   in a venv in the per-user cache; LAMINA_K8S_PYTHON is that venv's python (with PyYAML).
# - LAMINA_K8S_VERSION: the Kubernetes version the manifests are checked against.
# Safe to run again: what is installed already is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/venv.sh

say() { printf 'lamina k8s tools: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

LAMINA_CACHE="${LAMINA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
K8S_VENV="$LAMINA_CACHE/venv-k8s"
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION="${LAMINA_K8S_VERSION:-1.30.0}"


# kubernetes-validate in its own venv.
validate_ok() {
    [ "$("$K8S_VENV/bin/kubernetes-validate" --version 2>/dev/null)" = "$KUBERNETES_VALIDATE_VERSION" ] \
        && "$K8S_VENV/bin/python" -c 'import yaml' 2>/dev/null
}
if ! validate_ok; then
    lamina_make_venv "$K8S_VENV" || die "cannot make the venv $K8S_VENV"
    say "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (with the Kubernetes schemas)"
    "$K8S_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
    validate_ok || die "kubernetes-validate $KUBERNETES_VALIDATE_VERSION did not install into $K8S_VENV"
fi

# kustomize: the manifests use `labels`, `patches` with label selectors and `$patch: delete`,
# so kustomize v5 (v4 may do; Debian's kubernetes-client 1.20 carries v2, which does not).
WRAPPER="$K8S_VENV/bin/kustomize"
major() { sed -n 's/.*v\([0-9][0-9]*\)\.[0-9].*/\1/p' | head -1; }
kustomize_bin=""
standalone="$(command -v kustomize || true)"
if [ -n "$standalone" ] && [ "$standalone" != "$WRAPPER" ] \
    && [ "$("$standalone" version 2>/dev/null | major)" -ge 5 ] 2>/dev/null; then
    kustomize_bin="$standalone"
elif kubectl="$(command -v kubectl)" \
    && [ "$("$kubectl" version --client 2>/dev/null | grep -i '^kustomize version' | major)" -ge 5 ] 2>/dev/null; then
    cat > "$WRAPPER.tmp" <<WRAP
#!/bin/sh
# \`kustomize build DIR [FLAGS]\` through the kustomize built into $kubectl.
case "\$1" in
    build) shift; exec "$kubectl" kustomize "\$@" ;;
    version) exec "$kubectl" version --client ;;
    *) echo "usage: kustomize build DIR | kustomize version" >&2; exit 2 ;;
esac
WRAP
    chmod 0755 "$WRAPPER.tmp"
    mv "$WRAPPER.tmp" "$WRAPPER"
    kustomize_bin="$WRAPPER"
else
    die "no kustomize v5 found: install kubectl 1.27 or newer (it carries kustomize v5) or a standalone kustomize v5, and run this again"
fi
say "kustomize: $kustomize_bin ($("$kustomize_bin" version 2>/dev/null | grep -io 'v[0-9][0-9.]*' | tail -1))"
say "kubernetes-validate: $K8S_VENV/bin/kubernetes-validate $KUBERNETES_VALIDATE_VERSION (schemas for Kubernetes $K8S_VERSION)"

cat <<ENV
export LAMINA_KUSTOMIZE=$kustomize_bin
export LAMINA_K8S_VALIDATE=$K8S_VENV/bin/kubernetes-validate
export LAMINA_K8S_PYTHON=$K8S_VENV/bin/python
export LAMINA_K8S_VERSION=$K8S_VERSION
ENV
