//! `Engine`: one loaded model (weights mapped once, or for the CPU backend
//! copied into huge pages, see [`crate::config::WeightMemory`]; tokenizer,
//! compute backend), shared by any number of [`Session`]s.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::backend::cpu::{CpuBackend, CpuRunner};
use crate::backend::wgpu::{AdapterPolicy, GpuContext, WgpuBackend};
use crate::config::{BackendKind, EngineConfig, DEFAULT_MAX_CTX};
use crate::constrain::{Constraint, Grammars, TokenMask};
use crate::gguf::GgufFile;
use crate::graph::Runner;
use crate::model::{Model, ModelInfo};
use crate::session::Session;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub struct Engine {
    file: Arc<GgufFile>,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    /// The vocabulary as the constraint library sees it, made at the first
    /// constrained generation (a trie of every token's bytes).
    grammars: OnceLock<Arc<Grammars>>,
    cpu: Arc<CpuBackend>,
    /// The GPU backend with the model's weights, when the forward pass runs on wgpu.
    gpu: Option<Arc<WgpuBackend>>,
    /// The remote engine, when the config names one.
    #[cfg(feature = "remote")]
    remote: Option<Arc<crate::remote::RemoteClient>>,
    config: EngineConfig,
}

impl Engine {
    /// Maps and loads a GGUF model.
    pub fn load(path: impl AsRef<Path>, config: EngineConfig) -> Result<Arc<Engine>> {
        let file = Arc::new(GgufFile::open(path.as_ref())?);
        Self::from_file(file, config)
    }

    pub fn from_file(file: Arc<GgufFile>, config: EngineConfig) -> Result<Arc<Engine>> {
        // The remote side is checked first: a bad URL costs no model load.
        #[cfg(feature = "remote")]
        let remote = config.remote.as_ref().map(crate::remote::RemoteClient::new).transpose()?.map(Arc::new);
        #[cfg(not(feature = "remote"))]
        if config.remote.is_some() {
            return Err(Error::InvalidParam("a remote engine needs ember built with the `remote` feature".into()));
        }
        if config.route_policy() != crate::remote::RoutePolicy::Local && config.remote.is_none() {
            return Err(Error::InvalidParam(format!("route {} needs a remote engine", config.route_policy())));
        }
        let mut model = Model::from_gguf(file.clone())?;
        if let Some(n) = config.n_ctx {
            check_ctx(n, model.info().n_ctx_train, model.info().kv_bytes_per_token)?;
        }
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() < model.info().n_vocab {
            log::warn!("tokenizer has {} tokens, the model's head {}", tokenizer.n_vocab(), model.info().n_vocab);
        }
        let cpu = Arc::new(CpuBackend::with_kernels(config.n_threads, config.force_scalar)?);
        let gpu = match config.backend {
            BackendKind::Cpu => None,
            BackendKind::Wgpu => {
                let ctx = GpuContext::new(AdapterPolicy::AllowSoftware)?
                    .ok_or_else(|| Error::Backend("no wgpu adapter found (for software Vulkan install mesa-vulkan-drivers)".into()))?;
                Some(WgpuBackend::new(ctx, model.forward().clone())?)
            }
            BackendKind::Auto => match GpuContext::new(AdapterPolicy::HardwareOnly) {
                Ok(Some(ctx)) => match WgpuBackend::new(ctx, model.forward().clone()) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        log::info!("auto backend: {e}; using the CPU");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    log::info!("auto backend: {e}; using the CPU");
                    None
                }
            },
        };
        let gpu = gpu.map(Arc::new);
        let mut file = file;
        if gpu.is_none() && file.is_mapped() && config.weights.copies() {
            let t = std::time::Instant::now();
            match file.copy_to_memory(true) {
                Ok(copy) => {
                    file = Arc::new(copy);
                    // Weights are offsets into the file: the model again, over the copy.
                    model = Model::from_gguf(file.clone())?;
                    log::info!("weights copied into memory (huge pages requested) in {} ms", t.elapsed().as_millis());
                }
                // Not fatal: the mapping still holds every byte, only slower to stream.
                Err(e) => log::warn!("cannot copy the weights into memory ({e}); reading them from the file mapping"),
            }
        }
        let on = match &gpu {
            Some(g) => format!("wgpu ({})", g.ctx.profile.adapter_name),
            None => format!("cpu with {} threads", cpu.n_threads()),
        };
        log::info!(
            "loaded {} ({}, {} params, {}) on {on}",
            model.info().name.as_deref().unwrap_or("model"),
            model.info().arch,
            model.info().n_params,
            model.info().quant,
        );
        Ok(Arc::new(Engine {
            file,
            model,
            tokenizer: Arc::new(tokenizer),
            grammars: OnceLock::new(),
            cpu,
            gpu,
            #[cfg(feature = "remote")]
            remote,
            config,
        }))
    }

    pub fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// A fresh token mask for `c` (the constraint compiled against this
    /// model's vocabulary): fails with [`crate::Error::InvalidConstraint`]
    /// when the schema, regex or grammar is invalid.
    pub fn constraint_mask(&self, c: &Constraint) -> Result<TokenMask> {
        let grammars = match self.grammars.get() {
            Some(g) => g.clone(),
            None => {
                let g = Arc::new(Grammars::new(self.tokenizer.clone(), self.model.info().n_vocab)?);
                self.grammars.get_or_init(|| g).clone()
            }
        };
        grammars.mask(c)
    }

    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    pub fn cpu(&self) -> &CpuBackend {
        &self.cpu
    }

    /// The GPU backend, when the forward pass runs on wgpu.
    pub fn gpu(&self) -> Option<&WgpuBackend> {
        self.gpu.as_deref()
    }

    /// A session's state on the engine's backend: the one place that picks
    /// the executor (see [`crate::graph`]).
    pub fn new_runner(&self, n_ctx: usize) -> Result<Box<dyn Runner>> {
        Ok(match &self.gpu {
            Some(g) => Box::new(g.new_runner(n_ctx)?),
            None => Box::new(CpuRunner::new(self.cpu.clone(), self.model.forward().clone(), n_ctx)),
        })
    }

    /// "cpu" or "wgpu": where the forward pass runs.
    pub fn backend_name(&self) -> &'static str {
        if self.gpu.is_some() {
            "wgpu"
        } else {
            "cpu"
        }
    }

    /// The remote engine, when the config names one.
    #[cfg(feature = "remote")]
    pub fn remote(&self) -> Option<&Arc<crate::remote::RemoteClient>> {
        self.remote.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The context size sessions get.
    pub fn n_ctx(&self) -> usize {
        self.config.n_ctx.unwrap_or_else(|| self.info().n_ctx_train.clamp(1, DEFAULT_MAX_CTX))
    }

    /// A new conversation with its own KV cache.
    pub fn new_session(self: &Arc<Self>) -> Session {
        Session::new(self.clone(), self.n_ctx())
    }

    /// A new session with an explicit context size (see [`Engine::check_ctx`]).
    pub fn new_session_with_ctx(self: &Arc<Self>, n_ctx: usize) -> Result<Session> {
        self.check_ctx(n_ctx)?;
        Ok(Session::new(self.clone(), n_ctx))
    }

    /// A context size is at least 1 and its KV cache fits in the memory this
    /// machine has available (checked before anything is allocated); past the
    /// model's training context it is allowed, with a warning.
    pub fn check_ctx(&self, n_ctx: usize) -> Result<()> {
        check_ctx(n_ctx, self.info().n_ctx_train, self.info().kv_bytes_per_token)
    }
}

fn check_ctx(n_ctx: usize, n_ctx_train: usize, kv_bytes_per_token: u64) -> Result<()> {
    if n_ctx == 0 {
        return Err(Error::InvalidParam("context size must be at least 1".into()));
    }
    let kv = (n_ctx as u64).saturating_mul(kv_bytes_per_token);
    if let Some(avail) = mem_available() {
        if kv > avail {
            return Err(Error::InvalidParam(format!(
                "context {n_ctx} needs {} MiB of KV cache; {} MiB of memory is available (the model was trained for {})",
                kv >> 20,
                avail >> 20,
                n_ctx_train
            )));
        }
    }
    if n_ctx > n_ctx_train {
        log::warn!("context {n_ctx} is beyond the model's training context {n_ctx_train} ({} MiB of KV cache)", kv >> 20);
    }
    Ok(())
}

/// MemAvailable of /proc/meminfo in bytes (Linux; None elsewhere).
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod ctx_tests {
    use super::*;

    #[test]
    fn context_sizes_are_checked_against_memory() {
        let mib = 1 << 20;
        assert!(check_ctx(0, 8192, mib).is_err());
        assert!(check_ctx(16, 8192, mib).is_ok());
        // 2^40 tokens × 1 MiB: more than any machine has.
        let err = check_ctx(1 << 40, 8192, mib).unwrap_err().to_string();
        assert!(err.contains("MiB of KV cache"), "{err}");
    }
}
