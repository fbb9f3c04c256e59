//! Writes seeded random-weight GGUF models in the shapes we benchmark, with
//! Ember's own GGUF writer and weight quantizers:
//!
//! - `minicpm2b-q4_0`, `minicpm2b-q4_k`: MiniCPM-2B (`minicpm` architecture,
//!   n_embd 2304, 40 layers, n_ff 5760, 36 heads, vocab 122753, tied
//!   embeddings, MiniCPM-2B's embedding/residual/logit scales).
//! - `llama1b-q4_k`: a Llama-3.2-1B-shaped model (n_embd 2048, 16 layers,
//!   n_ff 8192, 32 heads, 8 KV heads, vocab 128256, tied).
//! - `smollm2-q4_0`, `smollm2-q8_0`: SmolLM2-135M's shape (`llama`, n_embd 576,
//!   30 layers, n_ff 1536, 9 heads, 3 KV heads, vocab 49152, tied): small and
//!   quick to write, for the GPU benchmark kit (scripts/gpu-bench-kit.sh).
//! - `minicpm2b-f16`: the MiniCPM-2B shape in F16, the source that
//!   `scripts/bench-vs-llamacpp.sh` hands to llama.cpp's own quantizer to make
//!   `minicpm2b-q4_k_m` the way users get their files (a Q4_K/Q6_K/Q8_0/Q5_0 mix).
//!
//! Q4_K needs rows that are a multiple of 256; MiniCPM's n_ff = 5760 is not,
//! so its `ffn_down` is Q4_0 in the Q4_K model (llama.cpp falls back to Q5_0
//! there; both engines run the same file, so the comparison stays fair).
//! The token embedding is in the model's main type. A small SentencePiece
//! vocabulary (specials, 256 byte tokens, filler pieces) is included: the
//! benchmark feeds token ids, not text.
//!
//! Usage: gen-bench-models OUT_DIR [NAME…]   (default: all)

use std::path::PathBuf;

use anyhow::{bail, Result};
use ember::gguf::{GgufWriter, Value, ValueType};
use ember::quant::{self, GgmlType};
use rayon::prelude::*;

struct Shape {
    name: &'static str,
    arch: &'static str,
    n_embd: usize,
    n_layer: usize,
    n_ff: usize,
    n_head: usize,
    n_head_kv: usize,
    n_vocab: usize,
    ty: GgmlType,
}

const MODELS: [Shape; 6] = [
    Shape {
        name: "minicpm2b-q4_0",
        arch: "minicpm",
        n_embd: 2304,
        n_layer: 40,
        n_ff: 5760,
        n_head: 36,
        n_head_kv: 36,
        n_vocab: 122753,
        ty: GgmlType::Q4_0,
    },
    Shape {
        name: "minicpm2b-q4_k",
        arch: "minicpm",
        n_embd: 2304,
        n_layer: 40,
        n_ff: 5760,
        n_head: 36,
        n_head_kv: 36,
        n_vocab: 122753,
        ty: GgmlType::Q4_K,
    },
    Shape {
        name: "minicpm2b-f16",
        arch: "minicpm",
        n_embd: 2304,
        n_layer: 40,
        n_ff: 5760,
        n_head: 36,
        n_head_kv: 36,
        n_vocab: 122753,
        ty: GgmlType::F16,
    },
    Shape {
        name: "llama1b-q4_k",
        arch: "llama",
        n_embd: 2048,
        n_layer: 16,
        n_ff: 8192,
        n_head: 32,
        n_head_kv: 8,
        n_vocab: 128256,
        ty: GgmlType::Q4_K,
    },
    Shape {
        name: "smollm2-q4_0",
        arch: "llama",
        n_embd: 576,
        n_layer: 30,
        n_ff: 1536,
        n_head: 9,
        n_head_kv: 3,
        n_vocab: 49152,
        ty: GgmlType::Q4_0,
    },
    Shape {
        name: "smollm2-q8_0",
        arch: "llama",
        n_embd: 576,
        n_layer: 30,
        n_ff: 1536,
        n_head: 9,
        n_head_kv: 3,
        n_vocab: 49152,
        ty: GgmlType::Q8_0,
    },
];

/// Uniform in [-a, a], from a seed per row (so rows fill in parallel, reproducibly).
fn random_row(seed: u64, a: f32, out: &mut [f32]) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for v in out {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *v = ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a;
    }
}

fn quantize_row(ty: GgmlType, x: &[f32], dst: &mut [u8]) {
    match ty {
        GgmlType::Q4_0 => quant::q4_0::quantize_row(x, dst),
        GgmlType::Q4_K => quant::q4_k::quantize_row(x, dst),
        GgmlType::Q8_0 => quant::q8_0::quantize_row(x, dst),
        GgmlType::F16 => quant::float::quantize_row_f16(x, dst),
        _ => unreachable!("no weight quantizer for {ty}"),
    }
}

/// A seeded random `n_out × n_in` matrix in `ty` (Q4_K falls back to Q4_0
/// when `n_in` is not a multiple of 256).
fn matrix(w: &mut GgufWriter, name: &str, ty: GgmlType, n_in: usize, n_out: usize, seed: u64) {
    let ty = if ty.row_size(n_in).is_some() { ty } else { GgmlType::Q4_0 };
    let rs = ty.row_size(n_in).unwrap();
    let a = 1.0 / (n_in as f32).sqrt();
    let mut data = vec![0u8; rs * n_out];
    data.par_chunks_mut(rs).enumerate().for_each_init(
        || vec![0f32; n_in],
        |x, (r, dst)| {
            random_row(seed.wrapping_mul(1_000_003).wrapping_add(r as u64), a, x);
            quantize_row(ty, x, dst);
        },
    );
    w.tensor(name, ty, &[n_in as u64, n_out as u64], data);
}

fn spm_vocab(w: &mut GgufWriter, n_vocab: usize) {
    let mut tokens = Vec::with_capacity(n_vocab);
    let mut types = Vec::with_capacity(n_vocab);
    for (t, ty) in [("<unk>", 2), ("<s>", 3), ("</s>", 3)] {
        tokens.push(Value::Str(t.into()));
        types.push(Value::I32(ty));
    }
    for b in 0..256 {
        tokens.push(Value::Str(format!("<0x{b:02X}>")));
        types.push(Value::I32(6));
    }
    while tokens.len() < n_vocab {
        tokens.push(Value::Str(format!("\u{2581}w{}", tokens.len())));
        types.push(Value::I32(1));
    }
    let scores = (0..n_vocab).map(|i| Value::F32(-(i as f32))).collect();
    w.kv("tokenizer.ggml.model", Value::Str("llama".into()))
        .kv("tokenizer.ggml.tokens", Value::Array(ValueType::Str, tokens))
        .kv("tokenizer.ggml.scores", Value::Array(ValueType::F32, scores))
        .kv("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types))
        .kv("tokenizer.ggml.unknown_token_id", Value::U32(0))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true));
}

fn write(s: &Shape, out: &std::path::Path) -> Result<()> {
    let hd = s.n_embd / s.n_head;
    let mut w = GgufWriter::new();
    let k = |key: &str| format!("{}.{key}", s.arch);
    w.kv("general.architecture", Value::Str(s.arch.into()))
        .kv("general.name", Value::Str(format!("ember-synthetic-{}", s.name)))
        .kv(&k("context_length"), Value::U32(4096))
        .kv(&k("embedding_length"), Value::U32(s.n_embd as u32))
        .kv(&k("block_count"), Value::U32(s.n_layer as u32))
        .kv(&k("feed_forward_length"), Value::U32(s.n_ff as u32))
        .kv(&k("attention.head_count"), Value::U32(s.n_head as u32))
        .kv(&k("attention.head_count_kv"), Value::U32(s.n_head_kv as u32))
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .kv(&k("rope.dimension_count"), Value::U32(hd as u32))
        .kv(&k("rope.freq_base"), Value::F32(10000.0))
        .kv(&k("vocab_size"), Value::U32(s.n_vocab as u32));
    if s.arch == "minicpm" {
        // MiniCPM-2B's: scale_emb 12, scale_depth 1.4 (÷ √n_layer per branch),
        // logits ÷ (n_embd / dim_model_base 256).
        w.kv(&k("embedding_scale"), Value::F32(12.0))
            .kv(&k("residual_scale"), Value::F32(1.4 / (s.n_layer as f32).sqrt()))
            .kv(&k("logit_scale"), Value::F32(s.n_embd as f32 / 256.0));
    }
    spm_vocab(&mut w, s.n_vocab);
    let (e, kv) = (s.n_embd, s.n_head_kv * hd);
    let mut seed = 1u64;
    let mut next = || {
        seed += 1;
        seed
    };
    matrix(&mut w, "token_embd.weight", s.ty, e, s.n_vocab, next());
    w.tensor_f32("output_norm.weight", &[e as u64], &vec![1.0; e]);
    for il in 0..s.n_layer {
        let b = |n: &str| format!("blk.{il}.{n}.weight");
        w.tensor_f32(&b("attn_norm"), &[e as u64], &vec![1.0; e]);
        matrix(&mut w, &b("attn_q"), s.ty, e, e, next());
        matrix(&mut w, &b("attn_k"), s.ty, e, kv, next());
        matrix(&mut w, &b("attn_v"), s.ty, e, kv, next());
        matrix(&mut w, &b("attn_output"), s.ty, e, e, next());
        w.tensor_f32(&b("ffn_norm"), &[e as u64], &vec![1.0; e]);
        matrix(&mut w, &b("ffn_gate"), s.ty, e, s.n_ff, next());
        matrix(&mut w, &b("ffn_up"), s.ty, e, s.n_ff, next());
        matrix(&mut w, &b("ffn_down"), s.ty, s.n_ff, e, next());
    }
    let path = out.join(format!("{}.gguf", s.name));
    w.write_to(&path)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        bail!("usage: gen-bench-models OUT_DIR [{}]…", MODELS.map(|m| m.name).join("|"));
    };
    std::fs::create_dir_all(&out)?;
    let names: Vec<String> = args.collect();
    for s in &MODELS {
        if names.is_empty() || names.iter().any(|n| n == s.name) {
            write(s, &out)?;
        }
    }
    for n in &names {
        if !MODELS.iter().any(|s| s.name == n) {
            bail!("unknown model '{n}'");
        }
    }
    Ok(())
}
