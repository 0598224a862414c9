# Sourced by Lamina's scripts: where the shared libtorch lives and how cargo finds it.
# Big installs live in a per-user cache outside the clone, reused by every clone and CI run.
LAMINA_CACHE="${LAMINA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
LAMINA_TORCH_VERSION="2.13.0"
# The torchvision release paired with it (only the text detector's converter imports it).
LAMINA_TORCHVISION_VERSION="0.28.0"
LAMINA_VENV="${LAMINA_VENV:-$LAMINA_CACHE/venv-torch-$LAMINA_TORCH_VERSION}"
export LAMINA_CACHE LAMINA_VENV
# tch's build script finds libtorch inside the venv's torch package.
export LIBTORCH_USE_PYTORCH=1
export PATH="$LAMINA_VENV/bin:$PATH"
