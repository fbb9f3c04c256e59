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

use super::blocks::{self, BaseHparams, FfnLayer};
use super::ModelInfo;
use crate::gguf::GgufFile;
use crate::graph::{
    Act, Attn, Buf, Exec, Forward, Graph, GraphBuilder, Head, HeadMatmul, Mat, Rope, RopeFactors, RopeId, Vector, View, Weights,
};
use crate::ops::rope::RopeMode;
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

struct Layer {
    attn_norm: Vector,
    q_a: Mat,
    q_a_norm: Vector,
    q_b: Mat,
    kv_a_mqa: Mat,
    kv_a_norm: Vector,
    /// Read as f32 by the per-head products: per head `qk_nope` rows of W_kb,
    /// then `hd_v` rows of W_vb, each `kv_lora_rank` wide.
    kv_b: Mat,
    wo: Mat,
    ffn_norm: Vector,
    ffn: FfnLayer,
}

/// The activations of a layer.
struct Bufs {
    /// `[n, n_embd]`: the residual stream, a block's normed input, its output.
    x: Buf,
    h: Buf,
    cur: Buf,
    /// `[n, q_lora_rank]`: q_a's output, then normed.
    qa_raw: Buf,
    qa: Buf,
    /// `[n, n_head·(nope + rope)]`.
    q: Buf,
    /// `[n, lat + rope]`: kv_a_mqa's output, then the cache row.
    kva: Buf,
    kv_row: Buf,
    /// `[n, n_head·(lat + rope)]`: absorbed q per head.
    qabs: Buf,
    /// `[n, n_head·lat]`: attention's output in latent space.
    olat: Buf,
    /// `[n, n_head·hd_v]`.
    attn: Buf,
    /// `[n, n_ff]`.
    gate: Buf,
    up: Buf,
}

pub struct MiniCpm3 {
    pub hp: Hparams,
    pub info: ModelInfo,
    graph: Graph,
    tok_embd: Mat,
    rope: RopeId,
    b: Bufs,
    layers: Vec<Layer>,
}

impl MiniCpm3 {
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<MiniCpm3> {
        let hp = Hparams::from_gguf(&file)?;
        let b = &hp.base;
        let (lat, row) = (hp.kv_lora_rank, hp.cache_row());
        let mut w = Weights::new(file);
        let tok_embd = w.matrix("token_embd.weight", b.n_embd, b.n_vocab)?;
        let (output, tied) = w.output(tok_embd, b.n_embd, b.n_vocab)?;
        let mut layers = Vec::with_capacity(b.n_layer);
        for il in 0..b.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            layers.push(Layer {
                attn_norm: w.vec(&n("attn_norm"), b.n_embd)?,
                q_a: w.matrix(&n("attn_q_a"), b.n_embd, hp.q_lora_rank)?,
                q_a_norm: w.vec(&n("attn_q_a_norm"), hp.q_lora_rank)?,
                q_b: w.matrix(&n("attn_q_b"), hp.q_lora_rank, b.q_dim())?,
                kv_a_mqa: w.matrix(&n("attn_kv_a_mqa"), b.n_embd, row)?,
                kv_a_norm: w.vec(&n("attn_kv_a_norm"), lat)?,
                kv_b: w.dense(&n("attn_kv_b"), lat, b.n_head * (hp.qk_nope + b.head_dim_v))?,
                wo: w.matrix(&n("attn_output"), b.n_head * b.head_dim_v, b.n_embd)?,
                ffn_norm: w.vec(&n("ffn_norm"), b.n_embd)?,
                ffn: FfnLayer::load(&mut w, il, b.n_embd, b.n_ff, false)?,
            });
        }
        let norm = w.vec("output_norm.weight", b.n_embd)?;
        let factors = RopeFactors::load(&w, b.n_rot, b.rope.n_ctx_orig)?;
        let info = blocks::model_info(&w, "minicpm3", b, tied, b.n_layer * row);
        let mut g = GraphBuilder::new(w);
        let bufs = Bufs {
            x: g.buf("x", b.n_embd),
            h: g.buf("h", b.n_embd),
            cur: g.buf("cur", b.n_embd),
            qa_raw: g.buf("qa_raw", hp.q_lora_rank),
            qa: g.buf("qa", hp.q_lora_rank),
            q: g.buf("q", b.q_dim()),
            kva: g.buf("kva", row),
            kv_row: g.buf("kv_row", row),
            qabs: g.buf("qabs", b.n_head * row),
            olat: g.buf("olat", b.n_head * lat),
            attn: g.buf("attn", b.n_head * b.head_dim_v),
            gate: g.buf("gate", b.n_ff),
            up: g.buf("up", b.n_ff),
        };
        let rope = g.rope(b.rope, factors);
        // logits = output(rms_norm(x) · output_norm · 256/n_embd), as llama.cpp's graph.
        let head = Head { norm, output, eps: b.rms_eps, logit_mul: 256.0 / b.n_embd as f32, softcap: None };
        // Per layer: K rows `[latent | k_pe]`, no separate V (V is the latent).
        let graph = g.finish(vec![(row, 0); b.n_layer], (0, 0), bufs.x, head, b.n_vocab);
        Ok(MiniCpm3 { hp, info, graph, tok_embd, rope, b: bufs, layers })
    }

    /// MLA for `b.h [n, n_embd]` into `b.cur [n, n_embd]`, caching latent + k_pe.
    fn mla(&self, e: &mut dyn Exec, l: &Layer, il: usize) -> Result<()> {
        let (hp, bh, b) = (&self.hp, &self.hp.base, &self.b);
        let (n_head, hdk, hdv, nope, nrot, lat) = (bh.n_head, bh.head_dim_k, bh.head_dim_v, hp.qk_nope, hp.qk_rope, hp.kv_lora_rank);
        let row = hp.cache_row();

        // q = q_b(rms_norm(q_a(h)) · q_a_norm)      [n, n_head·(nope + rope)], rope part roped;
        // kva = kv_a_mqa(h)                          [n, lat + rope]
        e.matmul(b.h, &[(l.q_a, b.qa_raw), (l.kv_a_mqa, b.kva)])?;
        blocks::norm(e, b.qa_raw, l.q_a_norm, b.qa, hp.q_lora_rank, bh.rms_eps)?;
        e.matmul(b.qa, &[(l.q_b, b.q)])?;
        let rope_q = Rope { table: self.rope, off: nope, n_head, head_dim: hdk, n_rot: nrot, mode: RopeMode::Neox };
        e.rope(b.q, &rope_q)?;
        // The cache row: [rms_norm(latent) · kv_a_norm | rope(k_pe)]
        e.rms_norm(View { buf: b.kva, off: 0, width: lat }, l.kv_a_norm, View { buf: b.kv_row, off: 0, width: lat }, bh.rms_eps)?;
        e.copy(View { buf: b.kva, off: lat, width: nrot }, View { buf: b.kv_row, off: lat, width: nrot }, 1)?;
        e.rope(b.kv_row, &Rope { off: lat, n_head: 1, head_dim: nrot, ..rope_q })?;
        e.kv_store(il, b.kv_row, None)?;

        // Absorbed q per head: [W_kbᵀ q_nope (lat) | q_pe (rope)]    [n, n_head·row]
        let per_head = (nope + hdv) * lat;
        let absorb = HeadMatmul { n_head, n_out: lat, n_in: nope, x_head: hdk, y_head: row, w_off: 0, w_head: per_head, w_o: 1, w_i: lat };
        e.head_matmul(b.q, l.kv_b, b.qabs, &absorb)?;
        e.copy(View { buf: b.q, off: nope, width: nrot }, View { buf: b.qabs, off: lat, width: nrot }, n_head)?;

        // olat [n, n_head·lat] = softmax(qabs·[latent | k_pe] / √key_length) · latent
        let a = Attn {
            n_head,
            n_head_kv: 1,
            head_dim_k: row,
            head_dim_v: lat,
            kq_scale: 1.0 / (hdk as f32).sqrt(),
            window: None,
            softcap: None,
            v_in_k: true,
        };
        e.attention(il, b.qabs, b.olat, &a)?;

        // attn[t, h] = W_vb[h] · olat[t, h]      [n, n_head·hd_v]; cur = wo · attn
        let unabsorb = HeadMatmul { n_out: hdv, n_in: lat, x_head: lat, y_head: hdv, w_off: nope * lat, w_o: lat, w_i: 1, ..absorb };
        e.head_matmul(b.olat, l.kv_b, b.attn, &unabsorb)?;
        e.matmul(b.attn, &[(l.wo, b.cur)])
    }
}

impl Forward for MiniCpm3 {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn forward(&self, e: &mut dyn Exec) -> Result<()> {
        let (hp, b) = (&self.hp.base, &self.b);
        let n_embd = hp.n_embd;
        let rs = 1.4 / (hp.n_layer as f32).sqrt();
        // x = 12 · token_embd[ids]       [n, n_embd]
        e.embed(self.tok_embd, b.x, 12.0)?;
        for (il, l) in self.layers.iter().enumerate() {
            // x += rs · mla(rms_norm(x) · attn_norm)
            blocks::norm(e, b.x, l.attn_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "attn_norm", Some(il))?;
            self.mla(e, l, il)?;
            e.name(b.cur, "attn_out", Some(il))?;
            e.add(b.x, b.cur, rs)?;
            // x += rs · ffn(rms_norm(x) · ffn_norm)
            blocks::norm(e, b.x, l.ffn_norm, b.h, n_embd, hp.rms_eps)?;
            e.name(b.h, "ffn_norm", Some(il))?;
            blocks::ffn(e, &l.ffn, Act::Silu, b.h, [b.gate, b.up], b.cur)?;
            e.name(b.cur, "ffn_out", Some(il))?;
            e.add(b.x, b.cur, rs)?;
            e.name(b.x, "l_out", Some(il))?;
        }
        Ok(())
    }
}
