"""What the fixture generators (gen-arch-fixture.py, gen-arch-quant-fixture.py) share: llama.cpp
driven through llama-cpp-python the way ../shared/reference/arch/README.md describes it (CPU,
1 thread, n_ctx 256, n_batch 512, logits_all, no flash attention, f16 or f32 KV cache), its log
collected (print_info), and the GGUF metadata/tensor listings the fixture JSONs carry.
Imported from the scripts' own directory; run with the llama-cpp-python venv."""

import ctypes
from pathlib import Path

import gguf
import numpy as np
import llama_cpp
from llama_cpp import Llama

# llama.cpp's log lines, collected by the callback below (print_info among them).
LOG: list[str] = []


@llama_cpp.llama_log_callback
def _log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    LOG.append(text.decode("utf-8", errors="replace"))


llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))


def ggml_build() -> dict:
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_version.restype = ctypes.c_char_p
    lib.ggml_commit.restype = ctypes.c_char_p
    return {"ggml_commit": lib.ggml_commit().decode(), "ggml_version": lib.ggml_version().decode()}


def load(path: Path, kv_f32: bool) -> Llama:
    kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if kv_f32 else {}
    return Llama(model_path=str(path), n_ctx=256, n_batch=512, n_threads=1, n_threads_batch=1,
                 logits_all=True, flash_attn=False, verbose=False, seed=0, **kv)


def batch_logits(llm: Llama, ids: list[int]) -> np.ndarray:
    """All ids in one llama_decode."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def decode_logits(llm: Llama, ids: list[int]) -> np.ndarray:
    """One llama_decode per id."""
    llm.reset()
    for i in ids:
        llm.eval([i])
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def gguf_kv(path: Path) -> dict:
    """Every metadata key but the tokenizer arrays."""
    r = gguf.GGUFReader(str(path))
    kv = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        if k.startswith("tokenizer.ggml.") and f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        kv[k] = jsonable(f.contents())
    return kv


def tensors_ne(path: Path) -> list:
    r = gguf.GGUFReader(str(path))
    return [[t.name, t.tensor_type.name, [int(x) for x in t.shape]] for t in r.tensors]
