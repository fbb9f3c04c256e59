#!/usr/bin/env python3
"""The CPU path's speed in the browser, SIMD128 against the scalar kernels (docs/WEB.md's
table): the demo page (web/dist, from scripts/build-web.sh) in headless Chromium with
?autorun=1&backend=cpu, and with &scalar=1, alternately, RUNS times each per model; prints each
run's prompt and generation tok/s (the page's EMBER_DONE line) and a Markdown table of the
medians. The server and the DevTools client are web_test.py's.

  python3 scripts/web_bench.py [--runs 3] [--n 64] [--kernels scalar,simd128] [--dist web/dist] MODEL.gguf…

(--dist: another build's page, e.g. an older commit's, to compare with.)
"""
import argparse
import os
import shutil
import statistics
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from web_test import Browser, serve  # noqa: E402

# ~70 tokens of plain prose (the prompt's tok/s needs more than a few tokens to mean much).
PROMPT = ("The old lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a "
          "lantern and a notebook in which he wrote down the ships he saw, the colour of the sea and "
          "the direction of the wind. One night, a storm rolled in from the west, and far out on the "
          "water he saw a light that did not belong to any ship he knew. He")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=64, help="tokens to generate")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--kernels", default="scalar,simd128", help="the kernel tables to run, in this order per round")
    ap.add_argument("--dist", default="web/dist", help="the page to serve (scripts/build-web.sh's output)")
    ap.add_argument("models", nargs="+", help="GGUF files, all in one directory")
    a = ap.parse_args()

    dirs = {os.path.dirname(os.path.abspath(m)) for m in a.models}
    if len(dirs) != 1:
        sys.exit("web_bench: the models must be in one directory")
    port = serve(a.dist, dirs.pop())
    base = f"http://127.0.0.1:{port}/index.html"
    browser = Browser(a.chromium)
    rows = []
    try:
        for model in a.models:
            name = os.path.basename(model)
            got = {k: [] for k in a.kernels.split(",")}
            for run in range(a.runs):
                for kernels in got:
                    q = {"autorun": 1, "model": f"/models/{name}", "backend": "cpu", "prompt": PROMPT, "n": a.n, "temp": 0, "cache": 0}
                    if kernels == "scalar":
                        q["scalar"] = 1
                    kind, r = browser.run_page(f"{base}?{urllib.parse.urlencode(q)}", a.timeout)
                    if kind != "EMBER_DONE" or r.get("kernels") != kernels:
                        sys.exit(f"web_bench: {name} {kernels}: {kind} {r.get('error')} (kernels {r.get('kernels')})")
                    got[kernels].append((r["prompt_tps"], r["gen_tps"]))
                    print(f"{name} {kernels} run {run + 1}: prompt {r['prompt_tokens']} tokens {r['prompt_tps']:.1f} tok/s, "
                          f"generation {r['generated_tokens']} tokens {r['gen_tps']:.1f} tok/s", flush=True)
            for kernels, v in got.items():
                rows.append((name, kernels, statistics.median(p for p, _ in v), statistics.median(g for _, g in v), v))
    finally:
        browser.close()
    print("\n| model | kernels | prompt tok/s | generation tok/s | runs (prompt / gen) |\n|---|---|---|---|---|")
    for name, kernels, p, g, v in rows:
        print(f"| {name} | {kernels} | {p:.1f} | {g:.1f} | {', '.join(f'{x:.1f}/{y:.1f}' for x, y in v)} |")


if __name__ == "__main__":
    main()
