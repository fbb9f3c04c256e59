#!/usr/bin/env bash
# Two builds of Ember on the same GGUF files, same threads, run alternately
# (ROUNDS rounds of: `ember bench` of build A, then of build B), then a markdown
# table of the medians and the ratios B/A. For "did this change keep the
# speed": build the previous commit into its own target directory, e.g.
#
#   git worktree add /tmp/before HEAD~1
#   CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p ember-cli --manifest-path /tmp/before/Cargo.toml
#   scripts/bench-builds.sh /tmp/before-target/release/ember target/release/ember MODEL.gguf…
#
# Never part of the test suite: wall-clock numbers depend on the machine and its
# load (run it on an idle machine).
#   env: THREADS (2) PP (512) TG (128) REPS (3, per round) ROUNDS (3)
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 EMBER_A EMBER_B MODEL.gguf…" >&2
    exit 2
fi
A=$1; B=$2; shift 2
T=${THREADS:-2}; P=${PP:-512}; N=${TG:-128}; R=${REPS:-3}; ROUNDS=${ROUNDS:-3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for m in "$@"; do
    for r in $(seq "$ROUNDS"); do
        for side in a b; do
            bin=$A; [ "$side" = b ] && bin=$B
            echo "[$(basename "$m")] round $r: $side ($bin)" >&2
            "$bin" bench -m "$m" -p "$P" -n "$N" -t "$T" -r "$R" --json >> "$tmp/$(basename "$m").$side"
        done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$tmp" "$T" "$P" "$N" "$A" "$B" "$@" <<'PY'
import json, os, statistics, sys
tmp, t, p, n, a, b, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:]
def load(path):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    pp = statistics.median([x for r in runs for x in r["pp_tps_all"]] or [0])
    tg = statistics.median([x for r in runs for x in r["tg_tps_all"]] or [0])
    return pp, tg
print(f"threads {t}, pp{p} / tg{n}; A = {a}, B = {b}; medians over all repetitions of all rounds\n")
print("| model | test | A t/s | B t/s | B/A |")
print("| --- | --- | ---: | ---: | ---: |")
for m in models:
    f = os.path.basename(m)
    (app, atg), (bpp, btg) = load(f"{tmp}/{f}.a"), load(f"{tmp}/{f}.b")
    r = lambda x, y: f"{x / y:.3f}" if y else "n/a"
    print(f"| {f} | pp{p} | {app:.2f} | {bpp:.2f} | {r(bpp, app)} |")
    print(f"| {f} | tg{n} | {atg:.2f} | {btg:.2f} | {r(btg, atg)} |")
PY
