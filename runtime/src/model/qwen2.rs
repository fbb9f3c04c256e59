//! `qwen2`: the llama graph with q/k/v biases and NEOX RoPE (Qwen2, Qwen2.5).

use std::sync::Arc;

use super::blocks::{AttnCall, AttnOpts, BaseHparams};
use super::decoder::{Decoder, DecoderSpec};
use crate::gguf::GgufFile;
use crate::ops::rope::RopeMode;
use crate::Result;

pub fn from_gguf(file: Arc<GgufFile>) -> Result<Decoder> {
    let hp = BaseHparams::from_gguf(&file, "qwen2", RopeMode::Neox)?;
    let kq_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
    let call = AttnCall { mode: RopeMode::Neox, q_scale: 1.0, kq_scale, window: None, softcap: None };
    let attn = AttnOpts { bias: true, ..Default::default() };
    Decoder::load(file, hp, DecoderSpec::new("qwen2", attn, false, call))
}
