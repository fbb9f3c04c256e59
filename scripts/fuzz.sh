#!/usr/bin/env bash
# Fuzzes the GGUF reader with cargo-fuzz (libFuzzer + ASan, needs nightly).
#   scripts/fuzz.sh [SECONDS=60] [extra libFuzzer flags...]
# Installs nightly and cargo-fuzz when missing, writes the seed corpus (valid
# files from runtime/tests/common) into fuzz/corpus/gguf_reader, then runs.
# Crashes land in fuzz/artifacts/gguf_reader/; replay one with
#   cargo +nightly fuzz run gguf_reader fuzz/artifacts/gguf_reader/crash-...
# Without nightly, `cargo test -p ember --test gguf_fuzz_smoke` is the stable stand-in.
set -euo pipefail

secs=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

corpus=fuzz/corpus/gguf_reader
mkdir -p "$corpus"
GGUF_SEED_DIR="$root/$corpus" cargo test -q -p ember --test gguf_fuzz_smoke -- --ignored --exact write_fuzz_seeds

cargo +nightly fuzz run gguf_reader "$corpus" -- \
    -max_total_time="$secs" -dict=fuzz/gguf.dict -rss_limit_mb=2048 -print_final_stats=1 "$@"
