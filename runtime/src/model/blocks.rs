//! Blocks shared by the architecture files: the common hyperparameters, the
//! embedding lookup, norm rows, RoPE tables (with per-session LongRoPE factor
//! choice), the self-attention block (split or fused QKV, optional biases and
//! per-head q/k norms), the FFN block (split or fused gate/up; SiLU or GELU) and
//! the output head. Each architecture's `forward` is a straight line over these.

use super::{buf, LogitsWanted, ModelInfo, Weight, WeightLoader};
use crate::backend::cpu::profile::timed;
use crate::backend::cpu::team;
use crate::backend::cpu::{attention, matmul_many, AttnShape, MatmulScratch, OpKind};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::ops::activation::{geglu_ggml, swiglu};
use crate::ops::rms_norm::rms_norm;
use crate::ops::rope::{self, RopeMode, RopeParams};
use crate::{Error, Result};

/// The hyperparameters every decoder here has, read from `{arch}.*` keys.
#[derive(Debug, Clone)]
pub struct BaseHparams {
    pub n_vocab: usize,
    /// `context_length` (the model's original training context).
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    /// `attention.key_length` (default n_embd / n_head).
    pub head_dim_k: usize,
    /// `attention.value_length` (default n_embd / n_head).
    pub head_dim_v: usize,
    /// `rope.dimension_count` (default head_dim_k).
    pub n_rot: usize,
    pub rms_eps: f32,
    /// RoPE with `rope.freq_base` (default 10000) and linear scaling if any.
    pub rope: RopeParams,
}

impl BaseHparams {
    pub fn from_gguf(g: &GgufFile, arch: &str, mode: RopeMode) -> Result<BaseHparams> {
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
        let head_dim_k = g.u32_opt(&key("attention.key_length"))?.map_or(n_embd / n_head, |d| d as usize);
        let head_dim_v = g.u32_opt(&key("attention.value_length"))?.map_or(n_embd / n_head, |d| d as usize);
        let n_rot = g.u32_opt(&key("rope.dimension_count"))?.map_or(head_dim_k, |v| v as usize);
        if n_rot > head_dim_k || n_rot % 2 != 0 || head_dim_k == 0 || head_dim_v == 0 {
            return Err(Error::Model(format!(
                "rope.dimension_count {n_rot} must be even and ≤ the key head size {head_dim_k}"
            )));
        }
        let n_tok_embd = g
            .tensor("token_embd.weight")
            .and_then(|t| t.ne.get(1).copied())
            .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))? as usize;
        let n_ctx_train = g.u32_opt(&key("context_length"))?.unwrap_or(2048) as usize;
        let freq_base = g.f32_opt(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let mut rope = RopeParams::plain(n_rot, mode, freq_base);
        rope.n_ctx_orig = g.u32_opt(&key("rope.scaling.original_context_length"))?.map_or(n_ctx_train, |v| v as usize);
        match g.str_opt(&key("rope.scaling.type"))?.unwrap_or("none") {
            "none" => {}
            // LongRoPE: per-pair factors from rope_factors_long/short tensors
            // (see `RopeFactors`); no magnitude change without attn_factor.
            "longrope" => {
                if let Some(a) = g.f32_opt(&key("rope.scaling.attn_factor"))? {
                    rope.attn_factor = a;
                }
            }
            "linear" => {
                let factor = g.f32_opt(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if factor > 0.0 {
                    rope.freq_scale = 1.0 / factor;
                }
            }
            other => return Err(Error::Model(format!("rope scaling type '{other}' is not supported for {arch}"))),
        }
        Ok(BaseHparams {
            n_vocab: n_tok_embd,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            head_dim_k,
            head_dim_v,
            n_rot,
            rms_eps: g.f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim_k
    }
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}

/// A per-layer key that must hold the same value for every layer here.
pub fn uniform(g: &GgufFile, key: &str, n_layer: usize) -> Result<usize> {
    let v = g.u32_or_array(key, n_layer)?.ok_or_else(|| crate::gguf::GgufError::MissingKey(key.into()))?;
    if v.is_empty() || v.iter().any(|&x| x != v[0]) {
        return Err(Error::Model(format!("per-layer values of '{key}' differ; not supported for this architecture")));
    }
    Ok(v[0] as usize)
}

/// RoPE frequency factors: `rope_freqs.weight` (always used), or LongRoPE's
/// `rope_factors_long/short.weight`, chosen once per session as llama.cpp
/// does: long when the session's n_ctx exceeds the original context length.
#[derive(Debug, Clone, Default)]
pub struct RopeFactors {
    fixed: Option<Vec<f32>>,
    long: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
    n_ctx_orig: usize,
}

impl RopeFactors {
    pub fn load(w: &WeightLoader, n_rot: usize, n_ctx_orig: usize) -> Result<RopeFactors> {
        let n = n_rot / 2;
        Ok(RopeFactors {
            fixed: w.vector_opt("rope_freqs.weight", n)?,
            long: w.vector_opt("rope_factors_long.weight", n)?,
            short: w.vector_opt("rope_factors_short.weight", n)?,
            n_ctx_orig,
        })
    }

    /// The factors for a session of `n_ctx` positions.
    pub fn for_ctx(&self, n_ctx: usize) -> Option<&[f32]> {
        if let Some(f) = &self.fixed {
            return Some(f);
        }
        if n_ctx > self.n_ctx_orig {
            self.long.as_deref()
        } else {
            self.short.as_deref()
        }
    }
}

/// cos/sin of positions `pos0..pos0+n`: `n × n_rot/2` pairs.
pub fn rope_table(p: &RopeParams, ff: Option<&[f32]>, pos0: usize, n: usize, out: &mut Vec<(f32, f32)>) {
    let h = p.n_rot / 2;
    out.resize(n * h, (0.0, 0.0));
    for t in 0..n {
        p.cache(pos0 + t, ff, &mut out[t * h..(t + 1) * h]);
    }
}

/// Rotates the first `n_rot` dims of each `hd`-wide head of each token row
/// (`x`: `n × n_heads·hd`) with the token's table row.
pub fn rope_heads(x: &mut [f32], hd: usize, rc: &[(f32, f32)], n_rot: usize, mode: RopeMode) {
    let h = n_rot / 2;
    let n = rc.len() / h.max(1);
    let row = x.len() / n.max(1);
    for (t, r) in x.chunks_mut(row).enumerate() {
        let c = &rc[t * h..(t + 1) * h];
        r.chunks_mut(hd).for_each(|head| rope::apply(&mut head[..n_rot], c, mode));
    }
}

/// RMSNorm of each `w.len()`-wide row of `x` (token rows, or heads).
pub fn norm_rows(x: &mut [f32], w: &[f32], eps: f32) {
    par_rows(x, w.len(), |_, r| rms_norm(r, w, eps));
}

/// `f(t, row t)` for each `row`-long row of `x`, in parallel tasks of
/// whole rows (≥ 16 Ki values each, so a task outweighs its hand-off): a
/// prompt's norms and activations are as many values as its products'
/// outputs, and on one thread they took nearly half of Gemma-3-270M's
/// pp512 once the products were fast. One token's rows stay on this thread.
pub(crate) fn par_rows(x: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let per = (16 << 10) / row.max(1) + 1;
    team::for_each_chunk_mut(x, per * row.max(1), |c, chunk| {
        for (i, r) in chunk.chunks_mut(row.max(1)).enumerate() {
            f(c * per + i, r);
        }
    });
}

/// `x[t] = scale · token_embd[ids[t]]`.
pub fn embed(f: &GgufFile, tok_embd: &Weight, ids: &[u32], x: &mut [f32], scale: f32) -> Result<()> {
    let n_embd = tok_embd.n_in;
    for (t, &id) in ids.iter().enumerate() {
        tok_embd.dequantize_row(f, id as usize, &mut x[t * n_embd..(t + 1) * n_embd])?;
    }
    if scale != 1.0 {
        x.iter_mut().for_each(|v| *v *= scale);
    }
    Ok(())
}

/// `x += scale · y`.
pub fn add_scaled(x: &mut [f32], y: &[f32], scale: f32) {
    if scale == 1.0 {
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    } else {
        x.iter_mut().zip(y).for_each(|(a, b)| *a += scale * b);
    }
}

/// The output head: `output.weight`, or `token_embd.weight` when tied. Returns (head, tied).
pub fn output_weight(w: &WeightLoader, tok_embd: &Weight, n_embd: usize, n_vocab: usize) -> Result<(Weight, bool)> {
    Ok(match w.matrix_opt("output.weight", n_embd, n_vocab)? {
        Some(o) => (o, false),
        None => (tok_embd.clone(), true),
    })
}

/// The ModelInfo common part; `kv_bytes_per_token` as the cache stores it (f16).
pub fn model_info(file: &GgufFile, w: &WeightLoader, arch: &str, hp: &BaseHparams, tied: bool, kv_row_elems: usize) -> ModelInfo {
    let (n_params, weight_bytes) = w.totals();
    let embd_bytes = file.tensor("token_embd.weight").map_or(0, |t| t.size);
    ModelInfo {
        arch: arch.into(),
        name: file.str_opt("general.name").ok().flatten().map(str::to_string),
        n_vocab: hp.n_vocab,
        n_ctx_train: hp.n_ctx_train,
        n_embd: hp.n_embd,
        n_layer: hp.n_layer,
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        n_ff: hp.n_ff,
        n_params,
        weight_bytes,
        // The embedding table is only read one row per token unless it is also the head.
        bytes_per_token: if tied { weight_bytes } else { weight_bytes - embd_bytes },
        kv_bytes_per_token: (kv_row_elems * 2) as u64,
        quant: w.dominant_type(),
    }
}

/// Final norm and head over the wanted rows of `x` (`n × n_embd`), into `logits`.
#[allow(clippy::too_many_arguments)]
pub fn output_head(
    f: &GgufFile,
    x: &mut [f32],
    norm: &[f32],
    eps: f32,
    output: &Weight,
    wanted: LogitsWanted,
    logits: &mut Vec<f32>,
    mm: &mut MatmulScratch,
) {
    let n_embd = norm.len();
    let n = x.len() / n_embd;
    let rows = match wanted {
        LogitsWanted::All => &mut x[..],
        LogitsWanted::Last => &mut x[(n - 1) * n_embd..],
    };
    norm_rows(rows, norm, eps);
    let n_rows = rows.len() / n_embd;
    logits.resize(n_rows * output.n_out, 0.0);
    output.matmul(f, rows, logits, mm);
}

// ---------------------------------------------------------------- attention

/// The Q/K/V projections: three matrices, or one fused `attn_qkv` (q | k | v).
pub enum Qkv {
    Split { wq: Weight, wk: Weight, wv: Weight },
    Fused(Weight),
}

/// One layer's standard self-attention weights.
pub struct AttnLayer {
    pub qkv: Qkv,
    /// `attn_{q,k,v}.bias` (qwen2).
    pub bias: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights `attn_{q,k}_norm` (qwen3, gemma3).
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    pub wo: Weight,
}

/// What the weights of an attention layer look like.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnOpts {
    pub fused_qkv: bool,
    pub bias: bool,
    pub qk_norm: bool,
}

impl AttnLayer {
    pub fn load(w: &WeightLoader, il: usize, hp: &BaseHparams, o: AttnOpts) -> Result<AttnLayer> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let (n_embd, q_dim, k_dim, v_dim) = (hp.n_embd, hp.q_dim(), hp.k_dim(), hp.v_dim());
        let qkv = if o.fused_qkv {
            Qkv::Fused(w.matrix(&n("attn_qkv.weight"), n_embd, q_dim + k_dim + v_dim)?)
        } else {
            Qkv::Split {
                wq: w.matrix(&n("attn_q.weight"), n_embd, q_dim)?,
                wk: w.matrix(&n("attn_k.weight"), n_embd, k_dim)?,
                wv: w.matrix(&n("attn_v.weight"), n_embd, v_dim)?,
            }
        };
        let bias = if o.bias {
            Some([
                w.vector(&n("attn_q.bias"), q_dim)?,
                w.vector(&n("attn_k.bias"), k_dim)?,
                w.vector(&n("attn_v.bias"), v_dim)?,
            ])
        } else {
            None
        };
        let qk_norm = if o.qk_norm {
            Some((w.vector(&n("attn_q_norm.weight"), hp.head_dim_k)?, w.vector(&n("attn_k_norm.weight"), hp.head_dim_k)?))
        } else {
            None
        };
        let wo = w.matrix(&n("attn_output.weight"), hp.n_head * hp.head_dim_v, n_embd)?;
        Ok(AttnLayer { qkv, bias, qk_norm, wo })
    }
}

/// Per-call settings of the attention block.
#[derive(Debug, Clone, Copy)]
pub struct AttnCall {
    pub mode: RopeMode,
    /// Multiplies q after RoPE (gemma3, phi3 pre-scale q; then kq_scale is 1).
    pub q_scale: f32,
    pub kq_scale: f32,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
}

/// Buffers of the attention block.
#[derive(Default)]
pub struct AttnBufs {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub qkv: Vec<f32>,
    pub attn: Vec<f32>,
}

/// `out [n, n_embd] = Wo · softmax(kq_scale · rope(q)·rope(k)ᵀ) · v` over the
/// cache of layer `il`, for `cur [n, n_embd]` (the normed input) at `pos0..`.
#[allow(clippy::too_many_arguments)]
pub fn self_attention(
    f: &GgufFile,
    l: &AttnLayer,
    hp: &BaseHparams,
    c: &AttnCall,
    rc: &[(f32, f32)],
    cache: &mut KvCache,
    il: usize,
    pos0: usize,
    cur: &[f32],
    out: &mut [f32],
    b: &mut AttnBufs,
    mm: &mut MatmulScratch,
) {
    let n = cur.len() / hp.n_embd;
    let (q_dim, k_dim, v_dim) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
    // q [n, n_head·hd_k], k [n, n_head_kv·hd_k], v [n, n_head_kv·hd_v]
    let q = buf(&mut b.q, n * q_dim);
    let k = buf(&mut b.k, n * k_dim);
    let v = buf(&mut b.v, n * v_dim);
    match &l.qkv {
        Qkv::Split { wq, wk, wv } => {
            matmul_many(hp.n_embd, cur, &mut [wq.job(f, q), wk.job(f, k), wv.job(f, v)], mm);
        }
        Qkv::Fused(w) => {
            let row = q_dim + k_dim + v_dim;
            let qkv = buf(&mut b.qkv, n * row);
            w.matmul(f, cur, qkv, mm);
            for t in 0..n {
                let r = &qkv[t * row..(t + 1) * row];
                q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&r[..q_dim]);
                k[t * k_dim..(t + 1) * k_dim].copy_from_slice(&r[q_dim..q_dim + k_dim]);
                v[t * v_dim..(t + 1) * v_dim].copy_from_slice(&r[q_dim + k_dim..]);
            }
        }
    }
    if let Some([bq, bk, bv]) = &l.bias {
        for (x, bias) in [(&mut *q, bq), (&mut *k, bk), (&mut *v, bv)] {
            x.chunks_mut(bias.len()).for_each(|r| r.iter_mut().zip(bias).for_each(|(a, b)| *a += b));
        }
    }
    if let Some((qn, kn)) = &l.qk_norm {
        norm_rows(q, qn, hp.rms_eps);
        norm_rows(k, kn, hp.rms_eps);
    }
    rope_heads(q, hp.head_dim_k, rc, hp.n_rot, c.mode);
    rope_heads(k, hp.head_dim_k, rc, hp.n_rot, c.mode);
    if c.q_scale != 1.0 {
        q.iter_mut().for_each(|x| *x *= c.q_scale);
    }
    cache.write(il, pos0, k, v);
    // attn [n, n_head·hd_v]
    let attn = buf(&mut b.attn, n * hp.n_head * hp.head_dim_v);
    let shape = AttnShape {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim_k: hp.head_dim_k,
        head_dim_v: hp.head_dim_v,
        pos0,
        kq_scale: c.kq_scale,
        window: c.window,
        softcap: c.softcap,
    };
    let (kc, vc) = cache.layer(il);
    let kernels = mm.kernels;
    timed(&mut mm.profile, &[(OpKind::Attention, 0)], || attention(kernels, &shape, q, kc, vc, attn));
    l.wo.matmul(f, attn, out, mm);
}

// ---------------------------------------------------------------------- FFN

/// Gate and up projections: two matrices, or one fused `ffn_up` (gate | up).
pub enum GateUp {
    Split { gate: Weight, up: Weight },
    Fused(Weight),
}

pub struct FfnLayer {
    pub gate_up: GateUp,
    pub down: Weight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// SiLU(gate) · up.
    Silu,
    /// GELU-tanh(gate) · up, with ggml's f16 table rounding.
    Gelu,
}

impl FfnLayer {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, n_ff: usize, fused: bool) -> Result<FfnLayer> {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        let gate_up = if fused {
            GateUp::Fused(w.matrix(&n("ffn_up"), n_embd, 2 * n_ff)?)
        } else {
            GateUp::Split { gate: w.matrix(&n("ffn_gate"), n_embd, n_ff)?, up: w.matrix(&n("ffn_up"), n_embd, n_ff)? }
        };
        Ok(FfnLayer { gate_up, down: w.matrix(&n("ffn_down"), n_ff, n_embd)? })
    }
}

/// `out [n, n_embd] = down(act(gate(cur)) · up(cur))`.
#[allow(clippy::too_many_arguments)]
pub fn ffn(
    f: &GgufFile,
    l: &FfnLayer,
    act: Act,
    cur: &[f32],
    out: &mut [f32],
    gate: &mut Vec<f32>,
    up: &mut Vec<f32>,
    mm: &mut MatmulScratch,
) {
    let n_ff = l.down.n_in;
    let n = cur.len() / l.down.n_out;
    let g = buf(gate, n * n_ff);
    let u = buf(up, n * n_ff);
    match &l.gate_up {
        GateUp::Split { gate, up } => {
            matmul_many(l.down.n_out, cur, &mut [gate.job(f, g), up.job(f, u)], mm);
        }
        GateUp::Fused(w) => {
            // [n, 2·n_ff] into `up`'s storage, then split.
            let both = buf(up, n * 2 * n_ff);
            w.matmul(f, cur, both, mm);
            for t in 0..n {
                g[t * n_ff..(t + 1) * n_ff].copy_from_slice(&both[t * 2 * n_ff..t * 2 * n_ff + n_ff]);
            }
            for t in 0..n {
                both.copy_within(t * 2 * n_ff + n_ff..(t + 1) * 2 * n_ff, t * n_ff);
            }
        }
    }
    let u = &up[..n * n_ff];
    par_rows(g, n_ff, |t, g| {
        let u = &u[t * n_ff..(t + 1) * n_ff];
        match act {
            Act::Silu => swiglu(g, u),
            Act::Gelu => geglu_ggml(g, u),
        }
    });
    l.down.matmul(f, g, out, mm);
}
