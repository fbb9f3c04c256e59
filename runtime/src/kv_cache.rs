//! The KV cache: preallocated for the session's context, written in place at
//! each position, never grown by copying. f16 like llama.cpp's default.

use half::f16;

pub struct KvCache {
    pub n_ctx: usize,
    /// Per layer: K row width (`n_head_kv · head_dim_k`) and V row width.
    dims: Vec<(usize, usize)>,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvCache {
    /// `dims[il] = (k_row, v_row)` for each layer.
    pub fn new(n_ctx: usize, dims: Vec<(usize, usize)>) -> KvCache {
        let k = dims.iter().map(|&(kr, _)| vec![f16::ZERO; n_ctx * kr]).collect();
        let v = dims.iter().map(|&(_, vr)| vec![f16::ZERO; n_ctx * vr]).collect();
        KvCache { n_ctx, dims, k, v }
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.dims.iter().map(|&(k, v)| (k + v) * self.n_ctx * 2).sum()
    }

    /// Bytes per token of context.
    pub fn bytes_per_token(&self) -> usize {
        self.dims.iter().map(|&(k, v)| (k + v) * 2).sum()
    }

    /// Writes `n` consecutive rows of K and V (f32, rounded to f16) at `pos`.
    pub fn write(&mut self, il: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (kr, vr) = self.dims[il];
        for (dst, &src) in self.k[il][pos * kr..pos * kr + k.len()].iter_mut().zip(k) {
            *dst = f16::from_f32(src);
        }
        for (dst, &src) in self.v[il][pos * vr..pos * vr + v.len()].iter_mut().zip(v) {
            *dst = f16::from_f32(src);
        }
    }

    pub fn layer(&self, il: usize) -> (&[f16], &[f16]) {
        (&self.k[il], &self.v[il])
    }
}
