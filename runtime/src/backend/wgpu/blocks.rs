//! GPU twins of `model/blocks.rs`: a standard attention layer and a gated FFN
//! on the GPU, uploaded from the CPU model's layer descriptions, and recorded
//! over a session's [`LayerBufs`]. The decoder archs and gemma3 are built from them.

use super::device::GpuContext;
use super::kernels::{ops, GBuf, Recorder};
use super::session::{rope_mode, upload, upload_rows, SessionCore};
use super::weights::GpuMatrix;
use crate::gguf::GgufFile;
use crate::model::blocks::{AttnCall, AttnLayer, BaseHparams, FfnLayer, GateUp, Qkv};
use crate::Result;

pub struct AttnGpu {
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    wo: GpuMatrix,
    bias: Option<[GBuf; 3]>,
    qk_norm: Option<(GBuf, GBuf)>,
}

impl AttnGpu {
    /// A fused QKV tensor becomes three matrices over its row bands.
    pub fn upload(ctx: &GpuContext, f: &GgufFile, l: &AttnLayer, hp: &BaseHparams) -> Result<AttnGpu> {
        let (wq, wk, wv) = match &l.qkv {
            Qkv::Split { wq, wk, wv } => (upload(ctx, f, wq)?, upload(ctx, f, wk)?, upload(ctx, f, wv)?),
            Qkv::Fused(w) => {
                let (q, k, v) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
                (upload_rows(ctx, f, w, 0, q)?, upload_rows(ctx, f, w, q, k)?, upload_rows(ctx, f, w, q + k, v)?)
            }
        };
        let vec = |label: &str, v: &[f32]| GBuf::from_f32(ctx, label, v);
        Ok(AttnGpu {
            wq,
            wk,
            wv,
            wo: upload(ctx, f, &l.wo)?,
            bias: l.bias.as_ref().map(|[q, k, v]| [vec("bq", q), vec("bk", k), vec("bv", v)]),
            qk_norm: l.qk_norm.as_ref().map(|(q, k)| (vec("q_norm", q), vec("k_norm", k))),
        })
    }

    pub fn dispatches(&self) -> usize {
        let p = |w: &GpuMatrix| 2 * w.parts.len();
        16 + p(&self.wq) + p(&self.wk) + p(&self.wv) + p(&self.wo)
    }
}

pub struct FfnGpu {
    gate: GpuMatrix,
    up: GpuMatrix,
    down: GpuMatrix,
}

impl FfnGpu {
    /// A fused `ffn_up` (phi3: gate rows, then up rows) becomes two matrices.
    pub fn upload(ctx: &GpuContext, f: &GgufFile, l: &FfnLayer, n_ff: usize) -> Result<FfnGpu> {
        let (gate, up) = match &l.gate_up {
            GateUp::Split { gate, up } => (upload(ctx, f, gate)?, upload(ctx, f, up)?),
            GateUp::Fused(w) => (upload_rows(ctx, f, w, 0, n_ff)?, upload_rows(ctx, f, w, n_ff, n_ff)?),
        };
        Ok(FfnGpu { gate, up, down: upload(ctx, f, &l.down)? })
    }

    pub fn dispatches(&self) -> usize {
        let p = |w: &GpuMatrix| 2 * w.parts.len();
        2 + p(&self.gate) + p(&self.up) + p(&self.down)
    }
}

/// A session's activations for one layer, `[ubatch, width]` each.
pub struct LayerBufs {
    /// Normed input of a block, then its output `[.., n_embd]`.
    pub cur: GBuf,
    /// Scratch of the block's width (pre-norm q/k, post-norms) `[.., max(n_embd, q_dim)]`.
    pub tmp: GBuf,
    pub q: GBuf,
    pub k: GBuf,
    pub v: GBuf,
    pub attn: GBuf,
    pub gate: GBuf,
    pub up: GBuf,
}

impl LayerBufs {
    pub fn new(ctx: &GpuContext, core: &SessionCore, hp: &BaseHparams) -> LayerBufs {
        let a = |label: &str, n: usize| core.act(ctx, label, n);
        let wide = hp.n_embd.max(hp.q_dim()).max(hp.k_dim());
        LayerBufs {
            cur: a("cur", hp.n_embd),
            tmp: a("tmp", wide),
            q: a("q", hp.q_dim()),
            k: a("k", hp.k_dim()),
            v: a("v", hp.v_dim()),
            attn: a("attn", hp.n_head * hp.head_dim_v),
            gate: a("gate", hp.n_ff),
            up: a("up", hp.n_ff),
        }
    }

    /// The widest activation row these buffers hold.
    pub fn widest(hp: &BaseHparams) -> usize {
        hp.n_embd.max(hp.q_dim()).max(hp.k_dim()).max(hp.n_ff).max(hp.n_head * hp.head_dim_v)
    }
}

/// `b.cur = Wo · attention(q, k, v)` for `b.cur` holding the normed input
/// `[n, n_embd]`: q/k/v products, biases, per-head q/k norms, RoPE, q scale,
/// K/V into layer `il`'s cache at `pos0`, attention (GQA, window, soft-cap).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    r: &mut Recorder,
    core: &SessionCore,
    b: &LayerBufs,
    l: &AttnGpu,
    hp: &BaseHparams,
    call: &AttnCall,
    rope_table: &GBuf,
    il: usize,
    n: usize,
    pos0: usize,
) -> Result<()> {
    let (q_dim, k_dim, v_dim) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
    // q [n, n_head·hd_k], k [n, n_head_kv·hd_k], v [n, n_head_kv·hd_v]; with
    // q/k norms the products land in `tmp` first, then are normed per head.
    let (q_out, k_out) = if l.qk_norm.is_some() { (&b.tmp, &b.tmp) } else { (&b.q, &b.k) };
    core.mm(r, &l.wq, &b.cur, 0, n, q_out, q_dim)?;
    if let Some([bq, _, _]) = &l.bias {
        ops::add_bias(r, bq, q_out, n, q_dim, q_dim, 0)?;
    }
    if let Some((qn, _)) = &l.qk_norm {
        ops::rms_norm(r, &b.tmp, 0, qn, &b.q, 0, hp.head_dim_k, n * hp.n_head, hp.rms_eps)?;
    }
    core.mm(r, &l.wk, &b.cur, 0, n, k_out, k_dim)?;
    if let Some([_, bk, _]) = &l.bias {
        ops::add_bias(r, bk, k_out, n, k_dim, k_dim, 0)?;
    }
    if let Some((_, kn)) = &l.qk_norm {
        ops::rms_norm(r, &b.tmp, 0, kn, &b.k, 0, hp.head_dim_k, n * hp.n_head_kv, hp.rms_eps)?;
    }
    core.mm(r, &l.wv, &b.cur, 0, n, &b.v, v_dim)?;
    if let Some([_, _, bv]) = &l.bias {
        ops::add_bias(r, bv, &b.v, n, v_dim, v_dim, 0)?;
    }
    let mode = rope_mode(call.mode);
    let rope_q = ops::RopeArgs { n_tok: n, n_head: hp.n_head, head_dim: hp.head_dim_k, n_rot: hp.n_rot, mode, pos0, row_stride: q_dim, off: 0 };
    let rope_k = ops::RopeArgs { n_head: hp.n_head_kv, row_stride: k_dim, ..rope_q };
    ops::rope(r, rope_table, &b.q, &rope_q)?;
    ops::rope(r, rope_table, &b.k, &rope_k)?;
    if call.q_scale != 1.0 {
        ops::scale(r, &b.q, 0, n * q_dim, call.q_scale)?;
    }
    ops::kv_store(r, &b.k, &core.kc[il], n, k_dim, pos0)?;
    ops::kv_store(r, &b.v, &core.vc[il], n, v_dim, pos0)?;
    // attn [n, n_head·hd_v]; cur = Wo · attn
    let args = ops::AttnArgs {
        window: call.window,
        softcap: call.softcap,
        ..ops::AttnArgs::standard(n, hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, pos0, call.kq_scale)
    };
    ops::attention(r, &b.q, &core.kc[il], &core.vc[il], &b.attn, &args)?;
    core.mm(r, &l.wo, &b.attn, 0, n, &b.cur, hp.n_embd)
}

/// `b.cur = down(act(gate(cur)) · up(cur))` for `b.cur` holding the normed input.
pub fn ffn(r: &mut Recorder, core: &SessionCore, b: &LayerBufs, l: &FfnGpu, n_ff: usize, n_embd: usize, gelu: bool, n: usize) -> Result<()> {
    core.mm(r, &l.gate, &b.cur, 0, n, &b.gate, n_ff)?;
    core.mm(r, &l.up, &b.cur, 0, n, &b.up, n_ff)?;
    ops::glu(r, &b.up, &b.gate, n * n_ff, gelu)?;
    core.mm(r, &l.down, &b.gate, 0, n, &b.cur, n_embd)
}
