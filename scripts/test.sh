#!/usr/bin/env bash
# The whole test suite on a fresh machine: install a software Vulkan driver for the wgpu tests
# (lavapipe, when missing), check the format (cargo fmt) and the lints (cargo clippy -D
# warnings), fetch the models the tests need (cached after the first run), run every Rust test
# of the workspace, then the server's end-to-end tests (Python, the official
# openai client against the real `ember serve`), the aarch64 kernel tests under qemu and the
# app SDK suites.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-gpu-ci.sh
# Style and lints first (cheap, and they fail fast): rustfmt.toml's format, clippy with warnings as errors.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check; else echo "test.sh: rustfmt missing, format not checked" >&2; fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --release --all-targets -q -- -D warnings
else
  echo "test.sh: clippy missing, lints not checked" >&2
fi
scripts/fetch-models.sh
cargo test --workspace --release --no-fail-fast "$@"
scripts/test-server.sh
# CPU kernels for phones: the runtime's parity tests built for aarch64, run under qemu.
scripts/test-aarch64.sh
# App SDKs: Python + Kotlin (JVM) suites against the real library; Android/iOS type-check.
scripts/test-bindings.sh
