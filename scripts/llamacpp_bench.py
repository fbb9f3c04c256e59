#!/usr/bin/env python3
"""llama.cpp timing through llama-cpp-python, measured like `ember bench`:
random token ids, one warm-up, then per repetition pp (one eval of the
whole prompt, n_batch = prompt length) and tg (single-token evals);
prints one JSON object (medians, load time, peak RSS of this process)."""
import argparse, json, random, resource, statistics, time

from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("-m", required=True)
ap.add_argument("-p", type=int, default=512)
ap.add_argument("-n", type=int, default=128)
ap.add_argument("-t", type=int, default=2)
ap.add_argument("-r", type=int, default=3)
a = ap.parse_args()

t0 = time.perf_counter()
llm = Llama(model_path=a.m, n_ctx=a.p + a.n, n_batch=max(a.p, 1), n_ubatch=max(a.p, 1),
            n_threads=a.t, n_threads_batch=a.t, verbose=False)
load_ms = (time.perf_counter() - t0) * 1e3
rng = random.Random(1)
nv = llm.n_vocab()
prompt = [rng.randrange(nv) for _ in range(a.p)]
gen = [rng.randrange(nv) for _ in range(a.n)]
pp, tg = [], []
for rep in range(a.r + 1):  # rep 0: warm-up
    if a.p:
        llm.reset()
        t = time.perf_counter(); llm.eval(prompt); s = time.perf_counter() - t
        if rep: pp.append(a.p / s)
    if a.n:
        llm.reset()
        t = time.perf_counter()
        for tok in gen:
            llm.eval([tok])
        s = time.perf_counter() - t
        if rep: tg.append(a.n / s)
med = lambda v: statistics.median(v) if v else 0.0
print(json.dumps({"pp_tps": med(pp), "tg_tps": med(tg), "pp_tps_all": pp, "tg_tps_all": tg,
                  "load_ms": load_ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "threads": a.t, "n_prompt": a.p, "n_gen": a.n, "reps": a.r}))
