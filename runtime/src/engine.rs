//! `Engine`: one loaded model (weights mapped once, tokenizer, compute
//! backend), shared by any number of [`Session`]s.

use std::path::Path;
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::config::{BackendKind, EngineConfig, DEFAULT_MAX_CTX};
use crate::gguf::GgufFile;
use crate::model::{Model, ModelInfo};
use crate::session::Session;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub struct Engine {
    file: Arc<GgufFile>,
    model: Model,
    tokenizer: Tokenizer,
    cpu: CpuBackend,
    config: EngineConfig,
}

impl Engine {
    /// Maps and loads a GGUF model.
    pub fn load(path: impl AsRef<Path>, config: EngineConfig) -> Result<Arc<Engine>> {
        let file = Arc::new(GgufFile::open(path.as_ref())?);
        Self::from_file(file, config)
    }

    pub fn from_file(file: Arc<GgufFile>, config: EngineConfig) -> Result<Arc<Engine>> {
        if let Some(0) = config.n_ctx {
            return Err(Error::InvalidParam("context size must be at least 1".into()));
        }
        let model = Model::from_gguf(file.clone())?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() < model.info().n_vocab {
            log::warn!(
                "tokenizer has {} tokens, the model's head {}",
                tokenizer.n_vocab(),
                model.info().n_vocab
            );
        }
        let cpu = match config.backend {
            BackendKind::Auto | BackendKind::Cpu => CpuBackend::with_kernels(config.n_threads, config.force_scalar)?,
        };
        log::info!(
            "loaded {} ({}, {} params, {}) on cpu with {} threads",
            model.info().name.as_deref().unwrap_or("model"),
            model.info().arch,
            model.info().n_params,
            model.info().quant,
            cpu.n_threads()
        );
        Ok(Arc::new(Engine { file, model, tokenizer, cpu, config }))
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

    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    pub fn cpu(&self) -> &CpuBackend {
        &self.cpu
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

    /// A new session with an explicit context size.
    pub fn new_session_with_ctx(self: &Arc<Self>, n_ctx: usize) -> Result<Session> {
        if n_ctx == 0 {
            return Err(Error::InvalidParam("context size must be at least 1".into()));
        }
        Ok(Session::new(self.clone(), n_ctx))
    }
}
