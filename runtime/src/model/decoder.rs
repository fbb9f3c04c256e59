//! The standard pre-norm decoder that `llama`, `qwen2`, `qwen3`, `phi3` and
//! `minicpm` share: x += attn(rms_norm(x)); x += ffn(rms_norm(x)); final norm;
//! head. The architectures differ only in what [`DecoderSpec`] and
//! [`AttnCall`] say (RoPE pairing, biases, q/k norms, fused weights, attention
//! scaling, MiniCPM's μP scales), so each of their files is its
//! hyper-parameters and a spec.

use std::sync::Arc;

use super::blocks::{self, Act, AttnCall, AttnLayer, AttnOpts, BaseHparams, FfnLayer, RopeFactors};
use super::{buf, LogitsWanted, ModelInfo, Scratch, Weight, WeightLoader};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
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

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) attn: AttnLayer,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn: FfnLayer,
}

pub struct Decoder {
    pub hp: BaseHparams,
    pub info: ModelInfo,
    pub spec: DecoderSpec,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) tok_embd: Weight,
    pub(crate) output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when tied.
    pub(crate) output: Weight,
    pub(crate) rope_factors: RopeFactors,
    pub(crate) layers: Vec<Layer>,
}

impl Decoder {
    /// Loads the weights by their GGUF names (`blk.{il}.attn_norm.weight` …).
    pub fn load(file: Arc<GgufFile>, hp: BaseHparams, spec: DecoderSpec) -> Result<Decoder> {
        let b = &hp;
        let w = WeightLoader::new(&file);
        let tok_embd = w.matrix("token_embd.weight", b.n_embd, b.n_vocab)?;
        let (output, tied) = blocks::output_weight(&w, &tok_embd, b.n_embd, b.n_vocab)?;
        let mut layers = Vec::with_capacity(b.n_layer);
        for il in 0..b.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn_norm: w.vector(&n("attn_norm"), b.n_embd)?,
                attn: AttnLayer::load(&w, il, b, spec.attn)?,
                ffn_norm: w.vector(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&w, il, b.n_embd, b.n_ff, spec.fused_gate_up)?,
            });
        }
        let output_norm = w.vector("output_norm.weight", b.n_embd)?;
        let rope_factors = RopeFactors::load(&w, b.n_rot, b.rope.n_ctx_orig)?;
        let info = blocks::model_info(&file, &w, spec.arch, b, tied, b.n_layer * (b.k_dim() + b.v_dim()));
        Ok(Decoder { hp, info, spec, file, tok_embd, output_norm, output, rope_factors, layers })
    }

    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::new(n_ctx, vec![(self.hp.k_dim(), self.hp.v_dim()); self.hp.n_layer])
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
        let hp = &self.hp;
        let f = &*self.file;
        let n = ids.len();
        let n_embd = hp.n_embd;
        let Scratch { x, h, cur, gate, up, rope, attn, mm, .. } = s;

        // x: [n, n_embd]
        let x = buf(x, n * n_embd);
        let h = buf(h, n * n_embd);
        let cur = buf(cur, n * n_embd);
        let sp = &self.spec;
        blocks::embed(f, &self.tok_embd, ids, x, sp.embedding_scale)?;
        // rope: [n, n_rot/2] (cos, sin); LongRoPE factors follow the session's n_ctx.
        blocks::rope_table(&hp.rope, self.rope_factors.for_ctx(cache.n_ctx), pos0, n, rope);

        for (il, l) in self.layers.iter().enumerate() {
            // x += residual_scale · attn(rms_norm(x) · attn_norm)
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.attn_norm, hp.rms_eps);
            blocks::self_attention(f, &l.attn, hp, &sp.call, rope, cache, il, pos0, h, cur, attn, mm);
            blocks::add_scaled(x, cur, sp.residual_scale);
            // x += residual_scale · down(silu(gate(h)) · up(h)),  h = rms_norm(x) · ffn_norm
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.ffn_norm, hp.rms_eps);
            blocks::ffn(f, &l.ffn, Act::Silu, h, cur, gate, up, mm);
            blocks::add_scaled(x, cur, sp.residual_scale);
        }
        // logits = logit_mul · output(rms_norm(x) · output_norm)     [rows, n_vocab]
        blocks::output_head(f, x, &self.output_norm, hp.rms_eps, &self.output, wanted, logits, mm);
        if sp.logit_mul != 1.0 {
            logits.iter_mut().for_each(|v| *v *= sp.logit_mul);
        }
        Ok(())
    }
}
