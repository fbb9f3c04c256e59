//! Causal attention as llama.cpp computes it without flash attention: the
//! specification the backends' attention kernels are held to.
//!
//! For query token `t` (position `p = pos0 + t`) and head `h` (kv-head
//! `hk = h / (n_head / n_head_kv)`, GQA):
//! 1. `q` is rounded to f16 (ggml converts Q to the cache's type);
//! 2. `s_j = Σ_i q16[i] · k[j][i]` for keys `j ≤ p` (causal), summed in f32
//!    in index order, and `j > p − window` under a sliding window;
//! 3. `s_j = kq_scale · s_j`, then `cap · tanh(s_j / cap)` when soft-capped;
//! 4. softmax over the unmasked keys ([`super::softmax::softmax`]), each
//!    probability rounded to f16 (ggml's `kq` is f16 for the `kqv` product);
//! 5. `out = Σ_j p_j · v[j]`, summed in f32 key by key in order.
//!
//! K and V are the f16 cache rows: K of kv-head `hk` at position `j` starts
//! at `j·k_row + hk·head_dim_k`, V at `j·v_row + hk·head_dim_v`; V may be
//! the first `head_dim_v` values of each K row (MLA's latent cache: pass
//! the K cache as V with `v_row = k_row`). Plain loops, written for clarity.

use half::f16;

use super::softmax::softmax;

/// Geometry of one attention call (as `backend::cpu::AttnShape`).
#[derive(Debug, Clone, Copy)]
pub struct AttnSpec {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    /// Position of the first query token.
    pub pos0: usize,
    pub kq_scale: f32,
    /// Key `j` is masked for the query at `p` when `p − j ≥ window`.
    pub window: Option<usize>,
    pub softcap: Option<f32>,
}

/// `q`: `n_tok × n_head·head_dim_k`; `out`: `n_tok × n_head·head_dim_v`;
/// the caches hold positions `0..pos0 + n_tok` with row strides `k_row`, `v_row`.
pub fn attention(s: &AttnSpec, q: &[f32], k: &[f16], k_row: usize, v: &[f16], v_row: usize, out: &mut [f32]) {
    let q_dim = s.n_head * s.head_dim_k;
    let o_dim = s.n_head * s.head_dim_v;
    let n_tok = q.len() / q_dim;
    let group = s.n_head / s.n_head_kv;
    for t in 0..n_tok {
        let p = s.pos0 + t;
        for h in 0..s.n_head {
            let hk = h / group;
            let qh: Vec<f32> = q[t * q_dim + h * s.head_dim_k..][..s.head_dim_k].iter().map(|&x| f16::from_f32(x).to_f32()).collect();
            let mut scores = vec![f32::NEG_INFINITY; p + 1];
            for (j, sj) in scores.iter_mut().enumerate() {
                if s.window.is_some_and(|w| p - j >= w) {
                    continue;
                }
                let kj = &k[j * k_row + hk * s.head_dim_k..][..s.head_dim_k];
                let mut d = 0f32;
                for i in 0..s.head_dim_k {
                    d += qh[i] * kj[i].to_f32();
                }
                d *= s.kq_scale;
                if let Some(cap) = s.softcap {
                    d = cap * (d / cap).tanh();
                }
                *sj = d;
            }
            softmax(&mut scores);
            let o = &mut out[t * o_dim + h * s.head_dim_v..][..s.head_dim_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for (j, &pj) in scores.iter().enumerate() {
                if s.window.is_some_and(|w| p - j >= w) {
                    continue;
                }
                let pj = f16::from_f32(pj).to_f32();
                let vj = &v[j * v_row + hk * s.head_dim_v..][..s.head_dim_v];
                for (oi, vi) in o.iter_mut().zip(vj) {
                    *oi += pj * vi.to_f32();
                }
            }
        }
    }
}
