#!/usr/bin/env bash
# Runs the runtime's unit tests (the SIMD kernel parity tests among them) for
# aarch64 under qemu-user: `-cpu max` (see .cargo/config.toml) reports NEON and
# dotprod, so both the neon and neon+dotprod kernel tables are checked against
# the scalar references. Installs what it needs (idempotent; root for apt).
# Usage: scripts/test-aarch64.sh [extra cargo test args, e.g. a test filter]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
fi

start=$(date +%s)
# The cross-test profile (Cargo.toml): the runtime optimized as in release (the parity tests run
# thousands of dots, slow when emulated), its dependencies lightly, to build faster.
cargo test --profile cross-test --target aarch64-unknown-linux-gnu -p ember --lib "$@"
echo "aarch64 tests under qemu took $(( $(date +%s) - start )) s"
