//! The standard pre-norm decoder that `llama`, `qwen2`, `qwen3`, `phi3` and
//! `minicpm` share: x += attn(rms_norm(x)); x += ffn(rms_norm(x)); final norm;
//! head. The architectures differ only in what [`DecoderSpec`] and
//! [`AttnCall`] say (RoPE pairing, biases, q/k norms, fused weights, attention
//! scaling, MiniCPM's μP scales), so each of their files is its
//! hyper-parameters and a spec.

use std::sync::Arc;

use super::blocks::{self, AttnCall, AttnLayer, AttnOpts, BaseHparams, FfnLayer, LayerBufs};
use super::ModelInfo;
use crate::gguf::GgufFile;
use crate::graph::{Act, Exec, Forward, Graph, GraphBuilder, Head, Mat, RopeFactors, RopeId, Vector, Weights};
use crate::Result;

/// What distinguishes one standard decoder architecture from another.
#[derive(Debug, Clone, Copy)]
pub struct DecoderSpec {
    pub arch: &'static str,
    /// Weights of the attention block: fused QKV, q/k/v biases, per-head q/k norms.
    pub attn: AttnOpts,
    /// `ffn_up` holds gate and up rows (phi3).
    pub fused_gate_up: bool,
    /// RoPE pairing and attention scaling, the same for every layer.
    pub call: AttnCall,
    /// The embeddings are multiplied by this (minicpm; 1 elsewhere).
    pub embedding_scale: f32,
    /// Each branch is multiplied by this before it joins the residual stream.
    pub residual_scale: f32,
    /// The logits are multiplied by this.
    pub logit_mul: f32,
}

impl DecoderSpec {
    /// A spec without scales (all 1).
    pub fn new(arch: &'static str, attn: AttnOpts, fused_gate_up: bool, call: AttnCall) -> DecoderSpec {
        DecoderSpec { arch, attn, fused_gate_up, call, embedding_scale: 1.0, residual_scale: 1.0, logit_mul: 1.0 }
    }
}

struct Layer {
    attn_norm: Vector,
    attn: AttnLayer,
    ffn_norm: Vector,
    ffn: FfnLayer,
}

pub struct Decoder {
    pub hp: BaseHparams,
    pub info: ModelInfo,
    pub spec: DecoderSpec,
    graph: Graph,
    tok_embd: Mat,
    rope: RopeId,
    b: LayerBufs,
    layers: Vec<Layer>,
}

impl Decoder {
    /// Loads the weights by their GGUF names (`blk.{il}.attn_norm.weight` …).
    pub fn load(file: Arc<GgufFile>, hp: BaseHparams, spec: DecoderSpec) -> Result<Decoder> {
        let mut w = Weights::new(file);
        let tok_embd = w.matrix("token_embd.weight", hp.n_embd, hp.n_vocab)?;
        let (output, tied) = w.output(tok_embd, hp.n_embd, hp.n_vocab)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn_norm: w.vec(&n("attn_norm"), hp.n_embd)?,
                attn: AttnLayer::load(&mut w, il, &hp, spec.attn)?,
                ffn_norm: w.vec(&n("ffn_norm"), hp.n_embd)?,
                ffn: FfnLayer::load(&mut w, il, hp.n_embd, hp.n_ff, spec.fused_gate_up)?,
            });
        }
        let norm = w.vec("output_norm.weight", hp.n_embd)?;
        // LongRoPE factors follow the session's n_ctx.
        let factors = RopeFactors::load(&w, hp.n_rot, hp.rope.n_ctx_orig)?;
        let info = blocks::model_info(&w, spec.arch, &hp, tied, hp.n_layer * (hp.k_dim() + hp.v_dim()));
        let mut g = GraphBuilder::new(w);
        let b = LayerBufs::declare(&mut g, &hp, spec.attn.qk_norm);
        let rope = g.rope(hp.rope, factors);
        // logits = logit_mul · output(rms_norm(x) · output_norm)     [rows, n_vocab]
        let head = Head { norm, output, eps: hp.rms_eps, logit_mul: spec.logit_mul, softcap: None };
        let graph = g.finish(vec![(hp.k_dim(), hp.v_dim()); hp.n_layer], (hp.head_dim_k, hp.head_dim_v), b.x, head, hp.n_vocab);
        Ok(Decoder { hp, info, spec, graph, tok_embd, rope, b, layers })
    }
}

impl Forward for Decoder {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn forward(&self, e: &mut dyn Exec) -> Result<()> {
        let (hp, sp, b) = (&self.hp, &self.spec, &self.b);
        let n_embd = hp.n_embd;
        // x = embedding_scale · token_embd[ids]      [n, n_embd]
        e.embed(self.tok_embd, b.x, sp.embedding_scale)?;
        for (il, l) in self.layers.iter().enumerate() {
            // x += residual_scale · attn(rms_norm(x) · attn_norm)
            blocks::norm(e, b.x, l.attn_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "attn_norm", Some(il))?;
            blocks::self_attention(e, &l.attn, hp, &sp.call, self.rope, il, b)?;
            e.name(b.cur, "attn_out", Some(il))?;
            e.add(b.x, b.cur, sp.residual_scale)?;
            // x += residual_scale · down(silu(gate(h)) · up(h)),  h = rms_norm(x) · ffn_norm
            blocks::norm(e, b.x, l.ffn_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "ffn_norm", Some(il))?;
            blocks::ffn(e, &l.ffn, Act::Silu, b.h, [b.gate, b.up], b.cur)?;
            e.name(b.cur, "ffn_out", Some(il))?;
            e.add(b.x, b.cur, sp.residual_scale)?;
            e.name(b.x, "l_out", Some(il))?;
        }
        Ok(())
    }
}
