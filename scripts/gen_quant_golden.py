#!/usr/bin/env python3
"""Generate the quant golden fixtures for runtime/tests/quant_golden.rs.

For each of the 15 weight formats Ember computes with, take a few rows of a
real tensor of that type, and write to tests/fixtures/quant_golden/:

    <TYPE>.bin   the raw block bytes, exactly as stored in the GGUF file
    <TYPE>.f32   what gguf-py's `gguf.quants.dequantize` makes of them
                 (little-endian float32)
    index.json   per type: n (elements), source file, tensor name, rows,
                 plus the gguf-py version used

The expected values come from gguf-py (numpy), an implementation independent
of ours; the Rust test demands a bit-exact (<= 1e-6 relative) match.

Sources: the llama.cpp-quantized tiny models under shared/reference/arch/,
those of tests/fixtures/arch/ that scripts/gen-arch-quant-fixture.py made
with llama.cpp's quantizer (IQ4_NL, IQ4_XS), and the real models
SmolLM2-135M-Instruct.Q4_1 and gemma-3-270m-q4_k_m.

F16 and BF16: no model at hand holds such a tensor, so those two fixtures are
*made here* with gguf.quants.quantize(..., F16/BF16) from an F32 tensor of
reference/arch/llama.gguf (the F32 fixture uses the same tensor, as stored).

Usage:  pip install gguf numpy
        python3 scripts/gen_quant_golden.py [--shared /work/shared] [--models ~/.cache/ember/models]
                                            [--only TYPE ...]
--only rewrites just those types' files and index entries, keeping the others.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "quant_golden"

# type -> (file, tensor, first row, number of rows). file is relative to
# {shared}/reference/arch or, with "models:", to the models directory, or
# with "fixtures:", to tests/fixtures/arch.
SOURCES = {
    "F32": ("llama.gguf", "blk.0.ffn_up.weight", 3, 16),
    "F16": ("llama.gguf", "blk.0.ffn_up.weight", 3, 16),
    "BF16": ("llama.gguf", "blk.0.ffn_up.weight", 3, 16),
    "Q4_0": ("llama_e256_q4_0.gguf", "blk.0.ffn_gate.weight", 5, 4),
    "Q4_1": ("models:SmolLM2-135M-Instruct.Q4_1.gguf", "blk.0.ffn_down.weight", 7, 1),
    "Q5_0": ("models:gemma-3-270m-q4_k_m.gguf", "blk.0.attn_k.weight", 11, 2),
    "Q5_1": ("llama_e256_q5_1.gguf", "blk.1.ffn_up.weight", 2, 4),
    "Q8_0": ("models:gemma-3-270m-q4_k_m.gguf", "token_embd.weight", 1000, 2),
    "Q2_K": ("llama_e256_q2_k.gguf", "token_embd.weight", 9, 4),
    "Q3_K": ("llama_e256_q3_k_m.gguf", "token_embd.weight", 4, 4),
    "Q4_K": ("models:gemma-3-270m-q4_k_m.gguf", "blk.0.attn_output.weight", 3, 2),
    "Q5_K": ("llama_e256_q5_k_m.gguf", "token_embd.weight", 6, 4),
    "Q6_K": ("models:gemma-3-270m-q4_k_m.gguf", "blk.0.ffn_down.weight", 1, 1),
    "IQ4_NL": ("fixtures:llama_e256_iq4_nl.gguf", "blk.0.ffn_gate.weight", 5, 4),
    "IQ4_XS": ("fixtures:llama_e256_iq4_xs.gguf", "blk.1.ffn_down.weight", 3, 2),
}

# Formats written here from F32 data rather than read from a file.
SYNTHESIZED = {"F16": T.F16, "BF16": T.BF16}


def load_tensor(path: Path, name: str):
    reader = gguf.GGUFReader(str(path))
    for t in reader.tensors:
        if t.name == name:
            return t
    sys.exit(f"{path}: no tensor {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="/work/shared")
    ap.add_argument("--models", default=os.path.expanduser("~/.cache/ember/models"))
    ap.add_argument("--only", nargs="+", choices=list(SOURCES), help="only these types (the index keeps the others)")
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    index = {"generator": "scripts/gen_quant_golden.py", "gguf_py_version": _gguf_version(), "types": {}}
    if args.only:
        old = json.loads((OUT / "index.json").read_text())
        if old["gguf_py_version"] != index["gguf_py_version"]:
            sys.exit(f"index.json was made with gguf {old['gguf_py_version']}: regenerate every type")
        index["types"] = old["types"]
    for name, (file, tensor, row0, nrows) in SOURCES.items():
        if args.only and name not in args.only:
            continue
        if file.startswith("models:"):
            path = Path(args.models) / file[len("models:"):]
        elif file.startswith("fixtures:"):
            path = ROOT / "tests" / "fixtures" / "arch" / file[len("fixtures:"):]
        else:
            path = Path(args.shared) / "reference" / "arch" / file
        t = load_tensor(path, tensor)
        rows = np.asarray(t.data)[row0:row0 + nrows]  # (rows, bytes per row) or (rows, elements)
        if name in SYNTHESIZED:
            assert t.tensor_type == T.F32, (name, t.tensor_type)
            qtype = SYNTHESIZED[name]
            raw = gguf.quants.quantize(rows.astype(np.float32), qtype)
        else:
            qtype = T[name]
            assert t.tensor_type == qtype, f"{path.name}:{tensor} is {t.tensor_type.name}, not {name}"
            raw = rows
        raw = np.ascontiguousarray(raw)
        deq = gguf.quants.dequantize(raw, qtype).astype("<f4")
        n = int(deq.size)
        assert raw.nbytes == n // gguf.GGML_QUANT_SIZES[qtype][0] * gguf.GGML_QUANT_SIZES[qtype][1]
        (OUT / f"{name}.bin").write_bytes(raw.tobytes())
        (OUT / f"{name}.f32").write_bytes(deq.tobytes())
        index["types"][name] = {
            "n": n,
            "source": path.name,
            "tensor": tensor,
            "rows": [row0, row0 + nrows],
            "row_elements": n // nrows,
            "synthesized": name in SYNTHESIZED,
        }
        print(f"{name:6} n={n:5} {raw.nbytes:6} B  <- {path.name}:{tensor} rows {row0}..{row0 + nrows}")
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


def _gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    main()
