//! Causal attention over a quantized KV cache (K and/or V stored as ggml's
//! q8_0/q4_0 blocks, the other side possibly f16), computed as llama.cpp's
//! CPU flash attention does (`ggml_compute_forward_flash_attn_ext_f16`),
//! the path llama.cpp takes for `-ctk/-ctv q8_0|q4_0`:
//!
//! - K quantized: the query head is quantized to q8_0 (K's `vec_dot_type`)
//!   and each score is ggml's integer block dot (`vec_dot_q8_0_q8_0`,
//!   `vec_dot_q4_0_q8_0`: our weight-matmul kernels). K f16: the query is
//!   rounded to f16 and the score sums f16 products.
//! - V rows are converted to f32 (dequantized) and accumulated in f32,
//!   weighted by `exp(s − max)`; the sum is scaled by `1/Σ exp(s − max)`.
//!   ggml keeps a running maximum and rescales (online softmax); we take the
//!   maximum first: the same quantities in exact arithmetic, ulps apart in f32.
//!
//! - Rows stored rotated (llama.cpp's Hadamard rotation of quantized caches,
//!   [`crate::kv_rotation`]): the query head is rotated like the K rows
//!   before it is quantized, and the output head rotated back like the V rows.
//!
//! The f16-only cache keeps [`super::attention`] (llama.cpp's non-flash path,
//! which rounds the probabilities to f16): the default stays bit-for-bit as it was.

use std::cell::RefCell;

use half::f16;

use super::simd::CpuKernels;
use super::{team, AttnShape, SharedMut};
use crate::kv_cache::{KvRows, KvType};
use crate::kv_rotation::hadamard;
use crate::quant::{self, GgmlType};
use crate::{Error, Result};

/// `q`: `n_tok × n_head·head_dim_k`; `k`/`v`: this layer's cache rows
/// (`n_head_kv·head_dim` values each), filled up to `pos0 + n_tok`;
/// `out`: `n_tok × n_head·head_dim_v`. A head that does not fill whole
/// blocks of its type is an error (heads are dotted block by block).
pub fn attention_kvq(kern: &CpuKernels, s: &AttnShape, q: &[f32], k: KvRows, v: KvRows, out: &mut [f32]) -> Result<()> {
    for (what, rows, hd) in [("K", &k, s.head_dim_k), ("V", &v, s.head_dim_v)] {
        if !hd.is_multiple_of(rows.ty.block_len()) {
            return Err(Error::InvalidParam(format!(
                "KV cache type {}: the {what} head dimension {hd} is not a multiple of {}",
                rows.ty,
                rows.ty.block_len()
            )));
        }
    }
    let q_dim = s.n_head * s.head_dim_k;
    let o_dim = s.n_head * s.head_dim_v;
    let n_tok = q.len() / q_dim;
    let group = s.n_head / s.n_head_kv;
    // Bytes of one head within a row, and of one row.
    let (k_head, k_row) = (k.ty.row_bytes(s.head_dim_k).unwrap_or(0), k.row_bytes());
    let (v_head, v_row) = (v.ty.row_bytes(s.head_dim_v).unwrap_or(0), v.row_bytes());
    let q8_bytes = GgmlType::Q8_0.row_size(s.head_dim_k).unwrap_or(0);
    let op = SharedMut(out.as_mut_ptr());

    team::for_each(n_tok * s.n_head, |task| {
        BUFS.with_borrow_mut(|b| {
            // The whole SharedMut (Send), not its raw pointer field, into the closure.
            #[allow(clippy::redundant_locals)]
            let op = op;
            let (t, h) = (task / s.n_head, task % s.n_head);
            let p = s.pos0 + t;
            let hk = h / group;
            let first = s.first_key(p);
            let mut qh = &q[t * q_dim + h * s.head_dim_k..][..s.head_dim_k];
            // K stored rotated: rotate the query the same way ((H·q)·(H·k) = q·k).
            if let Some(n) = k.rot {
                b.qrot.clear();
                b.qrot.extend_from_slice(qh);
                hadamard(&mut b.qrot, n);
                qh = &b.qrot;
            }
            // scores[i]: key first + i.
            b.scores.clear();
            b.scores.resize(p + 1 - first, 0.0);
            match k.as_f16() {
                Some(kc) => {
                    b.q16.clear();
                    b.q16.extend(qh.iter().map(|&x| f16::from_f32(x)));
                    let k0 = first * k.width + hk * s.head_dim_k;
                    (kern.dot_f16)(&b.q16, &kc[k0..], k.width, &mut b.scores);
                }
                None => {
                    b.q8.resize(q8_bytes, 0);
                    (kern.quantize_act)(GgmlType::Q8_0, qh, &mut b.q8);
                    let ty = k.ty.ggml_type();
                    for (i, sc) in b.scores.iter_mut().enumerate() {
                        let row = &k.bytes[(first + i) * k_row + hk * k_head..][..k_head];
                        *sc = kern.vec_dot(ty, s.head_dim_k, row, &b.q8);
                    }
                }
            }
            let mut max = f32::NEG_INFINITY;
            for x in &mut b.scores {
                *x *= s.kq_scale;
                if let Some(cap) = s.softcap {
                    *x = cap * (*x / cap).tanh();
                }
                max = max.max(*x);
            }
            b.acc.clear();
            b.acc.resize(s.head_dim_v, 0.0);
            b.vrow.resize(s.head_dim_v, 0.0);
            let mut sum = 0f32;
            for (i, &sc) in b.scores.iter().enumerate() {
                let w = (sc - max).exp();
                sum += w;
                let row = &v.bytes[(first + i) * v_row + hk * v_head..][..v_head];
                dequantize_head(v.ty, row, &mut b.vrow);
                for (a, &x) in b.acc.iter_mut().zip(&b.vrow) {
                    *a += w * x;
                }
            }
            let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
            // SAFETY: each (t, h) task writes its own head slice of out.
            let dst = unsafe { std::slice::from_raw_parts_mut(op.0.add(t * o_dim + h * s.head_dim_v), s.head_dim_v) };
            for (d, &a) in dst.iter_mut().zip(&b.acc) {
                *d = a * inv;
            }
            // V stored rotated: the output is H·(Σ p·v); rotate it back (H·H = I).
            if let Some(n) = v.rot {
                hadamard(dst, n);
            }
        })
    });
    Ok(())
}

/// One head's V values to f32 (exact for f16; ggml's dequantization for blocks).
fn dequantize_head(ty: KvType, src: &[u8], dst: &mut [f32]) {
    match ty {
        KvType::F16 => {
            // Aligned: cache rows and heads start at even byte offsets of u16 words.
            for (d, s) in dst.iter_mut().zip(bytemuck::cast_slice::<u8, f16>(src)) {
                *d = s.to_f32();
            }
        }
        KvType::Q8_0 => quant::q8_0::dequantize_row(src, dst),
        KvType::Q4_0 => quant::q4_0::dequantize_row(src, dst),
    }
}

#[derive(Default)]
struct Bufs {
    scores: Vec<f32>,
    qrot: Vec<f32>,
    q16: Vec<f16>,
    q8: Vec<u8>,
    vrow: Vec<f32>,
    acc: Vec<f32>,
}

thread_local! {
    /// Per-thread buffers, grown once and reused (the pool's threads persist).
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs::default());
}

#[cfg(test)]
mod tests {
    //! [`attention_kvq`] against an f64 evaluation of its definition over the
    //! stored bytes (rows written by [`KvCache::write`]): scores from the q8_0-rounded query and the
    //! dequantized keys, softmax and `Σ p·v` in f64. Every kernel table
    //! (scalar and SIMD) is held to it; they differ from it only by f32 sums.
    use super::super::simd::CpuKernels;
    use super::{attention_kvq, AttnShape};
    use crate::kv_cache::{KvCache, KvType};
    use crate::kv_rotation::KvRotation;
    use crate::quant::{self, GgmlType};

    /// The sign of the Sylvester–Hadamard matrix's entry (i, j): (−1)^popcount(i & j).
    fn sylvester_sign(i: usize, j: usize) -> f64 {
        if (i & j).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        }
    }

    fn rng(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn to_f32(ty: KvType, bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        match ty {
            KvType::F16 => super::dequantize_head(ty, bytes, &mut out),
            _ => quant::dequantize_row(ty.ggml_type(), bytes, &mut out).unwrap(),
        }
        out
    }

    #[test]
    fn quantized_cache_attention_matches_its_definition() {
        // (k type, v type, n_head, n_head_kv, hd_k, hd_v, n_tok, pos0, window, softcap, rotated)
        let cases = [
            (KvType::Q8_0, KvType::Q8_0, 4, 2, 64, 64, 3, 6, None, None, false),
            (KvType::Q8_0, KvType::Q8_0, 4, 2, 64, 64, 3, 6, None, None, true),
            (KvType::Q4_0, KvType::Q4_0, 2, 1, 32, 32, 1, 12, Some(5), None, false),
            (KvType::Q8_0, KvType::F16, 4, 4, 32, 64, 2, 4, None, Some(30.0), false),
            (KvType::F16, KvType::Q4_0, 2, 2, 64, 32, 4, 0, None, None, false),
            // Rotated in pieces of 128 (K) and 64 (V).
            (KvType::Q4_0, KvType::Q8_0, 4, 1, 128, 128, 2, 3, Some(4), None, true),
        ];
        let mut seed = 11u64;
        for (kt, vt, n_head, n_head_kv, hk, hv, n_tok, pos0, window, softcap, rotated) in cases {
            let n_pos = pos0 + n_tok;
            let (kr, vr) = (n_head_kv * hk, n_head_kv * hv);
            let rot = if rotated { KvRotation::new(hk, hv, (kt, vt)) } else { KvRotation::default() };
            assert_eq!(rotated, !rot.is_none());
            let mut cache = KvCache::new(n_pos, vec![(kr, vr)], kt, vt).unwrap().rotated(rot);
            let k: Vec<f32> = (0..n_pos * kr).map(|_| rng(&mut seed) * 2.0).collect();
            let v: Vec<f32> = (0..n_pos * vr).map(|_| rng(&mut seed)).collect();
            cache.write(0, 0, &k, &v);
            let q: Vec<f32> = (0..n_tok * n_head * hk).map(|_| rng(&mut seed) * 2.0).collect();
            let kq_scale = 1.0 / (hk as f32).sqrt();
            let shape = AttnShape { n_head, n_head_kv, head_dim_k: hk, head_dim_v: hv, pos0, kq_scale, window, softcap };
            let (kc, vc) = cache.layer(0);
            let kf = to_f32(kt, kc.bytes, n_pos * kr);
            let vf = to_f32(vt, vc.bytes, n_pos * vr);

            let mut want = vec![0f64; n_tok * n_head * hv];
            for t in 0..n_tok {
                let p = pos0 + t;
                let first = window.map_or(0, |w| (p + 1).saturating_sub(w));
                for h in 0..n_head {
                    let hkv = h / (n_head / n_head_kv);
                    // The query as the kernel sees it: q8_0-rounded for a quantized K, f16 for f16.
                    let mut qh = q[(t * n_head + h) * hk..][..hk].to_vec();
                    if let Some(n) = rot.k {
                        crate::kv_rotation::hadamard(&mut qh, n);
                    }
                    let qh = &qh[..];
                    let qr: Vec<f32> = if kt == KvType::F16 {
                        qh.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
                    } else {
                        let mut b = vec![0u8; GgmlType::Q8_0.row_size(hk).unwrap()];
                        quant::q8_0::quantize_row(qh, &mut b);
                        to_f32(KvType::Q8_0, &b, hk)
                    };
                    let sc: Vec<f64> = (first..=p)
                        .map(|j| {
                            let d: f64 = (0..hk).map(|i| qr[i] as f64 * kf[j * kr + hkv * hk + i] as f64).sum();
                            let x = d * kq_scale as f64;
                            softcap.map_or(x, |c| c as f64 * (x / c as f64).tanh())
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = sc.iter().map(|s| (s - m).exp()).sum();
                    let o = &mut want[(t * n_head + h) * hv..][..hv];
                    for (jj, s) in sc.iter().enumerate() {
                        let w = (s - m).exp() / z;
                        for i in 0..hv {
                            o[i] += w * vf[(first + jj) * vr + hkv * hv + i] as f64;
                        }
                    }
                    // Rotated V: the output is rotated back, here by the f64 Sylvester matrix.
                    if let Some(n) = rot.v {
                        for piece in o.chunks_mut(n) {
                            let y: Vec<f64> =
                                (0..n).map(|i| (0..n).map(|j| sylvester_sign(i, j) * piece[j]).sum::<f64>() / (n as f64).sqrt()).collect();
                            piece.copy_from_slice(&y);
                        }
                    }
                }
            }
            for kern in CpuKernels::available() {
                let mut got = vec![f32::NAN; want.len()];
                attention_kvq(kern, &shape, &q, kc, vc, &mut got).unwrap();
                let d = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0f64, f64::max);
                assert!(d <= 1e-5, "{} {kt}/{vt} heads {n_head}/{n_head_kv} hd {hk}/{hv}: max |Δ| {d:e}", kern.isa);
            }
        }
    }
}
