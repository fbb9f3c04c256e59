#!/usr/bin/env bash
# Ember vs llama.cpp on the same GGUF files, same threads, run alternately
# (ROUNDS rounds of: ember bench, then llama.cpp via llama-cpp-python), then a
# markdown table of the medians and the ratios Ember/llama.cpp. Never part of
# the test suite: wall-clock numbers depend on the machine and its load.
#
# Usage: scripts/bench-vs-llamacpp.sh MODEL.gguf…
#   env: THREADS (2) PP (512) TG (128) REPS (3, per round) ROUNDS (2)
#        LLAMACPP_VENV (~/.cache/ember/llamacpp-venv)
# llama-cpp-python is installed from PyPI into its own venv on first use
# (compiling llama.cpp takes ~15 min on 2 cores; cached afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 MODEL.gguf…" >&2; exit 2; }
T=${THREADS:-2}; P=${PP:-512}; N=${TG:-128}; R=${REPS:-3}; ROUNDS=${ROUNDS:-2}
VENV=${LLAMACPP_VENV:-$HOME/.cache/ember/llamacpp-venv}

if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "installing llama-cpp-python into $VENV (compiles llama.cpp: ~15 min on 2 cores)…" >&2
    python3 -m venv "$VENV"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/pip" install -q llama-cpp-python
fi
cargo build --release -q -p ember-cli
EMBER=${CARGO_TARGET_DIR:-target}/release/ember
LLVER=$("$VENV/bin/python" -c "import llama_cpp; print(llama_cpp.__version__)")

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for m in "$@"; do
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
print("| model | test | ember t/s | llama.cpp t/s | ratio | ember RSS MiB | llama.cpp RSS MiB | RSS ratio |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for m in models:
    b = os.path.basename(m)
    epp, etg, erss, eload, k = load(f"{tmp}/{b}.ember")
    lpp, ltg, lrss, lload, _ = load(f"{tmp}/{b}.llama")
    r = lambda a, c: f"{a / c:.2f}" if c else "n/a"
    print(f"| {b} | pp{p} | {epp:.2f} | {lpp:.2f} | {r(epp, lpp)} | {erss:.0f} | {lrss:.0f} | {r(erss, lrss)} |")
    print(f"| {b} | tg{n} | {etg:.2f} | {ltg:.2f} | {r(etg, ltg)} | | | |")
print(f"\nember kernels: {k}")
PY
