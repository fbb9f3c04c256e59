//! The wgpu executor: records an architecture's graph ([`crate::graph`])
//! into one command encoder per micro-batch (one submit; only the sampled
//! id or the wanted logits rows come back).
//!
//! [`GpuWeights`] holds every weight of the graph on the device (matrices
//! and dense weights in their GGUF bytes, vectors as f32); a [`GpuRunner`] is one
//! session: KV caches per layer (f16, or q8_0/q4_0 blocks), the graph's buffers for a micro-batch,
//! RoPE tables for the whole context, the parameter slots and cached bind
//! groups. Each graph op maps to one or a few kernels (`kernels::ops`);
//! products first round their input as llama.cpp's CPU product would
//! (act_quant), so the GPU holds llama.cpp's answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::device::GpuContext;
use super::kernels::{ops, params_buffer, GBuf, Kernels, Readback, Recorder};
use super::layout;
use super::shaders::{MatFuse, MatGroup, ShaderKey};
use super::wait::block_on;
use super::weights::{self, GpuDense, GpuMatrix};
use crate::graph::{Act, Attn, Buf, Dumped, Exec, Forward, Graph, HeadMatmul, Mat, Rope, Runner, Vector, View, Want, Weights};
use crate::kv_cache::KvType;
use crate::kv_rotation::KvRotation;
use crate::kv_state::{rows_len, KvState, LayerKv};
use crate::ops::rope::RopeMode;
use crate::{Error, Result};

/// A matrix of the graph on the device, in its GGUF bytes (layout.rs).
enum GpuWeight {
    /// For the matrix kernels, split by rows over the binding limit; rows
    /// zero-padded to a multiple of 32 elements where needed (F32/F16/BF16).
    Matrix(GpuMatrix),
    /// One buffer, read element by element (per-head products, MLA's kv_b).
    Dense(GpuDense),
}

/// Weight bytes on the device and in the file (`ember bench`'s
/// `gpu_weight_bytes` / `gguf_weight_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightBytes {
    /// Every weight buffer's size on the device.
    pub gpu: u64,
    /// The same tensors' bytes in the file.
    pub gguf: u64,
    /// Tensors counted (matrices and vectors).
    pub tensors: u64,
}

/// Every weight of a graph, uploaded once.
pub struct GpuWeights {
    mats: Vec<GpuWeight>,
    vectors: Vec<GBuf>,
}

impl GpuWeights {
    pub fn upload(ctx: &GpuContext, w: &Weights) -> Result<GpuWeights> {
        let f = &*w.file;
        let mut mats = Vec::with_capacity(w.mats.len());
        for m in &w.mats {
            mats.push(if m.dense {
                GpuWeight::Dense(GpuDense::upload(ctx, &m.name, m.ty, m.data(f), m.n_in, m.n_out)?)
            } else {
                GpuWeight::Matrix(GpuMatrix::upload_padded(ctx, &m.name, m.ty, m.data(f), m.n_in, m.n_out)?)
            });
        }
        let vectors = w.vectors.iter().zip(&w.vector_names).map(|(v, name)| GBuf::from_f32(ctx, name, v)).collect();
        ctx.queue.submit(None);
        super::wait::wait(ctx)?;
        Ok(GpuWeights { mats, vectors })
    }

    fn matrix(&self, m: Mat) -> Result<&GpuMatrix> {
        match &self.mats[m.0 as usize] {
            GpuWeight::Matrix(w) => Ok(w),
            GpuWeight::Dense(_) => Err(Error::Backend("graph: a dense weight used as a matrix".into())),
        }
    }

    /// Bytes of every weight buffer on the device, and of the same tensors in the file.
    pub fn bytes(&self, w: &Weights) -> WeightBytes {
        let gpu = self.mats.iter().map(|m| match m {
            GpuWeight::Matrix(g) => g.device_bytes(),
            GpuWeight::Dense(d) => d.wa.size,
        });
        let gpu = gpu.sum::<u64>() + self.vectors.iter().map(|v| v.size).sum::<u64>();
        WeightBytes { gpu, gguf: file_bytes(w), tensors: (self.mats.len() + self.vectors.len()) as u64 }
    }

    /// What [`GpuWeights::upload`] allocates for `w` under a storage binding
    /// limit of `max_binding` bytes, computed without a device (the same
    /// planner: `weights::plan`; a test holds the two equal).
    pub fn plan_bytes(w: &Weights, max_binding: u64) -> Result<WeightBytes> {
        let mut gpu = 0;
        for m in &w.mats {
            gpu += if m.dense {
                layout::Layout::for_type(m.ty)?.bytes(m.n_in, m.n_out)?.max(16)
            } else {
                let n_in = if m.ty.block_size() == 1 { m.n_in.next_multiple_of(32) } else { m.n_in };
                weights::plan(m.ty, n_in, m.n_out, max_binding)?.iter().map(|p| p.bytes).sum()
            };
        }
        gpu += w.vectors.iter().map(|v| (v.len() as u64 * 4).max(16)).sum::<u64>();
        Ok(WeightBytes { gpu, gguf: file_bytes(w), tensors: (w.mats.len() + w.vectors.len()) as u64 })
    }

    fn dense(&self, m: Mat) -> Result<&GpuDense> {
        match &self.mats[m.0 as usize] {
            GpuWeight::Dense(w) => Ok(w),
            GpuWeight::Matrix(_) => Err(Error::Backend("graph: a matrix used as a dense weight".into())),
        }
    }

    /// The widest input row any matrix reads (padded).
    fn widest_in(&self) -> usize {
        self.mats.iter().map(|m| if let GpuWeight::Matrix(w) = m { w.n_in } else { 0 }).max().unwrap_or(0)
    }

    /// The padded input widths of matrices whose rows were padded, with their real width.
    fn padded(&self, w: &Weights) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .mats
            .iter()
            .zip(&w.mats)
            .filter_map(|(g, m)| match g {
                GpuWeight::Matrix(g) if g.n_in != m.n_in => Some(g.n_in),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Bytes in the file of every tensor the graph registered (matrices and vectors).
fn file_bytes(w: &Weights) -> u64 {
    let mats: u64 = w.mats.iter().map(|m| m.data(&w.file).len() as u64).sum();
    let vectors: u64 = w.vector_names.iter().filter_map(|n| w.file.tensor(n)).map(|t| t.size).sum();
    mats + vectors
}

/// A session's device buffers.
struct SessionBufs {
    ids: GBuf,
    /// The graph's buffers, `[ubatch, width]` each.
    bufs: Vec<GBuf>,
    /// Per layer, the K and V caches: rows stored as `types` (f16 values or
    /// ggml's q8_0/q4_0 blocks, `KvCache`'s byte layout).
    kc: Vec<GBuf>,
    vc: Vec<GBuf>,
    types: (KvType, KvType),
    /// llama.cpp's rotation of a quantized cache (`kv_rotation.rs`): rows
    /// rotated before they are stored, queries before attention, its output after.
    rot: KvRotation,
    /// cos/sin of every position of the context, per RoPE table.
    ropes: Vec<GBuf>,
    /// Activations rounded like llama.cpp's quantized products (act_quant).
    xq: GBuf,
    /// Input rows zero-padded for matrices with padded rows, by padded width
    /// (only written at that width, so the tails stay zero).
    pads: Vec<(usize, GBuf)>,
    /// The head's normed rows `[ubatch, n_embd]`, its logits, the argmax id.
    hn: GBuf,
    logits: GBuf,
    out_id: GBuf,
}

impl SessionBufs {
    fn new(ctx: &GpuContext, be: &WgpuBackend, ubatch: usize, n_ctx: usize, types: (KvType, KvType)) -> Result<SessionBufs> {
        let g = be.arch.graph();
        let max = ctx.profile.max_binding();
        let e = wgpu::BufferUsages::empty();
        let act = |label: &str, n: usize| GBuf::new(ctx, label, (ubatch * n * 4) as u64, e);
        let cache = |label: &str, ty: KvType, width: usize| -> Result<GBuf> {
            let bytes = ops::kv_cache_bytes(ty, width, n_ctx)
                .ok_or_else(|| Error::InvalidParam(format!("KV cache type {ty}: a row of {width} values is not whole blocks")))?;
            if bytes > max {
                return Err(Error::Backend(format!(
                    "a layer's KV cache ({bytes} bytes) exceeds the binding limit {max}; use a smaller context"
                )));
            }
            Ok(GBuf::new(ctx, label, bytes, e))
        };
        let rope = |t: &crate::graph::RopeTable| {
            // Computed once by the reference code: GPU sin/cos are too coarse at large angles.
            let mut table = Vec::new();
            t.fill(n_ctx, 0, n_ctx, &mut table);
            let flat: Vec<f32> = table.iter().flat_map(|&(c, s)| [c, s]).collect();
            GBuf::from_f32(ctx, "rope table", &flat)
        };
        let n_embd = g.width(g.hidden);
        Ok(SessionBufs {
            ids: act("ids", 1),
            bufs: g.bufs.iter().map(|&(name, w)| act(name, w)).collect(),
            kc: g.kv.iter().map(|&(k, _)| cache("k cache", types.0, k)).collect::<Result<_>>()?,
            vc: g.kv.iter().map(|&(_, v)| cache("v cache", types.1, v)).collect::<Result<_>>()?,
            types,
            rot: g.kv_rotation(types),
            ropes: g.ropes.iter().map(rope).collect(),
            xq: act("xq", be.weights.widest_in().max(n_embd)),
            pads: be.weights.padded(&g.weights).into_iter().map(|w| (w, act("padded input", w))).collect(),
            hn: act("head norm", n_embd),
            logits: act("logits", g.n_vocab),
            out_id: GBuf::new(ctx, "argmax", 4, e),
        })
    }

    /// Stand-ins of every buffer for the dry run that counts dispatches.
    fn placeholders(ctx: &GpuContext, be: &WgpuBackend, types: (KvType, KvType)) -> SessionBufs {
        let g = be.arch.graph();
        let p = GBuf::new(ctx, "placeholder", 16, wgpu::BufferUsages::empty());
        SessionBufs {
            ids: p.clone(),
            bufs: vec![p.clone(); g.bufs.len()],
            kc: vec![p.clone(); g.kv.len()],
            vc: vec![p.clone(); g.kv.len()],
            types,
            rot: g.kv_rotation(types),
            ropes: vec![p.clone(); g.ropes.len()],
            xq: p.clone(),
            pads: be.weights.padded(&g.weights).into_iter().map(|w| (w, p.clone())).collect(),
            hn: p.clone(),
            logits: p.clone(),
            out_id: p,
        }
    }
}

/// A model's weights on a device, the device's pipelines, and the model's graph.
pub struct WgpuBackend {
    pub ctx: GpuContext,
    /// Pipelines, shared with the self-test that ran on this device.
    pub kernels: Arc<Kernels>,
    weights: GpuWeights,
    arch: Arc<dyn Forward>,
    /// Dispatches one micro-batch records (graph and head).
    dispatches: usize,
    /// Submits and dispatches of every session so far ([`WgpuBackend::submitted`]).
    submits: AtomicU64,
    dispatched: AtomicU64,
}

/// Dispatches of one decode token (a micro-batch of one token, its logits
/// row), counted by a dry run of the graph ([`WgpuBackend::decode_dispatches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchCounts {
    /// The whole token: embedding, every layer, the output head.
    pub per_token: usize,
    /// The output head's part (final norm, head product, logit scaling).
    pub head: usize,
    /// The most dispatches between one layer's attention and the next
    /// layer's: one whole layer (0 with fewer than two layers).
    pub per_layer: usize,
    /// Layers (attention calls) in the graph.
    pub n_layer: usize,
}

impl WgpuBackend {
    /// Uploads the model's weights to `ctx` and records its graph once, dry,
    /// so a shape or kernel the device can't run fails here (and `auto`
    /// falls back to the CPU), not in the middle of a conversation.
    pub fn new(ctx: GpuContext, arch: Arc<dyn Forward>) -> Result<WgpuBackend> {
        Self::with_kernels(ctx, arch, Arc::new(Kernels::default()))
    }

    /// Like [`WgpuBackend::new`], reusing pipelines already compiled on this
    /// device (the self-test's). Allocation failures (out of memory) are a
    /// typed error, not a later crash.
    pub fn with_kernels(ctx: GpuContext, arch: Arc<dyn Forward>, kernels: Arc<Kernels>) -> Result<WgpuBackend> {
        let scope = AllocScope::new(&ctx);
        let weights = GpuWeights::upload(&ctx, &arch.graph().weights)?;
        scope.check("uploading the weights")?;
        let mut be = WgpuBackend { ctx, kernels, weights, arch, dispatches: 0, submits: AtomicU64::new(0), dispatched: AtomicU64::new(0) };
        be.dispatches = be.count_dispatches(false, F16_KV)?;
        be.save_pipelines();
        Ok(be)
    }

    /// Stores the device's pipeline cache when new pipelines were compiled.
    fn save_pipelines(&self) {
        if let Some(p) = &self.ctx.pipelines {
            p.save_if_grown(self.kernels.created());
        }
    }

    /// Dispatches one micro-batch records (graph, head, and the copies of
    /// named intermediates when dumping) with a cache of `types`, counted by a dry run.
    fn count_dispatches(&self, dump: bool, types: (KvType, KvType)) -> Result<usize> {
        let b = SessionBufs::placeholders(&self.ctx, self, types);
        let mut bg = HashMap::new();
        let mut rec = Recorder::counting(&self.ctx, &self.kernels, &b.ids, &mut bg);
        let mut dumps = Vec::new();
        let mut e = GpuExec::new(&mut rec, self, &b, 1, 0, dump.then_some(&mut dumps));
        self.arch.forward(&mut e)?;
        e.flush()?;
        e.head(Want::All)?;
        Ok(rec.n_dispatches())
    }

    /// What one decode token records with an f16 cache, counted dry (nothing runs).
    pub fn decode_dispatches(&self) -> Result<DispatchCounts> {
        self.decode_dispatches_for(F16_KV)
    }

    /// [`WgpuBackend::decode_dispatches`] with a cache of `types` (a
    /// quantized cache takes the unfused RoPE and its own stores).
    pub fn decode_dispatches_for(&self, types: (KvType, KvType)) -> Result<DispatchCounts> {
        let b = SessionBufs::placeholders(&self.ctx, self, types);
        let mut bg = HashMap::new();
        let mut rec = Recorder::counting(&self.ctx, &self.kernels, &b.ids, &mut bg);
        let mut e = GpuExec::new(&mut rec, self, &b, 1, 0, None);
        self.arch.forward(&mut e)?;
        e.flush()?;
        let graph = e.rec.n_dispatches();
        let marks = std::mem::take(&mut e.layer_marks);
        e.head(Want::Last)?;
        let per_token = rec.n_dispatches();
        let per_layer = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        Ok(DispatchCounts { per_token, head: per_token - graph, per_layer, n_layer: marks.len() })
    }

    /// (submits, dispatches) every session of this backend has run so far:
    /// measured, for `ember bench` (differences around a decode loop).
    pub fn submitted(&self) -> (u64, u64) {
        (self.submits.load(Ordering::Relaxed), self.dispatched.load(Ordering::Relaxed))
    }

    /// A session of `n_ctx` positions with an f16 KV cache.
    pub fn new_runner(self: &Arc<Self>, n_ctx: usize) -> Result<GpuRunner> {
        GpuRunner::new(self.clone(), n_ctx, F16_KV)
    }

    /// A session whose cache stores K and V as `types` (f16, q8_0, q4_0; an
    /// error when a layer's rows are not whole blocks, or for MLA's latent
    /// cache, which stays f16: [`crate::kv_cache::check_types`]).
    pub fn new_runner_with_kv_types(self: &Arc<Self>, n_ctx: usize, types: (KvType, KvType)) -> Result<GpuRunner> {
        GpuRunner::new(self.clone(), n_ctx, types)
    }

    /// Bytes of every weight buffer on the device, and of the same tensors in the file.
    pub fn weight_bytes(&self) -> WeightBytes {
        self.weights.bytes(&self.arch.graph().weights)
    }
}

/// One session on the GPU.
pub struct GpuRunner {
    be: Arc<WgpuBackend>,
    n_ctx: usize,
    /// Tokens per submit.
    ubatch: usize,
    b: SessionBufs,
    params: GBuf,
    bind_groups: HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>,
    readback: Readback,
    bytes: Vec<u8>,
    kv_bytes: usize,
    /// Copies of the named intermediates, while dumping.
    dump: Option<Vec<Dumped>>,
    /// Set: stop before the next micro-batch ([`Runner::set_cancel`]).
    cancel: Option<Arc<AtomicBool>>,
}

impl GpuRunner {
    fn new(be: Arc<WgpuBackend>, n_ctx: usize, types: (KvType, KvType)) -> Result<GpuRunner> {
        let ctx = &be.ctx;
        let g = be.arch.graph();
        crate::kv_cache::check_types(&g.kv, types.0, types.1)?;
        let max = ctx.profile.max_binding() as usize;
        let widest = g.bufs.iter().map(|b| b.1).chain([g.n_vocab, be.weights.widest_in()]).max().unwrap_or(1) * 4;
        if max / widest == 0 {
            return Err(Error::Backend(format!("one row of {widest} bytes exceeds the binding limit {max}")));
        }
        // Tokens per submit: a software adapter gets small micro-batches so one
        // submit stays short (wgpu's wait gives up after 60 s; lavapipe on a
        // busy CPU does a few tokens per second); a GPU gets up to 512.
        let cap = if ctx.profile.software { 64 } else { 512 };
        let ubatch = (max / widest).clamp(1, cap);
        let scope = AllocScope::new(ctx);
        let b = SessionBufs::new(ctx, &be, ubatch, n_ctx, types)?;
        scope.check("allocating the session's buffers")?;
        let kv_bytes = crate::kv_cache::bytes_per_token(&g.kv, types.0, types.1).unwrap_or(0) * n_ctx;
        // A quantized cache records more dispatches (unfused RoPE, its stores).
        let dispatches = if types == F16_KV { be.dispatches } else { be.count_dispatches(false, types)? };
        log::info!("wgpu session: ctx {n_ctx}, micro-batch {ubatch}, KV cache {}/{} {} MiB on the GPU", types.0, types.1, kv_bytes >> 20);
        Ok(GpuRunner {
            n_ctx,
            ubatch,
            params: params_buffer(ctx, dispatches + 8),
            bind_groups: HashMap::new(),
            readback: Readback::new(ctx, (ubatch * g.n_vocab * 4) as u64),
            bytes: Vec::new(),
            kv_bytes,
            dump: None,
            cancel: None,
            b,
            be,
        })
    }
}

impl Runner for GpuRunner {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn argmax_on_device(&self) -> bool {
        true
    }

    fn kv_bytes(&self) -> usize {
        self.kv_bytes
    }

    fn set_cancel(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.cancel = flag;
    }

    fn set_dump(&mut self, on: bool) -> Result<()> {
        if on {
            // The copies are dispatches too: make room for them.
            let n = self.be.count_dispatches(true, self.b.types)? + 8;
            if n as u64 * super::kernels::SLOT > self.params.size {
                self.params = params_buffer(&self.be.ctx, n);
                self.bind_groups.clear();
            }
        }
        self.dump = on.then(Vec::new);
        Ok(())
    }

    fn take_dump(&mut self) -> Vec<Dumped> {
        self.dump.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn kv_read(&mut self, n_tokens: usize) -> Result<KvState> {
        if n_tokens > self.n_ctx {
            return Err(Error::ContextFull { needed: n_tokens, n_ctx: self.n_ctx });
        }
        // The cache buffers hold rows of the session's types (SessionBufs::new).
        let (type_k, type_v) = self.b.types;
        let ctx = &self.be.ctx;
        let dims = &self.be.arch.graph().kv;
        // Every layer's K then V rows into one staging buffer, one submit;
        // copies are in whole 4-byte words (wgpu's copy alignment).
        let mut parts = Vec::new();
        let mut at = 0u64;
        for (il, &(kw, vw)) in dims.iter().enumerate() {
            for (buf, len) in [(&self.b.kc[il], rows_len(type_k, kw, n_tokens)?), (&self.b.vc[il], rows_len(type_v, vw, n_tokens)?)] {
                parts.push((buf, at, len as u64));
                at += (len as u64).next_multiple_of(4);
            }
        }
        if at == 0 {
            return Ok(KvState { type_k, type_v, n_tokens, layers: vec![LayerKv::default(); dims.len()] });
        }
        let staging = Readback::new(ctx, at);
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kv read") });
        for &(buf, at, len) in &parts {
            if len > 0 {
                staging.copy_to(&mut enc, buf, len.next_multiple_of(4), at);
            }
        }
        ctx.queue.submit(Some(enc.finish()));
        let mut bytes = Vec::new();
        staging.read(ctx, at, &mut bytes)?;
        let slice = |at: u64, len: u64| bytes[at as usize..(at + len) as usize].to_vec();
        let layers = parts.chunks(2).map(|kv| LayerKv { k: slice(kv[0].1, kv[0].2), v: slice(kv[1].1, kv[1].2) }).collect();
        Ok(KvState { type_k, type_v, n_tokens, layers })
    }

    fn kv_write(&mut self, state: &KvState) -> Result<()> {
        state.check(&self.be.arch.graph().kv, self.n_ctx, self.b.types.0, self.b.types.1)?;
        let ctx = &self.be.ctx;
        for (il, l) in state.layers.iter().enumerate() {
            for (buf, rows) in [(&self.b.kc[il], &l.k), (&self.b.vc[il], &l.v)] {
                if rows.is_empty() {
                    continue;
                }
                // A write is whole 4-byte words: the padding lands in the
                // next (not yet valid) position, which its pass overwrites
                // (a quantized store writes whole blocks).
                let mut data = rows.clone();
                data.resize(rows.len().next_multiple_of(4), 0);
                ctx.queue.write_buffer(&buf.buf, 0, &data);
            }
        }
        Ok(())
    }

    fn forward(&mut self, ids: &[u32], pos0: usize, want: Want, logits: &mut Vec<f32>) -> Result<Option<u32>> {
        if pos0 + ids.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: pos0 + ids.len(), n_ctx: self.n_ctx });
        }
        logits.clear();
        let be = &*self.be;
        let (ctx, n_vocab) = (&be.ctx, be.arch.graph().n_vocab);
        if pos0 > 0 && ctx.fault.is_some_and(|f| f.is_device_lost()) {
            return Err(Error::DeviceLost(format!("{}: EMBER_GPU_FAULT=device_lost", ctx.profile.adapter_name)));
        }
        let created = be.kernels.created();
        let mut result = None;
        let n_chunks = ids.len().div_ceil(self.ubatch);
        for (c, chunk) in ids.chunks(self.ubatch).enumerate() {
            if self.cancel.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let last = c + 1 == n_chunks;
            let head = match want {
                Want::All => Some(Want::All),
                w if last => Some(w),
                _ => None,
            };
            ctx.queue.write_buffer(&self.b.ids.buf, 0, bytemuck::cast_slice(chunk));
            let n = chunk.len();
            let bytes = match head {
                None => 0,
                Some(Want::Last) => n_vocab * 4,
                Some(Want::All) => n * n_vocab * 4,
                Some(Want::Argmax) => 4,
            } as u64;
            let mut rec = Recorder::new(ctx, &be.kernels, &self.params, &mut self.bind_groups);
            let mut dumps = Vec::new();
            let dump = self.dump.is_some().then_some(&mut dumps);
            let mut e = GpuExec::new(&mut rec, be, &self.b, n, pos0 + c * self.ubatch, dump);
            be.arch.forward(&mut e)?;
            e.flush()?;
            if let Some(h) = head {
                e.head(h)?;
            }
            let src = if head == Some(Want::Argmax) { &self.b.out_id } else { &self.b.logits };
            let readback = &self.readback;
            let dump_bytes: u64 = dumps.iter().map(|d| (n * d.1 * 4) as u64).sum();
            let staging = (dump_bytes > 0).then(|| Readback::new(ctx, dump_bytes));
            be.submits.fetch_add(1, Ordering::Relaxed);
            be.dispatched.fetch_add(rec.n_dispatches() as u64, Ordering::Relaxed);
            rec.submit(|enc| {
                if bytes > 0 {
                    readback.copy(enc, src, 0, bytes);
                }
                if let Some(st) = &staging {
                    let mut at = 0;
                    for (_, width, g) in &dumps {
                        let len = (n * width * 4) as u64;
                        st.copy_to(enc, g, len, at);
                        at += len;
                    }
                }
            });
            if let (Some(st), Some(list)) = (&staging, &mut self.dump) {
                st.read(ctx, dump_bytes, &mut self.bytes)?;
                let all: &[f32] = bytemuck::cast_slice(&self.bytes);
                let mut at = 0;
                for (name, width, _) in dumps {
                    Dumped::push(list, name, width, &all[at..at + n * width]);
                    at += n * width;
                }
            }
            if bytes > 0 {
                self.readback.read(ctx, bytes, &mut self.bytes)?;
                match head {
                    Some(Want::Argmax) => result = Some(u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])),
                    _ => logits.extend_from_slice(bytemuck::cast_slice(&self.bytes)),
                }
            }
        }
        if be.kernels.created() > created {
            // A shape seen for the first time compiled pipelines: keep them for the next start.
            be.save_pipelines();
        }
        Ok(result)
    }
}

/// Catches wgpu's out-of-memory and validation errors of the buffer
/// creations between `new` and `check` (wgpu reports them asynchronously,
/// not as return values).
struct AllocScope<'a> {
    device: &'a wgpu::Device,
}

impl<'a> AllocScope<'a> {
    fn new(ctx: &'a GpuContext) -> AllocScope<'a> {
        ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        AllocScope { device: &ctx.device }
    }

    fn check(self, what: &str) -> Result<()> {
        let oom = block_on(self.device.pop_error_scope())?;
        let invalid = block_on(self.device.pop_error_scope())?;
        std::mem::forget(self);
        match (oom, invalid) {
            (Some(e), _) => Err(Error::Backend(format!("out of GPU memory {what}: {e}"))),
            (None, Some(e)) => Err(Error::Backend(format!("{what}: {e}"))),
            (None, None) => Ok(()),
        }
    }
}

impl Drop for AllocScope<'_> {
    /// An early return (`?`) between `new` and `check` still pops the scopes.
    fn drop(&mut self) {
        let _ = block_on(self.device.pop_error_scope());
        let _ = block_on(self.device.pop_error_scope());
    }
}

/// The default cache types.
const F16_KV: (KvType, KvType) = (KvType::F16, KvType::F16);

/// rope.wgsl's mode word.
fn rope_mode(m: RopeMode) -> u32 {
    match m {
        RopeMode::Norm => 0,
        RopeMode::Neox => 1,
    }
}

/// One micro-batch's recording.
struct GpuExec<'r, 'a> {
    rec: &'r mut Recorder<'a>,
    be: &'a WgpuBackend,
    b: &'a SessionBufs,
    n: usize,
    pos0: usize,
    /// While dumping: each named intermediate copied into a buffer of its own
    /// (name, width, copy), read back after the submit.
    dump: Option<&'r mut Vec<(String, usize, GBuf)>>,
    /// The fused tier is on (`tiers.fused`, and not dumping: a dump copies
    /// intermediates between the ops fusion merges).
    fused: bool,
    /// An op held back by the fused tier until the next op shows whether the
    /// two merge ([`Pending`]); any other op first records it as it is.
    pending: Option<Pending>,
    /// Dispatches recorded before each layer's attention (per-layer counts).
    layer_marks: Vec<usize>,
}

/// A graph op the fused tier holds back (see `GpuExec::flush`).
enum Pending {
    /// RMSNorm over whole rows: merges with the rounding of the products that read `out`.
    Norm { x: View, w: Vector, out: View, eps: f32 },
    /// RoPE of q, then of k, and a q scale after them: merge with the KV store of k and v.
    Rope { q: (Buf, Rope), k: Option<(Buf, Rope)>, q_scale: f32 },
    /// `gate = act(gate) · up`: merges with the rounding of the product that reads `gate`.
    Glu { gate: Buf, up: Buf, act: Act },
    /// One product `y = W · x` (x: the graph buffer `src`, or `xq` when
    /// None: already rounded), x first rounded like act_quant `round`:
    /// merges with a residual add of y (o and down), the rounding then its prologue.
    Product { src: Option<Buf>, m: Mat, y: Buf, round: Option<u32> },
    /// The products of a (gate, up) pair from the rounded x in `xq`: merge
    /// with the GLU of their outputs (`MatGroup::Glu`).
    GateUp { gate: (Mat, Buf), up: (Mat, Buf) },
}

impl<'r, 'a> GpuExec<'r, 'a> {
    fn new(
        rec: &'r mut Recorder<'a>,
        be: &'a WgpuBackend,
        b: &'a SessionBufs,
        n: usize,
        pos0: usize,
        dump: Option<&'r mut Vec<(String, usize, GBuf)>>,
    ) -> Self {
        let fused = be.ctx.profile.tiers.fused && dump.is_none();
        GpuExec { rec, be, b, n, pos0, dump, fused, pending: None, layer_marks: Vec::new() }
    }

    /// Records the held-back op, if any, as the unfused kernels would.
    fn flush(&mut self) -> Result<()> {
        match self.pending.take() {
            None => Ok(()),
            Some(Pending::Norm { x, w, out, eps }) => self.rms_norm_now(x, w, out, eps),
            Some(Pending::Rope { q, k, q_scale }) => {
                self.rope_now(q.0, &q.1)?;
                if let Some(k) = k {
                    self.rope_now(k.0, &k.1)?;
                }
                if q_scale != 1.0 {
                    let n = self.n * self.width(q.0);
                    ops::scale(self.rec, &self.b.bufs[q.0 .0 as usize], 0, n, q_scale)?;
                }
                Ok(())
            }
            Some(Pending::Glu { gate, up, act }) => {
                let n = self.n * self.width(gate);
                let b = self.b;
                ops::glu(self.rec, &b.bufs[up.0 as usize], &b.bufs[gate.0 as usize], n, act == Act::Gelu)
            }
            Some(Pending::Product { src, m, y, round }) => {
                let (b, be, n) = (self.b, self.be, self.n);
                let w = be.weights.matrix(m)?;
                let mut x = src.map_or(&b.xq, |s| &b.bufs[s.0 as usize]);
                if let Some(mode) = round {
                    ops::act_quant(self.rec, x, &b.xq, n * w.n_in, mode)?;
                    x = &b.xq;
                }
                ops::matmul(self.rec, w, x, w.n_in, 0, n, &b.bufs[y.0 as usize], w.n_out)
            }
            Some(Pending::GateUp { gate, up }) => {
                let xw = self.be.weights.matrix(gate.0)?.n_in;
                self.products_from_xq(xw, &[gate, up])
            }
        }
    }

    /// A product group whose input is already rounded into `xq`, where the
    /// device has a group kernel for it ([`ops::matmul_group_fits`]): three
    /// products (q, k, v) in one dispatch now; two (gate, up) held back for
    /// the GLU that may follow (`Pending::GateUp`). False: record them as
    /// they are.
    fn group_from_xq(&mut self, products: &[(Mat, Buf)]) -> Result<bool> {
        let (b, be, n) = (self.b, self.be, self.n);
        let ws = products.iter().map(|&(m, _)| be.weights.matrix(m)).collect::<Result<Vec<_>>>()?;
        // Each output a distinct buffer as wide as its weight's rows (one
        // buffer can't be bound twice read-write in a dispatch).
        let distinct = products.iter().enumerate().all(|(i, p)| products[..i].iter().all(|q| q.1 != p.1));
        let widths = products.iter().zip(&ws).all(|(p, w)| self.width(p.1) == w.n_out);
        if !distinct || !widths || !ops::matmul_group_fits(&be.ctx.profile, &ws, n) {
            return Ok(false);
        }
        match *products {
            [(_, q), (_, k), (_, v)] => {
                let ys = [q, k, v].map(|y| &b.bufs[y.0 as usize]);
                ops::matmul_group(self.rec, MatGroup::Qkv, None, &ws, &b.xq, n, &ys)?;
                Ok(true)
            }
            [gate, up] if ws[0].n_out == ws[1].n_out => {
                self.pending = Some(Pending::GateUp { gate, up });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Holds back a lone product for the residual add that may follow
    /// (`Pending::Product`), where the device has a fused kernel for it;
    /// false: record it now.
    fn hold_product(&mut self, src: Option<Buf>, products: &[(Mat, Buf)], xw: usize, round: Option<u32>) -> Result<bool> {
        let &[(m, y)] = products else { return Ok(false) };
        let w = self.be.weights.matrix(m)?;
        if w.n_in != xw || round.is_some_and(|r| ops::act_block(r) != 32) || !ops::fused_matmul_fits(&self.be.ctx.profile, w, xw, self.n) {
            return Ok(false);
        }
        self.pending = Some(Pending::Product { src, m, y, round });
        Ok(true)
    }

    /// The rounding mode every product of `products` applies to an input of
    /// `xw` values, when they share one and read x unpadded: then one rounded
    /// copy of x serves them all.
    fn shared_mode(&self, xw: usize, products: &[(Mat, Buf)]) -> Result<Option<u32>> {
        let mut mode = None;
        for &(m, _) in products {
            let w = self.be.weights.matrix(m)?;
            let Some(mm) = ops::act_mode(w.ty) else { return Ok(None) };
            if w.n_in != xw || !xw.is_multiple_of(ops::act_block(mm)) || mode.is_some_and(|m| m != mm) {
                return Ok(None);
            }
            mode = Some(mm);
        }
        Ok(mode)
    }

    /// The products of a group whose input is already rounded into `xq`.
    fn products_from_xq(&mut self, xw: usize, products: &[(Mat, Buf)]) -> Result<()> {
        let (b, be, n) = (self.b, self.be, self.n);
        for &(m, y) in products {
            let w = be.weights.matrix(m)?;
            ops::matmul(self.rec, w, &b.xq, xw, 0, n, &b.bufs[y.0 as usize], w.n_out)?;
        }
        Ok(())
    }

    fn rope_now(&mut self, x: Buf, r: &Rope) -> Result<()> {
        let a = ops::RopeArgs {
            n_tok: self.n,
            n_head: r.n_head,
            head_dim: r.head_dim,
            n_rot: r.n_rot,
            mode: rope_mode(r.mode),
            pos0: self.pos0,
            row_stride: self.width(x),
            off: r.off,
        };
        let b = self.b;
        ops::rope(self.rec, &b.ropes[r.table.0 as usize], &b.bufs[x.0 as usize], &a)
    }

    fn rms_norm_now(&mut self, x: View, w: Vector, out: View, eps: f32) -> Result<()> {
        let group = self.g().weights.vector(w).len();
        let (xs, os) = (self.width(x.buf), self.width(out.buf));
        let (b, n) = (self.b, self.n);
        let (xb, ob, wb) = (&b.bufs[x.buf.0 as usize], &b.bufs[out.buf.0 as usize], &self.be.weights.vectors[w.0 as usize]);
        if x.width == group {
            ops::rms_norm_strided(self.rec, xb, x.off, xs, wb, ob, out.off, os, group, n, eps)
        } else if x.width == xs && out.width == os && xs == os && group > 0 && xs % group == 0 {
            // Per-head norms over whole rows: heads are contiguous rows of `group`.
            ops::rms_norm(self.rec, xb, 0, wb, ob, 0, group, n * (xs / group), eps)
        } else {
            Err(Error::Backend(format!("graph: rms_norm of {} of {xs} values in groups of {group}", x.width)))
        }
    }

    fn g(&self) -> &Graph {
        self.be.arch.graph()
    }

    fn width(&self, b: Buf) -> usize {
        self.g().width(b)
    }

    /// `y = W · x` for `n` rows of `x` (`x_width` wide), with x first rounded
    /// like llama.cpp's CPU product rounds it for this weight type.
    fn mm(&mut self, w: &GpuMatrix, x: &GBuf, x_width: usize, n: usize, y: &GBuf) -> Result<()> {
        let mut x = x;
        if w.n_in != x_width {
            // Rows padded to w.n_in: copy into the zero-tailed buffer of that width.
            let pad = self.b.pads.iter().find(|p| p.0 == w.n_in).map(|p| &p.1);
            let pad = pad.ok_or_else(|| Error::Backend(format!("{}: no padded input buffer", w.name)))?;
            ops::copy_rows(self.rec, x, 0, x_width, pad, 0, w.n_in, x_width, n)?;
            x = pad;
        }
        match ops::act_mode(w.ty) {
            Some(mode) if w.n_in.is_multiple_of(if mode == 1 { 256 } else { 32 }) => {
                ops::act_quant(self.rec, x, &self.b.xq, n * w.n_in, mode)?;
                ops::matmul(self.rec, w, &self.b.xq, w.n_in, 0, n, y, w.n_out)
            }
            _ => ops::matmul(self.rec, w, x, w.n_in, 0, n, y, w.n_out),
        }
    }

    /// logits = logit_mul · output(rms_norm(hidden) · norm) for the rows `want` needs.
    fn head(&mut self, want: Want) -> Result<()> {
        let (h, n) = (self.g().head, self.n);
        let n_embd = self.width(self.g().hidden);
        let n_vocab = self.g().n_vocab;
        let (row0, rows) = match want {
            Want::All => (0, n),
            Want::Last | Want::Argmax => (n - 1, 1),
        };
        let (b, be) = (self.b, self.be);
        let x = &b.bufs[self.g().hidden.0 as usize];
        let (norm, output) = (&be.weights.vectors[h.norm.0 as usize], be.weights.matrix(h.output)?);
        match ops::act_mode(output.ty) {
            // Fused tier: the norm writes the head product's rounded input too.
            Some(mode) if self.fused && output.n_in == n_embd && n_embd.is_multiple_of(ops::act_block(mode)) => {
                ops::rms_norm_q(self.rec, x, row0 * n_embd, n_embd, norm, &b.hn, 0, n_embd, n_embd, rows, h.eps, &b.xq, mode)?;
                ops::matmul(self.rec, output, &b.xq, n_embd, 0, rows, &b.logits, n_vocab)?;
            }
            _ => {
                ops::rms_norm(self.rec, x, row0 * n_embd, norm, &b.hn, 0, n_embd, rows, h.eps)?;
                self.mm(output, &b.hn, n_embd, rows, &b.logits)?;
            }
        }
        if h.logit_mul != 1.0 {
            ops::scale(self.rec, &b.logits, 0, rows * n_vocab, h.logit_mul)?;
        }
        if let Some(cap) = h.softcap {
            ops::softcap(self.rec, &b.logits, 0, rows * n_vocab, cap)?;
        }
        if want == Want::Argmax {
            ops::argmax(self.rec, &b.logits, 0, n_vocab, &b.out_id)?;
        }
        Ok(())
    }
}

impl Exec for GpuExec<'_, '_> {
    fn n_tok(&self) -> usize {
        self.n
    }

    fn pos0(&self) -> usize {
        self.pos0
    }

    fn embed(&mut self, table: Mat, out: Buf, scale: f32) -> Result<()> {
        self.flush()?;
        let (b, be) = (self.b, self.be);
        let w = be.weights.matrix(table)?;
        let width = self.width(out);
        ops::get_rows(self.rec, w, &b.ids, self.n, &b.bufs[out.0 as usize], width)?;
        if scale != 1.0 {
            ops::scale(self.rec, &b.bufs[out.0 as usize], 0, self.n * width, scale)?;
        }
        Ok(())
    }

    fn matmul(&mut self, x: Buf, products: &[(Mat, Buf)]) -> Result<()> {
        let (b, be, n, xw) = (self.b, self.be, self.n, self.width(x));
        if self.fused {
            if let Some(mode) = self.shared_mode(xw, products)? {
                // The fused tier rounds x once for the whole group, in the
                // kernel that produced x when it is a held-back norm or GLU.
                match self.pending.take() {
                    Some(Pending::Norm { x: nx, w, out, eps })
                        if out.buf == x && out.off == 0 && out.width == xw && nx.width == xw && nx.buf != x =>
                    {
                        let xs = self.width(nx.buf);
                        let (xb, wb) = (&b.bufs[nx.buf.0 as usize], &be.weights.vectors[w.0 as usize]);
                        ops::rms_norm_q(self.rec, xb, nx.off, xs, wb, &b.bufs[x.0 as usize], 0, xw, xw, n, eps, &b.xq, mode)?;
                    }
                    Some(Pending::Glu { gate, up, act }) if gate == x => {
                        ops::glu_q(self.rec, &b.bufs[up.0 as usize], &b.bufs[gate.0 as usize], n * xw, act == Act::Gelu, &b.xq, mode)?;
                    }
                    other => {
                        self.pending = other;
                        self.flush()?;
                        // A lone product (o) may round x in its own prologue.
                        if self.hold_product(Some(x), products, xw, Some(mode))? {
                            return Ok(());
                        }
                        ops::act_quant(self.rec, &b.bufs[x.0 as usize], &b.xq, n * xw, mode)?;
                    }
                }
                if self.hold_product(None, products, xw, None)? || self.group_from_xq(products)? {
                    return Ok(());
                }
                return self.products_from_xq(xw, products);
            }
            if let &[(m, _)] = products {
                // A lone product that reads x unrounded (F32 weights).
                if ops::act_mode(be.weights.matrix(m)?.ty).is_none() {
                    self.flush()?;
                    if self.hold_product(Some(x), products, xw, None)? {
                        return Ok(());
                    }
                }
            }
        }
        self.flush()?;
        for &(m, y) in products {
            self.mm(be.weights.matrix(m)?, &b.bufs[x.0 as usize], xw, n, &b.bufs[y.0 as usize])?;
        }
        Ok(())
    }

    fn rms_norm(&mut self, x: View, w: Vector, out: View, eps: f32) -> Result<()> {
        self.flush()?;
        if x.buf == out.buf {
            // The kernel binds x read-only and out read-write: one buffer
            // cannot be both in a dispatch (wgpu drops it). No architecture
            // norms in place; fail at load rather than compute garbage.
            return Err(Error::Backend("graph: rms_norm in place (out = x) is not supported on wgpu".into()));
        }
        if self.fused && x.width == self.g().weights.vector(w).len() {
            // A whole-row norm: the products that read it may round it in the same kernel.
            self.pending = Some(Pending::Norm { x, w, out, eps });
            return Ok(());
        }
        self.rms_norm_now(x, w, out, eps)
    }

    fn add_bias(&mut self, x: Buf, bias: Vector) -> Result<()> {
        self.flush()?;
        let w = self.width(x);
        let (b, be) = (self.b, self.be);
        ops::add_bias(self.rec, &be.weights.vectors[bias.0 as usize], &b.bufs[x.0 as usize], self.n, w, w, 0)
    }

    fn rope(&mut self, x: Buf, r: &Rope) -> Result<()> {
        // The fused tier holds back RoPE of q then of k (same table and
        // geometry, heads from column 0) for the KV store that follows.
        if let Some(Pending::Rope { q, k: k @ None, q_scale: _ }) = &mut self.pending {
            let p = q.1;
            if x != q.0 && r.table == p.table && r.off == 0 && (r.head_dim, r.n_rot, r.mode) == (p.head_dim, p.n_rot, p.mode) {
                *k = Some((x, *r));
                return Ok(());
            }
        }
        self.flush()?;
        if self.fused && r.off == 0 {
            self.pending = Some(Pending::Rope { q: (x, *r), k: None, q_scale: 1.0 });
            return Ok(());
        }
        self.rope_now(x, r)
    }

    fn scale(&mut self, x: Buf, s: f32) -> Result<()> {
        if let Some(Pending::Rope { q, k: Some(_), q_scale }) = &mut self.pending {
            if q.0 == x && *q_scale == 1.0 {
                *q_scale = s;
                return Ok(());
            }
        }
        self.flush()?;
        let n = self.n * self.width(x);
        let b = self.b;
        ops::scale(self.rec, &b.bufs[x.0 as usize], 0, n, s)
    }

    fn add(&mut self, x: Buf, y: Buf, s: f32) -> Result<()> {
        if let Some(Pending::Product { src, m, y: py, round }) = self.pending {
            // The residual add as the epilogue of the product that made y.
            if py == y && x != y && src != Some(x) && self.width(x) == self.width(y) {
                self.pending = None;
                let (b, be, n) = (self.b, self.be, self.n);
                let w = be.weights.matrix(m)?;
                let src = src.map_or(&b.xq, |s| &b.bufs[s.0 as usize]);
                let fuse = MatFuse { round, add: true, group: MatGroup::One };
                let res = Some((&b.bufs[x.0 as usize], s));
                return ops::matmul_fused(self.rec, fuse, w, src, w.n_in, n, &b.bufs[y.0 as usize], w.n_out, res);
            }
        }
        self.flush()?;
        let n = self.n * self.width(x);
        let b = self.b;
        ops::add_scaled(self.rec, &b.bufs[y.0 as usize], &b.bufs[x.0 as usize], n, s)
    }

    fn glu(&mut self, gate: Buf, up: Buf, act: Act) -> Result<()> {
        if let Some(Pending::GateUp { gate: g, up: u }) = self.pending {
            // The GLU as the epilogue of the gate/up products that made its inputs.
            if g.1 == gate && u.1 == up {
                self.pending = None;
                let (b, be, n) = (self.b, self.be, self.n);
                let ws = [be.weights.matrix(g.0)?, be.weights.matrix(u.0)?];
                let ys = [&b.bufs[up.0 as usize], &b.bufs[gate.0 as usize]];
                let group = MatGroup::Glu(ops::glu_op(act == Act::Gelu));
                return ops::matmul_group(self.rec, group, None, &ws, &b.xq, n, &ys);
            }
        }
        self.flush()?;
        if self.fused {
            // The down product that reads gate may round it in the same kernel.
            self.pending = Some(Pending::Glu { gate, up, act });
            return Ok(());
        }
        let n = self.n * self.width(gate);
        let b = self.b;
        ops::glu(self.rec, &b.bufs[up.0 as usize], &b.bufs[gate.0 as usize], n, act == Act::Gelu)
    }

    fn copy(&mut self, src: View, dst: View, n_head: usize) -> Result<()> {
        self.flush()?;
        let (sw, dw) = (self.width(src.buf), self.width(dst.buf));
        if src.buf == dst.buf || src.width != dst.width || n_head == 0 || sw % n_head != 0 || dw % n_head != 0 {
            return Err(Error::Backend("graph: copy between mismatched views".into()));
        }
        // Heads are rows of sw/n_head and dw/n_head values.
        let b = self.b;
        ops::copy_rows(
            self.rec,
            &b.bufs[src.buf.0 as usize],
            src.off,
            sw / n_head,
            &b.bufs[dst.buf.0 as usize],
            dst.off,
            dw / n_head,
            src.width,
            self.n * n_head,
        )
    }

    fn kv_store(&mut self, il: usize, k: Buf, v: Option<Buf>) -> Result<()> {
        let (b, n, pos0) = (self.b, self.n, self.pos0);
        // The fused store writes f16 caches only; a quantized cache takes the
        // unfused RoPE (flush) and the quantizing stores below.
        let fusable = b.types == F16_KV;
        if let (true, Some(Pending::Rope { q, k: Some(rk), q_scale }), Some(v)) = (fusable, &self.pending, v) {
            let (q, rk, q_scale) = (*q, *rk, *q_scale);
            let (qw, kw, vw) = (self.width(q.0), self.width(k), self.width(v));
            let n_kv = rk.1.n_head;
            let a = ops::RopeKvArgs {
                n_tok: n,
                n_head: q.1.n_head,
                n_head_kv: n_kv,
                head_dim: q.1.head_dim,
                head_dim_v: vw / n_kv.max(1),
                n_rot: q.1.n_rot,
                mode: rope_mode(q.1.mode),
                pos0,
                q_stride: qw,
                k_stride: kw,
                v_stride: vw,
                q_scale,
            };
            let fits = rk.0 == k
                && v != q.0
                && v != k
                && n_kv > 0
                && vw % n_kv == 0
                && a.head_dim_v.is_multiple_of(2)
                && n_kv * a.head_dim == kw
                && q.1.n_head * a.head_dim <= qw
                && q.1.n_rot.is_multiple_of(2)
                && a.head_dim.is_multiple_of(2);
            if fits {
                self.pending = None;
                let table = &b.ropes[q.1.table.0 as usize];
                let (qb, kb, vb) = (&b.bufs[q.0 .0 as usize], &b.bufs[k.0 as usize], &b.bufs[v.0 as usize]);
                return ops::rope_kv(self.rec, table, qb, kb, vb, &b.kc[il], &b.vc[il], &a);
            }
        }
        self.flush()?;
        let (kt, vt) = b.types;
        // A rotating cache stores H·k and H·v: rotated in place (k and v are
        // read by nothing else after the store).
        if let Some(p) = b.rot.k {
            ops::hadamard(self.rec, &b.bufs[k.0 as usize], n * self.width(k), p)?;
        }
        ops::kv_store_q(self.rec, &b.bufs[k.0 as usize], &b.kc[il], kt, n, self.width(k), pos0)?;
        if let Some(v) = v {
            if let Some(p) = b.rot.v {
                ops::hadamard(self.rec, &b.bufs[v.0 as usize], n * self.width(v), p)?;
            }
            ops::kv_store_q(self.rec, &b.bufs[v.0 as usize], &b.vc[il], vt, n, self.width(v), pos0)?;
        }
        Ok(())
    }

    fn attention(&mut self, il: usize, q: Buf, out: Buf, a: &Attn) -> Result<()> {
        self.flush()?;
        self.layer_marks.push(self.rec.n_dispatches());
        let (k_row, v_row) = self.g().kv[il];
        let args = ops::AttnArgs {
            window: a.window,
            softcap: a.softcap,
            k_row,
            v_row: if a.v_in_k { k_row } else { v_row },
            ..ops::AttnArgs::standard(self.n, a.n_head, a.n_head_kv, a.head_dim_k, a.head_dim_v, self.pos0, a.kq_scale)
        };
        let b = self.b;
        let (vc, vt) = if a.v_in_k { (&b.kc[il], b.types.0) } else { (&b.vc[il], b.types.1) };
        let (qb, ob) = (&b.bufs[q.0 as usize], &b.bufs[out.0 as usize]);
        // Rotated K rows: rotate the queries alike ((H·q)·(H·k) = q·k); rotated
        // V rows: the output is H·o, rotated back (H·H = I).
        if let Some(p) = b.rot.k {
            ops::hadamard(self.rec, qb, self.n * a.n_head * a.head_dim_k, p)?;
        }
        ops::attention_typed(self.rec, (b.types.0, vt), qb, &b.kc[il], vc, ob, &args)?;
        if let Some(p) = b.rot.v {
            ops::hadamard(self.rec, ob, self.n * a.n_head * a.head_dim_v, p)?;
        }
        Ok(())
    }

    fn name(&mut self, x: Buf, name: &str, il: Option<usize>) -> Result<()> {
        let (width, n, b) = (self.width(x), self.n, self.b);
        if let Some(list) = &mut self.dump {
            // (Dumping turns the fused tier off: nothing is held back here.)
            let copy = GBuf::new(&self.be.ctx, name, (n * width * 4) as u64, wgpu::BufferUsages::empty());
            ops::copy_rows(self.rec, &b.bufs[x.0 as usize], 0, width, &copy, 0, width, width, n)?;
            list.push((Dumped::key(name, il), width, copy));
        }
        Ok(())
    }

    fn head_matmul(&mut self, x: Buf, w: Mat, y: Buf, a: &HeadMatmul) -> Result<()> {
        self.flush()?;
        let args = ops::HeadMatmulArgs {
            n_tok: self.n,
            n_head: a.n_head,
            n_out: a.n_out,
            n_in: a.n_in,
            x_stride: self.width(x),
            x_head: a.x_head,
            y_stride: self.width(y),
            y_head: a.y_head,
            w_off: a.w_off,
            w_head: a.w_head,
            w_o: a.w_o,
            w_i: a.w_i,
        };
        let (b, be) = (self.b, self.be);
        ops::head_matmul(self.rec, &b.bufs[x.0 as usize], be.weights.dense(w)?, &b.bufs[y.0 as usize], &args)
    }
}
