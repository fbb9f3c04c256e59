//! `phi3`: the llama graph with a fused `attn_qkv` (q | k | v rows), a fused
//! `ffn_up` (first n_ff rows gate → SiLU, last n_ff rows up), NEOX RoPE, q
//! pre-scaled by 1/√head_dim, and LongRoPE factors when the file has them.
//! `phi3.attention.sliding_window` is ignored, as llama.cpp does (it disables
//! Phi-3 SWA because converted files do not say which layers slide).

use std::sync::Arc;

use super::blocks::{AttnCall, AttnOpts, BaseHparams};
use super::decoder::{Decoder, DecoderSpec};
use crate::gguf::GgufFile;
use crate::ops::rope::RopeMode;
use crate::Result;

pub fn from_gguf(file: Arc<GgufFile>) -> Result<Decoder> {
    let hp = BaseHparams::from_gguf(&file, "phi3", RopeMode::Neox)?;
    // q is pre-scaled by 1/√head_dim, then kq_scale 1 (as llama.cpp's graph does).
    let q_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
    let call = AttnCall { mode: RopeMode::Neox, q_scale, kq_scale: 1.0, window: None, softcap: None };
    let attn = AttnOpts { fused_qkv: true, ..Default::default() };
    Decoder::load(file, hp, DecoderSpec::new("phi3", attn, true, call))
}
