#!/usr/bin/env python3
"""llama.cpp's perplexity of a text (llama-cpp-python), scored the way tests/fixtures/*/perplexity.json
were: consecutive windows of --ctx tokens, each window scored from its second token on.
--chunks N scores only the first N windows (llama.cpp's `--chunks`), for short checks.
Usage: llamacpp_ppl.py MODEL.gguf TEXT [--ctx 512] [--chunks N]   Prints one JSON line.
Runs in the venv scripts/fetch-llamacpp.sh (or ~/.cache/ember/llamacpp-venv) provides."""
import argparse, json, math
import numpy as np
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("text")
ap.add_argument("--ctx", type=int, default=512); ap.add_argument("--chunks", type=int, default=0)
a = ap.parse_args()
llm = Llama(model_path=a.model, n_ctx=2048, n_batch=512, logits_all=True, n_threads=2, verbose=False, seed=0)
ids = llm.tokenize(open(a.text, encoding="utf-8").read().encode("utf-8"), add_bos=True, special=False)
nll, n, chunks = 0.0, 0, 0
for s in range(0, len(ids), a.ctx):
    w = ids[s: s + a.ctx]
    if len(w) < 2 or (a.chunks and chunks == a.chunks):
        break
    llm.reset(); llm.eval(w); sc = np.array(llm.scores[: len(w)], dtype=np.float64)
    for t in range(1, len(w)):
        row = sc[t - 1]; m = row.max(); nll += m + math.log(np.exp(row - m).sum()) - row[w[t]]; n += 1
    chunks += 1
print(json.dumps({"model": a.model.split("/")[-1], "ctx": a.ctx, "chunks": chunks, "scored": n, "perplexity": math.exp(nll / n)}))
