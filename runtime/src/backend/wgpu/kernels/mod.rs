//! Pipelines (created once, cached by [`ShaderKey`]), buffers with stable ids,
//! bind groups cached by (shader, buffers), and the [`Recorder`] that turns a
//! list of dispatches into one compute pass of one command encoder.
//!
//! Per-dispatch parameters go into one uniform buffer of 256-byte slots bound
//! with a dynamic offset, written once per submit: bind groups never change
//! between tokens, so nothing is created per token once warm. Each kernel's
//! parameters are a typed struct from [`params`] (its WGSL `Params` block).

pub mod ops;
pub mod params;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::device::GpuContext;
use super::shaders::{ShaderKey, Signature};
use super::wait::{block_on, wait_for};
use crate::{Error, Result};
use params::KernelParams;

/// Bytes of one parameter slot (≥ every adapter's uniform offset alignment).
pub const SLOT: u64 = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A storage buffer with an id stable for bind-group caching.
#[derive(Clone)]
pub struct GBuf {
    pub id: u64,
    pub buf: wgpu::Buffer,
    pub size: u64,
}

impl GBuf {
    pub fn new(ctx: &GpuContext, label: &str, size: u64, extra: wgpu::BufferUsages) -> GBuf {
        let size = size.max(16).next_multiple_of(4);
        let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC | extra,
            mapped_at_creation: false,
        });
        GBuf { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), buf, size }
    }

    /// A buffer holding `words` (uploaded through the queue).
    pub fn from_u32(ctx: &GpuContext, label: &str, words: &[u32]) -> GBuf {
        let b = GBuf::new(ctx, label, (words.len() * 4) as u64, wgpu::BufferUsages::empty());
        if !words.is_empty() {
            ctx.queue.write_buffer(&b.buf, 0, bytemuck::cast_slice(words));
        }
        b
    }

    pub fn from_f32(ctx: &GpuContext, label: &str, v: &[f32]) -> GBuf {
        GBuf::from_u32(ctx, label, bytemuck::cast_slice(v))
    }
}

pub struct Pipe {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub sig: Signature,
}

/// Pipelines created once per device, by key.
pub struct Kernels {
    pipes: Mutex<HashMap<ShaderKey, Arc<Pipe>>>,
    created: AtomicU64,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels { pipes: Mutex::new(HashMap::new()), created: AtomicU64::new(0) }
    }
}

impl Kernels {
    pub fn get(&self, ctx: &GpuContext, key: ShaderKey) -> Result<Arc<Pipe>> {
        let mut pipes = self.pipes.lock().map_err(|_| Error::Backend("pipeline cache poisoned".into()))?;
        if let Some(p) = pipes.get(&key) {
            return Ok(p.clone());
        }
        let sig = key.signature();
        let dev = &ctx.device;
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: None },
            count: None,
        }];
        for i in 0..sig.n_read + sig.n_rw {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: 1 + i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: i < sig.n_read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let label = key.label();
        dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[&layout],
            push_constant_ranges: &[],
        });
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(key.source().into()),
        });
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: ctx.pipelines.as_ref().map(|p| &p.cache),
        });
        if let Some(e) = block_on(dev.pop_error_scope())? {
            return Err(Error::Backend(format!("pipeline {label}: {e}")));
        }
        let p = Arc::new(Pipe { pipeline, layout, sig });
        pipes.insert(key, p.clone());
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(p)
    }

    /// Pipelines created so far (the pipeline cache is saved when this grows).
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
}

/// One recorded dispatch.
struct Op {
    pipe: Arc<Pipe>,
    bg: wgpu::BindGroup,
    slot: u32,
    wg: [u32; 3],
}

/// Records a graph's dispatches; `submit` writes the params once and submits
/// one command encoder.
pub struct Recorder<'a> {
    pub ctx: &'a GpuContext,
    pub kernels: &'a Kernels,
    params: &'a GBuf,
    bind_groups: &'a mut HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>,
    /// One parameter slot per dispatch (u32s so the slot is 4-aligned).
    slots: Vec<[u32; SLOT as usize / 4]>,
    ops: Vec<Op>,
    /// Only counts dispatches (and checks their pipelines and sizes): the
    /// dry run that sizes a session's parameter buffer.
    counting: bool,
}

impl<'a> Recorder<'a> {
    pub fn new(
        ctx: &'a GpuContext,
        kernels: &'a Kernels,
        params: &'a GBuf,
        bind_groups: &'a mut HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>,
    ) -> Self {
        Recorder { ctx, kernels, params, bind_groups, slots: Vec::new(), ops: Vec::new(), counting: false }
    }

    /// A recorder that only counts (see [`Recorder::n_dispatches`]); `params` is not written.
    pub fn counting(
        ctx: &'a GpuContext,
        kernels: &'a Kernels,
        params: &'a GBuf,
        bind_groups: &'a mut HashMap<(ShaderKey, Vec<u64>), wgpu::BindGroup>,
    ) -> Self {
        Recorder { counting: true, ..Recorder::new(ctx, kernels, params, bind_groups) }
    }

    /// Queues `key` over `bufs` (bindings 1.., in order) with params `p` (the
    /// struct of `key`'s WGSL `Params` block, see [`ShaderKey::params`]) and
    /// `wg` workgroups.
    pub fn dispatch<P: KernelParams>(&mut self, key: ShaderKey, bufs: &[&GBuf], p: &P, wg: [u32; 3]) -> Result<()> {
        const { assert!(std::mem::size_of::<P>() <= SLOT as usize, "parameter struct larger than a slot") };
        debug_assert_eq!(P::LAYOUT.name, key.params().name, "{}: wrong parameter struct", key.label());
        if wg.contains(&0) {
            return Ok(());
        }
        let maxwg = self.ctx.profile.max_compute_workgroups_per_dimension;
        if wg.iter().any(|&n| n > maxwg) {
            return Err(Error::Backend(format!("{}: {wg:?} workgroups exceed the device's {maxwg}", key.label())));
        }
        let pipe = self.kernels.get(self.ctx, key)?;
        debug_assert_eq!(bufs.len() as u32, pipe.sig.n_read + pipe.sig.n_rw);
        // EMBER_GPU_FAULT (tests): the named kernel's output buffer (its last
        // binding) is scaled right after it, so that kernel "writes wrong values".
        let faulty = self.ctx.fault.is_some_and(|f| f.hits(key)).then(|| bufs.last().copied()).flatten();
        if self.counting {
            self.slots.push([0; 64]);
            if let Some(out) = faulty {
                ops::scale(self, out, 0, (out.size / 4) as usize, super::trust::fault::FACTOR)?;
            }
            return Ok(());
        }
        let bk = (key, bufs.iter().map(|b| b.id).collect::<Vec<_>>());
        let bg = match self.bind_groups.get(&bk) {
            Some(bg) => bg.clone(),
            None => {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.params.buf,
                        offset: 0,
                        size: wgpu::BufferSize::new(SLOT),
                    }),
                }];
                for (i, b) in bufs.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: 1 + i as u32, resource: b.buf.as_entire_binding() });
                }
                let bg =
                    self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipe.layout, entries: &entries });
                self.bind_groups.insert(bk, bg.clone());
                bg
            }
        };
        let mut slot = [0u32; SLOT as usize / 4];
        let bytes = bytemuck::bytes_of(p);
        bytemuck::bytes_of_mut(&mut slot)[..bytes.len()].copy_from_slice(bytes);
        let idx = self.slots.len() as u32;
        if (idx as u64 + 1) * SLOT > self.params.size {
            return Err(Error::Backend(format!("more than {} dispatches in one graph", self.params.size / SLOT)));
        }
        self.slots.push(slot);
        self.ops.push(Op { pipe, bg, slot: idx, wg });
        if let Some(out) = faulty {
            ops::scale(self, out, 0, (out.size / 4) as usize, super::trust::fault::FACTOR)?;
        }
        Ok(())
    }

    /// Writes the params, records every dispatch into one compute pass of one
    /// encoder, lets `after` add copies (readback), and submits once.
    pub fn submit(self, after: impl FnOnce(&mut wgpu::CommandEncoder)) -> wgpu::SubmissionIndex {
        let ctx = self.ctx;
        if !self.slots.is_empty() {
            ctx.queue.write_buffer(&self.params.buf, 0, bytemuck::cast_slice(&self.slots));
        }
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ember graph") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ember graph"), timestamp_writes: None });
            for op in &self.ops {
                pass.set_pipeline(&op.pipe.pipeline);
                pass.set_bind_group(0, &op.bg, &[op.slot * SLOT as u32]);
                pass.dispatch_workgroups(op.wg[0], op.wg[1], op.wg[2]);
            }
        }
        after(&mut enc);
        ctx.queue.submit(Some(enc.finish()))
    }

    pub fn n_dispatches(&self) -> usize {
        self.slots.len()
    }
}

/// Parameter slots buffer of `n` slots.
pub fn params_buffer(ctx: &GpuContext, n: usize) -> GBuf {
    let size = n as u64 * SLOT;
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("params"),
        size,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    GBuf { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), buf, size }
}

/// Copies `n` bytes of `src` from `offset` into a mappable buffer and reads them back.
pub struct Readback {
    staging: wgpu::Buffer,
    size: u64,
}

impl Readback {
    pub fn new(ctx: &GpuContext, size: u64) -> Readback {
        let size = size.max(16).next_multiple_of(4);
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Readback { staging, size }
    }

    pub fn copy(&self, enc: &mut wgpu::CommandEncoder, src: &GBuf, offset: u64, n: u64) {
        enc.copy_buffer_to_buffer(&src.buf, offset, &self.staging, 0, n.min(self.size));
    }

    /// Copies the first `n` bytes of `src` to `at` in the staging buffer.
    pub fn copy_to(&self, enc: &mut wgpu::CommandEncoder, src: &GBuf, n: u64, at: u64) {
        enc.copy_buffer_to_buffer(&src.buf, 0, &self.staging, at, n.min(self.size.saturating_sub(at)));
    }

    /// Waits for the GPU and reads the first `n` bytes.
    pub fn read(&self, ctx: &GpuContext, n: u64, out: &mut Vec<u8>) -> Result<()> {
        let slice = self.staging.slice(..n);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        wait_for(ctx, || rx.try_recv().ok())?.map_err(|e| Error::Backend(format!("map: {e}")))?;
        out.clear();
        out.extend_from_slice(&slice.get_mapped_range());
        self.staging.unmap();
        Ok(())
    }
}
