#!/usr/bin/env bash
# The whole test suite on a fresh machine: install a software Vulkan driver for the wgpu tests
# (lavapipe, when missing), check the format (cargo fmt) and, while building, the lints (clippy -D
# warnings), fetch the models the tests need (cached after the first run), run every Rust test
# of the workspace, then the server's end-to-end tests (Python, the official
# openai client against the real `ember serve`), the aarch64 kernel tests under qemu and the
# app SDK suites.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says how long it took (CI's time budget is watched per phase).
t_start=$SECONDS
phase() { echo "== test.sh: $1 (at $((SECONDS - t_start)) s)"; }
phase "gpu driver"
scripts/setup-gpu-ci.sh
# Chromium for the browser test, installed while the workspace builds (a network-bound
# download); its log is printed when the web phase waits for it.
chromium_log=$(mktemp)
scripts/setup-web-ci.sh >"$chromium_log" 2>&1 &
chromium_pid=$!
# The format first (cheap, fails fast): rustfmt.toml's.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check; else echo "test.sh: rustfmt missing, format not checked" >&2; fi
# Clippy lints the workspace's crates while they are built for the tests, not in a separate
# `cargo clippy` pass: that pass type-checks every dependency again and produces nothing the
# tests can use (~13 of CI's minutes). Cargo runs workspace members through the
# RUSTC_WORKSPACE_WRAPPER, here clippy-driver, which compiles as rustc does and adds the lints;
# CLIPPY_ARGS is how `cargo clippy` itself hands it `-D warnings`. Every cargo command below
# for this machine (server, bindings) inherits it, so the crates are built once; the cross
# builds (aarch64 under qemu, the mobile type-check) run without it: their target-specific
# code is not held to the lints yet.
if clippy_driver=$(rustup which clippy-driver 2>/dev/null) && [ -x "$clippy_driver" ]; then
  export RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
else
  echo "test.sh: clippy missing, lints not checked" >&2
fi
# Built once: the test build also makes target/release/ember, which fetches the models and
# serves the server's tests (a separate `cargo build -p ember-cli` would compile the runtime,
# server and CLI again with another feature set).
phase "build"
cargo test --workspace --release --no-run
ember_bin="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/ember"
phase "models"
EMBER_BIN="$ember_bin" scripts/fetch-models.sh
# The synthetic MiniCPM-2B Q4_K model (1.5 GB of seeded random weights, ~30 s), whose GPU
# weight plan tests/gpu_weight_bytes.rs holds to 1.02× its file size; the binary comes from
# the test build too.
phase "synthetic 2B model"
bench_dir="${EMBER_BENCH_DIR:-$HOME/.cache/ember/bench}"
[ -f "$bench_dir/minicpm2b-q4_k.gguf" ] || "$(dirname "$ember_bin")/gen-bench-models" "$bench_dir" minicpm2b-q4_k
export EMBER_REQUIRE_BENCH_MODELS=1
phase "cargo test"
cargo test --workspace --release --no-fail-fast "$@"
phase "server"
EMBER_BIN="$ember_bin" scripts/test-server.sh
phase "aarch64"
# CPU kernels for phones: the runtime's parity tests built for aarch64, run under qemu.
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS scripts/test-aarch64.sh
# App SDKs: Python + Kotlin (JVM) suites against the real library; Android/iOS type-check.
phase "bindings"
scripts/test-bindings.sh
# The browser build (wasm32 + wasm-bindgen) and its test: the demo page in headless Chromium
# must write the native CPU's greedy text (scripts/test-web.sh, docs/WEB.md).
phase "web"
wait "$chromium_pid" || { cat "$chromium_log"; echo "test.sh: installing Chromium failed" >&2; exit 1; }
cat "$chromium_log"
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS scripts/build-web.sh
EMBER_BIN="$ember_bin" scripts/test-web.sh
phase "done"
