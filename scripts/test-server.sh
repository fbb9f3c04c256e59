#!/usr/bin/env bash
# The server's end-to-end tests: the real `ember serve` driven by the official `openai` Python
# client (pytest). Creates (once) a venv under ~/.cache/ember/venv-test, builds the release binary,
# runs tests/server/. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
home="${EMBER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}"
venv="$home/venv-test"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Added to, never remade: a venv made before a package joined the list gets it.
if ! "$venv/bin/python" -c 'import openai, pytest, requests, jsonschema' 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check openai pytest requests jsonschema
fi
# EMBER_BIN: the binary to test (scripts/test.sh passes the test build's); else built here.
if [ -z "${EMBER_BIN:-}" ]; then
  cargo build --release -p ember-cli
  target="${CARGO_TARGET_DIR:-target}"
  EMBER_BIN="$(cd "$target/release" && pwd)/ember"
fi
export EMBER_BIN
start=$(date +%s)
"$venv/bin/python" -m pytest -q tests/server "$@"
echo "server tests took $(( $(date +%s) - start ))s"
