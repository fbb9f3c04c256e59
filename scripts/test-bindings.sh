#!/usr/bin/env bash
# App SDK tests: builds libember_ffi (release), generates the Python/Kotlin/Swift
# sources from it, runs the Python suite (pytest) and the Kotlin suite on the JVM
# (Maven, JNA) against the real SmolLM2 model, and type-checks the library for
# Android and iOS (no NDK/Xcode needed for `cargo check`).
# Needs: python3 with venv, mvn + a JDK >= 17, rustup. Models: scripts/fetch-models.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
EMBER_HOME="${EMBER_HOME:-$HOME/.cache/ember}"
VENV="$EMBER_HOME/venv-bindings"
t0=$SECONDS
step() { echo "== bindings: $1 ($((SECONDS - t0))s)"; }

step "build + generate"
scripts/gen-bindings.sh

# The Android/iOS type-check shares nothing with the host build and leaves cores idle while the
# suites below start JVMs and processes: it runs alongside them, its output printed at the end.
step "type-check for mobile targets (in the background)"
rustup target add aarch64-linux-android aarch64-apple-ios >/dev/null 2>&1
mobile_log="$(mktemp)"
# One cargo run for both targets: it interleaves their crates on the cores. Without the
# `remote` feature: its TLS (rustls on ring) compiles C for the target in its build script,
# which needs the NDK's / Xcode's compiler (scripts/build-android.sh, build-ios.sh have them);
# the remote code itself is target-independent Rust, checked by the host build above.
(
  t=$SECONDS
  env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS cargo check -q -p ember-ffi --no-default-features --target aarch64-linux-android --target aarch64-apple-ios
  echo "cargo check (android + ios): $((SECONDS - t))s"
) >"$mobile_log" 2>&1 &
mobile_pid=$!
trap 'kill "$mobile_pid" 2>/dev/null || true; rm -f "$mobile_log"' EXIT

step "python (pytest)"
if [ ! -x "$VENV/bin/pytest" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "pytest>=8,<10"
fi
t=$SECONDS
"$VENV/bin/pytest" -q bindings/tests/python
echo "pytest: $((SECONDS - t))s"

step "kotlin on the JVM (mvn)"
t=$SECONDS
(cd bindings/tests/kotlin && mvn -q -B test -Dember.target="$CARGO_TARGET_DIR")
echo "mvn: $((SECONDS - t))s"

step "type-check for mobile targets (waiting for it)"
if wait "$mobile_pid"; then
  cat "$mobile_log"
else
  cat "$mobile_log"
  echo "test-bindings: the Android/iOS type-check failed" >&2
  exit 1
fi

step "done"
