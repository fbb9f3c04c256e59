//! The GPU backend on wgpu (Vulkan, Metal, DX12): see docs/GPU.md.
//!
//! `device` decides the [`DeviceProfile`] once; `layout` says how weights sit
//! on the GPU (their GGUF bytes); `weights` uploads them split over binding limits;
//! `shaders` lists every WGSL variant; `kernels` caches pipelines and bind
//! groups and records one command encoder per micro-batch (`kernels::ops`:
//! one function per kernel); `wait` waits for the GPU (blocking
//! natively, yielding to the event loop in the browser); `exec` runs a model's graph (`crate::graph`):
//! every architecture the CPU runs, from the same definition.

pub mod device;
pub mod exec;
pub mod kernels;
pub mod layout;
pub mod shaders;
pub mod trust;
pub mod wait;
pub mod weights;

pub use device::{AdapterPolicy, DeviceProfile, GpuContext, Tier, Tiers};
pub use exec::{DispatchCounts, GpuRunner, GpuWeights, WeightBytes, WgpuBackend};
pub use trust::{GpuReport, TrustOptions};
