//! `llama`: the base decoder (Llama 1/2/3, SmolLM, TinyLlama, Mistral-style
//! GQA). RMSNorm → attention with NORM RoPE → residual → RMSNorm → SwiGLU FFN
//! → residual; final RMSNorm and the output head (tied to `token_embd` when
//! `output.weight` is absent). `rope_freqs` (Llama-3 scaling) when present.

use std::sync::Arc;

use super::blocks::{AttnCall, AttnOpts, BaseHparams};
use super::decoder::{Decoder, DecoderSpec};
use crate::gguf::GgufFile;
use crate::ops::rope::RopeMode;
use crate::Result;

pub type Llama = Decoder;

pub fn from_gguf(file: Arc<GgufFile>) -> Result<Llama> {
    let hp = BaseHparams::from_gguf(&file, "llama", RopeMode::Norm)?;
    // `attention.scale` overrides the usual 1/√head_dim.
    let kq_scale = file.f32_opt("llama.attention.scale")?.unwrap_or(1.0 / (hp.head_dim_k as f32).sqrt());
    let call = AttnCall { mode: RopeMode::Norm, q_scale: 1.0, kq_scale, window: None, softcap: None };
    Decoder::load(file, hp, DecoderSpec::new("llama", AttnOpts::default(), false, call))
}
