//! `KvState`: the first `n_tokens` rows of every layer's K and V cache, as
//! bytes in the cache's stored type — what a [`crate::graph::Runner`] exports
//! for a saved session and imports when one is restored. Backend-neutral:
//! the CPU and the GPU store the same row layout, so a state read from one
//! can be written into the other.

use crate::kv_cache::KvType;
use crate::{Error, Result};

/// One layer's rows: `n_tokens × row_bytes(width)` bytes each for K and V
/// (empty for a cache of width 0, e.g. MLA's layers keep no V).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerKv {
    pub k: Vec<u8>,
    pub v: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvState {
    pub type_k: KvType,
    pub type_v: KvType,
    pub n_tokens: usize,
    pub layers: Vec<LayerKv>,
}

impl KvState {
    /// Checks that the state fits a cache of `dims` (per layer: K and V
    /// values per row) holding `n_ctx` positions in `type_k`/`type_v`:
    /// every length is what the row layout says, so a runner can copy
    /// the bytes without further checks.
    pub fn check(&self, dims: &[(usize, usize)], n_ctx: usize, type_k: KvType, type_v: KvType) -> Result<()> {
        if (self.type_k, self.type_v) != (type_k, type_v) {
            return Err(Error::InvalidParam(format!(
                "KV state holds {}/{} rows, the cache stores {type_k}/{type_v}",
                self.type_k, self.type_v
            )));
        }
        if self.n_tokens > n_ctx {
            return Err(Error::ContextFull { needed: self.n_tokens, n_ctx });
        }
        if self.layers.len() != dims.len() {
            return Err(Error::InvalidParam(format!("KV state has {} layers, the model {}", self.layers.len(), dims.len())));
        }
        for (il, (l, &(kw, vw))) in self.layers.iter().zip(dims).enumerate() {
            let want_k = rows_len(type_k, kw, self.n_tokens)?;
            let want_v = rows_len(type_v, vw, self.n_tokens)?;
            if l.k.len() != want_k || l.v.len() != want_v {
                return Err(Error::InvalidParam(format!(
                    "KV state layer {il}: {}/{} bytes, the cache's rows need {want_k}/{want_v}",
                    l.k.len(),
                    l.v.len()
                )));
            }
        }
        Ok(())
    }
}

impl KvState {
    /// The rows of the first `n` positions (all of them when `n >= n_tokens`);
    /// `dims` as in [`KvState::check`], which the state passed.
    pub fn prefix(&self, n: usize, dims: &[(usize, usize)]) -> Result<KvState> {
        let n = n.min(self.n_tokens);
        let layers = self
            .layers
            .iter()
            .zip(dims)
            .map(|(l, &(kw, vw))| {
                let (k, v) = (rows_len(self.type_k, kw, n)?, rows_len(self.type_v, vw, n)?);
                let cut = |rows: &[u8], len: usize| rows.get(..len).map(<[u8]>::to_vec);
                match (cut(&l.k, k), cut(&l.v, v)) {
                    (Some(k), Some(v)) => Ok(LayerKv { k, v }),
                    _ => Err(Error::InvalidParam("KV state shorter than its rows".into())),
                }
            })
            .collect::<Result<_>>()?;
        Ok(KvState { type_k: self.type_k, type_v: self.type_v, n_tokens: n, layers })
    }
}

/// Bytes of `n` rows of `width` values stored as `ty`.
pub fn rows_len(ty: KvType, width: usize, n: usize) -> Result<usize> {
    ty.row_bytes(width)
        .and_then(|r| r.checked_mul(n))
        .ok_or_else(|| Error::InvalidParam(format!("a KV row of {width} values cannot be stored as {ty}")))
}
