#!/usr/bin/env bash
# The whole test suite on a fresh machine: install a software Vulkan driver for the wgpu tests
# (lavapipe, when missing), fetch the models the tests need (cached after the first run), run
# every Rust test of the workspace, then the server's end-to-end tests (Python, the official
# openai client against the real `ember serve`), the aarch64 kernel tests under qemu and the
# app SDK suites.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-gpu-ci.sh
scripts/fetch-models.sh
cargo test --workspace --release --no-fail-fast "$@"
scripts/test-server.sh
# CPU kernels for phones: the runtime's parity tests built for aarch64, run under qemu.
scripts/test-aarch64.sh
# App SDKs: Python + Kotlin (JVM) suites against the real library; Android/iOS type-check.
scripts/test-bindings.sh
