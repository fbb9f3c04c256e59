//! `llama`: the base decoder (Llama 1/2/3, SmolLM, TinyLlama, Mistral-style
//! GQA). RMSNorm → attention with NORM RoPE → residual → RMSNorm → SwiGLU FFN
//! → residual; final RMSNorm and the output head (tied to `token_embd` when
//! `output.weight` is absent).

use std::sync::Arc;

use super::{buf, LogitsWanted, ModelInfo, Scratch, Weight, WeightLoader};
use crate::backend::cpu::{attention, AttnShape};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::ops::activation::swiglu;
use crate::ops::rms_norm::rms_norm;
use crate::ops::rope::{self, RopeMode, RopeParams};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    /// Per-head dimension of q/k/v (`key_length`, default n_embd / n_head).
    pub head_dim: usize,
    pub rms_eps: f32,
    pub rope: RopeParams,
    pub kq_scale: f32,
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile, arch: &str) -> Result<Hparams> {
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd = g.u32(&key("embedding_length"))? as usize;
        let n_layer = g.u32(&key("block_count"))? as usize;
        let n_head = uniform(g, &key("attention.head_count"), n_layer)?;
        let n_head_kv = match g.u32_or_array(&key("attention.head_count_kv"), n_layer)? {
            Some(_) => uniform(g, &key("attention.head_count_kv"), n_layer)?,
            None => n_head,
        };
        let n_ff = uniform(g, &key("feed_forward_length"), n_layer)?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_embd == 0 || n_layer == 0 {
            return Err(Error::Model(format!(
                "bad head counts: n_embd {n_embd}, n_layer {n_layer}, n_head {n_head}, n_head_kv {n_head_kv}"
            )));
        }
        let head_dim = match g.u32_opt(&key("attention.key_length"))? {
            Some(d) => d as usize,
            None => n_embd / n_head,
        };
        let n_rot = g.u32_opt(&key("rope.dimension_count"))?.map_or(head_dim, |v| v as usize);
        if n_rot != head_dim || n_rot % 2 != 0 {
            return Err(Error::Model(format!("rope.dimension_count {n_rot} must equal the head size {head_dim}")));
        }
        let n_tok_embd = g
            .tensor("token_embd.weight")
            .and_then(|t| t.ne.get(1).copied())
            .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))? as usize;
        let n_ctx_train = g.u32_opt(&key("context_length"))?.unwrap_or(2048) as usize;
        let freq_base = g.f32_opt(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let mut rope = RopeParams::plain(n_rot, RopeMode::Norm, freq_base);
        rope.n_ctx_orig = g.u32_opt(&key("rope.scaling.original_context_length"))?.map_or(n_ctx_train, |v| v as usize);
        match g.str_opt(&key("rope.scaling.type"))?.unwrap_or("none") {
            "none" => {}
            "linear" => {
                let factor = g.f32_opt(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if factor > 0.0 {
                    rope.freq_scale = 1.0 / factor;
                }
            }
            other => return Err(Error::Model(format!("rope scaling type '{other}' is not supported for {arch}"))),
        }
        let kq_scale = g.f32_opt(&key("attention.scale"))?.unwrap_or(1.0 / (head_dim as f32).sqrt());
        Ok(Hparams {
            n_vocab: n_tok_embd,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            head_dim,
            rms_eps: g.f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope,
            kq_scale,
        })
    }
}

/// A per-layer key that must hold the same value for every layer here.
fn uniform(g: &GgufFile, key: &str, n_layer: usize) -> Result<usize> {
    let v = g.u32_or_array(key, n_layer)?.ok_or_else(|| crate::gguf::GgufError::MissingKey(key.into()))?;
    if v.iter().any(|&x| x != v[0]) {
        return Err(Error::Model(format!("per-layer values of '{key}' differ; not supported for this architecture")));
    }
    Ok(v[0] as usize)
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) wq: Weight,
    pub(crate) wk: Weight,
    pub(crate) wv: Weight,
    pub(crate) wo: Weight,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn_gate: Weight,
    pub(crate) ffn_up: Weight,
    pub(crate) ffn_down: Weight,
}

pub struct Llama {
    pub hp: Hparams,
    pub info: ModelInfo,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) tok_embd: Weight,
    pub(crate) output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when tied.
    pub(crate) output: Weight,
    pub(crate) rope_freqs: Option<Vec<f32>>,
    pub(crate) layers: Vec<Layer>,
}

impl Llama {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Llama> {
        let hp = Hparams::from_gguf(&file, "llama")?;
        let w = WeightLoader::new(&file);
        let (n_embd, n_ff, hd) = (hp.n_embd, hp.n_ff, hp.head_dim);
        let (q_dim, kv_dim) = (hp.n_head * hd, hp.n_head_kv * hd);
        let tok_embd = w.matrix("token_embd.weight", n_embd, hp.n_vocab)?;
        let output = w.matrix_opt("output.weight", n_embd, hp.n_vocab)?;
        let tied = output.is_none();
        let output = output.unwrap_or_else(|| tok_embd.clone());
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn_norm: w.vector(&n("attn_norm"), n_embd)?,
                wq: w.matrix(&n("attn_q"), n_embd, q_dim)?,
                wk: w.matrix(&n("attn_k"), n_embd, kv_dim)?,
                wv: w.matrix(&n("attn_v"), n_embd, kv_dim)?,
                wo: w.matrix(&n("attn_output"), q_dim, n_embd)?,
                ffn_norm: w.vector(&n("ffn_norm"), n_embd)?,
                ffn_gate: w.matrix(&n("ffn_gate"), n_embd, n_ff)?,
                ffn_up: w.matrix(&n("ffn_up"), n_embd, n_ff)?,
                ffn_down: w.matrix(&n("ffn_down"), n_ff, n_embd)?,
            });
        }
        let output_norm = w.vector("output_norm.weight", n_embd)?;
        let rope_freqs = w.vector_opt("rope_freqs.weight", hd / 2)?;
        let (n_params, weight_bytes) = w.totals();
        let embd_bytes = file.tensor("token_embd.weight").map_or(0, |t| t.size);
        let info = ModelInfo {
            arch: "llama".into(),
            name: file.str_opt("general.name").ok().flatten().map(str::to_string),
            n_vocab: hp.n_vocab,
            n_ctx_train: hp.n_ctx_train,
            n_embd,
            n_layer: hp.n_layer,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            n_ff,
            n_params,
            weight_bytes,
            // The embedding table is only read one row per token unless it is also the head.
            bytes_per_token: if tied { weight_bytes } else { weight_bytes - embd_bytes },
            kv_bytes_per_token: (hp.n_layer * 2 * kv_dim * 2) as u64,
            quant: w.dominant_type(),
        };
        drop(w);
        Ok(Llama { hp, info, file, tok_embd, output_norm, output, rope_freqs, layers })
    }

    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let kv_dim = self.hp.n_head_kv * self.hp.head_dim;
        KvCache::new(n_ctx, vec![(kv_dim, kv_dim); self.hp.n_layer])
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
        let (n_embd, hd) = (hp.n_embd, hp.head_dim);
        let (q_dim, kv_dim) = (hp.n_head * hd, hp.n_head_kv * hd);
        let Scratch { x, cur, q, k, v, attn, gate, up, rope: rc, mm } = s;

        // x: [n, n_embd]
        let x = buf(x, n * n_embd);
        let cur = buf(cur, n * n_embd);
        for (t, &id) in ids.iter().enumerate() {
            self.tok_embd.dequantize_row(f, id as usize, &mut x[t * n_embd..(t + 1) * n_embd])?;
        }

        rc.resize(n * hd / 2, (0.0, 0.0));
        for t in 0..n {
            hp.rope.cache(pos0 + t, self.rope_freqs.as_deref(), &mut rc[t * hd / 2..(t + 1) * hd / 2]);
        }
        let shape = AttnShape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim_k: hd,
            head_dim_v: hd,
            pos0,
            kq_scale: hp.kq_scale,
            window: None,
            softcap: None,
        };

        for (il, l) in self.layers.iter().enumerate() {
            // cur = rms_norm(x) · attn_norm            [n, n_embd]
            cur.copy_from_slice(x);
            cur.chunks_mut(n_embd).for_each(|r| rms_norm(r, &l.attn_norm, hp.rms_eps));
            // q [n, n_head·hd], k/v [n, n_head_kv·hd]
            let q = buf(q, n * q_dim);
            let k = buf(k, n * kv_dim);
            let v = buf(v, n * kv_dim);
            l.wq.matmul(f, cur, q, mm);
            l.wk.matmul(f, cur, k, mm);
            l.wv.matmul(f, cur, v, mm);
            for t in 0..n {
                let c = &rc[t * hd / 2..(t + 1) * hd / 2];
                q[t * q_dim..(t + 1) * q_dim].chunks_mut(hd).for_each(|h| rope::apply(h, c, RopeMode::Norm));
                k[t * kv_dim..(t + 1) * kv_dim].chunks_mut(hd).for_each(|h| rope::apply(h, c, RopeMode::Norm));
            }
            cache.write(il, pos0, k, v);
            // attn [n, n_head·hd]
            let attn = buf(attn, n * q_dim);
            let (kc, vc) = cache.layer(il);
            attention(&shape, q, kc, vc, attn);
            // x += Wo · attn
            l.wo.matmul(f, attn, cur, mm);
            x.iter_mut().zip(cur.iter()).for_each(|(a, b)| *a += b);

            // FFN: x += down(silu(gate(h)) · up(h)),  h = rms_norm(x) · ffn_norm
            cur.copy_from_slice(x);
            cur.chunks_mut(n_embd).for_each(|r| rms_norm(r, &l.ffn_norm, hp.rms_eps));
            let gate = buf(gate, n * hp.n_ff);
            let up = buf(up, n * hp.n_ff);
            l.ffn_gate.matmul(f, cur, gate, mm);
            l.ffn_up.matmul(f, cur, up, mm);
            swiglu(gate, up);
            l.ffn_down.matmul(f, gate, cur, mm);
            x.iter_mut().zip(cur.iter()).for_each(|(a, b)| *a += b);
        }

        // Final norm and head, on the rows that are wanted.
        let rows = match wanted {
            LogitsWanted::All => &mut x[..],
            LogitsWanted::Last => &mut x[(n - 1) * n_embd..],
        };
        rows.chunks_mut(n_embd).for_each(|r| rms_norm(r, &self.output_norm, hp.rms_eps));
        let n_rows = rows.len() / n_embd;
        logits.resize(n_rows * hp.n_vocab, 0.0);
        self.output.matmul(f, rows, logits, mm);
        Ok(())
    }
}
