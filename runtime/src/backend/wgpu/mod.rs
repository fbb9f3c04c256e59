//! The GPU backend on wgpu (Vulkan, Metal, DX12): see docs/GPU.md.
//!
//! `device` decides the [`DeviceProfile`] once; `repack` rewrites quant blocks
//! into aligned GPU layouts; `weights` uploads them split over binding limits;
//! `shaders` lists every WGSL variant; `kernels` caches pipelines and bind
//! groups and records one command encoder per micro-batch; `session` is what
//! every graph shares (KV caches, the micro-batch loop, the output head);
//! `blocks` are the standard attention and FFN layers; `decoder` is the graph
//! of the standard decoder archs (llama, qwen2, qwen3, phi3, minicpm); `gemma3`
//! has its own; `minicpm3` is MiniCPM3's multi-head latent attention over a
//! latent cache. Every architecture the CPU runs has a wgpu graph.

pub mod blocks;
pub mod decoder;
pub mod device;
pub mod gemma3;
pub mod kernels;
pub mod minicpm3;
pub mod repack;
pub mod session;
pub mod shaders;
pub mod weights;

pub use device::{AdapterPolicy, DeviceProfile, GpuContext};
pub use session::Want;

use crate::model::Model;
use crate::{Error, Result};

/// A model's weights on a device, and the device's pipelines.
pub struct WgpuBackend {
    pub ctx: GpuContext,
    pub kernels: kernels::Kernels,
    pub model: GpuModel,
}

/// Per-architecture GPU graphs.
pub enum GpuModel {
    Decoder(decoder::DecoderGpu),
    Gemma3(gemma3::Gemma3Gpu),
    MiniCpm3(minicpm3::MiniCpm3Gpu),
}

impl WgpuBackend {
    /// Uploads `model` to `ctx`.
    pub fn new(ctx: GpuContext, model: &Model) -> Result<WgpuBackend> {
        let gm = match model {
            Model::Llama(m) | Model::MiniCpm(m) | Model::Qwen2(m) | Model::Qwen3(m) | Model::Phi3(m) => {
                GpuModel::Decoder(decoder::DecoderGpu::upload(&ctx, m)?)
            }
            Model::Gemma3(m) => GpuModel::Gemma3(gemma3::Gemma3Gpu::upload(&ctx, m)?),
            Model::MiniCpm3(m) => GpuModel::MiniCpm3(minicpm3::MiniCpm3Gpu::upload(&ctx, m)?),
        };
        Ok(WgpuBackend { ctx, kernels: kernels::Kernels::default(), model: gm })
    }

    pub fn new_session(&self, n_ctx: usize) -> Result<GpuSession> {
        match &self.model {
            GpuModel::Decoder(m) => Ok(GpuSession::Decoder(decoder::DecoderSession::new(&self.ctx, m, n_ctx)?)),
            GpuModel::Gemma3(m) => Ok(GpuSession::Gemma3(gemma3::Gemma3Session::new(&self.ctx, m, n_ctx)?)),
            GpuModel::MiniCpm3(m) => Ok(GpuSession::MiniCpm3(minicpm3::MiniCpm3Session::new(&self.ctx, m, n_ctx)?)),
        }
    }
}

/// Per-session GPU state.
pub enum GpuSession {
    Decoder(decoder::DecoderSession),
    Gemma3(gemma3::Gemma3Session),
    MiniCpm3(minicpm3::MiniCpm3Session),
}

impl GpuSession {
    pub fn forward(&mut self, be: &WgpuBackend, ids: &[u32], pos0: usize, want: Want, logits: &mut Vec<f32>) -> Result<Option<u32>> {
        match (self, &be.model) {
            (GpuSession::Decoder(s), GpuModel::Decoder(m)) => s.forward(&be.ctx, &be.kernels, m, ids, pos0, want, logits),
            (GpuSession::Gemma3(s), GpuModel::Gemma3(m)) => s.forward(&be.ctx, &be.kernels, m, ids, pos0, want, logits),
            (GpuSession::MiniCpm3(s), GpuModel::MiniCpm3(m)) => s.forward(&be.ctx, &be.kernels, m, ids, pos0, want, logits),
            _ => Err(Error::Backend("a wgpu session used with another model's backend".into())),
        }
    }
}
