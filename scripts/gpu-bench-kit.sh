#!/usr/bin/env bash
# Builds the GPU benchmark kit: a folder (≤ 64 MiB) to copy onto a bare Linux x86_64 machine
# with a GPU and no Rust toolchain or network, where `run.sh` generates the synthetic benchmark
# models with the project's own GGUF writer, checks GPU-vs-CPU parity and runs
# `ember bench --backend wgpu`, then prints one table (see scripts/gpu-bench-kit/run.sh and
# docs/GPU.md "GPU benchmark kit").
# Usage: scripts/gpu-bench-kit.sh [--dry-run] [KIT_DIR]   (default KIT_DIR: target/gpu-bench-kit)
#   --dry-run: also run the kit here, quickly (QUICK=1), on whatever adapter wgpu finds
#   (lavapipe on CI machines).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
kit="${1:-target/gpu-bench-kit}"
cargo build --release -q -p ember-cli -p gen-bench-models
rm -rf "$kit"
mkdir -p "$kit/bin"
for b in ember gen-bench-models; do
  cp "target/release/$b" "$kit/bin/$b"
  strip "$kit/bin/$b"
done
cp scripts/gpu-bench-kit/run.sh "$kit/run.sh"
git rev-parse --short HEAD >"$kit/VERSION" 2>/dev/null || echo unknown >"$kit/VERSION"
bytes=$(du -sb "$kit" | cut -f1)
echo "kit: $kit ($((bytes / 1048576)) MiB, commit $(cat "$kit/VERSION"))"
if [ "$bytes" -gt $((64 * 1048576)) ]; then
  echo "gpu-bench-kit: $bytes bytes is over the 64 MiB a device run can carry" >&2
  exit 1
fi
echo "on the GPU machine: $kit/run.sh [OUT_DIR]   (QUICK=1 for a short run)"
if [ $dry = 1 ]; then
  QUICK=1 "$kit/run.sh" "${OUT:-target/gpu-bench-kit-out}"
fi
