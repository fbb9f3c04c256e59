#!/usr/bin/env python3
"""Golden bytes of the quantized KV cache's stored rows (runtime/src/kv_cache.rs tests).

Takes the 1024 f32 values of tests/fixtures/quant_golden/F32.f32 (a real tensor's row),
scaled by 30 to the magnitudes of K/V activations, and quantizes them with gguf-py's
`quantize_blocks` of Q8_0 and Q4_0 (numpy ports of ggml's `quantize_row_q8_0_ref` /
`quantize_row_q4_0_ref`, bit-exact to them by gguf-py's own tests), an implementation
independent of ours. Writes to tests/fixtures/quant_golden/:

    KV_IN.f32     the scaled input (little-endian float32, 4 rows of 256)
    KV_Q8_0.bin   its q8_0 blocks
    KV_Q4_0.bin   its q4_0 blocks

Usage:  ~/.cache/ember/llamacpp-venv/bin/python scripts/gen_kv_quant_golden.py   (needs gguf, numpy)
"""
from pathlib import Path

import numpy as np
from gguf import quants

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "quant_golden"
x = np.fromfile(OUT / "F32.f32", dtype="<f4") * np.float32(30)
x.astype("<f4").tofile(OUT / "KV_IN.f32")
for name, q in [("Q8_0", quants.Q8_0), ("Q4_0", quants.Q4_0)]:
    blocks = q.quantize_blocks(x.reshape(-1, 32).astype(np.float32))
    blocks.astype(np.uint8).tofile(OUT / f"KV_{name}.bin")
    print(name, blocks.size, "bytes")
