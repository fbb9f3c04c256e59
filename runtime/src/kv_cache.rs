//! The KV cache: preallocated for the session's context, written in place at
//! each position, never grown by copying. f16 like llama.cpp's default.

use std::fmt;
use std::str::FromStr;

use half::f16;

use crate::Error;

/// How the KV cache stores its rows, like llama.cpp's `-ctk`/`-ctv`: f16
/// (the default), or ggml's q8_0/q4_0 blocks of 32 values (a row's width
/// must then be a multiple of 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    /// Elements per block (1 for f16).
    pub fn block_len(self) -> usize {
        match self {
            KvType::F16 => 1,
            KvType::Q8_0 | KvType::Q4_0 => 32,
        }
    }

    /// Bytes of one block: ggml's `block_q8_0` (f16 scale + 32 i8) and
    /// `block_q4_0` (f16 scale + 16 bytes of nibbles).
    pub fn block_bytes(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::Q8_0 => 34,
            KvType::Q4_0 => 18,
        }
    }

    /// Bytes of a row of `n` values; `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_len()).then(|| n / self.block_len() * self.block_bytes())
    }

    /// The GGUF tensor type with the same block layout.
    pub fn ggml_type(self) -> crate::quant::GgmlType {
        use crate::quant::GgmlType;
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::Q4_0 => GgmlType::Q4_0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }
}

impl FromStr for KvType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            "q4_0" => Ok(KvType::Q4_0),
            other => Err(Error::InvalidParam(format!("unknown KV cache type '{other}' (expected f16, q8_0 or q4_0)"))),
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_types_parse_and_size_rows_like_ggml() {
        assert_eq!("Q8_0".parse::<KvType>().unwrap(), KvType::Q8_0);
        assert!("q5_1".parse::<KvType>().is_err());
        // ggml: block_q8_0 is 34 bytes, block_q4_0 18, per 32 values.
        assert_eq!(KvType::F16.row_bytes(64), Some(128));
        assert_eq!(KvType::Q8_0.row_bytes(64), Some(68));
        assert_eq!(KvType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(KvType::Q4_0.row_bytes(48), None);
        for t in [KvType::F16, KvType::Q8_0, KvType::Q4_0] {
            assert_eq!(t.ggml_type().block_size(), t.block_len());
            assert_eq!(t.ggml_type().type_size(), t.block_bytes());
        }
    }
}
