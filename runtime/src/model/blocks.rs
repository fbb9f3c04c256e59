//! Blocks shared by the architecture files, stated once over an executor
//! ([`Exec`]): the common hyperparameters, the standard self-attention block
//! (split or fused QKV, optional biases and per-head q/k norms, RoPE, KV
//! store, attention), the gated FFN block (split or fused gate/up; SiLU or
//! GELU) and the buffers they run over. Each architecture's `forward` is a
//! straight line over these and the executor's ops.

use super::ModelInfo;
use crate::gguf::GgufFile;
use crate::graph::{Act, Attn, Buf, Exec, GraphBuilder, Mat, Rope, RopeId, Vector, View, Weights};
use crate::ops::rope::{RopeMode, RopeParams};
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
        // Per-layer keys may be scalars expanded to n_layer values: check the
        // count against the tensor table before anything is sized by it.
        let blocks = blocks_in_tensor_table(g)?;
        if n_layer != blocks {
            return Err(Error::Model(format!("{arch}.block_count is {n_layer} but the tensor table holds {blocks} blocks (blk.N.*)")));
        }
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
        if n_rot == 0 || n_rot > head_dim_k || n_rot % 2 != 0 || head_dim_k == 0 || head_dim_v == 0 {
            return Err(Error::Model(format!(
                "rope.dimension_count {n_rot} must be even, > 0 and ≤ the key head size {head_dim_k} (value head size {head_dim_v})"
            )));
        }
        let embd = g.tensor("token_embd.weight").ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?;
        let (embd_w, n_tok_embd) = (embd.ne.first().copied().unwrap_or(0) as usize, embd.ne.get(1).copied().unwrap_or(0) as usize);
        if embd_w != n_embd || n_tok_embd == 0 {
            return Err(Error::Model(format!(
                "token_embd.weight is [{embd_w}, {n_tok_embd}]: expected [{n_embd} (embedding_length), n_vocab > 0]"
            )));
        }
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

/// How many blocks the tensor table holds: N when the `blk.i.*` tensors
/// cover every i in 0..N (0 when there are none). A gap (a lone
/// `blk.3999999999.*` tensor) is an error: the count would be a number the
/// file made up, and per-layer keys are expanded to that many values.
pub fn blocks_in_tensor_table(g: &GgufFile) -> Result<usize> {
    let mut ids: Vec<usize> =
        g.tensors().iter().filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.iter().enumerate().find(|&(i, &id)| i != id) {
        Some((i, &id)) => Err(Error::Model(format!("the tensor table has blk.{id}.* tensors but none of blk.{i}.*"))),
        None => Ok(ids.len()),
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

/// The ModelInfo common part; `kv_bytes_per_token` as the cache stores it (f16).
pub fn model_info(w: &Weights, arch: &str, hp: &BaseHparams, tied: bool, kv_row_elems: usize) -> ModelInfo {
    let file = &*w.file;
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

/// Every column of `b`, which is `width` wide.
pub fn all(b: Buf, width: usize) -> View {
    View { buf: b, off: 0, width }
}

// ---------------------------------------------------------------- buffers

/// The activations of the standard layer: the residual stream `x`, a block's
/// normed input `h` and output `cur`, attention's q/k/v (and the products
/// before the per-head q/k norms) and output, the FFN's gate and up.
#[derive(Debug, Clone, Copy)]
pub struct LayerBufs {
    /// `[n, n_embd]` each.
    pub x: Buf,
    pub h: Buf,
    pub cur: Buf,
    /// `[n, n_head·hd_k]`, `[n, n_head_kv·hd_k]`, `[n, n_head_kv·hd_v]`.
    pub q: Buf,
    pub k: Buf,
    pub v: Buf,
    /// q and k before their per-head norms (models with q/k norms).
    pub qk_raw: Option<(Buf, Buf)>,
    /// `[n, n_head·hd_v]`.
    pub attn: Buf,
    /// `[n, n_ff]` each.
    pub gate: Buf,
    pub up: Buf,
}

impl LayerBufs {
    pub fn declare(g: &mut GraphBuilder, hp: &BaseHparams, qk_norm: bool) -> LayerBufs {
        LayerBufs {
            x: g.buf("x", hp.n_embd),
            h: g.buf("h", hp.n_embd),
            cur: g.buf("cur", hp.n_embd),
            q: g.buf("q", hp.q_dim()),
            k: g.buf("k", hp.k_dim()),
            v: g.buf("v", hp.v_dim()),
            qk_raw: qk_norm.then(|| (g.buf("q_raw", hp.q_dim()), g.buf("k_raw", hp.k_dim()))),
            attn: g.buf("attn", hp.n_head * hp.head_dim_v),
            gate: g.buf("gate", hp.n_ff),
            up: g.buf("up", hp.n_ff),
        }
    }
}

/// `out = rms_norm(x) · w` over whole rows of width `w.len()`.
pub fn norm(e: &mut dyn Exec, x: Buf, w: Vector, out: Buf, width: usize, eps: f32) -> Result<()> {
    e.rms_norm(all(x, width), w, all(out, width), eps)
}

// ---------------------------------------------------------------- attention

/// One layer's standard self-attention weights. A fused `attn_qkv` is loaded
/// as three bands of rows, so every architecture runs the same three products.
pub struct AttnLayer {
    pub wq: Mat,
    pub wk: Mat,
    pub wv: Mat,
    /// `attn_{q,k,v}.bias` (qwen2).
    pub bias: Option<[Vector; 3]>,
    /// Per-head RMSNorm weights `attn_{q,k}_norm` (qwen3, gemma3).
    pub qk_norm: Option<(Vector, Vector)>,
    pub wo: Mat,
}

/// What the weights of an attention layer look like.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnOpts {
    pub fused_qkv: bool,
    pub bias: bool,
    pub qk_norm: bool,
}

impl AttnLayer {
    pub fn load(w: &mut Weights, il: usize, hp: &BaseHparams, o: AttnOpts) -> Result<AttnLayer> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let (n_embd, q_dim, k_dim, v_dim) = (hp.n_embd, hp.q_dim(), hp.k_dim(), hp.v_dim());
        let [wq, wk, wv] = if o.fused_qkv {
            w.bands(&n("attn_qkv.weight"), n_embd, [q_dim, k_dim, v_dim])?
        } else {
            [
                w.matrix(&n("attn_q.weight"), n_embd, q_dim)?,
                w.matrix(&n("attn_k.weight"), n_embd, k_dim)?,
                w.matrix(&n("attn_v.weight"), n_embd, v_dim)?,
            ]
        };
        let bias = if o.bias {
            Some([w.vec(&n("attn_q.bias"), q_dim)?, w.vec(&n("attn_k.bias"), k_dim)?, w.vec(&n("attn_v.bias"), v_dim)?])
        } else {
            None
        };
        let qk_norm = if o.qk_norm {
            Some((w.vec(&n("attn_q_norm.weight"), hp.head_dim_k)?, w.vec(&n("attn_k_norm.weight"), hp.head_dim_k)?))
        } else {
            None
        };
        let wo = w.matrix(&n("attn_output.weight"), hp.n_head * hp.head_dim_v, n_embd)?;
        Ok(AttnLayer { wq, wk, wv, bias, qk_norm, wo })
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

/// `b.cur = Wo · softmax(kq_scale · rope(q)·rope(k)ᵀ) · v` over the cache of
/// layer `il`, for `b.h` (the normed input) at the pass's positions.
#[allow(clippy::too_many_arguments)]
pub fn self_attention(
    e: &mut dyn Exec,
    l: &AttnLayer,
    hp: &BaseHparams,
    c: &AttnCall,
    rope: RopeId,
    il: usize,
    b: &LayerBufs,
) -> Result<()> {
    // q [n, n_head·hd_k], k [n, n_head_kv·hd_k], v [n, n_head_kv·hd_v]; with
    // q/k norms the products land in q_raw/k_raw, then are normed per head.
    let (q0, k0) = b.qk_raw.unwrap_or((b.q, b.k));
    e.matmul(b.h, &[(l.wq, q0), (l.wk, k0), (l.wv, b.v)])?;
    if let Some([bq, bk, bv]) = l.bias {
        e.add_bias(q0, bq)?;
        e.add_bias(k0, bk)?;
        e.add_bias(b.v, bv)?;
    }
    if let Some((qn, kn)) = l.qk_norm {
        e.rms_norm(all(q0, hp.q_dim()), qn, all(b.q, hp.q_dim()), hp.rms_eps)?;
        e.rms_norm(all(k0, hp.k_dim()), kn, all(b.k, hp.k_dim()), hp.rms_eps)?;
    }
    rope_attend(e, l, hp, c, rope, il, b)
}

/// The rest of the attention block once `b.q`, `b.k`, `b.v` hold the
/// projections: RoPE, q scale, K/V into layer `il`'s cache, attention, and
/// `b.cur = Wo · attn`.
#[allow(clippy::too_many_arguments)]
pub fn rope_attend(e: &mut dyn Exec, l: &AttnLayer, hp: &BaseHparams, c: &AttnCall, rope: RopeId, il: usize, b: &LayerBufs) -> Result<()> {
    let rope_q = Rope { table: rope, off: 0, n_head: hp.n_head, head_dim: hp.head_dim_k, n_rot: hp.n_rot, mode: c.mode };
    e.rope(b.q, &rope_q)?;
    e.rope(b.k, &Rope { n_head: hp.n_head_kv, ..rope_q })?;
    if c.q_scale != 1.0 {
        e.scale(b.q, c.q_scale)?;
    }
    e.kv_store(il, b.k, Some(b.v))?;
    // attn [n, n_head·hd_v]; cur = Wo · attn
    let a = Attn {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim_k: hp.head_dim_k,
        head_dim_v: hp.head_dim_v,
        kq_scale: c.kq_scale,
        window: c.window,
        softcap: c.softcap,
        v_in_k: false,
    };
    e.attention(il, b.q, b.attn, &a)?;
    e.matmul(b.attn, &[(l.wo, b.cur)])
}

// ---------------------------------------------------------------------- FFN

/// Gate, up and down projections; a fused `ffn_up` (phi3: gate rows, then up
/// rows) is loaded as two bands.
pub struct FfnLayer {
    pub gate: Mat,
    pub up: Mat,
    pub down: Mat,
}

impl FfnLayer {
    pub fn load(w: &mut Weights, il: usize, n_embd: usize, n_ff: usize, fused: bool) -> Result<FfnLayer> {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        let [gate, up] = if fused {
            w.bands(&n("ffn_up"), n_embd, [n_ff, n_ff])?
        } else {
            [w.matrix(&n("ffn_gate"), n_embd, n_ff)?, w.matrix(&n("ffn_up"), n_embd, n_ff)?]
        };
        Ok(FfnLayer { gate, up, down: w.matrix(&n("ffn_down"), n_ff, n_embd)? })
    }
}

/// `out = down(act(gate(h)) · up(h))` through the `[n, n_ff]` buffers `gate_up`.
pub fn ffn(e: &mut dyn Exec, l: &FfnLayer, act: Act, h: Buf, [gate, up]: [Buf; 2], out: Buf) -> Result<()> {
    e.matmul(h, &[(l.gate, gate), (l.up, up)])?;
    e.glu(gate, up, act)?;
    e.matmul(gate, &[(l.down, out)])
}
