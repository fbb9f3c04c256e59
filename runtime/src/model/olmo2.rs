//! `olmo2`: OLMo 2. No pre-norms: per layer, q/k/v = W·x; q and k are
//! RMS-normed over their whole width (`attn_q_norm` n_head·head_dim,
//! `attn_k_norm` n_head_kv·head_dim, not per head), NEOX RoPE,
//! attention × 1/√head_dim, then x += post_attention_norm(Wo · attn); the
//! SiLU-gated FFN reads x itself and x += post_ffw_norm(ffn(x)). Final
//! norm, untied head. head_dim = n_embd/n_head (llama.cpp reads no
//! `key_length` here). A file with `attention.sliding_window` is OLMo 3's
//! interleaved-SWA variant, which is not supported.
//!
//! The whole architecture is this file: hyper-parameters, weights by their
//! GGUF names and the forward pass, over the shared blocks.

use std::sync::Arc;

use super::blocks::{self, all, AttnCall, AttnLayer, AttnOpts, BaseHparams, FfnLayer, LayerBufs};
use super::ModelInfo;
use crate::gguf::GgufFile;
use crate::graph::{Act, Exec, Forward, Graph, GraphBuilder, Head, Mat, RopeFactors, RopeId, Vector, Weights};
use crate::ops::rope::RopeMode;
use crate::{Error, Result};

struct Layer {
    attn: AttnLayer,
    /// RMSNorm weights over the whole q and k rows.
    q_norm: Vector,
    k_norm: Vector,
    post_attention_norm: Vector,
    ffn: FfnLayer,
    post_ffw_norm: Vector,
}

pub struct Olmo2 {
    pub hp: BaseHparams,
    pub info: ModelInfo,
    graph: Graph,
    tok_embd: Mat,
    rope: RopeId,
    call: AttnCall,
    b: LayerBufs,
    layers: Vec<Layer>,
}

impl Olmo2 {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Olmo2> {
        if file.u32_opt("olmo2.attention.sliding_window")?.unwrap_or(0) > 0 {
            return Err(Error::Model("olmo2 with attention.sliding_window (OLMo 3) is not supported".into()));
        }
        let hp = BaseHparams::from_gguf(&file, "olmo2", RopeMode::Neox)?;
        let mut w = Weights::new(file);
        let tok_embd = w.matrix("token_embd.weight", hp.n_embd, hp.n_vocab)?;
        let (output, tied) = w.output(tok_embd, hp.n_embd, hp.n_vocab)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn: AttnLayer::load(&mut w, il, &hp, AttnOpts::default())?,
                q_norm: w.vec(&n("attn_q_norm"), hp.q_dim())?,
                k_norm: w.vec(&n("attn_k_norm"), hp.k_dim())?,
                post_attention_norm: w.vec(&n("post_attention_norm"), hp.n_embd)?,
                ffn: FfnLayer::load(&mut w, il, hp.n_embd, hp.n_ff, false)?,
                post_ffw_norm: w.vec(&n("post_ffw_norm"), hp.n_embd)?,
            });
        }
        let norm = w.vec("output_norm.weight", hp.n_embd)?;
        let factors = RopeFactors::load(&w, hp.n_rot, hp.rope.n_ctx_orig)?;
        let info = blocks::model_info(&w, "olmo2", &hp, tied, hp.n_layer * (hp.k_dim() + hp.v_dim()));
        let mut g = GraphBuilder::new(w);
        // q_raw/k_raw hold the products before their whole-row norms.
        let b = LayerBufs::declare(&mut g, &hp, true);
        let rope = g.rope(hp.rope, factors);
        let head = Head { norm, output, eps: hp.rms_eps, logit_mul: 1.0, softcap: None };
        let graph = g.finish(vec![(hp.k_dim(), hp.v_dim()); hp.n_layer], (hp.head_dim_k, hp.head_dim_v), b.x, head, hp.n_vocab);
        let kq_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
        let call = AttnCall { mode: RopeMode::Neox, q_scale: 1.0, kq_scale, window: None, softcap: None };
        Ok(Olmo2 { hp, info, graph, tok_embd, rope, call, b, layers })
    }
}

impl Forward for Olmo2 {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn forward(&self, e: &mut dyn Exec) -> Result<()> {
        let (hp, b) = (&self.hp, &self.b);
        let (n_embd, eps) = (hp.n_embd, hp.rms_eps);
        let (q_raw, k_raw) = b.qk_raw.expect("declared with q/k buffers");
        // x = token_embd[ids]        [n, n_embd]
        e.embed(self.tok_embd, b.x, 1.0)?;
        for (il, l) in self.layers.iter().enumerate() {
            // q = rms_norm(Wq·x) · q_norm over the whole row, k likewise; v = Wv·x
            let a = &l.attn;
            e.matmul(b.x, &[(a.wq, q_raw), (a.wk, k_raw), (a.wv, b.v)])?;
            e.rms_norm(all(q_raw, hp.q_dim()), l.q_norm, all(b.q, hp.q_dim()), eps)?;
            e.rms_norm(all(k_raw, hp.k_dim()), l.k_norm, all(b.k, hp.k_dim()), eps)?;
            // attn = Wo · softmax(rope(q)·rope(k)ᵀ / √head_dim) · v;  x += post_attention_norm(attn)
            blocks::rope_attend(e, a, hp, &self.call, self.rope, il, b)?;
            blocks::norm(e, b.cur, l.post_attention_norm, b.h, n_embd, eps)?;
            e.name(b.h, "attn_out", Some(il))?;
            e.add(b.x, b.h, 1.0)?;
            // x += post_ffw_norm(down(silu(gate(x)) · up(x)))
            blocks::ffn(e, &l.ffn, Act::Silu, b.x, [b.gate, b.up], b.cur)?;
            blocks::norm(e, b.cur, l.post_ffw_norm, b.h, n_embd, eps)?;
            e.name(b.h, "ffn_out", Some(il))?;
            e.add(b.x, b.h, 1.0)?;
            e.name(b.x, "l_out", Some(il))?;
        }
        Ok(())
    }
}
