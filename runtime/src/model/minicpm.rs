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

use super::blocks::{self, Act, AttnCall, AttnLayer, AttnOpts, BaseHparams, FfnLayer, RopeFactors};
use super::{buf, LogitsWanted, ModelInfo, Scratch, Weight, WeightLoader};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
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

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttnLayer,
    ffn_norm: Vec<f32>,
    ffn: FfnLayer,
}

pub struct MiniCpm {
    pub hp: Hparams,
    pub info: ModelInfo,
    file: Arc<GgufFile>,
    tok_embd: Weight,
    output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when tied.
    output: Weight,
    rope_factors: RopeFactors,
    layers: Vec<Layer>,
}

impl MiniCpm {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<MiniCpm> {
        let hp = Hparams::from_gguf(&file)?;
        let b = &hp.base;
        let w = WeightLoader::new(&file);
        let tok_embd = w.matrix("token_embd.weight", b.n_embd, b.n_vocab)?;
        let (output, tied) = blocks::output_weight(&w, &tok_embd, b.n_embd, b.n_vocab)?;
        let mut layers = Vec::with_capacity(b.n_layer);
        for il in 0..b.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn_norm: w.vector(&n("attn_norm"), b.n_embd)?,
                attn: AttnLayer::load(&w, il, b, AttnOpts::default())?,
                ffn_norm: w.vector(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&w, il, b.n_embd, b.n_ff, false)?,
            });
        }
        let output_norm = w.vector("output_norm.weight", b.n_embd)?;
        let rope_factors = RopeFactors::load(&w, b.n_rot, b.rope.n_ctx_orig)?;
        let info = blocks::model_info(&file, &w, "minicpm", b, tied, b.n_layer * (b.k_dim() + b.v_dim()));
        Ok(MiniCpm { hp, info, file, tok_embd, output_norm, output, rope_factors, layers })
    }

    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let b = &self.hp.base;
        KvCache::new(n_ctx, vec![(b.k_dim(), b.v_dim()); b.n_layer])
    }

    pub fn forward(
        &self,
        cache: &mut KvCache,
        s: &mut Scratch,
        ids: &[u32],
        pos0: usize,
        wanted: LogitsWanted,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let hp = &self.hp.base;
        let f = &*self.file;
        let n = ids.len();
        let n_embd = hp.n_embd;
        let rs = self.hp.residual_scale;
        let Scratch { x, h, cur, gate, up, rope, attn, mm, .. } = s;

        // x = embedding_scale · token_embd[ids]       [n, n_embd]
        let x = buf(x, n * n_embd);
        let h = buf(h, n * n_embd);
        let cur = buf(cur, n * n_embd);
        blocks::embed(f, &self.tok_embd, ids, x, self.hp.embedding_scale)?;
        // LongRoPE factors follow the session's n_ctx (the cache's).
        blocks::rope_table(&hp.rope, self.rope_factors.for_ctx(cache.n_ctx), pos0, n, rope);
        let call = AttnCall {
            mode: RopeMode::Norm,
            q_scale: 1.0,
            kq_scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
            window: None,
            softcap: None,
        };

        for (il, l) in self.layers.iter().enumerate() {
            // x += residual_scale · attn(rms_norm(x) · attn_norm)
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.attn_norm, hp.rms_eps);
            blocks::self_attention(f, &l.attn, hp, &call, rope, cache, il, pos0, h, cur, attn, mm);
            blocks::add_scaled(x, cur, rs);
            // x += residual_scale · ffn(rms_norm(x) · ffn_norm)
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.ffn_norm, hp.rms_eps);
            blocks::ffn(f, &l.ffn, Act::Silu, h, cur, gate, up, mm);
            blocks::add_scaled(x, cur, rs);
        }
        // logits = logit_mul · output(rms_norm(x) · output_norm)     [rows, n_vocab]
        blocks::output_head(f, x, &self.output_norm, hp.rms_eps, &self.output, wanted, logits, mm);
        logits.iter_mut().for_each(|v| *v *= self.hp.logit_mul);
        Ok(())
    }
}
