#!/usr/bin/env bash
# Ember vs llama.cpp on the same GGUF files, same threads, run alternately
# (ROUNDS rounds of: ember bench, then llama.cpp via llama-cpp-python), then a
# markdown table of the medians and the ratios Ember/llama.cpp. Never part of
# the test suite: wall-clock numbers depend on the machine and its load.
#
# Usage: scripts/bench-vs-llamacpp.sh [MODEL.gguf…]
#   Without arguments: the files of the CPU-speed table, as users get them —
#   SmolLM2-135M Q4_1, the MiniCPM-2B shape in Q4_0 (ours) and in Q4_K_M (made
#   by llama.cpp's own quantizer from an F16 file of ours), Gemma-3-270M Q4_K_M,
#   Qwen2.5-Coder 0.5B and 1.5B Q4_K_M (fetched with `ember pull`, generated
#   into ~/.cache/ember/bench).
#   env: THREADS (2) PP (512) TG (128) REPS (3, per round) ROUNDS (2)
#        LLAMACPP_VENV (~/.cache/ember/llamacpp-venv)
# llama-cpp-python 0.3.36 is compiled from PyPI into its own venv on first use
# (~15 min on 2 cores; cached). Never a native build: some VMs advertise AMX
# without granting it, and a native llama.cpp then dies of a general
# protection fault on batches > 1 token. So GGML_NATIVE=OFF with the AVX2 /
# AVX-512 flags this CPU really has, AMX off.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${THREADS:-2}; P=${PP:-512}; N=${TG:-128}; R=${REPS:-3}; ROUNDS=${ROUNDS:-2}
VENV=${LLAMACPP_VENV:-$HOME/.cache/ember/llamacpp-venv}
LLAMACPP_VERSION=0.3.36

flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c)"
CMAKE_ARGS+=" -DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_VBMI=$(has avx512vbmi)"
CMAKE_ARGS+=" -DGGML_AVX512_BF16=$(has avx512_bf16) -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if ! "$VENV/bin/python" -c "import llama_cpp, gguf" 2>/dev/null; then
    echo "installing llama-cpp-python $LLAMACPP_VERSION into $VENV (compiles llama.cpp: ~15 min on 2 cores)…" >&2
    echo "  CMAKE_ARGS=$CMAKE_ARGS" >&2
    python3 -m venv "$VENV"
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/pip" install -q "llama-cpp-python==$LLAMACPP_VERSION" gguf numpy
fi
cargo build --release -q -p ember-cli
EMBER=${CARGO_TARGET_DIR:-target}/release/ember
LLVER=$("$VENV/bin/python" -c "import llama_cpp; print(llama_cpp.__version__)")

if [ $# -eq 0 ]; then
    bench="$HOME/.cache/ember/bench"
    models="${EMBER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/models"
    for m in smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do "$EMBER" pull "$m" >&2; done
    scripts/gen-bench-models.sh "$bench" minicpm2b-q4_0 >&2
    if [ ! -f "$bench/minicpm2b-q4_k_m.gguf" ]; then
        scripts/gen-bench-models.sh "$bench" minicpm2b-f16 >&2
        echo "quantizing minicpm2b-f16 to Q4_K_M with llama.cpp's own quantizer…" >&2
        "$VENV/bin/python" scripts/llamacpp_quantize.py "$bench/minicpm2b-f16.gguf" "$bench/minicpm2b-q4_k_m.gguf" Q4_K_M
        rm -f "$bench/minicpm2b-f16.gguf"
    fi
    set -- "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$bench/minicpm2b-q4_0.gguf" "$models/gemma-3-270m-q4_k_m.gguf" \
        "$models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" "$models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" "$bench/minicpm2b-q4_k_m.gguf"
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for m in "$@"; do
    "$VENV/bin/python" scripts/gguf_type_mix.py "$m" > "$tmp/$(basename "$m").mix" || true
    for r in $(seq "$ROUNDS"); do
        echo "[$(basename "$m")] round $r: ember" >&2
        "$EMBER" bench -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" --json >> "$tmp/$(basename "$m").ember"
        echo "[$(basename "$m")] round $r: llama.cpp" >&2
        "$VENV/bin/python" scripts/llamacpp_bench.py -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" >> "$tmp/$(basename "$m").llama"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$tmp" "$T" "$P" "$N" "$LLVER" "$@" <<'PY'
import json, os, statistics, sys
tmp, t, p, n, ver, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
def load(path):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    pp = statistics.median([x for r in runs for x in r["pp_tps_all"]] or [0])
    tg = statistics.median([x for r in runs for x in r["tg_tps_all"]] or [0])
    return pp, tg, max(r["peak_rss_mb"] for r in runs), statistics.median(r["load_ms"] for r in runs), runs[0].get("kernels", "")
print(f"threads {t}, pp{p} / tg{n}, llama-cpp-python {ver}; medians over all repetitions of all rounds\n")
print("| model | weight types (bytes) | test | ember t/s | llama.cpp t/s | ratio | ember RSS MiB | llama.cpp RSS MiB | RSS ratio |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for m in models:
    b = os.path.basename(m)
    epp, etg, erss, eload, k = load(f"{tmp}/{b}.ember")
    lpp, ltg, lrss, lload, _ = load(f"{tmp}/{b}.llama")
    r = lambda a, c: f"{a / c:.2f}" if c else "n/a"
    mix = open(f"{tmp}/{b}.mix").read().strip() if os.path.exists(f"{tmp}/{b}.mix") else ""
    print(f"| {b} | {mix} | pp{p} | {epp:.2f} | {lpp:.2f} | {r(epp, lpp)} | {erss:.0f} | {lrss:.0f} | {r(erss, lrss)} |")
    print(f"| {b} | | tg{n} | {etg:.2f} | {ltg:.2f} | {r(etg, ltg)} | | | |")
print(f"\nember kernels: {k}")
PY
