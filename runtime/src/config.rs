//! Every knob of the engine, passed at construction (no global switches).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Where the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// A real GPU adapter when there is one (and the architecture runs on wgpu), else the CPU.
    #[default]
    Auto,
    Cpu,
    /// wgpu on the best adapter there is, software ones (lavapipe) included; an error when none.
    Wgpu,
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" | "gpu" => Ok(BackendKind::Wgpu),
            other => Err(Error::InvalidParam(format!("unknown backend '{other}' (expected auto, cpu or wgpu)"))),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Auto => "auto",
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
        })
    }
}

/// Where the CPU backend reads the weights from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMemory {
    /// A huge-page copy where the OS offers transparent huge pages (Linux
    /// with THP `always` or `madvise`), else the file mapping.
    #[default]
    Auto,
    /// The memory-mapped file, zero-copy: loads at once, and the OS may drop
    /// clean pages under memory pressure (phones), at the cost of a TLB miss
    /// per 4 KiB read during generation.
    Mmap,
    /// A copy in anonymous memory, huge pages requested where the OS has them.
    Copy,
}

impl WeightMemory {
    /// Whether a CPU engine copies the weights into memory of its own.
    pub fn copies(self) -> bool {
        match self {
            WeightMemory::Auto => transparent_huge_pages(),
            WeightMemory::Mmap => false,
            WeightMemory::Copy => true,
        }
    }
}

/// Whether the kernel grants `MADV_HUGEPAGE` requests (THP mode `always` or
/// `madvise`, not `never`).
pub fn transparent_huge_pages() -> bool {
    cfg!(target_os = "linux")
        && std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| s.contains("[always]") || s.contains("[madvise]"))
}

impl FromStr for WeightMemory {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(WeightMemory::Auto),
            "mmap" => Ok(WeightMemory::Mmap),
            "copy" => Ok(WeightMemory::Copy),
            other => Err(Error::InvalidParam(format!("unknown weight memory '{other}' (expected auto, mmap or copy)"))),
        }
    }
}

impl fmt::Display for WeightMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightMemory::Auto => "auto",
            WeightMemory::Mmap => "mmap",
            WeightMemory::Copy => "copy",
        })
    }
}

/// The default cap on a session's context when none is asked for.
pub const DEFAULT_MAX_CTX: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub backend: BackendKind,
    /// CPU threads; 0 = one per available core.
    pub n_threads: usize,
    /// Use the portable scalar CPU kernels even where SIMD ones exist
    /// (debugging, parity checks); SIMD is chosen at run time otherwise.
    pub force_scalar: bool,
    /// Context size of each session; `None` = the model's training context, capped at 4096.
    pub n_ctx: Option<usize>,
    /// How the KV cache stores keys and values (`--cache-type-k`/`--cache-type-v`).
    pub cache_type_k: crate::kv_cache::KvType,
    pub cache_type_v: crate::kv_cache::KvType,
    /// Where the CPU backend reads the weights from (the GPU backend uploads
    /// them from the mapping).
    pub weights: WeightMemory,
    /// GPU kernel tiers to turn off (added to `EMBER_GPU_DISABLE`).
    pub gpu_disable: Vec<crate::backend::wgpu::Tier>,
    /// Let `auto` consider software adapters (lavapipe), like `EMBER_GPU_ALLOW_SOFTWARE=1`.
    pub gpu_allow_software: bool,
    /// Where GPU verdicts and pipeline caches are kept; `None` = `$EMBER_HOME/gpu`.
    pub gpu_cache_dir: Option<std::path::PathBuf>,
    /// How long one GPU submit may take before the device counts as lost;
    /// `None` = 120 s on GPUs, 600 s on software adapters.
    pub gpu_watchdog: Option<std::time::Duration>,
    /// A GPU kernel made to write wrong values, for tests of the fallback (the names of
    /// `EMBER_GPU_FAULT`, which wins when set; the browser has no environment).
    pub gpu_fault: Option<String>,
    /// An OpenAI-compatible server that `Session::complete`/`Session::chat`
    /// may send requests to (see `docs/REMOTE.md`; needs the `remote` feature).
    pub remote: Option<crate::remote::RemoteConfig>,
    /// Where requests go; `None`: `Remote` when `remote` is set, else `Local`.
    pub route: Option<crate::remote::RoutePolicy>,
    /// Bytes the engine may hold (weights, every session's KV cache, scratch:
    /// [`crate::memory_plan`]); `None` = the memory the machine has available.
    /// A plan over it is an error that says what would fit, unless `fit`.
    pub memory_budget: Option<u64>,
    /// Lower the context (and, when the KV types were left f16, quantize the
    /// cache) until the memory plan fits, instead of refusing (`--fit`).
    pub fit: bool,
    /// Sessions the memory plan provides for at once (the server's slots); 0 = 1.
    pub parallel: usize,
}

impl EngineConfig {
    /// The route policy in force (see [`EngineConfig::route`]).
    pub fn route_policy(&self) -> crate::remote::RoutePolicy {
        use crate::remote::RoutePolicy;
        self.route.unwrap_or(if self.remote.is_some() { RoutePolicy::Remote } else { RoutePolicy::Local })
    }
}
