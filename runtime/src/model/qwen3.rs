//! `qwen3`: the llama graph with NEOX RoPE, `key_length`/`value_length` head
//! sizes (≠ n_embd/n_head) and per-head RMSNorm of q and k (`attn_q_norm`,
//! `attn_k_norm`) before RoPE.

use std::sync::Arc;

use super::blocks::{AttnCall, AttnOpts, BaseHparams};
use super::decoder::{Decoder, DecoderSpec};
use crate::gguf::GgufFile;
use crate::ops::rope::RopeMode;
use crate::Result;

pub fn from_gguf(file: Arc<GgufFile>) -> Result<Decoder> {
    let hp = BaseHparams::from_gguf(&file, "qwen3", RopeMode::Neox)?;
    let kq_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
    let call = AttnCall { mode: RopeMode::Neox, q_scale: 1.0, kq_scale, window: None, softcap: None };
    let attn = AttnOpts { qk_norm: true, ..Default::default() };
    Decoder::load(file, hp, DecoderSpec::new("qwen3", attn, false, call))
}
