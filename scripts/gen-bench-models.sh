#!/usr/bin/env bash
# Writes the synthetic benchmark models (seeded random weights; see
# tools/gen-bench-models) into ~/.cache/ember/bench (or $1), skipping those present.
# Usage: scripts/gen-bench-models.sh [OUT_DIR] [NAME…]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$HOME/.cache/ember/bench}"; shift || true
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(minicpm2b-q4_0 minicpm2b-q4_k llama1b-q4_k)
todo=()
for n in "${names[@]}"; do [ -f "$out/$n.gguf" ] || todo+=("$n"); done
[ ${#todo[@]} -eq 0 ] && { echo "all present in $out"; exit 0; }
cargo run --release -q -p gen-bench-models -- "$out" "${todo[@]}"
