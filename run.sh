#!/usr/bin/env bash
# im2hands developer entry point.
#   ./run.sh demo        run the demo on the shipped defaults (writes into out/demo)
#   ./run.sh test        run the test suite
#   ./run.sh <args...>   run any `im2hands` command, e.g. ./run.sh synth --help
# On first use it creates .venv (or $IM2HANDS_VENV) and installs the package with its test extras.
# A torch that the system Python already has is kept (the venv sees system site-packages); otherwise on a
# machine without an NVIDIA GPU the CPU build of torch 2.13.0 is installed, never the CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${IM2HANDS_VENV:-.venv}"
STAMP="$VENV/.im2hands-installed"

setup() {
    if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then return 0; fi
    local py="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        if "$py" -c "import torch" >/dev/null 2>&1; then
            echo "[setup] keeping the installed torch $("$py" -c 'import torch; print(torch.__version__)')" >&2
            "$py" -m venv --system-site-packages "$VENV"
        else
            "$py" -m venv "$VENV"
        fi
    fi
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
            echo "[setup] NVIDIA GPU found: installing torch with CUDA" >&2
            "${pip[@]}" install torch
        else
            echo "[setup] no GPU: installing the CPU build of torch 2.13.0" >&2
            # PyTorch's CPU wheel index, where it can be reached; otherwise the configured package sources
            # (which may hold a local CPU wheel).
            if "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/', timeout=5)" \
                    >/dev/null 2>&1; then
                "${pip[@]}" install --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
            else
                "${pip[@]}" install "torch==2.13.0"
            fi
        fi
    fi
    echo "[setup] installing im2hands and its dependencies into $VENV" >&2
    "${pip[@]}" install -e ".[test]"
    install_chromium
    touch "$STAMP"
}

# Best effort: the 3D viewer's browser test needs a headless Chromium (it skips without one). Installed only
# when we are root with apt-get; a failure never stops the setup.
install_chromium() {
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return 0; fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then return 0; fi
    echo "[setup] installing chromium (for the 3D viewer's browser test)" >&2
    # a second try after refreshing the package lists, which a fresh container may not have
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; then
        echo "[setup] could not install chromium; the viewer's browser test will be skipped" >&2
    fi
    return 0
}

setup
cmd="${1:-help}"
shift || true
case "$cmd" in
    test) exec "$VENV/bin/python" -m pytest -q "$@" ;;
    demo) exec "$VENV/bin/im2hands" demo "$@" ;;
    help|-h|--help) sed -n '2,8p' "$0"; exec "$VENV/bin/im2hands" --help ;;
    *) exec "$VENV/bin/im2hands" "$cmd" "$@" ;;
esac
