//! The `llama` graph on wgpu: weights uploaded once ([`LlamaGpu`]), per-session
//! state on the GPU ([`GpuSession`]: f16 KV cache, activations, RoPE table,
//! cached bind groups). One micro-batch = one command encoder, one submit;
//! only the sampled id (GPU argmax) or the wanted logits rows come back.

use std::collections::HashMap;

use super::device::GpuContext;
use super::kernels::{ops, params_buffer, GBuf, Kernels, Readback, Recorder};
use super::shaders::ShaderKey;
use super::weights::GpuMatrix;
use crate::model::blocks::{GateUp, Qkv, RopeFactors};
use crate::model::llama::Llama;
use crate::model::Weight;
use crate::ops::rope::{RopeMode, RopeParams};
use crate::{Error, Result};

struct LayerGpu {
    attn_norm: GBuf,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    wo: GpuMatrix,
    ffn_norm: GBuf,
    ffn_gate: GpuMatrix,
    ffn_up: GpuMatrix,
    ffn_down: GpuMatrix,
}

/// The llama hyper-parameters the GPU graph uses, flattened from the model's.
#[derive(Debug, Clone)]
struct Hparams {
    n_vocab: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    n_head_kv: usize,
    n_ff: usize,
    head_dim: usize,
    rms_eps: f32,
    rope: RopeParams,
    kq_scale: f32,
}

impl Hparams {
    fn of(m: &Llama) -> Result<Hparams> {
        let b = &m.hp;
        let sp = &m.spec;
        if sp.embedding_scale != 1.0 || sp.residual_scale != 1.0 || sp.logit_mul != 1.0 || sp.call.q_scale != 1.0 {
            return Err(Error::Backend(format!("the scaled {} graph is not yet supported on wgpu", sp.arch)));
        }
        if b.head_dim_k != b.head_dim_v || b.n_rot != b.head_dim_k {
            return Err(Error::Backend("llama on wgpu needs head_dim_k = head_dim_v = n_rot".into()));
        }
        Ok(Hparams {
            n_vocab: b.n_vocab,
            n_embd: b.n_embd,
            n_layer: b.n_layer,
            n_head: b.n_head,
            n_head_kv: b.n_head_kv,
            n_ff: b.n_ff,
            head_dim: b.head_dim_k,
            rms_eps: b.rms_eps,
            rope: b.rope,
            kq_scale: m.spec.call.kq_scale,
        })
    }
}

pub struct LlamaGpu {
    hp: Hparams,
    rope_factors: RopeFactors,
    tok_embd: GpuMatrix,
    /// `None` when tied to `tok_embd`.
    output: Option<GpuMatrix>,
    output_norm: GBuf,
    layers: Vec<LayerGpu>,
}

impl LlamaGpu {
    pub fn upload(ctx: &GpuContext, m: &Llama) -> Result<LlamaGpu> {
        let f = &*m.file;
        let mat = |w: &Weight| GpuMatrix::upload(ctx, &w.name, w.ty, w.data(f), w.n_in, w.n_out);
        let tok_embd = mat(&m.tok_embd)?;
        let output = if m.output.name == m.tok_embd.name { None } else { Some(mat(&m.output)?) };
        let mut layers = Vec::with_capacity(m.layers.len());
        let hp = Hparams::of(m)?;
        for l in &m.layers {
            let Qkv::Split { wq, wk, wv } = &l.attn.qkv else {
                return Err(Error::Backend("fused QKV weights are not yet supported on wgpu".into()));
            };
            let GateUp::Split { gate, up } = &l.ffn.gate_up else {
                return Err(Error::Backend("fused gate/up weights are not yet supported on wgpu".into()));
            };
            layers.push(LayerGpu {
                attn_norm: GBuf::from_f32(ctx, "attn_norm", &l.attn_norm),
                wq: mat(wq)?,
                wk: mat(wk)?,
                wv: mat(wv)?,
                wo: mat(&l.attn.wo)?,
                ffn_norm: GBuf::from_f32(ctx, "ffn_norm", &l.ffn_norm),
                ffn_gate: mat(gate)?,
                ffn_up: mat(up)?,
                ffn_down: mat(&l.ffn.down)?,
            });
        }
        let output_norm = GBuf::from_f32(ctx, "output_norm", &m.output_norm);
        ctx.queue.submit(None);
        super::kernels::wait(ctx)?;
        Ok(LlamaGpu { hp, rope_factors: m.rope_factors.clone(), tok_embd, output, output_norm, layers })
    }

    fn dispatches_per_ubatch(&self) -> usize {
        let parts = |w: &GpuMatrix| w.parts.len();
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| 20 + parts(&l.wq) + parts(&l.wk) + parts(&l.wv) + parts(&l.wo) + parts(&l.ffn_gate) + parts(&l.ffn_up) + parts(&l.ffn_down))
            .sum();
        per_layer + 2 * self.tok_embd.parts.len() + self.output.as_ref().map_or(0, |o| o.parts.len()) + 8
    }
}

/// What a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Last,
    All,
    /// Only the id of the last row's largest logit (greedy), computed on the GPU.
    Argmax,
}

pub struct GpuSession {
    n_ctx: usize,
    ubatch: usize,
    kc: Vec<GBuf>,
    vc: Vec<GBuf>,
    rope_table: GBuf,
    ids: GBuf,
    x: GBuf,
    cur: GBuf,
    q: GBuf,
    k: GBuf,
    v: GBuf,
    attn: GBuf,
    gate: GBuf,
    up: GBuf,
    logits: GBuf,
    out_id: GBuf,
    /// Activations rounded like llama.cpp's quantized products (act_quant).
    xq: GBuf,
    params: GBuf,
    bind_groups: HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>,
    readback: Readback,
    bytes: Vec<u8>,
}

impl GpuSession {
    pub fn new(ctx: &GpuContext, m: &LlamaGpu, n_ctx: usize) -> Result<GpuSession> {
        let hp = &m.hp;
        let (hd, kv_dim, q_dim) = (hp.head_dim, hp.n_head_kv * hp.head_dim, hp.n_head * hp.head_dim);
        if hd > 256 || hd % 2 != 0 {
            return Err(Error::Backend(format!("head size {hd} is not supported on wgpu (even, ≤ 256)")));
        }
        let max = ctx.profile.max_binding() as usize;
        let widest = hp.n_vocab.max(hp.n_ff).max(q_dim).max(hp.n_embd) * 4;
        // Tokens per submit: a software adapter gets small micro-batches so one
        // submit stays short (wgpu's wait gives up after 60 s; lavapipe on a
        // busy CPU does a few tokens per second); a GPU gets up to 512.
        let cap = if ctx.profile.software { 64 } else { 512 };
        let ubatch = (max / widest).clamp(1, cap);
        if max / widest == 0 {
            return Err(Error::Backend(format!("one row of {widest} bytes exceeds the binding limit {max}")));
        }
        let kv_bytes = (n_ctx * kv_dim * 2) as u64;
        if kv_bytes > max as u64 {
            return Err(Error::Backend(format!("a layer's KV cache ({kv_bytes} bytes) exceeds the binding limit {max}; use a smaller context")));
        }
        let e = wgpu::BufferUsages::empty();
        let buf = |label: &str, n: usize| GBuf::new(ctx, label, (n * 4) as u64, e);
        let kc = (0..hp.n_layer).map(|_| GBuf::new(ctx, "k cache", kv_bytes, e)).collect();
        let vc = (0..hp.n_layer).map(|_| GBuf::new(ctx, "v cache", kv_bytes, e)).collect();
        // cos/sin for every position, computed once by the reference code.
        let half = hp.rope.n_rot / 2;
        let mut table = vec![(0f32, 0f32); n_ctx * half];
        for (pos, c) in table.chunks_mut(half).enumerate() {
            hp.rope.cache(pos, m.rope_factors.for_ctx(n_ctx), c);
        }
        let flat: Vec<f32> = table.iter().flat_map(|&(c, s)| [c, s]).collect();
        let rope_table = GBuf::from_f32(ctx, "rope table", &flat);
        let s = GpuSession {
            n_ctx,
            ubatch,
            kc,
            vc,
            rope_table,
            ids: buf("ids", ubatch),
            x: buf("x", ubatch * hp.n_embd),
            cur: buf("cur", ubatch * hp.n_embd.max(q_dim)),
            q: buf("q", ubatch * q_dim),
            k: buf("k", ubatch * kv_dim),
            v: buf("v", ubatch * kv_dim),
            attn: buf("attn", ubatch * q_dim),
            gate: buf("gate", ubatch * hp.n_ff),
            up: buf("up", ubatch * hp.n_ff),
            logits: buf("logits", ubatch * hp.n_vocab),
            out_id: buf("argmax", 4),
            xq: buf("xq", ubatch * hp.n_ff.max(q_dim).max(hp.n_embd)),
            params: params_buffer(ctx, m.dispatches_per_ubatch()),
            bind_groups: HashMap::new(),
            readback: Readback::new(ctx, (ubatch * hp.n_vocab * 4) as u64),
            bytes: Vec::new(),
        };
        log::info!(
            "wgpu session: ctx {n_ctx}, micro-batch {ubatch}, KV cache {} MiB on the GPU",
            (2 * hp.n_layer as u64 * kv_bytes) >> 20
        );
        Ok(s)
    }

    /// Runs `ids` at `pos0..`. Fills `logits` for `Last`/`All`; returns the id for `Argmax`.
    pub fn forward(
        &mut self,
        ctx: &GpuContext,
        kernels: &Kernels,
        m: &LlamaGpu,
        ids: &[u32],
        pos0: usize,
        want: Want,
        logits: &mut Vec<f32>,
    ) -> Result<Option<u32>> {
        if pos0 + ids.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: pos0 + ids.len(), n_ctx: self.n_ctx });
        }
        logits.clear();
        let n_vocab = m.hp.n_vocab;
        let mut result = None;
        let n_chunks = ids.len().div_ceil(self.ubatch);
        for (c, chunk) in ids.chunks(self.ubatch).enumerate() {
            let last = c + 1 == n_chunks;
            let head = match want {
                Want::All => Head::All,
                Want::Last if last => Head::Last,
                Want::Argmax if last => Head::Argmax,
                _ => Head::None,
            };
            ctx.queue.write_buffer(&self.ids.buf, 0, bytemuck::cast_slice(chunk));
            let n = chunk.len();
            let bytes = match head {
                Head::None => 0,
                Head::Last => n_vocab * 4,
                Head::All => n * n_vocab * 4,
                Head::Argmax => 4,
            } as u64;
            let mut bg = std::mem::take(&mut self.bind_groups);
            let r = self.record(ctx, kernels, m, chunk.len(), pos0 + c * self.ubatch, head, &mut bg).map(|rec| {
                let src = if head == Head::Argmax { &self.out_id } else { &self.logits };
                rec.submit(|enc| {
                    if bytes > 0 {
                        self.readback.copy(enc, src, 0, bytes);
                    }
                });
            });
            self.bind_groups = bg;
            r?;
            if bytes > 0 {
                self.readback.read(ctx, bytes, &mut self.bytes)?;
                match head {
                    Head::Argmax => result = Some(u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])),
                    _ => logits.extend_from_slice(bytemuck::cast_slice(&self.bytes)),
                }
            }
        }
        Ok(result)
    }

    /// `y = W · x` for `n` rows of width `w.n_in`, with x first rounded like
    /// llama.cpp's CPU product rounds it for this weight type.
    fn mm(&self, r: &mut Recorder, w: &GpuMatrix, x: &GBuf, x_off: usize, n: usize, y: &GBuf, y_stride: usize) -> Result<()> {
        match ops::act_mode(w.ty) {
            Some(mode) if x_off == 0 && w.n_in % (if mode == 1 { 256 } else { 32 }) == 0 => {
                ops::act_quant(r, x, &self.xq, n * w.n_in, mode)?;
                ops::matmul(r, w, &self.xq, w.n_in, 0, n, y, y_stride)
            }
            _ => ops::matmul(r, w, x, w.n_in, x_off, n, y, y_stride),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record<'a>(
        &'a self,
        ctx: &'a GpuContext,
        kernels: &'a Kernels,
        m: &LlamaGpu,
        n: usize,
        pos0: usize,
        head: Head,
        bg: &'a mut HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>,
    ) -> Result<Recorder<'a>> {
        let hp = &m.hp;
        let (n_embd, hd) = (hp.n_embd, hp.head_dim);
        let (q_dim, kv_dim) = (hp.n_head * hd, hp.n_head_kv * hd);
        let mut r = Recorder::new(ctx, kernels, &self.params, bg);
        let mode = match hp.rope.mode {
            RopeMode::Norm => 0,
            RopeMode::Neox => 1,
        };
        let rope_q = ops::RopeArgs { n_tok: n, n_head: hp.n_head, head_dim: hd, n_rot: hp.rope.n_rot, mode, pos0, row_stride: q_dim, off: 0 };
        let rope_k = ops::RopeArgs { n_head: hp.n_head_kv, row_stride: kv_dim, ..rope_q };
        let attn = ops::AttnArgs::standard(n, hp.n_head, hp.n_head_kv, hd, hd, pos0, hp.kq_scale);

        // x: [n, n_embd]
        ops::get_rows(&mut r, &m.tok_embd, &self.ids, n, &self.x)?;
        for (il, l) in m.layers.iter().enumerate() {
            // cur = rms_norm(x) · attn_norm; q, k, v; RoPE; K/V into the cache at pos0
            ops::rms_norm(&mut r, &self.x, 0, &l.attn_norm, &self.cur, 0, n_embd, n, hp.rms_eps)?;
            self.mm(&mut r, &l.wq, &self.cur, 0, n, &self.q, q_dim)?;
            self.mm(&mut r, &l.wk, &self.cur, 0, n, &self.k, kv_dim)?;
            self.mm(&mut r, &l.wv, &self.cur, 0, n, &self.v, kv_dim)?;
            ops::rope(&mut r, &self.rope_table, &self.q, &rope_q)?;
            ops::rope(&mut r, &self.rope_table, &self.k, &rope_k)?;
            ops::kv_store(&mut r, &self.k, &self.kc[il], n, kv_dim, pos0)?;
            ops::kv_store(&mut r, &self.v, &self.vc[il], n, kv_dim, pos0)?;
            // attn [n, q_dim]; x += Wo · attn
            ops::attention(&mut r, &self.q, &self.kc[il], &self.vc[il], &self.attn, &attn)?;
            self.mm(&mut r, &l.wo, &self.attn, 0, n, &self.cur, n_embd)?;
            ops::add(&mut r, &self.cur, &self.x, n * n_embd)?;
            // FFN: x += down(silu(gate(h)) · up(h)), h = rms_norm(x) · ffn_norm
            ops::rms_norm(&mut r, &self.x, 0, &l.ffn_norm, &self.cur, 0, n_embd, n, hp.rms_eps)?;
            self.mm(&mut r, &l.ffn_gate, &self.cur, 0, n, &self.gate, hp.n_ff)?;
            self.mm(&mut r, &l.ffn_up, &self.cur, 0, n, &self.up, hp.n_ff)?;
            ops::glu(&mut r, &self.up, &self.gate, n * hp.n_ff, false)?;
            self.mm(&mut r, &l.ffn_down, &self.gate, 0, n, &self.cur, n_embd)?;
            ops::add(&mut r, &self.cur, &self.x, n * n_embd)?;
        }
        let output = m.output.as_ref().unwrap_or(&m.tok_embd);
        let (row0, rows) = match head {
            Head::None => return Ok(r),
            Head::All => (0, n),
            Head::Last | Head::Argmax => (n - 1, 1),
        };
        ops::rms_norm(&mut r, &self.x, row0 * n_embd, &m.output_norm, &self.cur, 0, n_embd, rows, hp.rms_eps)?;
        self.mm(&mut r, output, &self.cur, 0, rows, &self.logits, hp.n_vocab)?;
        if head == Head::Argmax {
            ops::argmax(&mut r, &self.logits, 0, hp.n_vocab, &self.out_id)?;
        }
        Ok(r)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    None,
    Last,
    All,
    Argmax,
}
