# Sourced by Lamina's scripts: makes a Python venv, installing python3-venv with apt-get
# (as root, or through sudo) when this python3 cannot make one.
#   lamina_make_venv DIR    (does nothing when DIR already holds a venv)
lamina_make_venv() {
    local dir="$1"
    [ -x "$dir/bin/python" ] && return 0
    echo "lamina: creating the venv $dir" >&2
    mkdir -p "$(dirname "$dir")"
    python3 -m venv "$dir" 2>/dev/null && return 0
    echo "lamina: python3 cannot make venvs; installing python3-venv" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo=sudo; } || { echo "lamina: cannot install python3-venv (run: apt-get install python3-venv)" >&2; return 1; }
    $sudo apt-get update -qq >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 \
        || { echo "lamina: cannot install python3-venv (run: apt-get install python3-venv)" >&2; return 1; }
    rm -rf "$dir"
    python3 -m venv "$dir"
}
