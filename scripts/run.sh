#!/usr/bin/env bash
# Set up kbchat and run it on its embedded defaults: local Chroma in ./data, the bundled
# multilingual-e5-small, no API key. Ingests the example knowledge base, asks across languages,
# then serves the web UI, the HTTP API and the widget demo (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
kb=.venv/bin/kbchat
"$kb" model prepare
"$kb" ingest examples/kb
echo
echo '$ kbchat search "Wann wurde das Unternehmen gegründet?" --k 2'
"$kb" search "Wann wurde das Unternehmen gegründet?" --k 2
echo
echo '$ kbchat ask "¿Cuántos años de garantía tiene la batería?"'
"$kb" ask "¿Cuántos años de garantía tiene la batería?"
echo
exec "$kb" serve
