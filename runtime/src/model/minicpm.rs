//! `minicpm`: MiniCPM-1/2 and MiniCPM4 (which ships under this name). The
//! llama graph (NORM RoPE, SwiGLU) with three scales: the embedding ×
//! `embedding_scale`, each branch × `residual_scale` before it joins the
//! residual stream, and the logits ÷ `logit_scale`; LongRoPE factors
//! (`rope_factors_long/short`) chosen per session from its n_ctx.
//!
//! Files without the scale keys get MiniCPM's own defaults (its reference
//! implementation): embedding ×12, branches ×1.4/√n_layer and the final hidden
//! state ÷ (n_embd/256) before the head. llama.cpp inverts the last one for such
//! files (logits ÷ (256/n_embd)); we follow MiniCPM — see docs/MODELS.md.

use std::sync::Arc;

use super::blocks::{AttnCall, AttnOpts, BaseHparams};
use super::decoder::{Decoder, DecoderSpec};
use crate::gguf::GgufFile;
use crate::ops::rope::RopeMode;
use crate::Result;

#[derive(Debug, Clone)]
pub struct Hparams {
    pub base: BaseHparams,
    /// `minicpm.embedding_scale` (default 12).
    pub embedding_scale: f32,
    /// `minicpm.residual_scale` (default 1.4/√n_layer).
    pub residual_scale: f32,
    /// What the logits are multiplied by: 1/`minicpm.logit_scale` as llama.cpp
    /// applies the key, or 256/n_embd (MiniCPM's default) without it.
    pub logit_mul: f32,
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile) -> Result<Hparams> {
        let base = BaseHparams::from_gguf(g, "minicpm", RopeMode::Norm)?;
        let mut defaulted = Vec::new();
        let embedding_scale = g.f32_opt("minicpm.embedding_scale")?.unwrap_or_else(|| {
            defaulted.push("embedding_scale = 12");
            12.0
        });
        let residual_scale = g.f32_opt("minicpm.residual_scale")?.unwrap_or_else(|| {
            defaulted.push("residual_scale = 1.4/sqrt(n_layer)");
            1.4 / (base.n_layer as f32).sqrt()
        });
        let logit_mul = match g.f32_opt("minicpm.logit_scale")? {
            Some(s) => 1.0 / s,
            None => {
                defaulted.push("final hidden state / (n_embd/256) (llama.cpp would divide by 256/n_embd instead)");
                256.0 / base.n_embd as f32
            }
        };
        if !defaulted.is_empty() {
            log::warn!("minicpm: scale keys missing, using MiniCPM's defaults: {}", defaulted.join(", "));
        }
        Ok(Hparams { base, embedding_scale, residual_scale, logit_mul })
    }
}

/// The standard decoder with MiniCPM's scales.
pub fn from_gguf(file: Arc<GgufFile>) -> Result<Decoder> {
    let hp = Hparams::from_gguf(&file)?;
    let kq_scale = 1.0 / (hp.base.head_dim_k as f32).sqrt();
    let call = AttnCall { mode: RopeMode::Norm, q_scale: 1.0, kq_scale, window: None, softcap: None };
    let spec = DecoderSpec {
        embedding_scale: hp.embedding_scale,
        residual_scale: hp.residual_scale,
        logit_mul: hp.logit_mul,
        ..DecoderSpec::new("minicpm", AttnOpts::default(), false, call)
    };
    Decoder::load(file, hp.base, spec)
}
