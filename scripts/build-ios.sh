#!/usr/bin/env bash
# Builds the iOS SDK (macOS with Xcode only):
#   ios/ember_ffiFFI.xcframework        static libember_ffi for device + simulator, with the C header
#   ios/Sources/Ember/Generated/*.swift  generated Swift (uniffi-bindgen from the host build)
# Then add ios/ as a Swift package (local path) to an Xcode project.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
[ "$(uname)" = Darwin ] || { echo "build-ios.sh needs macOS with Xcode" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
T="$CARGO_TARGET_DIR"
rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios >/dev/null

# Device + simulator static libraries, without debug info (the app links and strips them).
for target in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release -p ember-ffi --target "$target"
done
mkdir -p "$T/ios-sim"
lipo -create "$T/aarch64-apple-ios-sim/release/libember_ffi.a" "$T/x86_64-apple-ios/release/libember_ffi.a" \
  -output "$T/ios-sim/libember_ffi.a"

# Swift + C header + module map from the host library.
cargo build --release -p ember-ffi -p uniffi-bindgen
GEN="$T/bindings/swift"
rm -rf "$GEN"
"$T/release/uniffi-bindgen" generate --library "$T/release/libember_ffi.dylib" --language swift --out-dir "$GEN"
HDR="$T/ios-headers"
rm -rf "$HDR" && mkdir -p "$HDR"
cp "$GEN/ember_ffiFFI.h" "$HDR/"
cp "$GEN/ember_ffiFFI.modulemap" "$HDR/module.modulemap"
mkdir -p ios/Sources/Ember/Generated
cp "$GEN/ember_ffi.swift" ios/Sources/Ember/Generated/

rm -rf ios/ember_ffiFFI.xcframework
xcodebuild -create-xcframework \
  -library "$T/aarch64-apple-ios/release/libember_ffi.a" -headers "$HDR" \
  -library "$T/ios-sim/libember_ffi.a" -headers "$HDR" \
  -output ios/ember_ffiFFI.xcframework
echo "built ios/ember_ffiFFI.xcframework and ios/Sources/Ember/Generated/ember_ffi.swift"
