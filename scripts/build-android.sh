#!/usr/bin/env bash
# Builds the Android SDK's native part and generated Kotlin:
#   android/ember/src/main/jniLibs/<abi>/libember_ffi.so  (cargo-ndk, release, stripped)
#   android/ember/src/main/kotlin/uniffi/ember_ffi/*.kt    (uniffi-bindgen from the host build)
# Then: cd android && ./gradlew :ember:assembleRelease   (AAR in ember/build/outputs/aar/)
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`.
# ABIS overrides the ABI list (default: arm64-v8a x86_64; add armeabi-v7a for old devices).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
ABIS="${ABIS:-arm64-v8a x86_64}"
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (r26 or newer)}"
command -v cargo-ndk >/dev/null || { echo "cargo-ndk is missing: cargo install cargo-ndk" >&2; exit 1; }

declare -A TRIPLE=([arm64-v8a]=aarch64-linux-android [armeabi-v7a]=armv7-linux-androideabi
                   [x86_64]=x86_64-linux-android [x86]=i686-linux-android)
ndk_args=()
for abi in $ABIS; do
  rustup target add "${TRIPLE[$abi]}" >/dev/null
  ndk_args+=(-t "$abi")
done

JNI="$ROOT/android/ember/src/main/jniLibs"
# 16 KiB page alignment (required for Android 15+ devices with 16K pages).
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,max-page-size=16384"
cargo ndk "${ndk_args[@]}" --platform 24 -o "$JNI" build --release -p ember-ffi

# Kotlin sources come from the host library (the same Rust code, so the same interface).
cargo build --release -p ember-ffi -p uniffi-bindgen
GEN="$ROOT/android/ember/src/main/kotlin"
rm -rf "$GEN/uniffi"
"$CARGO_TARGET_DIR/release/uniffi-bindgen" generate --library "$CARGO_TARGET_DIR/release/libember_ffi.so" \
  --language kotlin --out-dir "$GEN"
echo "jniLibs: $(cd "$JNI" && ls -d */ | tr -d / | tr '\n' ' ')"
echo "now: cd android && ./gradlew :ember:assembleRelease"
