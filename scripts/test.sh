#!/usr/bin/env bash
# The whole test suite on a fresh machine: fetch the models the tests need (cached after the
# first run), then run every Rust test of the workspace, then the server's end-to-end tests
# (Python, the official openai client against the real `ember serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh
cargo test --workspace --release --no-fail-fast "$@"
scripts/test-server.sh
# CPU kernels for phones: the runtime's parity tests built for aarch64, run under qemu.
scripts/test-aarch64.sh
# App SDKs: Python + Kotlin (JVM) suites against the real library; Android/iOS type-check.
scripts/test-bindings.sh
