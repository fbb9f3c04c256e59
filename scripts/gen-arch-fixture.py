#!/usr/bin/env python3
"""Tiny random-weight arch fixtures with the logits llama.cpp computes on them.

For each ARCH given on the command line (implemented: olmo2), writes to --out,
with NAME = the fixture name (= ARCH for now):

    NAME.gguf               float32 weights, numpy default_rng(seed) normals
    NAME.logits.f32         llama.cpp's logits, all 40 ids in one llama_decode,
                            f16 KV cache (the defaults)
    NAME.kvf32.logits.f32   the same with type_k = type_v = F32
    NAME.json               ids, hparams, noise figures, gguf_kv, tensors_ne (name,
                            ggml type, ne) and llama.cpp's print_info, like the other
                            fixtures' JSON

The recipe is that of shared/reference/arch/README.md (the fixtures in
tests/fixtures/arch were made with it):
  - the 40 ids: [1] + 39 ids from numpy default_rng(20250101) in [3, 512);
  - the 512-token SentencePiece vocab ("llama" tokenizer model). It is read from
    tests/fixtures/arch/llama.gguf (tokens, scores, token types), so every
    fixture shares it byte for byte;
  - weights: default_rng(seed) normals; linear layers gain/sqrt(n_in) with gain
    1.5 for q/k, 2 for an untied output and 1 otherwise; norms 1 + 0.1 N(0,1);
    token_embd N(0,1);
  - context_length 256, general.file_type 0 (ALL_F32);
  - llama.cpp settings: n_threads = n_threads_batch = 1, n_ctx 256, n_batch 512,
    logits_all, flash attention off, f16 KV cache (and f32 for the kvf32 twin).
Logits layout: little-endian float32 [n_tokens, n_vocab], row i after ids[0..=i].

Determinism: the GGUF is written twice and compared, and the batch logits are
computed twice and compared, so reruns reproduce every file byte for byte.

Noise figures (max |Δlogit|): decode_vs_batch (one llama_decode per id vs all at
once; f16 and f32 KV), kv_f32_vs_default_f16, and the numpy forward pass of this
script (numpy_forward, float64, written from the GGUF's tensors alone) vs both
logit files, plus a variant that rounds Q, K, V and the softmax probabilities to
f16 as llama.cpp's non-flash attention with an f16 KV cache does.

--check additionally runs numpy_forward in float32 on the written fixture and
prints its max |Δ| vs NAME.kvf32.logits.f32 (a cross-check, not a reference).

Adding an arch: write a builder (see build_olmo2) that returns the hparams,
the metadata keys and the tensors in GGUF order, add a numpy forward for it,
and register both in ARCHS.

Usage (llama-cpp-python 0.3.36 with gguf and numpy):
    ~/.cache/ember/llamacpp-venv/bin/python scripts/gen-arch-fixture.py olmo2 \\
        [--out tests/fixtures/arch] [--check]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import llama_cpp
from llama_cpp import Llama

from llamacpp_fixture import LOG, batch_logits, decode_logits, ggml_build, gguf_kv, load, tensors_ne

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "arch"
VOCAB_SRC = FIXTURES / "llama.gguf"

N_VOCAB = 512
N_CTX_TRAIN = 256
IDS_SEED = 20250101
N_IDS = 40

LOGITS_LAYOUT = ("little-endian float32, shape [n_tokens, n_vocab], row-major; row i = logits for "
                 "the position of ids[i] (after seeing ids[0..=i])")


def fixture_ids() -> list[int]:
    rng = np.random.default_rng(IDS_SEED)
    return [1] + [int(x) for x in rng.integers(3, N_VOCAB, size=N_IDS - 1)]


# ---------------------------------------------------------------------------
# vocabulary

def read_vocab(path: Path) -> tuple[list[bytes], list[float], list[int]]:
    r = gguf.GGUFReader(str(path))
    tok = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(tok.parts[i]) for i in tok.data]
    scores = [float(x) for x in r.fields["tokenizer.ggml.scores"].contents()]
    types = [int(x) for x in r.fields["tokenizer.ggml.token_type"].contents()]
    assert len(tokens) == len(scores) == len(types) == N_VOCAB, len(tokens)
    return tokens, scores, types


def add_vocab(w: gguf.GGUFWriter) -> None:
    tokens, scores, types = read_vocab(VOCAB_SRC)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


# ---------------------------------------------------------------------------
# weights

class Weights:
    """default_rng(seed) normals, drawn in the order tensors are added."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tensors: list[tuple[str, np.ndarray]] = []

    def linear(self, name: str, n_in: int, n_out: int, gain: float = 1.0) -> np.ndarray:
        # numpy shape [n_out, n_in] = ggml ne {n_in, n_out}; y = W @ x
        w = (self.rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))).astype(np.float32)
        self.tensors.append((name, w))
        return w

    def norm(self, name: str, n: int) -> np.ndarray:
        w = (1.0 + 0.1 * self.rng.standard_normal(n)).astype(np.float32)
        self.tensors.append((name, w))
        return w

    def embedding(self, name: str, n_embd: int, n_vocab: int, std: float = 1.0) -> np.ndarray:
        w = (self.rng.standard_normal((n_vocab, n_embd)) * std).astype(np.float32)
        self.tensors.append((name, w))
        return w


# ---------------------------------------------------------------------------
# olmo2

def build_olmo2() -> dict:
    arch = "olmo2"
    hp = {
        "n_vocab": N_VOCAB,
        "n_ctx_train": N_CTX_TRAIN,
        "rms_eps": 1e-6,
        "arch": arch,
        "n_embd": 64,
        "n_layer": 2,
        "n_ff": 160,
        "n_head": 4,
        "n_head_kv": 2,
        "rope_base": 500000.0,
        "tied": False,
        "qk_norm": "full width (q over n_head*head_dim, k over n_head_kv*head_dim), before RoPE",
        "pre_norms": False,
        "post_norms": True,
        "llama_cpp_fixed": {
            "head_dim": "n_embd/n_head (no key_length/value_length keys read)",
            "kq_scale": "1/sqrt(head_dim)",
            "ffn_act": "silu, gated (gate * up)",
            "layer": "h = x + post_attention_norm(Wo attn(rope(q_norm(Wq x)), rope(k_norm(Wk x)), Wv x)); "
                     "out = h + post_ffw_norm(ffn(h))",
        },
    }
    seed = 13
    E, L, F = hp["n_embd"], hp["n_layer"], hp["n_ff"]
    H, HKV = hp["n_head"], hp["n_head_kv"]
    D = E // H
    w = Weights(seed)
    w.embedding("token_embd.weight", E, N_VOCAB)
    w.norm("output_norm.weight", E)
    w.linear("output.weight", E, N_VOCAB, gain=2.0)
    for i in range(L):
        p = f"blk.{i}."
        w.linear(p + "attn_q.weight", E, H * D, gain=1.5)
        w.linear(p + "attn_k.weight", E, HKV * D, gain=1.5)
        w.linear(p + "attn_v.weight", E, HKV * D)
        w.norm(p + "attn_q_norm.weight", H * D)
        w.norm(p + "attn_k_norm.weight", HKV * D)
        w.linear(p + "attn_output.weight", H * D, E)
        w.norm(p + "post_attention_norm.weight", E)
        w.linear(p + "ffn_gate.weight", E, F)
        w.linear(p + "ffn_up.weight", E, F)
        w.linear(p + "ffn_down.weight", F, E)
        w.norm(p + "post_ffw_norm.weight", E)

    def kv(wr: gguf.GGUFWriter) -> None:
        wr.add_name(f"ember-fixture-{arch}")
        wr.add_file_type(gguf.LlamaFileType.ALL_F32)
        wr.add_context_length(N_CTX_TRAIN)
        wr.add_embedding_length(E)
        wr.add_block_count(L)
        wr.add_feed_forward_length(F)
        wr.add_head_count(H)
        wr.add_head_count_kv(HKV)
        wr.add_layer_norm_rms_eps(hp["rms_eps"])
        wr.add_vocab_size(N_VOCAB)
        wr.add_rope_dimension_count(D)
        wr.add_rope_freq_base(hp["rope_base"])

    return {"name": arch, "arch": arch, "hparams": hp, "seed": seed, "tensors": w.tensors, "kv": kv,
            "forward": forward_olmo2}


# ---------------------------------------------------------------------------
# numpy forward passes (written from the GGUF's tensors and hparams alone)

def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_neox(x: np.ndarray, pos: np.ndarray, base: float, n_rot: int) -> np.ndarray:
    """x [T, heads, D]; NEOX: element i pairs with i + n_rot/2."""
    dt = x.dtype
    half = n_rot // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # [T, half]
    c = np.cos(ang).astype(dt)[:, None, :]
    s = np.sin(ang).astype(dt)[:, None, :]
    x0, x1 = x[..., :half], x[..., half:n_rot]
    out = x.copy()
    out[..., :half] = x0 * c - x1 * s
    out[..., half:n_rot] = x0 * s + x1 * c
    return out


def f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(x.dtype)


def attention(q, k, v, scale, f16_round=False):
    """q [T, H, D], k/v [T, HKV, D]; causal; GQA by head // (H / HKV)."""
    T, H, D = q.shape
    HKV = k.shape[1]
    if f16_round:
        q, k, v = f16(q), f16(k), f16(v)
    out = np.empty((T, H, v.shape[2]), dtype=q.dtype)
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for h in range(H):
        g = h // (H // HKV)
        s = (q[:, h, :] @ k[:, g, :].T) * q.dtype.type(scale)
        s = np.where(mask, -np.inf, s)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p = p / p.sum(axis=1, keepdims=True)
        if f16_round:
            p = f16(p)
        out[:, h, :] = p @ v[:, g, :]
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward_olmo2(t: dict, hp: dict, ids: list[int], dtype=np.float64, f16_round=False) -> np.ndarray:
    E, L, H, HKV = hp["n_embd"], hp["n_layer"], hp["n_head"], hp["n_head_kv"]
    D = E // H
    eps = hp["rms_eps"]
    T = len(ids)
    pos = np.arange(T)
    g = {k: v.astype(dtype) for k, v in t.items()}
    x = g["token_embd.weight"][ids]  # [T, E]
    for i in range(L):
        p = f"blk.{i}."
        q = x @ g[p + "attn_q.weight"].T
        k = x @ g[p + "attn_k.weight"].T
        v = x @ g[p + "attn_v.weight"].T
        q = rms_norm(q, g[p + "attn_q_norm.weight"], eps)  # over all H*D
        k = rms_norm(k, g[p + "attn_k_norm.weight"], eps)  # over all HKV*D
        q = rope_neox(q.reshape(T, H, D), pos, hp["rope_base"], D)
        k = rope_neox(k.reshape(T, HKV, D), pos, hp["rope_base"], D)
        v = v.reshape(T, HKV, D)
        a = attention(q, k, v, 1.0 / np.sqrt(D), f16_round).reshape(T, H * D)
        a = a @ g[p + "attn_output.weight"].T
        x = x + rms_norm(a, g[p + "post_attention_norm.weight"], eps)
        f = silu(x @ g[p + "ffn_gate.weight"].T) * (x @ g[p + "ffn_up.weight"].T)
        f = f @ g[p + "ffn_down.weight"].T
        x = x + rms_norm(f, g[p + "post_ffw_norm.weight"], eps)
    x = rms_norm(x, g["output_norm.weight"], eps)
    return x @ g["output.weight"].T


ARCHS = {"olmo2": build_olmo2}


# ---------------------------------------------------------------------------
# GGUF, llama.cpp

def write_gguf(spec: dict, path: Path) -> None:
    w = gguf.GGUFWriter(str(path), spec["arch"])
    spec["kv"](w)
    add_vocab(w)
    for name, arr in spec["tensors"]:
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_tensors(path: Path) -> dict:
    """The GGUF's tensors as numpy arrays in [ne1, ne0] (= [n_out, n_in]) order."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, (t.name, t.tensor_type)
        shape = [int(x) for x in reversed(t.shape)]
        out[t.name] = np.array(t.data, dtype=np.float32).reshape(shape)
    return out


def rope_type_name(llm: Llama) -> str:
    rt = llama_cpp.llama_model_rope_type(llm.model)
    return {llama_cpp.LLAMA_ROPE_TYPE_NORM: "NORM (adjacent pairs)",
            llama_cpp.LLAMA_ROPE_TYPE_NEOX: "NEOX (half split)"}.get(rt, f"rope type {rt}")


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def make(arch: str, out: Path) -> None:
    spec = ARCHS[arch]()
    name = spec["name"]
    ids = fixture_ids()
    hp = dict(spec["hparams"])

    gguf_path = out / f"{name}.gguf"
    write_gguf(spec, gguf_path)
    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "again.gguf"
        write_gguf(ARCHS[arch](), again)
        if again.read_bytes() != gguf_path.read_bytes():
            sys.exit(f"{name}: two GGUF writes differ")

    LOG.clear()
    llm = load(gguf_path, kv_f32=False)
    print_info = [l.split("print_info: ", 1)[1].rstrip() for l in "".join(LOG).splitlines(True)
                  if l.startswith("print_info: ")]
    info = {l.split("=", 1)[0].strip(): l.split("=", 1)[1].strip() for l in print_info if "=" in l}
    hp["head_dim_k"] = int(info["n_embd_head_k"])
    hp["head_dim_v"] = int(info["n_embd_head_v"])
    hp["n_rot"] = int(info["n_rot"])
    hp["rope_type"] = rope_type_name(llm)
    logits = batch_logits(llm, ids)
    if not np.array_equal(logits, batch_logits(llm, ids)):
        sys.exit(f"{name}: two batch evaluations differ")
    decode = decode_logits(llm, ids)
    llm.close()
    llm = load(gguf_path, kv_f32=True)
    logits_kv32 = batch_logits(llm, ids)
    decode_kv32 = decode_logits(llm, ids)
    llm.close()
    assert logits.shape == (len(ids), N_VOCAB), logits.shape
    if not np.isfinite(logits).all() or not np.isfinite(logits_kv32).all():
        sys.exit(f"{name}: non-finite logits")

    logits.astype("<f4").tofile(out / f"{name}.logits.f32")
    logits_kv32.astype("<f4").tofile(out / f"{name}.kvf32.logits.f32")

    t = read_tensors(gguf_path)
    ref64 = spec["forward"](t, hp, ids, np.float64)
    ref64_f16 = spec["forward"](t, hp, ids, np.float64, f16_round=True)
    noise = {
        "decode_vs_batch": max_abs(decode, logits),
        "decode_vs_batch_kv_f32": max_abs(decode_kv32, logits_kv32),
        "kv_f32_vs_default_f16": max_abs(logits_kv32, logits),
        "numpy_f64_vs_logits_kv_f32": max_abs(ref64, logits_kv32),
        "numpy_f64_vs_logits": max_abs(ref64, logits),
        "numpy_f64_f16_attention_rounding_vs_logits": max_abs(ref64_f16, logits),
    }
    meta = {
        "arch": spec["arch"],
        "file": gguf_path.name,
        "files": {"logits": f"{name}.logits.f32", "logits_kv_f32": f"{name}.kvf32.logits.f32"},
        "logits_layout": LOGITS_LAYOUT,
        "ids": ids,
        "n_tokens": len(ids),
        "n_vocab": N_VOCAB,
        "hparams": hp,
        "weights_seed": spec["seed"],
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
        "generator": "scripts/gen-arch-fixture.py",
    }
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {gguf_path.stat().st_size} B, rope {hp['rope_type']}, logits std {meta['logits_std']:.4f}, "
          f"max |logit| {meta['logits_max_abs']:.3f}")
    print(f"  noise {json.dumps(noise)}")


def check(arch: str, out: Path) -> float:
    spec = ARCHS[arch]()
    name = spec["name"]
    meta = json.loads((out / f"{name}.json").read_text())
    ids = meta["ids"]
    t = read_tensors(out / f"{name}.gguf")
    ref = spec["forward"](t, meta["hparams"], ids, np.float32)
    kv32 = np.fromfile(out / f"{name}.kvf32.logits.f32", dtype="<f4").reshape(len(ids), meta["n_vocab"])
    d = max_abs(ref, kv32)
    print(f"{name}: numpy float32 forward vs {name}.kvf32.logits.f32: max |d| = {d:.3g} "
          f"(logit std {kv32.std():.3f}); argmax agree {int((ref.argmax(1) == kv32.argmax(1)).sum())}/{len(ids)}")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archs", nargs="+", choices=sorted(ARCHS))
    ap.add_argument("--out", type=Path, default=FIXTURES)
    ap.add_argument("--check", action="store_true",
                    help="after writing, run the numpy float32 forward and compare with the kvf32 logits")
    ap.add_argument("--check-only", action="store_true", help="only the --check comparison, write nothing")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for arch in a.archs:
        if not a.check_only:
            make(arch, a.out)
        if a.check or a.check_only:
            check(arch, a.out)


if __name__ == "__main__":
    main()
