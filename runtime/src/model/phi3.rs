//! `phi3`: the llama graph with a fused `attn_qkv` (q | k | v rows), a fused
//! `ffn_up` (first n_ff rows gate → SiLU, last n_ff rows up), NEOX RoPE, q
//! pre-scaled by 1/√head_dim, and LongRoPE factors when the file has them.
//! `phi3.attention.sliding_window` is ignored, as llama.cpp does (it disables
//! Phi-3 SWA because converted files do not say which layers slide).
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
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile) -> Result<Hparams> {
        Ok(Hparams { base: BaseHparams::from_gguf(g, "phi3", RopeMode::Neox)? })
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttnLayer,
    ffn_norm: Vec<f32>,
    ffn: FfnLayer,
}

pub struct Phi3 {
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

impl Phi3 {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Phi3> {
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
                attn: AttnLayer::load(&w, il, b, AttnOpts { fused_qkv: true, ..Default::default() })?,
                ffn_norm: w.vector(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&w, il, b.n_embd, b.n_ff, true)?,
            });
        }
        let output_norm = w.vector("output_norm.weight", b.n_embd)?;
        let rope_factors = RopeFactors::load(&w, b.n_rot, b.rope.n_ctx_orig)?;
        let info = blocks::model_info(&file, &w, "phi3", b, tied, b.n_layer * (b.k_dim() + b.v_dim()));
        Ok(Phi3 { hp, info, file, tok_embd, output_norm, output, rope_factors, layers })
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
        // q is pre-scaled by 1/√head_dim, then kq_scale 1 (as llama.cpp's graph does).
        let q_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
        let call = AttnCall { mode: RopeMode::Neox, q_scale, kq_scale: 1.0, window: None, softcap: None };

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
