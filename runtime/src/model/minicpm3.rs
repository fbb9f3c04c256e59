//! `minicpm3`: MiniCPM3 with multi-head latent attention (MLA).
//!
//! Per layer: q = q_b(rms_norm(q_a(h)) · q_a_norm), per head `[q_nope | q_pe]`
//! (`key_length` = qk_nope + qk_rope, qk_rope = `rope.dimension_count`);
//! `kv_a_mqa(h)` = `[latent (kv_lora_rank) | k_pe (qk_rope)]`, latent ←
//! rms_norm(latent) · kv_a_norm; `kv_b(latent)` gives per head `[k_nope | v]`
//! (v head = n_embd/n_head, as llama.cpp has no `value_length` here). NEOX
//! RoPE on q_pe and k_pe only; k_pe is shared by all heads; kq_scale
//! 1/√key_length. Scales hard-coded as llama.cpp does: embedding ×12,
//! branches ×1.4/√n_layer, final-norm output ×256/n_embd. LongRoPE factors.
//!
//! Beyond llama.cpp: the cache keeps, per layer and position, only the normed
//! latent and the roped k_pe (`kv_lora_rank + qk_rope` values instead of
//! `n_head·(key_length + v_head)`), and attention runs in the absorbed form:
//! q_nope·k_nope = (W_kbᵀ q_nope)·latent, and v = W_vb · (Σ p·latent). So
//! attention is multi-query over `[latent | k_pe]` rows with V = the latent.

use std::sync::Arc;

use super::blocks::{self, Act, BaseHparams, FfnLayer, RopeFactors};
use super::{buf, LogitsWanted, ModelInfo, Scratch, Weight, WeightLoader};
use crate::backend::cpu::{attention_strided, team, AttnShape};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::ops::rope::{self, RopeMode};
use crate::Result;

#[derive(Debug, Clone)]
pub struct Hparams {
    pub base: BaseHparams,
    /// `minicpm3.attention.q_lora_rank`.
    pub q_lora_rank: usize,
    /// `minicpm3.attention.kv_lora_rank`.
    pub kv_lora_rank: usize,
    /// key_length − rope.dimension_count.
    pub qk_nope: usize,
    /// rope.dimension_count.
    pub qk_rope: usize,
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile) -> Result<Hparams> {
        let base = BaseHparams::from_gguf(g, "minicpm3", RopeMode::Neox)?;
        let q_lora_rank = g.u32("minicpm3.attention.q_lora_rank")? as usize;
        let kv_lora_rank = g.u32("minicpm3.attention.kv_lora_rank")? as usize;
        let qk_rope = base.n_rot;
        let qk_nope = base.head_dim_k - qk_rope;
        Ok(Hparams { base, q_lora_rank, kv_lora_rank, qk_nope, qk_rope })
    }

    /// f16 values cached per layer and position: the latent and k_pe.
    pub fn cache_row(&self) -> usize {
        self.kv_lora_rank + self.qk_rope
    }
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) q_a: Weight,
    pub(crate) q_a_norm: Vec<f32>,
    pub(crate) q_b: Weight,
    pub(crate) kv_a_mqa: Weight,
    pub(crate) kv_a_norm: Vec<f32>,
    pub(crate) kv_b: Weight,
    pub(crate) wo: Weight,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) ffn: FfnLayer,
}

impl Layer {
    /// kv_b dequantized into `dst` (`n_head·(qk_nope + hd_v)` rows of
    /// kv_lora_rank): the absorbed maps W_kb and W_vb, per head.
    pub(crate) fn kv_b_f32(&self, f: &GgufFile, dst: &mut [f32]) -> Result<()> {
        for (r, row) in dst.chunks_mut(self.kv_b.n_in).enumerate() {
            self.kv_b.dequantize_row(f, r, row)?;
        }
        Ok(())
    }
}

/// Buffers of the MLA block.
#[derive(Default)]
pub struct MlaBufs {
    qa: Vec<f32>,
    q: Vec<f32>,
    kva: Vec<f32>,
    qabs: Vec<f32>,
    olat: Vec<f32>,
    attn: Vec<f32>,
    /// kv_b dequantized: `n_head·(qk_nope + hd_v)` rows of kv_lora_rank.
    wkv: Vec<f32>,
}

pub struct MiniCpm3 {
    pub hp: Hparams,
    pub info: ModelInfo,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) tok_embd: Weight,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) output: Weight,
    pub(crate) rope_factors: RopeFactors,
    pub(crate) layers: Vec<Layer>,
}

impl MiniCpm3 {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<MiniCpm3> {
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
                q_a: w.matrix(&n("attn_q_a"), b.n_embd, hp.q_lora_rank)?,
                q_a_norm: w.vector(&n("attn_q_a_norm"), hp.q_lora_rank)?,
                q_b: w.matrix(&n("attn_q_b"), hp.q_lora_rank, b.q_dim())?,
                kv_a_mqa: w.matrix(&n("attn_kv_a_mqa"), b.n_embd, hp.cache_row())?,
                kv_a_norm: w.vector(&n("attn_kv_a_norm"), hp.kv_lora_rank)?,
                kv_b: w.matrix(&n("attn_kv_b"), hp.kv_lora_rank, b.n_head * (hp.qk_nope + b.head_dim_v))?,
                wo: w.matrix(&n("attn_output"), b.n_head * b.head_dim_v, b.n_embd)?,
                ffn_norm: w.vector(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&w, il, b.n_embd, b.n_ff, false)?,
            });
        }
        let output_norm = w.vector("output_norm.weight", b.n_embd)?;
        let rope_factors = RopeFactors::load(&w, b.n_rot, b.rope.n_ctx_orig)?;
        let info = blocks::model_info(&file, &w, "minicpm3", b, tied, b.n_layer * hp.cache_row());
        Ok(MiniCpm3 { hp, info, file, tok_embd, output_norm, output, rope_factors, layers })
    }

    /// Per layer: K rows `[latent | k_pe]`, no separate V (V is the latent).
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::new(n_ctx, vec![(self.hp.cache_row(), 0); self.hp.base.n_layer])
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
        let rs = 1.4 / (hp.n_layer as f32).sqrt();
        let Scratch { x, h, cur, gate, up, rope, mla, mm, .. } = s;

        // x = 12 · token_embd[ids]       [n, n_embd]
        let x = buf(x, n * n_embd);
        let h = buf(h, n * n_embd);
        let cur = buf(cur, n * n_embd);
        blocks::embed(f, &self.tok_embd, ids, x, 12.0)?;
        blocks::rope_table(&hp.rope, self.rope_factors.for_ctx(cache.n_ctx), pos0, n, rope);

        for (il, l) in self.layers.iter().enumerate() {
            // x += rs · mla(rms_norm(x) · attn_norm)
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.attn_norm, hp.rms_eps);
            self.mla(l, il, pos0, rope, cache, h, cur, mla, mm)?;
            blocks::add_scaled(x, cur, rs);
            // x += rs · ffn(rms_norm(x) · ffn_norm)
            h.copy_from_slice(x);
            blocks::norm_rows(h, &l.ffn_norm, hp.rms_eps);
            blocks::ffn(f, &l.ffn, Act::Silu, h, cur, gate, up, mm);
            blocks::add_scaled(x, cur, rs);
        }
        // logits = output(rms_norm(x) · output_norm · 256/n_embd)
        blocks::output_head(f, x, &self.output_norm, hp.rms_eps, &self.output, wanted, logits, mm);
        let s = 256.0 / n_embd as f32;
        logits.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    /// MLA for `h [n, n_embd]` into `out [n, n_embd]`, caching latent + k_pe.
    #[allow(clippy::too_many_arguments)]
    fn mla(
        &self,
        l: &Layer,
        il: usize,
        pos0: usize,
        rc: &[(f32, f32)],
        cache: &mut KvCache,
        h: &[f32],
        out: &mut [f32],
        b: &mut MlaBufs,
        mm: &mut crate::backend::cpu::MatmulScratch,
    ) -> Result<()> {
        let f = &*self.file;
        let hp = &self.hp;
        let bh = &hp.base;
        let n = h.len() / bh.n_embd;
        let (n_head, hdk, hdv, nope, nrot, lat) =
            (bh.n_head, bh.head_dim_k, bh.head_dim_v, hp.qk_nope, hp.qk_rope, hp.kv_lora_rank);
        let half = nrot / 2;

        // q = q_b(rms_norm(q_a(h)) · q_a_norm)      [n, n_head·(nope + rope)]
        let qa = buf(&mut b.qa, n * hp.q_lora_rank);
        l.q_a.matmul(f, h, qa, mm);
        blocks::norm_rows(qa, &l.q_a_norm, bh.rms_eps);
        let q = buf(&mut b.q, n * n_head * hdk);
        l.q_b.matmul(f, qa, q, mm);
        // kva = kv_a_mqa(h)   [n, lat + rope]: latent normed, k_pe roped.
        let row = hp.cache_row();
        let kva = buf(&mut b.kva, n * row);
        l.kv_a_mqa.matmul(f, h, kva, mm);
        for t in 0..n {
            let c = &rc[t * half..(t + 1) * half];
            let r = &mut kva[t * row..(t + 1) * row];
            blocks::norm_rows(&mut r[..lat], &l.kv_a_norm, bh.rms_eps);
            rope::apply(&mut r[lat..], c, RopeMode::Neox);
            q[t * n_head * hdk..(t + 1) * n_head * hdk]
                .chunks_mut(hdk)
                .for_each(|head| rope::apply(&mut head[nope..], c, RopeMode::Neox));
        }
        cache.write(il, pos0, kva, &[]);

        // W_kv = kv_b as f32: per head `nope` rows of W_kb then `hdv` rows of W_vb, each `lat` wide.
        let per_head = nope + hdv;
        let wkv = buf(&mut b.wkv, n_head * per_head * lat);
        l.kv_b_f32(f, wkv)?;
        let wkv = &*wkv;

        // Absorbed q per head: [W_kbᵀ q_nope (lat) | q_pe (rope)]    [n, n_head·row]
        let qabs = buf(&mut b.qabs, n * n_head * row);
        let q = &*q;
        team::for_each_chunk_mut(qabs, row, |th, dst| {
            let (t, hh) = (th / n_head, th % n_head);
            let qh = &q[(t * n_head + hh) * hdk..][..hdk];
            let (qa_lat, qa_pe) = dst.split_at_mut(lat);
            qa_lat.iter_mut().for_each(|v| *v = 0.0);
            for (d, &qd) in qh[..nope].iter().enumerate() {
                let wr = &wkv[(hh * per_head + d) * lat..][..lat];
                qa_lat.iter_mut().zip(wr).for_each(|(a, &w)| *a += qd * w);
            }
            qa_pe.copy_from_slice(&qh[nope..]);
        });

        // olat [n, n_head·lat] = softmax(q·k / √key_length) · latent
        let olat = buf(&mut b.olat, n * n_head * lat);
        let shape = AttnShape {
            n_head,
            n_head_kv: 1,
            head_dim_k: row,
            head_dim_v: lat,
            pos0,
            kq_scale: 1.0 / (hdk as f32).sqrt(),
            window: None,
            softcap: None,
        };
        let (kc, _) = cache.layer(il);
        attention_strided(mm.kernels, &shape, qabs, kc, row, kc, row, olat);

        // attn[t, h] = W_vb[h] · olat[t, h]      [n, n_head·hd_v]
        let attn = buf(&mut b.attn, n * n_head * hdv);
        let olat = &*olat;
        team::for_each_chunk_mut(attn, hdv, |th, dst| {
            let hh = th % n_head;
            let o = &olat[th * lat..(th + 1) * lat];
            for (e, d) in dst.iter_mut().enumerate() {
                let wr = &wkv[(hh * per_head + nope + e) * lat..][..lat];
                *d = wr.iter().zip(o).map(|(a, b)| a * b).sum();
            }
        });
        l.wo.matmul(f, attn, out, mm);
        Ok(())
    }
}
