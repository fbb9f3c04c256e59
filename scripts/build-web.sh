#!/usr/bin/env bash
# Builds Ember for the browser into web/dist: the runtime as WebAssembly (wasm32, SIMD128; the
# flags are in .cargo/config.toml), wasm-bindgen's JS glue in web/dist/pkg, and the package's
# hand-written files (web/www: ember.js, ember-worker.js, ember.d.ts, the demo index.html).
# Installs what it needs when missing: the wasm32 target (rustup) and wasm-bindgen-cli, built
# from source with `cargo install` at exactly the version of the wasm-bindgen crate in Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "build-web: installing wasm-bindgen-cli $want (have: ${have:-none})"
  # --locked: the CLI's own tested dependency set; without it when that set cannot be resolved
  # (a registry mirror missing one of its pins). --debug: the CLI only rewrites one file (3 s
  # instead of 0.7 s here, the same bytes out), and a debug build of it compiles in a third of
  # the CPU time of a release one (160 s vs ~500 s), which a fresh CI machine pays every run.
  cargo install -q --debug --locked wasm-bindgen-cli --version "$want" || cargo install -q --debug wasm-bindgen-cli --version "$want"
fi

# The workspace's clippy wrapper (CI) does not apply here: a plain release build for wasm32.
unset RUSTC_WORKSPACE_WRAPPER
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p ember-web --target wasm32-unknown-unknown
rm -rf web/dist
mkdir -p web/dist
wasm-bindgen --target web --out-dir web/dist/pkg "$target_dir/wasm32-unknown-unknown/release/ember_web.wasm"
cp web/www/* web/dist/
echo "build-web: web/dist ($(du -sh web/dist/pkg/ember_web_bg.wasm | cut -f1) of WebAssembly)"
