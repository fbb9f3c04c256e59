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
}
