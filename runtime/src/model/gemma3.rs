//! `gemma3`: Gemma 3. The embedding × √n_embd; per layer: RMSNorm → attention
//! (per-head q/k RMSNorm, NEOX RoPE, q × 1/√head_dim then kq_scale 1) →
//! `post_attention_norm` → residual; RMSNorm → GELU-tanh gated FFN →
//! `post_ffw_norm` → residual. Sliding-window layers (window
//! `attention.sliding_window`, RoPE base `rope.freq_base_swa`, default 10000)
//! are interleaved with global ones (the GGUF's base and scaling): layer `il`
//! slides iff `il % pattern < pattern − 1`, pattern from
//! `attention.sliding_window_pattern`, else llama.cpp's fixed 6. Norm weights
//! are used as stored (the converter already added Gemma's +1). Optional
//! `final_logit_softcapping`: logits → cap·tanh(logits/cap). Tied head.

use std::sync::Arc;

use super::blocks::{self, Act, AttnCall, AttnLayer, AttnOpts, BaseHparams, FfnLayer};
use super::{buf, LogitsWanted, ModelInfo, Scratch, Weight, WeightLoader};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::ops::rope::{RopeMode, RopeParams};
use crate::Result;

#[derive(Debug, Clone)]
pub struct Hparams {
    pub base: BaseHparams,
    /// `gemma3.attention.sliding_window`.
    pub n_swa: usize,
    /// `gemma3.attention.sliding_window_pattern` (default 6).
    pub swa_pattern: usize,
    /// RoPE of the sliding-window layers (`gemma3.rope.freq_base_swa`, default 10000; no scaling).
    pub rope_swa: RopeParams,
    /// `gemma3.final_logit_softcapping`.
    pub final_softcap: Option<f32>,
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile) -> Result<Hparams> {
        let base = BaseHparams::from_gguf(g, "gemma3", RopeMode::Neox)?;
        let n_swa = g.u32("gemma3.attention.sliding_window")? as usize;
        let swa_pattern = g.u32_opt("gemma3.attention.sliding_window_pattern")?.map_or(6, |v| v as usize).max(1);
        let base_swa = g.f32_opt("gemma3.rope.freq_base_swa")?.unwrap_or(10000.0);
        let mut rope_swa = RopeParams::plain(base.n_rot, RopeMode::Neox, base_swa);
        rope_swa.n_ctx_orig = base.rope.n_ctx_orig;
        let final_softcap = g.f32_opt("gemma3.final_logit_softcapping")?.filter(|&c| c > 0.0);
        Ok(Hparams { base, n_swa, swa_pattern, rope_swa, final_softcap })
    }

    /// The attention of global and of sliding-window layers: q × 1/√head_dim
    /// after RoPE, then kq_scale 1.
    pub fn attn_calls(&self) -> (AttnCall, AttnCall) {
        let q_scale = 1.0 / (self.base.head_dim_k as f32).sqrt();
        let global = AttnCall { mode: RopeMode::Neox, q_scale, kq_scale: 1.0, window: None, softcap: None };
        (global, AttnCall { window: Some(self.n_swa), ..global })
    }

    /// Whether layer `il` uses the sliding window (llama.cpp's `set_swa_pattern`).
    pub fn is_swa(&self, il: usize) -> bool {
        il % self.swa_pattern < self.swa_pattern - 1
    }
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) attn: AttnLayer,
    pub(crate) post_attention_norm: Vec<f32>,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn: FfnLayer,
    pub(crate) post_ffw_norm: Vec<f32>,
}

pub struct Gemma3 {
    pub hp: Hparams,
    pub info: ModelInfo,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) tok_embd: Weight,
    pub(crate) output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when tied (released Gemma 3).
    pub(crate) output: Weight,
    pub(crate) layers: Vec<Layer>,
}

impl Gemma3 {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Gemma3> {
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
                attn: AttnLayer::load(&w, il, b, AttnOpts { qk_norm: true, ..Default::default() })?,
                post_attention_norm: w.vector(&n("post_attention_norm"), b.n_embd)?,
                ffn_norm: w.vector(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&w, il, b.n_embd, b.n_ff, false)?,
                post_ffw_norm: w.vector(&n("post_ffw_norm"), b.n_embd)?,
            });
        }
        let output_norm = w.vector("output_norm.weight", b.n_embd)?;
        let info = blocks::model_info(&file, &w, "gemma3", b, tied, b.n_layer * (b.k_dim() + b.v_dim()));
        Ok(Gemma3 { hp, info, file, tok_embd, output_norm, output, layers })
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
        let Scratch { x, h, cur, gate, up, rope, rope_swa, attn, mm, .. } = s;

        // x = √n_embd · token_embd[ids]        [n, n_embd]
        let x = buf(x, n * n_embd);
        let h = buf(h, n * n_embd);
        let cur = buf(cur, n * n_embd);
        blocks::embed(f, &self.tok_embd, ids, x, (n_embd as f32).sqrt())?;
        // Two RoPE tables: global layers and sliding-window layers.
        blocks::rope_table(&hp.rope, None, pos0, n, rope);
        blocks::rope_table(&self.hp.rope_swa, None, pos0, n, rope_swa);
        let (global, swa) = self.hp.attn_calls();

        for (il, l) in self.layers.iter().enumerate() {
            let (call, rc) = if self.hp.is_swa(il) { (&swa, &rope_swa[..]) } else { (&global, &rope[..]) };
            // x += post_attention_norm(attn(rms_norm(x) · attn_norm))
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.attn_norm, hp.rms_eps);
            blocks::self_attention(f, &l.attn, hp, call, rc, cache, il, pos0, h, cur, attn, mm);
            blocks::norm_rows(cur, &l.post_attention_norm, hp.rms_eps);
            blocks::add_scaled(x, cur, 1.0);
            // x += post_ffw_norm(down(gelu(gate(h)) · up(h))),  h = rms_norm(x) · ffn_norm
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.ffn_norm, hp.rms_eps);
            blocks::ffn(f, &l.ffn, Act::Gelu, h, cur, gate, up, mm);
            blocks::norm_rows(cur, &l.post_ffw_norm, hp.rms_eps);
            blocks::add_scaled(x, cur, 1.0);
        }
        blocks::output_head(f, x, &self.output_norm, hp.rms_eps, &self.output, wanted, logits, mm);
        if let Some(cap) = self.hp.final_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(())
    }
}
