#!/usr/bin/env bash
# Create .venv in the checkout and install kbchat into it (with the test tools when given "dev").
# torch goes first, pinned: `pip install torch==2.13.0` takes the CPU build where one is provided
# locally, and sentence-transformers then finds torch already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "${KBCHAT_TORCH_SPEC:-torch==2.13.0}"
if [ "$extras" = "dev" ]; then
    "${pip[@]}" install -e ".[dev]"
else
    "${pip[@]}" install -e .
fi
