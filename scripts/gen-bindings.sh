#!/usr/bin/env bash
# Builds libember_ffi (release) and generates the Python, Kotlin and Swift sources
# from it with the workspace's pinned uniffi-bindgen, into target/bindings/<lang>/.
# The Python folder also gets a copy of the library (the generated module loads it
# from its own directory). Prints nothing but errors unless VERBOSE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
LIB="$TARGET_DIR/release/libember_ffi.so"
OUT="$TARGET_DIR/bindings"
# The whole workspace with its tests: the same feature set as `cargo test --workspace
# --release` (dev-dependencies turn on features of shared crates), so after the test
# build (scripts/test.sh) this only links; `-p ember-ffi` alone would rebuild wgpu & co.
cargo build --release --workspace --lib --bins --tests
for lang in python kotlin swift; do
  rm -rf "$OUT/$lang"
  "$TARGET_DIR/release/uniffi-bindgen" generate --library "$LIB" --language "$lang" --out-dir "$OUT/$lang" >/dev/null
done
cp "$LIB" "$OUT/python/"
echo "bindings generated in $OUT (python, kotlin, swift)"
