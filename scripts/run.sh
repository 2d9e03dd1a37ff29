#!/usr/bin/env bash
# Set up kbchat and run it on its embedded defaults: local Chroma in ./data, the bundled
# multilingual-e5-small, no API key. Ingests the example knowledge base and asks across languages.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
kb=.venv/bin/kbchat
"$kb" model prepare
"$kb" ingest examples/kb
echo
echo '$ kbchat search "¿Cuántos años de garantía tiene la batería?" --k 3'
"$kb" search "¿Cuántos años de garantía tiene la batería?" --k 3
echo
echo '$ kbchat search "Wann wurde das Unternehmen gegründet?" --k 2'
"$kb" search "Wann wurde das Unternehmen gegründet?" --k 2
echo
echo '$ kbchat ask "¿Cuántos años de garantía tiene la batería?"'
"$kb" ask "¿Cuántos años de garantía tiene la batería?"
