#!/usr/bin/env python3
"""Quantized arch fixtures: an F32 fixture quantized by llama.cpp's own
quantizer, with the logits llama.cpp computes on the result.

For each FTYPE (the part of a `LLAMA_FTYPE_MOSTLY_*` name after MOSTLY_, e.g.
IQ4_NL, IQ4_XS, Q4_K_M), writes to --out, with NAME = <src stem>_<ftype lower>:

    NAME.gguf               llama_cpp.llama_model_quantize(src, NAME.gguf,
                            llama_model_quantize_default_params()), nthread 1, no imatrix
    NAME.logits.f32         llama.cpp's logits for the source fixture's ids, all of
                            them in one llama_decode, f16 KV cache (the defaults)
    NAME.kvf32.logits.f32   the same with type_k = type_v = F32
    NAME.json               ids, hparams, noise figures, gguf_kv, tensors_ne (name,
                            ggml type, ne) and llama.cpp's print_info, like the other
                            fixtures' JSON

The settings are those of shared/reference/arch/README.md: n_threads =
n_threads_batch = 1, n_ctx 256, n_batch 512, logits_all, flash attention off.
Logits layout: little-endian float32 [n_tokens, n_vocab], row i after ids[0..=i].
The script checks that quantizing twice gives identical bytes and that two
batch evaluations give identical logits, so reruns reproduce the files.

Noise figures (max |Δlogit| over all values), measured here with llama.cpp
only: decode_vs_batch (one llama_decode per id vs all at once; f16 and f32
KV), kv_f32_vs_default_f16, and vs_unquantized_f32_fixture (the source's
logits: quantization error, not noise). The README's numpy_f64_* figures come
from a numpy forward pass that is not part of this script and are absent.

Usage (llama-cpp-python 0.3.36 with gguf and numpy, as the README's venv):
    ~/.cache/ember/llamacpp-venv/bin/python scripts/gen-arch-quant-fixture.py IQ4_NL IQ4_XS \\
        [--src /work/shared/reference/arch/llama_e256.gguf] [--out tests/fixtures/arch]
"""

import argparse
import ctypes
import json
import os
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import llama_cpp
from llama_cpp import Llama

from llamacpp_fixture import LOG, batch_logits, decode_logits, ggml_build, gguf_kv, load, tensors_ne

ROOT = Path(__file__).resolve().parent.parent


def quantize(src: Path, dst: Path, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src} -> {dst}, ftype {ftype}) returned {rc}")


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def make(src: Path, out: Path, ftype_name: str) -> None:
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}", None)
    if ftype is None:
        sys.exit(f"llama_cpp has no LLAMA_FTYPE_MOSTLY_{ftype_name}")
    name = f"{src.stem}_{ftype_name.lower()}"
    src_meta = json.loads(src.with_suffix(".json").read_text())
    ids = src_meta["ids"]
    n_vocab = src_meta["n_vocab"]

    gguf_path = out / f"{name}.gguf"
    quantize(src, gguf_path, ftype)
    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "again.gguf"
        quantize(src, again, ftype)
        if again.read_bytes() != gguf_path.read_bytes():
            sys.exit(f"{name}: two quantizer runs differ")

    LOG.clear()
    llm = load(gguf_path, kv_f32=False)
    print_info = [l.split("print_info: ", 1)[1].rstrip() for l in "".join(LOG).splitlines(True)
                  if l.startswith("print_info: ")]
    logits = batch_logits(llm, ids)
    if not np.array_equal(logits, batch_logits(llm, ids)):
        sys.exit(f"{name}: two batch evaluations differ")
    decode = decode_logits(llm, ids)
    llm.close()
    llm = load(gguf_path, kv_f32=True)
    logits_kv32 = batch_logits(llm, ids)
    decode_kv32 = decode_logits(llm, ids)
    llm.close()
    assert logits.shape == (len(ids), n_vocab), logits.shape

    logits.astype("<f4").tofile(out / f"{name}.logits.f32")
    logits_kv32.astype("<f4").tofile(out / f"{name}.kvf32.logits.f32")
    unquantized = np.fromfile(src.with_suffix(".logits.f32"), dtype="<f4").reshape(logits.shape)

    noise = {
        "decode_vs_batch": max_abs(decode, logits),
        "decode_vs_batch_kv_f32": max_abs(decode_kv32, logits_kv32),
        "kv_f32_vs_default_f16": max_abs(logits_kv32, logits),
        "vs_unquantized_f32_fixture": max_abs(logits, unquantized),
    }
    meta = {
        "arch": src_meta["arch"],
        "file": gguf_path.name,
        "files": {"logits": f"{name}.logits.f32", "logits_kv_f32": f"{name}.kvf32.logits.f32"},
        "logits_layout": src_meta["logits_layout"],
        "ids": ids,
        "n_tokens": len(ids),
        "n_vocab": n_vocab,
        "hparams": src_meta["hparams"],
        "weights_seed": src_meta.get("weights_seed"),
        "decode_vs_batch_max_abs_diff": noise["decode_vs_batch"],
        "noise_max_abs_diff": noise,
        "logits_std": float(logits.std()),
        "logits_max_abs": float(np.abs(logits).max()),
        "argmax": [int(i) for i in logits.argmax(axis=1)],
        "eval": {
            "n_ctx": 256,
            "n_batch": 512,
            "n_threads": 1,
            "n_threads_batch": 1,
            "flash_attn": False,
            "type_k": "f16",
            "type_v": "f16",
            "logits_all": True,
            "swa_full": "llama.cpp default",
            "batch_path": "all 40 ids in one llama_decode (Llama.eval)",
            "decode_path": "one llama_decode per id (Llama.eval([id]) x 40)",
            "logits_kv_f32": "same batch path with type_k = type_v = GGML_TYPE_F32",
        },
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_build": ggml_build(),
        "gguf_kv": gguf_kv(gguf_path),
        "tensors_ne": tensors_ne(gguf_path),
        "llama_cpp_print_info": print_info,
        "quantized_from": src.name,
        "ftype": f"LLAMA_FTYPE_MOSTLY_{ftype_name}",
        "quantizer": "llama_cpp.llama_model_quantize, llama_model_quantize_default_params(), nthread=1",
        "generator": "scripts/gen-arch-quant-fixture.py",
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    types = sorted({(t, n) for n, t, _ in meta["tensors_ne"]})
    print(f"{name}: {gguf_path.stat().st_size} B, noise {json.dumps(noise)}")
    for t in sorted({t for t, _ in types}):
        print(f"  {t}: {', '.join(n for tt, n in types if tt == t)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ftypes", nargs="+", help="e.g. IQ4_NL IQ4_XS Q4_K_M")
    ap.add_argument("--src", type=Path, default=Path("/work/shared/reference/arch/llama_e256.gguf"),
                    help="an F32 fixture with NAME.json and NAME.logits.f32 beside it")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "arch")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for f in a.ftypes:
        make(a.src, a.out, f.upper())


if __name__ == "__main__":
    main()
