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

use super::blocks::{self, AttnCall, AttnLayer, AttnOpts, BaseHparams, FfnLayer, LayerBufs};
use super::ModelInfo;
use crate::gguf::GgufFile;
use crate::graph::{Act, Exec, Forward, Graph, GraphBuilder, Head, Mat, RopeFactors, RopeId, Vector, Weights};
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

struct Layer {
    attn_norm: Vector,
    attn: AttnLayer,
    post_attention_norm: Vector,
    ffn_norm: Vector,
    ffn: FfnLayer,
    post_ffw_norm: Vector,
}

pub struct Gemma3 {
    pub hp: Hparams,
    pub info: ModelInfo,
    graph: Graph,
    tok_embd: Mat,
    /// RoPE tables of the global and of the sliding-window layers.
    rope: RopeId,
    rope_swa: RopeId,
    b: LayerBufs,
    layers: Vec<Layer>,
}

impl Gemma3 {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Gemma3> {
        let hp = Hparams::from_gguf(&file)?;
        let b = &hp.base;
        let mut w = Weights::new(file);
        let tok_embd = w.matrix("token_embd.weight", b.n_embd, b.n_vocab)?;
        // `output.weight`, or `token_embd.weight` when tied (released Gemma 3).
        let (output, tied) = w.output(tok_embd, b.n_embd, b.n_vocab)?;
        let mut layers = Vec::with_capacity(b.n_layer);
        for il in 0..b.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn_norm: w.vec(&n("attn_norm"), b.n_embd)?,
                attn: AttnLayer::load(&mut w, il, b, AttnOpts { qk_norm: true, ..Default::default() })?,
                post_attention_norm: w.vec(&n("post_attention_norm"), b.n_embd)?,
                ffn_norm: w.vec(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&mut w, il, b.n_embd, b.n_ff, false)?,
                post_ffw_norm: w.vec(&n("post_ffw_norm"), b.n_embd)?,
            });
        }
        let norm = w.vec("output_norm.weight", b.n_embd)?;
        let info = blocks::model_info(&w, "gemma3", b, tied, b.n_layer * (b.k_dim() + b.v_dim()));
        let mut g = GraphBuilder::new(w);
        let lb = LayerBufs::declare(&mut g, b, true);
        let rope = g.rope(b.rope, RopeFactors::default());
        let rope_swa = g.rope(hp.rope_swa, RopeFactors::default());
        let head = Head { norm, output, eps: b.rms_eps, logit_mul: 1.0, softcap: hp.final_softcap };
        let graph = g.finish(vec![(b.k_dim(), b.v_dim()); b.n_layer], (b.head_dim_k, b.head_dim_v), lb.x, head, b.n_vocab);
        Ok(Gemma3 { hp, info, graph, tok_embd, rope, rope_swa, b: lb, layers })
    }
}

impl Forward for Gemma3 {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn forward(&self, e: &mut dyn Exec) -> Result<()> {
        let (hp, b) = (&self.hp.base, &self.b);
        let n_embd = hp.n_embd;
        let (global, swa) = self.hp.attn_calls();
        // x = √n_embd · token_embd[ids]        [n, n_embd]
        e.embed(self.tok_embd, b.x, (n_embd as f32).sqrt())?;
        for (il, l) in self.layers.iter().enumerate() {
            let (call, rope) = if self.hp.is_swa(il) { (&swa, self.rope_swa) } else { (&global, self.rope) };
            // x += post_attention_norm(attn(rms_norm(x) · attn_norm))
            blocks::norm(e, b.x, l.attn_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "attn_norm", Some(il))?;
            blocks::self_attention(e, &l.attn, hp, call, rope, il, b)?;
            blocks::norm(e, b.cur, l.post_attention_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "attn_out", Some(il))?;
            e.add(b.x, b.h, 1.0)?;
            // x += post_ffw_norm(down(gelu(gate(h)) · up(h))),  h = rms_norm(x) · ffn_norm
            blocks::norm(e, b.x, l.ffn_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "ffn_norm", Some(il))?;
            blocks::ffn(e, &l.ffn, Act::Gelu, b.h, [b.gate, b.up], b.cur)?;
            blocks::norm(e, b.cur, l.post_ffw_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "ffn_out", Some(il))?;
            e.add(b.x, b.h, 1.0)?;
            e.name(b.x, "l_out", Some(il))?;
        }
        Ok(())
    }
}
