//! What every architecture's GPU graph shares: the per-session state
//! ([`SessionCore`]: f16 KV caches per layer, token ids, the residual stream,
//! logits, the parameter slots, cached bind groups, readback), the
//! micro-batch loop (one command encoder and one submit per micro-batch; only
//! the sampled id or the wanted logits rows come back), the output head
//! (final norm, output product, logit scale / soft-capping, GPU argmax), and
//! weight-upload helpers. Each architecture file records only its body.

use std::collections::HashMap;

use super::device::GpuContext;
use super::kernels::{ops, params_buffer, GBuf, Kernels, Readback, Recorder};
use super::shaders::ShaderKey;
use super::weights::GpuMatrix;
use crate::gguf::GgufFile;
use crate::model::blocks::{BaseHparams, RopeFactors};
use crate::model::Weight;
use crate::ops::rope::{RopeMode, RopeParams};
use crate::{Error, Result};

/// What a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Last,
    All,
    /// Only the id of the last row's largest logit (greedy), computed on the GPU.
    Argmax,
}

/// What the current micro-batch's head computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    None,
    Last,
    All,
    Argmax,
}

/// Bind groups cached by (shader, buffers) for one session.
pub type BindGroups = HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>;

/// Uploads a whole weight matrix from the memory map.
pub fn upload(ctx: &GpuContext, f: &GgufFile, w: &Weight) -> Result<GpuMatrix> {
    GpuMatrix::upload(ctx, &w.name, w.ty, w.data(f), w.n_in, w.n_out)
}

/// Uploads rows `r0..r0 + n` of a weight as its own matrix (the q, k, v or
/// gate, up parts of a fused tensor: each is a contiguous band of rows).
pub fn upload_rows(ctx: &GpuContext, f: &GgufFile, w: &Weight, r0: usize, n: usize) -> Result<GpuMatrix> {
    let rb = w.row_bytes();
    let data = w.data(f).get(r0 * rb..(r0 + n) * rb).ok_or_else(|| Error::Backend(format!("{}: rows {r0}..{} out of range", w.name, r0 + n)))?;
    GpuMatrix::upload(ctx, &w.name, w.ty, data, w.n_in, n)
}

/// Uploads a weight with its rows zero-padded to a multiple of 32 elements
/// (see [`GpuMatrix::upload_padded`]).
pub fn upload_padded(ctx: &GpuContext, f: &GgufFile, w: &Weight) -> Result<GpuMatrix> {
    GpuMatrix::upload_padded(ctx, &w.name, w.ty, w.data(f), w.n_in, w.n_out)
}

/// The output head's weights and the transforms after the product.
pub struct HeadWeights<'a> {
    pub norm: &'a GBuf,
    pub output: &'a GpuMatrix,
    pub rms_eps: f32,
    /// Logits × this (minicpm's logit scale; 1 elsewhere).
    pub logit_mul: f32,
    /// `cap · tanh(logits / cap)` (gemma3's optional final soft-capping).
    pub softcap: Option<f32>,
}

/// The embedding table, final norm and output head every graph has.
pub struct Io {
    pub tok_embd: GpuMatrix,
    /// `None` when tied to `tok_embd`.
    pub output: Option<GpuMatrix>,
    pub output_norm: GBuf,
}

impl Io {
    pub fn upload(ctx: &GpuContext, f: &GgufFile, tok_embd: &Weight, output: &Weight, output_norm: &[f32]) -> Result<Io> {
        let tied = output.name == tok_embd.name;
        Ok(Io {
            tok_embd: upload(ctx, f, tok_embd)?,
            output: if tied { None } else { Some(upload(ctx, f, output)?) },
            output_norm: GBuf::from_f32(ctx, "output_norm", output_norm),
        })
    }

    /// The head's weights with the model's logit transforms.
    pub fn head(&self, rms_eps: f32, logit_mul: f32, softcap: Option<f32>) -> HeadWeights<'_> {
        HeadWeights { norm: &self.output_norm, output: self.output.as_ref().unwrap_or(&self.tok_embd), rms_eps, logit_mul, softcap }
    }

    /// Dispatches of the embedding lookup and the head.
    pub fn dispatches(&self) -> usize {
        self.tok_embd.parts.len() + 2 * self.output.as_ref().unwrap_or(&self.tok_embd).parts.len() + 8
    }

    /// `core.x = scale · token_embd[ids]`      [n, n_embd]
    pub fn embed(&self, r: &mut Recorder, core: &SessionCore, n: usize, scale: f32) -> Result<()> {
        ops::get_rows(r, &self.tok_embd, &core.ids, n, &core.x)?;
        if scale != 1.0 {
            ops::scale(r, &core.x, 0, n * self.tok_embd.n_in, scale)?;
        }
        Ok(())
    }
}

/// One architecture's GPU graph: its session buffers and how it records a
/// micro-batch up to the final hidden state; [`GraphSession`] does the rest.
pub trait Graph {
    /// The per-session activations and tables beyond [`SessionCore`]'s.
    type Bufs;
    fn dims(&self) -> CoreDims;
    fn head(&self) -> HeadWeights<'_>;
    fn new_bufs(&self, ctx: &GpuContext, core: &SessionCore, n_ctx: usize) -> Result<Self::Bufs>;
    /// Embedding and every layer for `n` tokens at `pos0`: the final hidden state ends in `core.x`.
    fn record(&self, r: &mut Recorder, core: &SessionCore, b: &Self::Bufs, n: usize, pos0: usize) -> Result<()>;
}

/// A session of graph `G`: the shared core and `G`'s buffers.
pub struct GraphSession<G: Graph> {
    core: SessionCore,
    bufs: G::Bufs,
}

impl<G: Graph> GraphSession<G> {
    pub fn new(ctx: &GpuContext, m: &G, n_ctx: usize) -> Result<GraphSession<G>> {
        let core = SessionCore::new(ctx, &m.dims(), n_ctx)?;
        let bufs = m.new_bufs(ctx, &core, n_ctx)?;
        Ok(GraphSession { core, bufs })
    }

    /// Runs `ids` at `pos0..`. Fills `logits` for `Last`/`All`; returns the id for `Argmax`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        ctx: &GpuContext,
        kernels: &Kernels,
        m: &G,
        ids: &[u32],
        pos0: usize,
        want: Want,
        logits: &mut Vec<f32>,
    ) -> Result<Option<u32>> {
        let bufs = &self.bufs;
        self.core.forward(ctx, kernels, &m.head(), ids, pos0, want, logits, |r, core, n, pos0| m.record(r, core, bufs, n, pos0))
    }
}

/// Sizes a session's shared buffers are made for.
pub struct CoreDims {
    pub n_vocab: usize,
    pub n_embd: usize,
    /// The widest activation row any product reads (for the rounded copy `xq`).
    pub widest_in: usize,
    /// The widest activation row of any buffer (sets the micro-batch size).
    pub widest: usize,
    /// Per layer: f16 values cached per position for K and for V (0 = none).
    pub kv: Vec<(usize, usize)>,
    /// Dispatches one micro-batch records at most.
    pub dispatches: usize,
}

impl CoreDims {
    /// A graph over [`LayerBufs`](super::blocks::LayerBufs) with a K and a V cache on every layer.
    pub fn standard(hp: &BaseHparams, dispatches: usize) -> CoreDims {
        let widest = super::blocks::LayerBufs::widest(hp);
        CoreDims {
            n_vocab: hp.n_vocab,
            n_embd: hp.n_embd,
            widest_in: widest,
            widest,
            kv: vec![(hp.k_dim(), hp.v_dim()); hp.n_layer],
            dispatches,
        }
    }
}

pub struct SessionCore {
    pub n_ctx: usize,
    pub ubatch: usize,
    pub kc: Vec<GBuf>,
    pub vc: Vec<GBuf>,
    pub ids: GBuf,
    /// The residual stream `[ubatch, n_embd]`.
    pub x: GBuf,
    /// The head's normed rows `[ubatch, n_embd]`.
    hn: GBuf,
    logits: GBuf,
    out_id: GBuf,
    /// Activations rounded like llama.cpp's quantized products (act_quant).
    xq: GBuf,
    params: GBuf,
    bind_groups: BindGroups,
    readback: Readback,
    bytes: Vec<u8>,
    n_vocab: usize,
    n_embd: usize,
}

impl SessionCore {
    pub fn new(ctx: &GpuContext, d: &CoreDims, n_ctx: usize) -> Result<SessionCore> {
        let max = ctx.profile.max_binding() as usize;
        let widest = d.widest.max(d.n_vocab).max(d.n_embd) * 4;
        if max / widest == 0 {
            return Err(Error::Backend(format!("one row of {widest} bytes exceeds the binding limit {max}")));
        }
        // Tokens per submit: a software adapter gets small micro-batches so one
        // submit stays short (wgpu's wait gives up after 60 s; lavapipe on a
        // busy CPU does a few tokens per second); a GPU gets up to 512.
        let cap = if ctx.profile.software { 64 } else { 512 };
        let ubatch = (max / widest).clamp(1, cap);
        let e = wgpu::BufferUsages::empty();
        let cache = |label: &str, width: usize| -> Result<GBuf> {
            let bytes = (n_ctx * width * 2) as u64;
            if bytes > max as u64 {
                return Err(Error::Backend(format!(
                    "a layer's KV cache ({bytes} bytes) exceeds the binding limit {max}; use a smaller context"
                )));
            }
            Ok(GBuf::new(ctx, label, bytes, e))
        };
        let kc = d.kv.iter().map(|&(k, _)| cache("k cache", k)).collect::<Result<Vec<_>>>()?;
        let vc = d.kv.iter().map(|&(_, v)| cache("v cache", v)).collect::<Result<Vec<_>>>()?;
        let buf = |label: &str, n: usize| GBuf::new(ctx, label, (n * 4) as u64, e);
        let kv_bytes: usize = d.kv.iter().map(|&(k, v)| n_ctx * (k + v) * 2).sum();
        log::info!("wgpu session: ctx {n_ctx}, micro-batch {ubatch}, KV cache {} MiB on the GPU", kv_bytes >> 20);
        Ok(SessionCore {
            n_ctx,
            ubatch,
            kc,
            vc,
            ids: buf("ids", ubatch),
            x: buf("x", ubatch * d.n_embd),
            hn: buf("head norm", ubatch * d.n_embd),
            logits: buf("logits", ubatch * d.n_vocab),
            out_id: buf("argmax", 4),
            xq: buf("xq", ubatch * d.widest_in.max(d.n_embd)),
            params: params_buffer(ctx, d.dispatches + 8),
            bind_groups: HashMap::new(),
            readback: Readback::new(ctx, (ubatch * d.n_vocab * 4) as u64),
            bytes: Vec::new(),
            n_vocab: d.n_vocab,
            n_embd: d.n_embd,
        })
    }

    /// A session buffer of `n` f32 per micro-batch token.
    pub fn act(&self, ctx: &GpuContext, label: &str, n: usize) -> GBuf {
        GBuf::new(ctx, label, (self.ubatch * n * 4) as u64, wgpu::BufferUsages::empty())
    }

    /// Runs `ids` at `pos0..`: for each micro-batch, `body` records the graph
    /// up to the final hidden state in `self.x`, then the head. Fills `logits`
    /// for `Last`/`All`; returns the id for `Argmax`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        ctx: &GpuContext,
        kernels: &Kernels,
        head_w: &HeadWeights,
        ids: &[u32],
        pos0: usize,
        want: Want,
        logits: &mut Vec<f32>,
        mut body: impl FnMut(&mut Recorder, &SessionCore, usize, usize) -> Result<()>,
    ) -> Result<Option<u32>> {
        if pos0 + ids.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: pos0 + ids.len(), n_ctx: self.n_ctx });
        }
        logits.clear();
        let n_vocab = self.n_vocab;
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
            let r = (|| -> Result<()> {
                let mut rec = Recorder::new(ctx, kernels, &self.params, &mut bg);
                body(&mut rec, self, n, pos0 + c * self.ubatch)?;
                self.record_head(&mut rec, head_w, n, head)?;
                let src = if head == Head::Argmax { &self.out_id } else { &self.logits };
                rec.submit(|enc| {
                    if bytes > 0 {
                        self.readback.copy(enc, src, 0, bytes);
                    }
                });
                Ok(())
            })();
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

    /// logits = logit_mul · output(rms_norm(x) · norm) for the rows `head` wants.
    fn record_head(&self, r: &mut Recorder, h: &HeadWeights, n: usize, head: Head) -> Result<()> {
        let n_embd = self.n_embd;
        let (row0, rows) = match head {
            Head::None => return Ok(()),
            Head::All => (0, n),
            Head::Last | Head::Argmax => (n - 1, 1),
        };
        ops::rms_norm(r, &self.x, row0 * n_embd, h.norm, &self.hn, 0, n_embd, rows, h.rms_eps)?;
        self.mm(r, h.output, &self.hn, 0, rows, &self.logits, self.n_vocab)?;
        if h.logit_mul != 1.0 {
            ops::scale(r, &self.logits, 0, rows * self.n_vocab, h.logit_mul)?;
        }
        if let Some(cap) = h.softcap {
            ops::softcap(r, &self.logits, 0, rows * self.n_vocab, cap)?;
        }
        if head == Head::Argmax {
            ops::argmax(r, &self.logits, 0, self.n_vocab, &self.out_id)?;
        }
        Ok(())
    }

    /// `y = W · x` for `n` rows of width `w.n_in`, with x first rounded like
    /// llama.cpp's CPU product rounds it for this weight type.
    #[allow(clippy::too_many_arguments)]
    pub fn mm(&self, r: &mut Recorder, w: &GpuMatrix, x: &GBuf, x_off: usize, n: usize, y: &GBuf, y_stride: usize) -> Result<()> {
        match ops::act_mode(w.ty) {
            Some(mode) if x_off == 0 && w.n_in % (if mode == 1 { 256 } else { 32 }) == 0 => {
                ops::act_quant(r, x, &self.xq, n * w.n_in, mode)?;
                ops::matmul(r, w, &self.xq, w.n_in, 0, n, y, y_stride)
            }
            _ => ops::matmul(r, w, x, w.n_in, x_off, n, y, y_stride),
        }
    }
}

/// A session's cos/sin table for `rope` (LongRoPE factors chosen for `n_ctx`),
/// computed once by the reference code: GPU sin/cos are too coarse at large angles.
pub fn rope_table(ctx: &GpuContext, rope: &RopeParams, factors: Option<&[f32]>, n_ctx: usize) -> GBuf {
    let mut table = Vec::new();
    crate::model::blocks::rope_table(rope, factors, 0, n_ctx, &mut table);
    let flat: Vec<f32> = table.iter().flat_map(|&(c, s)| [c, s]).collect();
    GBuf::from_f32(ctx, "rope table", &flat)
}

/// The session table of a model's RoPE with its optional LongRoPE factors.
pub fn rope_table_for(ctx: &GpuContext, rope: &RopeParams, f: &RopeFactors, n_ctx: usize) -> GBuf {
    rope_table(ctx, rope, f.for_ctx(n_ctx), n_ctx)
}

/// rope.wgsl's mode word.
pub fn rope_mode(m: RopeMode) -> u32 {
    match m {
        RopeMode::Norm => 0,
        RopeMode::Neox => 1,
    }
}
