//! llama.cpp's attention rotation for quantized KV caches (its PR #21038, on
//! by default; `LLAMA_ATTN_ROT_DISABLE=1` turns it off there).
//!
//! A q8_0/q4_0 block shares one scale among 32 values, so one outlier
//! coordinate costs the other 31 their precision. Multiplying by an
//! orthonormal Walsh–Hadamard matrix `H` (`n × n`, entries `±1/√n`) spreads
//! every coordinate over the whole piece before it is quantized, and costs
//! nothing in exact arithmetic: `(H·q)·(H·k) = q·k`, and `H·H = I`.
//!
//! - K stored quantized, head dimension a multiple of 64: every K row and
//!   every query head are rotated in pieces of `n` values, `n` the largest
//!   power of two ≥ 64 dividing the head dimension (the whole head for 64,
//!   128, 256).
//! - V stored quantized, head dimension a multiple of 64: V rows are rotated
//!   in pieces of 64 before they are stored and the attention output is
//!   rotated back (the same `H`: it is its own inverse).
//!
//! The rotation is computed as ggml's CPU computes it
//! (`ggml_compute_forward_fwht`, the path of its Hadamard-hinted `mul_mat`):
//! each value scaled by `1/√n` first, then the butterflies `(u + v, u − v)`
//! at strides 1, 2, 4, …, in f32: the same values.

use crate::kv_cache::KvType;

/// Which sides of a cache are stored rotated, and in pieces of how many values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvRotation {
    /// K rows and queries, in pieces of this many values.
    pub k: Option<usize>,
    /// V rows and the attention output, in pieces of this many values.
    pub v: Option<usize>,
}

impl KvRotation {
    /// llama.cpp's choice for a model whose heads are `head_dim_k`/`head_dim_v`
    /// wide (0: the layers differ or have no such head — MLA's latent cache —
    /// and nothing rotates) with a cache stored as `types`.
    pub fn new(head_dim_k: usize, head_dim_v: usize, types: (KvType, KvType)) -> KvRotation {
        let rotates = |ty: KvType, hd: usize| ty != KvType::F16 && hd > 0 && hd.is_multiple_of(64);
        let k = rotates(types.0, head_dim_k).then(|| {
            let mut n = 64;
            while head_dim_k.is_multiple_of(2 * n) {
                n *= 2;
            }
            n
        });
        // llama.cpp keeps V's pieces at 64: it measured smaller rotations better for V.
        let v = rotates(types.1, head_dim_v).then_some(64);
        KvRotation { k, v }
    }

    /// Nothing rotates.
    pub fn is_none(&self) -> bool {
        self.k.is_none() && self.v.is_none()
    }
}

/// Rotates every `n`-value piece of `x` in place: `x ← H·x` (`n` a power of
/// two; a tail shorter than `n` is left as it is — callers pass whole pieces).
pub fn hadamard(x: &mut [f32], n: usize) {
    debug_assert!(n.is_power_of_two());
    let scale = 1.0 / (n as f32).sqrt();
    for piece in x.chunks_exact_mut(n) {
        for v in piece.iter_mut() {
            *v *= scale;
        }
        let mut len = 1;
        while len < n {
            for i in (0..n).step_by(2 * len) {
                for j in i..i + len {
                    let (u, v) = (piece[j], piece[j + len]);
                    piece[j] = u + v;
                    piece[j + len] = u - v;
                }
            }
            len *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's `ggml_gen_hadamard`: the Sylvester construction, `H[0][0] = 1/√n`,
    /// each doubling `[[A, A], [A, −A]]`, here in f64.
    fn sylvester(n: usize) -> Vec<f64> {
        let mut h = vec![0f64; n * n];
        h[0] = 1.0 / (n as f64).sqrt();
        let mut s = 1;
        while s < n {
            for i in 0..s {
                for j in 0..s {
                    let v = h[i * n + j];
                    h[(i + s) * n + j] = v;
                    h[i * n + j + s] = v;
                    h[(i + s) * n + j + s] = -v;
                }
            }
            s *= 2;
        }
        h
    }

    fn rng(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn hadamard_is_the_sylvester_matrix_product_and_its_own_inverse() {
        let mut seed = 5u64;
        for n in [64usize, 128, 256] {
            let h = sylvester(n);
            // Two pieces: each is rotated on its own.
            let x: Vec<f32> = (0..2 * n).map(|_| rng(&mut seed) * 8.0).collect();
            let mut y = x.clone();
            hadamard(&mut y, n);
            for (p, (xp, yp)) in x.chunks(n).zip(y.chunks(n)).enumerate() {
                for i in 0..n {
                    let want: f64 = (0..n).map(|j| h[i * n + j] * xp[j] as f64).sum();
                    assert!((yp[i] as f64 - want).abs() < 1e-5, "n {n} piece {p} row {i}: {} vs {want}", yp[i]);
                }
            }
            // Orthonormal: norms and dot products survive, and H·H = I.
            let norm = |v: &[f32]| v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>();
            assert!((norm(&x) / norm(&y) - 1.0).abs() < 1e-5);
            hadamard(&mut y, n);
            assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-5), "n {n}: H·H·x ≠ x");
        }
    }

    #[test]
    fn rotation_is_chosen_like_llama_cpp() {
        use KvType::*;
        // Quantized K: the largest power of two ≥ 64 dividing the head; V: always 64.
        assert_eq!(KvRotation::new(64, 64, (Q8_0, Q8_0)), KvRotation { k: Some(64), v: Some(64) });
        assert_eq!(KvRotation::new(256, 256, (Q4_0, Q4_0)), KvRotation { k: Some(256), v: Some(64) });
        assert_eq!(KvRotation::new(128, 128, (Q8_0, F16)), KvRotation { k: Some(128), v: None });
        assert_eq!(KvRotation::new(192, 192, (F16, Q8_0)), KvRotation { k: None, v: Some(64) });
        assert_eq!(KvRotation::new(192, 192, (Q8_0, F16)).k, Some(64));
        // Heads that are not multiples of 64, f16 caches and mixed heads (0): none.
        assert!(KvRotation::new(96, 96, (Q8_0, Q8_0)).is_none());
        assert!(KvRotation::new(128, 128, (F16, F16)).is_none());
        assert!(KvRotation::new(0, 0, (Q8_0, Q8_0)).is_none());
    }
}
