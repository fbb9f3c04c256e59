#!/usr/bin/env python3
"""Prints a GGUF's weight types by share of bytes, e.g. "Q8_0 73%, Q5_0 18%, Q4_K 5%, Q6_K 4%"
(types under 1% left out). Needs the `gguf` package (gguf-py)."""
import collections
import sys

from gguf import GGUFReader

r = GGUFReader(sys.argv[1])
by = collections.Counter()
for t in r.tensors:
    if len(t.shape) >= 2:
        by[t.tensor_type.name] += int(t.n_bytes)
total = sum(by.values()) or 1
print(", ".join(f"{k} {100 * v / total:.0f}%" for k, v in by.most_common() if v / total >= 0.01))
