//! `llama`: the base decoder (Llama 1/2/3, SmolLM, TinyLlama, Mistral-style
//! GQA). RMSNorm → attention with NORM RoPE → residual → RMSNorm → SwiGLU FFN
//! → residual; final RMSNorm and the output head (tied to `token_embd` when
//! `output.weight` is absent).

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
    /// `attention.scale` (default 1/√head_dim).
    pub kq_scale: f32,
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile, arch: &str) -> Result<Hparams> {
        let base = BaseHparams::from_gguf(g, arch, RopeMode::Norm)?;
        let kq_scale = g.f32_opt(&format!("{arch}.attention.scale"))?.unwrap_or(1.0 / (base.head_dim_k as f32).sqrt());
        Ok(Hparams { base, kq_scale })
    }
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) attn: AttnLayer,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn: FfnLayer,
}

pub struct Llama {
    pub hp: Hparams,
    pub info: ModelInfo,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) tok_embd: Weight,
    pub(crate) output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when tied.
    pub(crate) output: Weight,
    pub(crate) rope_factors: RopeFactors,
    pub(crate) layers: Vec<Layer>,
}

impl Llama {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Llama> {
        let hp = Hparams::from_gguf(&file, "llama")?;
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
        let info = blocks::model_info(&file, &w, "llama", b, tied, b.n_layer * (b.k_dim() + b.v_dim()));
        Ok(Llama { hp, info, file, tok_embd, output_norm, output, rope_factors, layers })
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
        let Scratch { x, h, cur, gate, up, rope, attn, mm, .. } = s;

        // x: [n, n_embd]
        let x = buf(x, n * n_embd);
        let h = buf(h, n * n_embd);
        let cur = buf(cur, n * n_embd);
        blocks::embed(f, &self.tok_embd, ids, x, 1.0)?;
        // rope: [n, n_rot/2] (cos, sin)
        blocks::rope_table(&hp.rope, self.rope_factors.for_ctx(cache.n_ctx), pos0, n, rope);
        let call = AttnCall { mode: RopeMode::Norm, q_scale: 1.0, kq_scale: self.hp.kq_scale, window: None, softcap: None };

        for (il, l) in self.layers.iter().enumerate() {
            // x += attn(rms_norm(x) · attn_norm)
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.attn_norm, hp.rms_eps);
            blocks::self_attention(f, &l.attn, hp, &call, rope, cache, il, pos0, h, cur, attn, mm);
            blocks::add_scaled(x, cur, 1.0);
            // x += down(silu(gate(h)) · up(h)),  h = rms_norm(x) · ffn_norm
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.ffn_norm, hp.rms_eps);
            blocks::ffn(f, &l.ffn, Act::Silu, h, cur, gate, up, mm);
            blocks::add_scaled(x, cur, 1.0);
        }
        blocks::output_head(f, x, &self.output_norm, hp.rms_eps, &self.output, wanted, logits, mm);
        Ok(())
    }
}
