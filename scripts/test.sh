#!/usr/bin/env bash
# The whole test suite on a fresh machine: install a software Vulkan driver for the wgpu tests
# (lavapipe, when missing), fetch the models the tests need (cached after the first run), then
# run every Rust test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-gpu-ci.sh
scripts/fetch-models.sh
cargo test --workspace --release --no-fail-fast "$@"
