#!/usr/bin/env bash
# Runs one cargo-fuzz target (libFuzzer + ASan, needs nightly) for a while.
#   scripts/fuzz.sh [TARGET=gguf_load] [SECONDS=60] [extra libFuzzer flags...]
# Targets (fuzz/fuzz_targets, harnesses in runtime/src/fuzzing):
#   gguf_reader     any bytes through the GGUF reader and its accessors
#   gguf_load       GGUF → tokenizer, chat template, CPU model load, one token (structure-aware mutator)
#   tokenizer       text through built-in vocabularies (round trip, streaming decode)
#   tokenizer_gguf  vocabulary-only GGUFs through Tokenizer::from_gguf (structure-aware mutator)
#   chat_template   template source + messages through ChatTemplate (Jinja-aware mutator)
# Installs nightly and cargo-fuzz when missing, writes the target's seeds into
# fuzz/corpus/TARGET (and reads fuzz/regressions/TARGET too), then runs one job
# with memory limits: a single allocation over 2 GiB or an RSS over 2 GiB is a
# crash, and so is one input running past 10 s.
# A crash lands in fuzz/artifacts/TARGET/; replay it with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# then fix it, minimize it (cargo +nightly fuzz tmin TARGET FILE) and save it as
# fuzz/regressions/TARGET/NAME: `cargo test -p ember --test fuzz_regressions`
# replays every file there on stable Rust (CI).
set -euo pipefail

target=${1:-gguf_load}
secs=${2:-60}
shift $(($# < 2 ? $# : 2))
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

case "$target" in
    gguf_reader | gguf_load | tokenizer_gguf) flags=(-dict=fuzz/gguf.dict -max_len=393216) ;;
    tokenizer) flags=(-max_len=4096) ;;
    chat_template) flags=(-dict=fuzz/jinja.dict -max_len=16384) ;;
    *)
        echo "fuzz.sh: unknown target '$target' (gguf_reader gguf_load tokenizer tokenizer_gguf chat_template)" >&2
        exit 2
        ;;
esac

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

corpus=fuzz/corpus/$target
mkdir -p "$corpus" "fuzz/regressions/$target"
FUZZ_SEED_DIR="$root/fuzz/corpus" FUZZ_TARGET="$target" \
    cargo test -q --release -p ember --test fuzz_regressions -- --ignored --exact write_fuzz_seeds
if [ "$target" = gguf_reader ]; then
    GGUF_SEED_DIR="$root/$corpus" cargo test -q --release -p ember --test gguf_fuzz_smoke -- --ignored --exact write_fuzz_seeds
fi

# Its own build folder (sanitizer flags), even where CARGO_TARGET_DIR is set.
cargo +nightly fuzz run --target-dir "${FUZZ_TARGET_DIR:-fuzz/target}" "$target" "$corpus" "fuzz/regressions/$target" -- \
    -max_total_time="$secs" -malloc_limit_mb=2048 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 "${flags[@]}" "$@"
