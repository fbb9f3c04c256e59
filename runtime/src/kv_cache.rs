//! The KV cache: preallocated for the session's context, written in place at
//! each position, never grown by copying. f16 like llama.cpp's default.

use std::fmt;
use std::str::FromStr;

use half::f16;

use crate::kv_rotation::{hadamard, KvRotation};
use crate::Error;

/// How the KV cache stores its rows, like llama.cpp's `-ctk`/`-ctv`: f16
/// (the default), or ggml's q8_0/q4_0 blocks of 32 values (a row's width
/// must then be a multiple of 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvType {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::Q4_0];

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

/// Bytes per token of a cache with per-layer row widths `dims` (see
/// [`KvCache::new`]) stored as `k`/`v`; `None` when a row is not a whole
/// number of blocks.
pub fn bytes_per_token(dims: &[(usize, usize)], k: KvType, v: KvType) -> Option<usize> {
    dims.iter().try_fold(0, |sum, &(kr, vr)| Some(sum + k.row_bytes(kr)? + v.row_bytes(vr)?))
}

/// Checks that `dims` can be stored as `k`/`v`, with an error that names the
/// first layer whose row is not a whole number of 32-value blocks.
pub fn check_types(dims: &[(usize, usize)], k: KvType, v: KvType) -> Result<(), Error> {
    for (il, &(kr, vr)) in dims.iter().enumerate() {
        // MLA's latent cache (no V row: V is read from the K row) stays f16:
        // its attention reads V as a prefix of each K row.
        if vr == 0 && k != KvType::F16 {
            return Err(Error::InvalidParam(format!(
                "KV cache type {k}: layer {il} caches one latent row for K and V (MLA); that cache is f16 only"
            )));
        }
        for (what, ty, n) in [("K", k, kr), ("V", v, vr)] {
            if ty.row_bytes(n).is_none() {
                return Err(Error::InvalidParam(format!(
                    "KV cache type {ty}: layer {il}'s {what} row has {n} values, not a multiple of {}",
                    ty.block_len()
                )));
            }
        }
    }
    Ok(())
}

/// One layer's rows of K or of V in their stored type: row `j` (position
/// `j`) is the `ty.row_bytes(width)` bytes at `j·row_bytes`.
#[derive(Clone, Copy)]
pub struct KvRows<'a> {
    pub ty: KvType,
    /// Values per row (`n_head_kv · head_dim`).
    pub width: usize,
    pub bytes: &'a [u8],
    /// The rows are stored rotated in pieces of this many values
    /// ([`crate::kv_rotation`]): attention rotates the queries (K) or its
    /// output (V) to match.
    pub rot: Option<usize>,
}

impl KvRows<'_> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.width).unwrap_or(0)
    }

    /// The rows as f16 values, when they are f16.
    pub fn as_f16(&self) -> Option<&[f16]> {
        (self.ty == KvType::F16).then(|| bytemuck::cast_slice(self.bytes))
    }
}

pub struct KvCache {
    pub n_ctx: usize,
    /// Per layer: K row width (`n_head_kv · head_dim_k`) and V row width.
    dims: Vec<(usize, usize)>,
    types: (KvType, KvType),
    /// Per layer, `n_ctx` rows of `row_bytes` each, in u16 words so that an
    /// f16 cache can be viewed as `[f16]` (every row_bytes is even: f16 is 2
    /// bytes, ggml's q8_0/q4_0 blocks 34/18).
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    /// llama.cpp's Hadamard rotation of quantized rows ([`KvCache::rotated`]).
    rot: KvRotation,
    /// The rows being rotated before they are stored.
    scratch: Vec<f32>,
}

impl KvCache {
    /// `dims[il] = (k_row, v_row)` for each layer, stored as `k_type`/`v_type`
    /// ([`check_types`] must accept them).
    pub fn new(n_ctx: usize, dims: Vec<(usize, usize)>, k_type: KvType, v_type: KvType) -> Result<KvCache, Error> {
        check_types(&dims, k_type, v_type)?;
        let words = |ty: KvType, n: usize| vec![0u16; n_ctx * ty.row_bytes(n).unwrap_or(0) / 2];
        let k = dims.iter().map(|&(kr, _)| words(k_type, kr)).collect();
        let v = dims.iter().map(|&(_, vr)| words(v_type, vr)).collect();
        Ok(KvCache { n_ctx, dims, types: (k_type, v_type), k, v, rot: KvRotation::default(), scratch: Vec::new() })
    }

    /// The same cache storing its rows rotated as `rot` says (llama.cpp's
    /// attention rotation, [`crate::kv_rotation`]; the backends' caches use
    /// [`KvRotation::new`] for the model's heads).
    pub fn rotated(mut self, rot: KvRotation) -> KvCache {
        self.rot = rot;
        self
    }

    /// How the rows are rotated.
    pub fn rotation(&self) -> KvRotation {
        self.rot
    }

    /// The stored types of K and V.
    pub fn types(&self) -> (KvType, KvType) {
        self.types
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.bytes_per_token() * self.n_ctx
    }

    /// Bytes per token of context.
    pub fn bytes_per_token(&self) -> usize {
        bytes_per_token(&self.dims, self.types.0, self.types.1).unwrap_or(0)
    }

    /// Writes `n` consecutive rows of K and V (f32) at `pos`, rounded to f16
    /// or quantized with ggml's reference quantizers (`quantize_row_q8_0_ref`,
    /// `quantize_row_q4_0_ref`), rotated first where the cache rotates, as
    /// llama.cpp stores them.
    pub fn write(&mut self, il: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (kr, vr) = self.dims[il];
        let (kt, vt) = self.types;
        for (ty, width, x, rot, dst) in [(kt, kr, k, self.rot.k, &mut self.k[il]), (vt, vr, v, self.rot.v, &mut self.v[il])] {
            let x = match rot {
                Some(n) => {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(x);
                    hadamard(&mut self.scratch, n);
                    &self.scratch[..]
                }
                None => x,
            };
            store_rows(ty, width, pos, x, bytemuck::cast_slice_mut(dst));
        }
    }

    /// Layer `il`'s K and V rows.
    pub fn layer(&self, il: usize) -> (KvRows<'_>, KvRows<'_>) {
        let (kr, vr) = self.dims[il];
        (
            KvRows { ty: self.types.0, width: kr, bytes: bytemuck::cast_slice(&self.k[il]), rot: self.rot.k },
            KvRows { ty: self.types.1, width: vr, bytes: bytemuck::cast_slice(&self.v[il]), rot: self.rot.v },
        )
    }

    /// Layer `il`'s K and V bytes, to write stored rows back (saved sessions).
    pub fn layer_bytes_mut(&mut self, il: usize) -> (&mut [u8], &mut [u8]) {
        (bytemuck::cast_slice_mut(&mut self.k[il]), bytemuck::cast_slice_mut(&mut self.v[il]))
    }

    /// Layer `il`'s K and V rows of positions `0..n`, as stored (saved sessions).
    pub fn rows_bytes(&self, il: usize, n: usize) -> (Vec<u8>, Vec<u8>) {
        let (k, v) = self.layer(il);
        (k.bytes[..n * k.row_bytes()].to_vec(), v.bytes[..n * v.row_bytes()].to_vec())
    }

    /// Replaces layer `il`'s rows from position 0 with `k` and `v` (whole
    /// rows as stored, at most `n_ctx` of them; see [`crate::kv_state::KvState::check`]).
    pub fn set_rows_bytes(&mut self, il: usize, k: &[u8], v: &[u8]) {
        let (dk, dv) = self.layer_bytes_mut(il);
        dk[..k.len()].copy_from_slice(k);
        dv[..v.len()].copy_from_slice(v);
    }

    /// Per layer: K and V values per row.
    pub fn dims(&self) -> &[(usize, usize)] {
        &self.dims
    }
}

/// Stores the rows of `x` (`width` values each) from row `pos` of `dst` on.
fn store_rows(ty: KvType, width: usize, pos: usize, x: &[f32], dst: &mut [u8]) {
    if width == 0 || x.is_empty() {
        return;
    }
    let rb = ty.row_bytes(width).unwrap_or(0);
    let dst = &mut dst[pos * rb..][..x.len() / width * rb];
    match ty {
        KvType::F16 => {
            // Aligned: the buffer is u16 words and every row_bytes is even.
            for (d, &s) in bytemuck::cast_slice_mut::<u8, f16>(dst).iter_mut().zip(x) {
                *d = f16::from_f32(s);
            }
        }
        KvType::Q8_0 => crate::quant::q8_0::quantize_row(x, dst),
        KvType::Q4_0 => crate::quant::q4_0::quantize_row(x, dst),
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
        // Rows of 48 values are not whole blocks; MLA's latent cache (no V row) stays f16.
        assert!(KvCache::new(8, vec![(48, 64)], KvType::Q8_0, KvType::F16).is_err());
        assert!(KvCache::new(8, vec![(576, 0)], KvType::Q8_0, KvType::Q8_0).is_err());
        assert!(KvCache::new(8, vec![(576, 0)], KvType::F16, KvType::Q8_0).is_ok());
        for t in [KvType::F16, KvType::Q8_0, KvType::Q4_0] {
            assert_eq!(t.ggml_type().block_size(), t.block_len());
            assert_eq!(t.ggml_type().type_size(), t.block_bytes());
        }
    }

    /// Stored q8_0/q4_0 rows are byte for byte what gguf-py's ports of ggml's
    /// reference quantizers make of the same values
    /// (`scripts/gen_kv_quant_golden.py`), at the right rows of the cache.
    #[test]
    fn stored_rows_match_gguf_py_quantizer() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant_golden");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x: Vec<f32> = read("KV_IN.f32").chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let width = 256;
        for (ty, file) in [(KvType::Q8_0, "KV_Q8_0.bin"), (KvType::Q4_0, "KV_Q4_0.bin")] {
            let want = read(file);
            // K as `ty`, V as f16: both sides written at position 1.
            let mut c = KvCache::new(6, vec![(width, width)], ty, KvType::F16).unwrap();
            c.write(0, 1, &x, &x);
            let (k, v) = c.layer(0);
            let rb = ty.row_bytes(width).unwrap();
            assert_eq!(&k.bytes[rb..rb + want.len()], &want[..], "{ty}");
            assert!(k.bytes[..rb].iter().chain(&k.bytes[rb + want.len()..]).all(|&b| b == 0), "{ty}: other rows untouched");
            let v16 = v.as_f16().unwrap();
            assert!(v16[width..][..x.len()].iter().zip(&x).all(|(h, &f)| *h == f16::from_f32(f)));
        }
    }
}
