//! Causal multi-head attention over the KV cache, as llama.cpp computes it
//! without flash attention: K and V live in f16, Q is rounded to f16 before
//! `q·k`, the softmax probabilities are rounded to f16 before weighting V.
//! Rounding like llama.cpp keeps our logits within its own noise.

use std::cell::RefCell;

use half::f16;

use super::simd::CpuKernels;
use super::{team, SharedMut};
use crate::ops::softmax::softmax;

/// Geometry of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    /// Position of the first query token.
    pub pos0: usize,
    /// `softmax(kq_scale · q·k)`.
    pub kq_scale: f32,
    /// Sliding window: key `j` is masked for query `p` when `p - j >= window`.
    pub window: Option<usize>,
    /// Logit soft-capping `cap·tanh(x/cap)` (gemma2-style), if any.
    pub softcap: Option<f32>,
}

impl AttnShape {
    /// The first key query position `p` sees: the window's start, or 0.
    pub fn first_key(&self, p: usize) -> usize {
        self.window.map_or(0, |w| (p + 1).saturating_sub(w))
    }
}

/// `q`: `n_tok × n_head·head_dim_k`; `k_cache`/`v_cache`: this layer's cache,
/// row `j` = position `j`, `n_head_kv·head_dim` wide, filled up to
/// `pos0 + n_tok`; `out`: `n_tok × n_head·head_dim_v`.
pub fn attention(kern: &CpuKernels, s: &AttnShape, q: &[f32], k_cache: &[f16], v_cache: &[f16], out: &mut [f32]) {
    attention_strided(kern, s, q, k_cache, s.n_head_kv * s.head_dim_k, v_cache, s.n_head_kv * s.head_dim_v, out)
}

/// [`attention`] with explicit cache row strides: K of kv-head `hk` at
/// position `j` starts at `j·k_row + hk·head_dim_k`, V at `j·v_row + hk·head_dim_v`.
/// With `v_cache == k_cache` and `v_row == k_row`, V is the first `head_dim_v`
/// values of each K row: MLA's absorbed form (K = [latent | k_pe], V = latent).
#[allow(clippy::too_many_arguments)]
pub fn attention_strided(
    kern: &CpuKernels,
    s: &AttnShape,
    q: &[f32],
    k_cache: &[f16],
    k_row: usize,
    v_cache: &[f16],
    v_row: usize,
    out: &mut [f32],
) {
    let q_dim = s.n_head * s.head_dim_k;
    let o_dim = s.n_head * s.head_dim_v;
    let n_tok = q.len() / q_dim;
    let group = s.n_head / s.n_head_kv;
    let op = SharedMut(out.as_mut_ptr());

    team::for_each(n_tok * s.n_head, |task| {
        BUFS.with_borrow_mut(|(scores, qh16, acc)| {
            // The whole SharedMut (Send), not its raw pointer field, into the closure.
            #[allow(clippy::redundant_locals)]
            let op = op;
            let (t, h) = (task / s.n_head, task % s.n_head);
            let p = s.pos0 + t;
            let hk = h / group;
            let first = s.first_key(p);
            qh16.clear();
            qh16.extend(q[t * q_dim + h * s.head_dim_k..][..s.head_dim_k].iter().map(|&v| f16::from_f32(v)));
            scores.clear();
            scores.resize(p + 1, f32::NEG_INFINITY);
            let k0 = first * k_row + hk * s.head_dim_k;
            (kern.dot_f16)(qh16, &k_cache[k0..], k_row, &mut scores[first..=p]);
            for x in &mut scores[first..=p] {
                *x *= s.kq_scale;
                if let Some(cap) = s.softcap {
                    *x = cap * (*x / cap).tanh();
                }
            }
            softmax(&mut scores[..]);
            (kern.round_f16)(&mut scores[first..=p]);
            acc.clear();
            acc.resize(s.head_dim_v, 0.0);
            let v0 = first * v_row + hk * s.head_dim_v;
            (kern.axpy_f16)(&scores[first..=p], &v_cache[v0..], v_row, acc);
            // SAFETY: each (t, h) task writes its own head slice of out.
            let dst = unsafe { std::slice::from_raw_parts_mut(op.0.add(t * o_dim + h * s.head_dim_v), s.head_dim_v) };
            dst.copy_from_slice(acc);
        })
    });
}

thread_local! {
    /// Per-thread scores, f16 query and accumulator, grown once and reused
    /// by every call (the pool's threads persist): no allocation per token.
    static BUFS: RefCell<(Vec<f32>, Vec<f16>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

#[cfg(test)]
mod tests {
    //! `attention_strided` against the scalar specification
    //! [`crate::ops::attention`]. With [`super::super::simd::SCALAR`] it is
    //! bit-exact: the same f32 sums in the same order. A SIMD table sums each
    //! `q·k` in lanes (another order; the f16×f16 products themselves are
    //! exact in f32, so FMA changes nothing), which moves a score by a few
    //! ulps; after the softmax a probability may then round to the
    //! neighbouring f16 (2⁻¹¹ relative), and `Σ p·v` is otherwise the same
    //! sum in the same order. With |v| ≤ 1 that bounds the difference far
    //! below 1e-3; the test holds SIMD tables to 1e-4.
    use half::f16;

    use super::super::simd::{CpuKernels, SCALAR};
    use super::{attention_strided, AttnShape};
    use crate::ops::attention::{attention as spec, AttnSpec};

    fn rng(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn strided_attention_matches_the_spec() {
        // (n_head, n_head_kv, hd_k, hd_v, n_tok, pos0, window, softcap, v_in_k)
        let cases = [
            (4, 4, 64, 64, 1, 0, None, None, false),
            (4, 2, 64, 64, 5, 9, None, None, false),
            (8, 2, 40, 40, 3, 20, Some(6), None, false),
            (4, 1, 128, 128, 17, 3, None, Some(50.0), false),
            (2, 2, 32, 48, 4, 7, Some(3), Some(30.0), false),
            (4, 1, 576, 512, 3, 11, None, None, true),
        ];
        let mut seed = 7u64;
        for (n_head, n_head_kv, hk, hv, n_tok, pos0, window, softcap, v_in_k) in cases {
            let n_pos = pos0 + n_tok;
            let k_row = n_head_kv * hk;
            let v_row = if v_in_k { k_row } else { n_head_kv * hv };
            let q: Vec<f32> = (0..n_tok * n_head * hk).map(|_| rng(&mut seed) * 2.0).collect();
            let kc: Vec<f16> = (0..n_pos * k_row).map(|_| f16::from_f32(rng(&mut seed))).collect();
            let vc: Vec<f16> = if v_in_k { kc.clone() } else { (0..n_pos * v_row).map(|_| f16::from_f32(rng(&mut seed))).collect() };
            let kq_scale = 1.0 / (hk as f32).sqrt();
            let s = AttnSpec { n_head, n_head_kv, head_dim_k: hk, head_dim_v: hv, pos0, kq_scale, window, softcap };
            let mut want = vec![0f32; n_tok * n_head * hv];
            spec(&s, &q, &kc, k_row, &vc, v_row, &mut want);
            let shape = AttnShape { n_head, n_head_kv, head_dim_k: hk, head_dim_v: hv, pos0, kq_scale, window, softcap };
            for kern in CpuKernels::available() {
                let mut got = vec![f32::NAN; want.len()];
                attention_strided(kern, &shape, &q, &kc, k_row, &vc, v_row, &mut got);
                let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                let tol = if std::ptr::eq(kern, &SCALAR) { 0.0 } else { 1e-4 };
                assert!(d <= tol, "{}: heads {n_head}/{n_head_kv} hd {hk}/{hv} n_tok {n_tok} pos0 {pos0} window {window:?} softcap {softcap:?} v_in_k {v_in_k}: max |Δ| {d:e} > {tol:e}", kern.isa);
                assert!(got.iter().all(|v| v.is_finite()));
            }
        }
    }
}
