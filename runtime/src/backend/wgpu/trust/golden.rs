//! The self-test's golden model: a tiny llama built in code with the
//! project's GGUF writer (2 layers, n_embd 64, 4 heads over 2 KV heads, n_ff
//! 128, 96 tokens), seeded random weights in the layouts real models use
//! (Q4_0 → QA4, Q8_0 → QA8, F16, F32), and a fixed token sequence. The
//! reference is the CPU backend on the same model: no expected values of our own.

use std::sync::Arc;

use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::model::Model;
use crate::quant::{self, GgmlType};
use crate::Result;

pub const N_EMBD: usize = 64;
pub const N_FF: usize = 128;
pub const N_VOCAB: usize = 96;
pub const N_LAYER: usize = 2;
/// Context of the golden sessions.
pub const N_CTX: usize = 32;
/// The prompt (one micro-batch: matrix-matrix kernels), then decode steps
/// (one token each: matrix-vector kernels, where the subgroup tier runs).
pub const PROMPT: [u32; 9] = [1, 17, 42, 5, 88, 23, 61, 9, 70];
pub const DECODE: [u32; 3] = [33, 77, 12];

/// Uniform in [-a, a] from a xorshift seed.
fn random(seed: u64, a: f32, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

fn matrix(w: &mut GgufWriter, name: &str, ty: GgmlType, n_in: usize, n_out: usize, seed: u64) {
    // Large enough weights that attention is not uniform (a scaled q or k shows).
    let x = random(seed, 2.0 / (n_in as f32).sqrt(), n_in * n_out);
    let rs = ty.row_size(n_in).unwrap_or(0);
    let mut data = vec![0u8; rs * n_out];
    for (row, dst) in x.chunks(n_in).zip(data.chunks_mut(rs.max(1))) {
        match ty {
            GgmlType::Q4_0 => quant::q4_0::quantize_row(row, dst),
            GgmlType::Q8_0 => quant::q8_0::quantize_row(row, dst),
            GgmlType::F16 => quant::float::quantize_row_f16(row, dst),
            _ => quant::float::quantize_row_f32(row, dst),
        }
    }
    w.tensor(name, ty, &[n_in as u64, n_out as u64], data);
}

/// The GGUF bytes of the golden model.
pub fn gguf_bytes() -> Vec<u8> {
    let (n_head, n_head_kv) = (4usize, 2usize);
    let hd = N_EMBD / n_head;
    let mut w = GgufWriter::new();
    let k = |key: &str| format!("llama.{key}");
    w.kv("general.architecture", Value::Str("llama".into()))
        .kv("general.name", Value::Str("ember-gpu-selftest".into()))
        .kv(&k("context_length"), Value::U32(N_CTX as u32))
        .kv(&k("embedding_length"), Value::U32(N_EMBD as u32))
        .kv(&k("block_count"), Value::U32(N_LAYER as u32))
        .kv(&k("feed_forward_length"), Value::U32(N_FF as u32))
        .kv(&k("attention.head_count"), Value::U32(n_head as u32))
        .kv(&k("attention.head_count_kv"), Value::U32(n_head_kv as u32))
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .kv(&k("rope.dimension_count"), Value::U32(hd as u32))
        .kv(&k("rope.freq_base"), Value::F32(10000.0))
        .kv(&k("vocab_size"), Value::U32(N_VOCAB as u32));
    let kv = n_head_kv * hd;
    let mut seed = 7u64;
    let mut next = || {
        seed += 1;
        seed
    };
    matrix(&mut w, "token_embd.weight", GgmlType::F16, N_EMBD, N_VOCAB, next());
    w.tensor_f32("output_norm.weight", &[N_EMBD as u64], &random(next(), 1.0, N_EMBD).iter().map(|v| 1.0 + 0.5 * v).collect::<Vec<_>>());
    matrix(&mut w, "output.weight", GgmlType::Q8_0, N_EMBD, N_VOCAB, next());
    for il in 0..N_LAYER {
        let b = |n: &str| format!("blk.{il}.{n}.weight");
        w.tensor_f32(&b("attn_norm"), &[N_EMBD as u64], &vec![1.0; N_EMBD]);
        matrix(&mut w, &b("attn_q"), GgmlType::Q4_0, N_EMBD, N_EMBD, next());
        matrix(&mut w, &b("attn_k"), GgmlType::Q4_0, N_EMBD, kv, next());
        // Layer 0: v (Q8_0) and up (Q8_0) of another layout than q, k and
        // gate (Q4_0): the fused tier runs each product alone. Layer 1: one
        // layout, so q/k/v is one group product and gate/up one with its GLU
        // (`MatGroup`), the F16 down product then rounding x in its prologue.
        let v_ty = if il == 0 { GgmlType::Q8_0 } else { GgmlType::Q4_0 };
        matrix(&mut w, &b("attn_v"), v_ty, N_EMBD, kv, next());
        // F32 in layer 0, Q8_0 in layer 1: the fused tier's o product with
        // the residual add as its epilogue, then also with x's rounding as its prologue.
        let o_ty = if il == 0 { GgmlType::F32 } else { GgmlType::Q8_0 };
        matrix(&mut w, &b("attn_output"), o_ty, N_EMBD, N_EMBD, next());
        w.tensor_f32(&b("ffn_norm"), &[N_EMBD as u64], &vec![1.0; N_EMBD]);
        matrix(&mut w, &b("ffn_gate"), GgmlType::Q4_0, N_EMBD, N_FF, next());
        matrix(&mut w, &b("ffn_up"), v_ty, N_EMBD, N_FF, next());
        matrix(&mut w, &b("ffn_down"), GgmlType::F16, N_FF, N_EMBD, next());
    }
    w.to_bytes()
}

/// The golden model, loaded.
pub fn model() -> Result<Model> {
    Model::from_gguf(Arc::new(GgufFile::from_bytes(gguf_bytes())?))
}
