#!/usr/bin/env bash
# Create .venv in the checkout and install kbchat into it, with the extras given as arguments:
# "dev" (the test tools; includes postgres), "postgres" (the PostgreSQL driver for
# KBCHAT_DATABASE_URL). E.g. ./scripts/setup.sh postgres
# torch goes first, pinned: `pip install torch==2.13.0` takes the CPU build where one is provided
# locally, and sentence-transformers then finds torch already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="$(IFS=,; echo "$*")"
case ",$extras," in *[!a-z,]*) echo "setup.sh: unknown extras '$extras'" >&2; exit 2 ;; esac
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "${KBCHAT_TORCH_SPEC:-torch==2.13.0}"
if [ -n "$extras" ]; then
    "${pip[@]}" install -e ".[$extras]"
else
    "${pip[@]}" install -e .
fi
