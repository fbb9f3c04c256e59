//! Model architectures, one file each, over shared blocks. A model is built
//! from a [`GgufFile`] (`from_gguf`), keeps only offsets into the memory map
//! for its weights, and runs a forward pass over a batch of tokens.

pub mod blocks;
pub mod decoder;
pub mod gemma3;
pub mod llama;
mod loader;
pub mod minicpm;
pub mod minicpm3;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use std::sync::Arc;

pub use loader::{Weight, WeightLoader};

use crate::backend::cpu::CpuBackend;
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::{Error, Result};

/// Which rows of logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsWanted {
    /// Only the last token's row (generation).
    Last,
    /// One row per input token (perplexity, `ember logits`).
    All,
}

/// Architecture names Ember can run.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "minicpm", "minicpm3", "qwen2", "qwen3", "gemma3", "phi3"];

/// A loaded model of any supported architecture.
pub enum Model {
    Llama(decoder::Decoder),
    MiniCpm(decoder::Decoder),
    MiniCpm3(minicpm3::MiniCpm3),
    Qwen2(decoder::Decoder),
    Qwen3(decoder::Decoder),
    Gemma3(gemma3::Gemma3),
    Phi3(decoder::Decoder),
}

/// `$body` with `$m` bound to the architecture's model.
macro_rules! each_arch {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Model::Llama($m) => $body,
            Model::MiniCpm($m) => $body,
            Model::MiniCpm3($m) => $body,
            Model::Qwen2($m) => $body,
            Model::Qwen3($m) => $body,
            Model::Gemma3($m) => $body,
            Model::Phi3($m) => $body,
        }
    };
}

impl Model {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Model> {
        let arch = file.architecture()?.to_string();
        Ok(match arch.as_str() {
            "llama" => Model::Llama(llama::from_gguf(file)?),
            "minicpm" => Model::MiniCpm(minicpm::from_gguf(file)?),
            "minicpm3" => Model::MiniCpm3(minicpm3::MiniCpm3::from_gguf(file)?),
            "qwen2" => Model::Qwen2(qwen2::from_gguf(file)?),
            "qwen3" => Model::Qwen3(qwen3::from_gguf(file)?),
            "gemma3" => Model::Gemma3(gemma3::Gemma3::from_gguf(file)?),
            "phi3" => Model::Phi3(phi3::from_gguf(file)?),
            _ => return Err(Error::UnknownArchitecture { arch, supported: SUPPORTED_ARCHS.join(", ") }),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        each_arch!(self, m => &m.info)
    }

    /// A KV cache sized for `n_ctx` positions. The cache carries n_ctx into
    /// `forward`, where it picks per-session settings (LongRoPE factors).
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        each_arch!(self, m => m.new_cache(n_ctx))
    }

    /// Runs `ids` at positions `pos0..`, writing K/V into `cache` and the
    /// wanted logits rows into `logits` (`n_vocab` per row).
    pub fn forward(
        &self,
        be: &CpuBackend,
        cache: &mut KvCache,
        scratch: &mut Scratch,
        ids: &[u32],
        pos0: usize,
        wanted: LogitsWanted,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let info = self.info();
        for &id in ids {
            if id as usize >= info.n_vocab {
                return Err(Error::TokenOutOfVocab { id, n_vocab: info.n_vocab });
            }
        }
        if pos0 + ids.len() > cache.n_ctx {
            return Err(Error::ContextFull { needed: pos0 + ids.len(), n_ctx: cache.n_ctx });
        }
        if ids.is_empty() {
            logits.clear();
            return Ok(());
        }
        scratch.mm.kernels = be.kernels();
        be.install_forward(ids.len(), || each_arch!(self, m => m.forward(cache, scratch, ids, pos0, wanted, logits)))
    }
}

/// What every architecture reports about itself.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub arch: String,
    pub name: Option<String>,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_params: u64,
    /// Bytes of all weight tensors.
    pub weight_bytes: u64,
    /// Weight bytes read to generate one token (all but the unused embedding rows).
    pub bytes_per_token: u64,
    /// KV-cache bytes per token of context.
    pub kv_bytes_per_token: u64,
    /// The most common weight type of the 2-D tensors ("Q4_1" …).
    pub quant: String,
}

/// Activation buffers reused across forward passes (no allocation once warm).
#[derive(Default)]
pub struct Scratch {
    /// The residual stream `[n, n_embd]`.
    pub x: Vec<f32>,
    /// A block's normed input `[n, n_embd]`.
    pub h: Vec<f32>,
    /// A block's output `[n, n_embd]`.
    pub cur: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub rope: Vec<(f32, f32)>,
    /// Second RoPE table (gemma3's sliding-window layers).
    pub rope_swa: Vec<(f32, f32)>,
    pub attn: blocks::AttnBufs,
    /// MLA (minicpm3) buffers.
    pub mla: minicpm3::MlaBufs,
    pub mm: crate::backend::cpu::MatmulScratch,
}

/// Resizes a scratch vector to `n` (no reallocation once large enough).
pub(crate) fn buf(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}
