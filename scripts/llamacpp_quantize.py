#!/usr/bin/env python3
"""Quantizes a GGUF with llama.cpp's own quantizer (llama-cpp-python's
`llama_model_quantize`), the way users' Q4_K_M … files are made.

Usage: llamacpp_quantize.py IN.gguf OUT.gguf FTYPE   (FTYPE: Q4_K_M, Q5_K_M, IQ4_XS, … as in LLAMA_FTYPE_MOSTLY_*)
"""
import sys

import llama_cpp

src, dst, ftype = sys.argv[1], sys.argv[2], sys.argv[3].upper()
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
params.nthread = 0
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
if rc != 0:
    sys.exit(f"llama_model_quantize failed ({rc})")
