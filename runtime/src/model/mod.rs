//! Model architectures, one file each, over shared blocks. A model is built
//! from a [`GgufFile`] (`from_gguf`): it registers its weights (offsets into
//! the memory map) and states its forward pass once, over the executor ops of
//! [`crate::graph`]; the CPU and wgpu backends run it.

pub mod blocks;
pub mod decoder;
pub mod gemma3;
pub mod llama;
pub mod minicpm;
pub mod minicpm3;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use std::sync::Arc;

use crate::gguf::GgufFile;
use crate::graph::{Forward, Graph};
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
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "minicpm", "minicpm3", "qwen2", "qwen3", "gemma3", "phi3", "olmo2"];

/// A loaded model of any supported architecture: its description and its
/// forward pass as a graph (see [`crate::graph`]), which any executor runs.
pub struct Model {
    info: ModelInfo,
    arch: Arc<dyn Forward>,
}

impl Model {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Model> {
        let arch = file.architecture()?.to_string();
        // (its info, the model as a graph)
        macro_rules! load {
            ($e:expr) => {{
                let a = $e?;
                (a.info.clone(), Arc::new(a) as Arc<dyn Forward>)
            }};
        }
        let (info, arch) = match arch.as_str() {
            "llama" => load!(llama::from_gguf(file)),
            "minicpm" => load!(minicpm::from_gguf(file)),
            "minicpm3" => load!(minicpm3::MiniCpm3::from_gguf(file)),
            "qwen2" => load!(qwen2::from_gguf(file)),
            "qwen3" => load!(qwen3::from_gguf(file)),
            "gemma3" => load!(gemma3::Gemma3::from_gguf(file)),
            "phi3" => load!(phi3::from_gguf(file)),
            "olmo2" => load!(olmo2::Olmo2::from_gguf(file)),
            _ => return Err(Error::UnknownArchitecture { arch, supported: SUPPORTED_ARCHS.join(", ") }),
        };
        Ok(Model { info, arch })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The forward pass, for an executor.
    pub fn forward(&self) -> &Arc<dyn Forward> {
        &self.arch
    }

    pub fn graph(&self) -> &Graph {
        self.arch.graph()
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
