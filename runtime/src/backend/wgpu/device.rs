//! Instance, adapter and device, and the [`DeviceProfile`] decided once from
//! the adapter's real limits and features.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::trust::fault::Fault;
use super::trust::pipeline_cache::PipelineStore;
use crate::{Error, Result};

/// Which adapters may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Only a real GPU (integrated, discrete or virtual); `None` when there is none.
    HardwareOnly,
    /// The best adapter there is, software rasterizers (lavapipe) included.
    AllowSoftware,
}

/// What the device can do, decided once at engine start. Kernels pick their
/// tier from it; the baseline f32 tier needs nothing optional.
#[derive(Debug, Clone)]
pub struct DeviceProfile {
    pub adapter_name: String,
    pub backend: String,
    pub device_type: String,
    pub software: bool,
    /// `SHADER_F16` is available (and enabled).
    pub f16: bool,
    /// Subgroup operations are available (and enabled).
    pub subgroups: bool,
    /// The kernel tiers in use (a subset of what the device can do).
    pub tiers: Tiers,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_uniform_buffer_offset_alignment: u32,
    /// Storage buffers one kernel may bind (the fused q/k/v product binds 7).
    pub max_storage_buffers_per_shader_stage: u32,
}

/// Kernel tiers in use. A tier is on only when the device can run it (its
/// feature is present) and nothing turned it off; off means the baseline path
/// for that kernel, which every device runs. `fused` and `tiled` need no
/// feature: they are on unless turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    /// f16 arithmetic and storage reads (`SHADER_F16`).
    pub f16: bool,
    /// Subgroup reductions (`SUBGROUP`).
    pub subgroup: bool,
    /// Fused kernels (several graph ops in one dispatch) instead of one dispatch per op.
    pub fused: bool,
    /// Workgroup-tiled matrix-matrix products for prompt micro-batches.
    pub tiled: bool,
}

/// One kernel tier, by the name `EMBER_GPU_DISABLE` and the self-test use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    F16,
    Subgroup,
    Fused,
    Tiled,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::F16, Tier::Subgroup, Tier::Fused, Tier::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            Tier::F16 => "f16",
            Tier::Subgroup => "subgroup",
            Tier::Fused => "fused",
            Tier::Tiled => "tiled",
        }
    }

    /// `"f16"` → `Tier::F16`, …; `None` for an unknown name.
    pub fn from_name(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == s)
    }

    /// A comma-separated list (`EMBER_GPU_DISABLE=f16,subgroup`); spaces and
    /// empty items are ignored, an unknown name is an error.
    pub fn parse_list(s: &str) -> Result<Vec<Tier>> {
        let mut v = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let t = Tier::from_name(item)
                .ok_or_else(|| Error::InvalidParam(format!("unknown GPU tier '{item}' (expected any of f16, subgroup, fused, tiled)")))?;
            if !v.contains(&t) {
                v.push(t);
            }
        }
        Ok(v)
    }
}

impl Tiers {
    /// Every tier the device's features allow.
    pub fn available(f16: bool, subgroups: bool) -> Tiers {
        Tiers { f16, subgroup: subgroups, fused: true, tiled: true }
    }

    /// Every tier off: the baseline f32 path every device runs.
    pub const BASELINE: Tiers = Tiers { f16: false, subgroup: false, fused: false, tiled: false };

    pub fn get(&self, t: Tier) -> bool {
        match t {
            Tier::F16 => self.f16,
            Tier::Subgroup => self.subgroup,
            Tier::Fused => self.fused,
            Tier::Tiled => self.tiled,
        }
    }

    pub fn set(&mut self, t: Tier, on: bool) {
        match t {
            Tier::F16 => self.f16 = on,
            Tier::Subgroup => self.subgroup = on,
            Tier::Fused => self.fused = on,
            Tier::Tiled => self.tiled = on,
        }
    }

    /// These tiers with every one of `off` turned off.
    pub fn without(mut self, off: &[Tier]) -> Tiers {
        for &t in off {
            self.set(t, false);
        }
        self
    }

    /// The tiers that are on.
    pub fn on(&self) -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|&t| self.get(t)).collect()
    }

    /// `"f16,subgroup"`, or `"none"` (the baseline).
    pub fn describe(&self) -> String {
        let on: Vec<&str> = self.on().into_iter().map(Tier::name).collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

impl DeviceProfile {
    /// This profile with its tiers changed by `f` (tests force a tier on or
    /// off); a tier whose feature the device lacks stays off whatever `f` says.
    pub fn with_tiers(mut self, f: impl FnOnce(&mut Tiers)) -> DeviceProfile {
        f(&mut self.tiers);
        self.tiers.f16 &= self.f16;
        self.tiers.subgroup &= self.subgroups;
        self
    }

    /// The largest storage binding weights and activations may use; tensors
    /// above it are split by rows.
    pub fn max_binding(&self) -> u64 {
        self.max_storage_buffer_binding_size.min(self.max_buffer_size)
    }
}

/// A device ready for compute. Cloning shares the device (the self-test runs
/// the same device with different [`Tiers`] in its clones' profiles).
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub profile: DeviceProfile,
    /// Vendor, device, driver: what verdicts, quirks and caches are keyed by.
    pub info: wgpu::AdapterInfo,
    /// Whether the adapter offers `PIPELINE_CACHE` (and it was enabled).
    pub pipeline_cache_supported: bool,
    /// The on-disk pipeline cache pipelines are created with, once set up
    /// (`trust::pipeline_cache`).
    pub pipelines: Option<Arc<PipelineStore>>,
    /// A kernel made to write wrong values (`EMBER_GPU_FAULT`, tests only).
    pub fault: Option<Fault>,
    /// How long one submit may take before it counts as a lost device.
    pub watchdog: Duration,
    /// Set by wgpu's device-lost callback.
    pub lost: Arc<AtomicBool>,
}

fn type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu (software)",
        wgpu::DeviceType::Other => "other",
    }
}

/// Every adapter wgpu sees (software ones included), for `ember gpu-check`.
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let _quiet = (!log::log_enabled!(log::Level::Info)).then(QuietStderr::new);
    let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor { backends: wgpu::Backends::PRIMARY, ..Default::default() });
    adapters(&instance, AdapterPolicy::AllowSoftware).unwrap_or_default().into_iter().map(|a| info_of(&a)).collect()
}

/// The adapters there are: natively every one wgpu enumerates. In the browser WebGPU hands
/// out one per awaited `requestAdapter`: the browser's choice, else (`policy` allowing) its
/// fallback adapter (a software one, e.g. SwiftShader).
fn adapters(instance: &wgpu::Instance, policy: AdapterPolicy) -> Result<Vec<wgpu::Adapter>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = policy;
        Ok(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let request = |fallback| {
            super::wait::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: fallback,
                compatible_surface: None,
            }))
        };
        let mut found = request(false)?.ok();
        if found.is_none() && policy == AdapterPolicy::AllowSoftware {
            found = request(true)?.ok();
        }
        Ok(found.into_iter().collect())
    }
}

/// What the browser says of its adapter (`GPUAdapter.info`, read by the embedder: wgpu's
/// WebGPU backend reports an empty name and type "other"): its name and whether it is a
/// software (fallback) one.
#[cfg(target_arch = "wasm32")]
static BROWSER_ADAPTER: std::sync::Mutex<Option<(String, bool)>> = std::sync::Mutex::new(None);

/// Sets what [`info_of`] reports for the browser's adapter (see `BROWSER_ADAPTER`).
#[cfg(target_arch = "wasm32")]
pub fn set_browser_adapter_info(name: &str, software: bool) {
    if let Ok(mut a) = BROWSER_ADAPTER.lock() {
        *a = Some((name.to_string(), software));
    }
}

/// The adapter's info; in the browser, with the name and type the page read.
fn info_of(adapter: &wgpu::Adapter) -> wgpu::AdapterInfo {
    #[allow(unused_mut)]
    let mut info = adapter.get_info();
    #[cfg(target_arch = "wasm32")]
    if let Some((name, software)) = BROWSER_ADAPTER.lock().ok().and_then(|a| a.clone()) {
        info.name = name;
        if software {
            info.device_type = wgpu::DeviceType::Cpu;
        }
    }
    info
}

/// "discrete", "integrated", "cpu (software)", …
pub fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    type_name(t)
}

impl GpuContext {
    /// The best adapter under `policy` (discrete > integrated > virtual > other
    /// > software), or `Ok(None)` when there is none.
    pub fn new(policy: AdapterPolicy) -> Result<Option<GpuContext>> {
        Self::with_binding_limit(policy, None)
    }

    /// Like [`GpuContext::new`], with the storage binding limit lowered to
    /// `limit` (tests use this to exercise tensor splitting).
    pub fn with_binding_limit(policy: AdapterPolicy, limit: Option<u64>) -> Result<Option<GpuContext>> {
        // Vulkan drivers and their window-system libraries print to stderr while
        // adapters are probed (lavapipe: "XDG_RUNTIME_DIR is invalid…" from
        // libwayland); shown with -v (log level info), silenced otherwise.
        let _quiet = (!log::log_enabled!(log::Level::Info)).then(QuietStderr::new);
        let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor { backends: wgpu::Backends::PRIMARY, ..Default::default() });
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let mut adapters: Vec<(wgpu::Adapter, wgpu::AdapterInfo)> = adapters(&instance, policy)?
            .into_iter()
            .map(|a| {
                let i = info_of(&a);
                (a, i)
            })
            .filter(|(_, i)| policy == AdapterPolicy::AllowSoftware || i.device_type != wgpu::DeviceType::Cpu)
            .collect();
        for (_, i) in &adapters {
            log::debug!("wgpu adapter: {} ({:?}, {})", i.name, i.backend, type_name(i.device_type));
        }
        adapters.sort_by_key(|(_, i)| rank(i.device_type));
        let Some((adapter, info)) = adapters.into_iter().next() else { return Ok(None) };
        let limits = adapter.limits();
        let features = adapter.features();
        let f16 = features.contains(wgpu::Features::SHADER_F16);
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        let mut wanted = wgpu::Features::empty();
        if f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        if subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        let pipeline_cache_supported = features.contains(wgpu::Features::PIPELINE_CACHE);
        if pipeline_cache_supported {
            wanted |= wgpu::Features::PIPELINE_CACHE;
        }
        // Ask for the adapter's real limits, not WebGPU's defaults (128 MiB bindings).
        let (device, queue) = super::wait::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ember"),
            required_features: wanted,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))?
        .map_err(|e| Error::Backend(format!("cannot open {}: {e}", info.name)))?;
        let mut max_binding = limits.max_storage_buffer_binding_size as u64;
        if let Some(l) = limit {
            max_binding = max_binding.min(l);
        }
        let profile = DeviceProfile {
            adapter_name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: type_name(info.device_type).into(),
            software: info.device_type == wgpu::DeviceType::Cpu,
            f16,
            subgroups,
            tiers: Tiers::available(f16, subgroups),
            max_storage_buffer_binding_size: max_binding,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            min_uniform_buffer_offset_alignment: limits.min_uniform_buffer_offset_alignment,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
        };
        log::info!(
            "wgpu: {} ({}, {}, driver {} {}); max binding {} MiB, max buffer {} MiB, workgroups/dim {}; f16 {}, subgroups {} (decode products: {} tier)",
            profile.adapter_name,
            profile.backend,
            profile.device_type,
            info.driver,
            info.driver_info,
            profile.max_storage_buffer_binding_size >> 20,
            profile.max_buffer_size >> 20,
            profile.max_compute_workgroups_per_dimension,
            f16,
            subgroups,
            if subgroups { "subgroup" } else { "baseline f32" }
        );
        device.on_uncaptured_error(Arc::new(|e| log::error!("wgpu: {e}")));
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            flag.store(true, Ordering::Relaxed);
            log::error!("wgpu: device lost ({reason:?}): {msg}");
        });
        // Software adapters on a loaded CPU are slow, not lost: a generous watchdog.
        let watchdog = Duration::from_secs(if profile.software { 600 } else { 120 });
        Ok(Some(GpuContext { device, queue, profile, info, pipeline_cache_supported, pipelines: None, fault: None, watchdog, lost }))
    }
}

/// While alive, the process's stderr (fd 2) goes to /dev/null; restored on
/// drop. Only around adapter probing, where C libraries print directly.
struct QuietStderr {
    #[cfg(unix)]
    saved: Option<i32>,
}

#[cfg(unix)]
extern "C" {
    fn dup(fd: i32) -> i32;
    fn dup2(from: i32, to: i32) -> i32;
    fn close(fd: i32) -> i32;
}

impl QuietStderr {
    #[cfg(unix)]
    fn new() -> QuietStderr {
        use std::os::fd::AsRawFd;
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return QuietStderr { saved: None } };
        // SAFETY: dup/dup2/close on fd 2 and fds we own; on any failure stderr
        // is left as it was.
        unsafe {
            let saved = dup(2);
            if saved < 0 {
                return QuietStderr { saved: None };
            }
            if dup2(null.as_raw_fd(), 2) < 0 {
                close(saved);
                return QuietStderr { saved: None };
            }
            QuietStderr { saved: Some(saved) }
        }
    }

    #[cfg(not(unix))]
    fn new() -> QuietStderr {
        QuietStderr {}
    }
}

#[cfg(unix)]
impl Drop for QuietStderr {
    fn drop(&mut self) {
        if let Some(fd) = self.saved.take() {
            // SAFETY: fd is the dup of the original stderr made in `new`.
            unsafe {
                dup2(fd, 2);
                close(fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(f16: bool, subgroups: bool) -> DeviceProfile {
        DeviceProfile {
            adapter_name: "test".into(),
            backend: "none".into(),
            device_type: "cpu (software)".into(),
            software: true,
            f16,
            subgroups,
            tiers: Tiers::available(f16, subgroups),
            max_storage_buffer_binding_size: 1 << 27,
            max_buffer_size: 1 << 28,
            max_compute_workgroups_per_dimension: 65535,
            min_uniform_buffer_offset_alignment: 256,
            max_storage_buffers_per_shader_stage: 8,
        }
    }

    #[test]
    fn with_tiers_turns_tiers_off_but_never_on_without_the_feature() {
        let p = profile(true, true).with_tiers(|t| t.f16 = false);
        assert_eq!(p.tiers, Tiers { f16: false, subgroup: true, fused: true, tiled: true });
        let p = profile(false, false).with_tiers(|t| *t = Tiers { f16: true, subgroup: true, fused: false, tiled: true });
        assert_eq!(p.tiers, Tiers { f16: false, subgroup: false, fused: false, tiled: true });
    }
}
