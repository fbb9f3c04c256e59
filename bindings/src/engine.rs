//! `Engine`: one loaded model, shared (weights memory-mapped once) by every
//! `Session` created from it, from any thread.

use std::sync::Arc;

use crate::error::{guard, EmberError};
use crate::records::{EngineConfig, ModelInfo};
use crate::session::Session;

#[derive(uniffi::Object)]
pub struct Engine {
    pub(crate) inner: Arc<ember::Engine>,
    /// Context size of new sessions (after `context_size` and the memory plan).
    n_ctx: usize,
    /// How new sessions draft (`draft_model` / `lookup`).
    speculation: Option<ember::speculative::Speculation>,
}

const MIB: u64 = 1024 * 1024;

impl Engine {
    /// The runtime's config (checked before any file is touched).
    fn runtime_config(config: &EngineConfig) -> Result<ember::EngineConfig, EmberError> {
        Ok(ember::EngineConfig {
            backend: config.backend.parse().map_err(EmberError::from)?,
            n_threads: config.threads as usize,
            n_ctx: (config.context_size > 0).then_some(config.context_size as usize),
            remote: config.remote_url.as_ref().map(|url| {
                let mut r = ember::remote::RemoteConfig::new(url.clone());
                r.api_key = config.remote_api_key.clone().map(ember::remote::ApiKey::new);
                r.model = config.remote_model.clone();
                r.allow_http = config.remote_allow_http;
                r
            }),
            route: config.route.as_deref().map(str::parse).transpose().map_err(EmberError::from)?,
            cache_type_k: config.cache_type_k.parse().map_err(EmberError::from)?,
            cache_type_v: config.cache_type_v.parse().map_err(EmberError::from)?,
            memory_budget: (config.memory_budget_mb > 0).then(|| config.memory_budget_mb.saturating_mul(MIB)),
            // Without a context size, a budget lowers the context to fit (as before `fit`).
            fit: config.fit || (config.context_size == 0 && config.memory_budget_mb > 0),
            ..Default::default()
        })
    }

    fn from_gguf(file: ember::gguf::GgufFile, config: &EngineConfig) -> Result<Arc<Engine>, EmberError> {
        let rt = Self::runtime_config(config)?;
        let rt_draft = rt.clone();
        let inner = ember::Engine::from_file(Arc::new(file), rt)?;
        // The memory plan settled the context at load (`ember::memory_plan`).
        let n_ctx = inner.n_ctx();
        let speculation = speculation(&inner, config, rt_draft)?;
        Ok(Arc::new(Engine { inner, n_ctx, speculation }))
    }
}

/// The draft model (loaded with the model's config, its vocabulary checked)
/// or prompt lookup that `config` asks for.
fn speculation(
    target: &ember::Engine,
    config: &EngineConfig,
    rt: ember::EngineConfig,
) -> Result<Option<ember::speculative::Speculation>, EmberError> {
    use ember::speculative::Speculation;
    if let Some(path) = &config.draft_model {
        if config.lookup > 0 {
            return Err(EmberError::InvalidParams("draft_model and lookup are two ways to draft: set one".into()));
        }
        if config.draft_max == 0 {
            return Err(EmberError::InvalidParams("draft_max must be at least 1".into()));
        }
        let engine = ember::Engine::load(path, rt)?;
        ember::speculative::draft_model::check_same_vocab(target, &engine)?;
        return Ok(Some(Speculation::DraftModel { engine, max: config.draft_max as usize }));
    }
    Ok((config.lookup > 0).then_some(Speculation::Lookup { max: config.lookup as usize }))
}

#[uniffi::export]
impl Engine {
    /// Loads (memory-maps) a GGUF model file.
    #[uniffi::constructor]
    pub fn load(path: String, config: EngineConfig) -> Result<Arc<Engine>, EmberError> {
        guard("Engine.load", || {
            Self::runtime_config(&config)?;
            let file = ember::gguf::GgufFile::open(&path).map_err(EmberError::from)?;
            Engine::from_gguf(file, &config)
        })
    }

    /// An engine with no local model: every request goes to the remote
    /// engine of `config` (`remote_url` must be set; the route is "remote").
    /// `generate` and `chat` work; prompt lengths are the server's count.
    #[uniffi::constructor]
    pub fn remote_only(config: EngineConfig) -> Result<Arc<Engine>, EmberError> {
        guard("Engine.remote_only", || {
            let rt = Self::runtime_config(&config)?;
            if rt.remote.is_none() {
                return Err(EmberError::InvalidParams("Engine.remote_only needs remote_url".into()));
            }
            let inner = ember::Engine::remote_only(rt)?;
            let n_ctx = inner.n_ctx();
            Ok(Arc::new(Engine { inner, n_ctx, speculation: None }))
        })
    }

    /// Loads a model stored at `offset`..`offset + length` of an open file
    /// descriptor (Android: an uncompressed asset's `AssetFileDescriptor`, or a
    /// content URI's `ParcelFileDescriptor`). `length` 0 = to the end of the
    /// file. The descriptor is duplicated: the caller keeps ownership of `fd`
    /// and may close it once this returns.
    #[uniffi::constructor]
    pub fn load_from_fd(fd: i32, offset: u64, length: u64, config: EngineConfig) -> Result<Arc<Engine>, EmberError> {
        guard("Engine.load_from_fd", || {
            Self::runtime_config(&config)?;
            let file = dup_fd(fd)?;
            let what = format!("fd {fd} [{offset}+{length}]");
            let g = ember::gguf::GgufFile::open_file_range(&file, offset, length, &what)?;
            Engine::from_gguf(g, &config)
        })
    }

    /// What the model is.
    pub fn info(&self) -> ModelInfo {
        let i = self.inner.info();
        let r = self.inner.backend_report();
        ModelInfo {
            arch: i.arch.clone(),
            name: i.name.clone(),
            params: i.n_params,
            quant: i.quant.clone(),
            context: i.n_ctx_train as u32,
            session_context: self.n_ctx as u32,
            has_chat_template: self.inner.tokenizer().is_ok_and(|t| t.chat_template().is_some()),
            vocab_size: i.n_vocab as u32,
            layers: i.n_layer as u32,
            embedding_size: i.n_embd as u32,
            weight_bytes: i.weight_bytes,
            kv_bytes_per_token: self.inner.kv_bytes_per_token() as u64,
            memory_plan_bytes: self.inner.memory_plan().map_or(0, |p| p.total()),
            kv_cache_type: format!("{}/{}", self.inner.kv_types().0, self.inner.kv_types().1),
            backend: r.backend.to_string(),
            gpu_tiers: r.tiers,
            backend_reason: r.reason,
        }
    }

    /// A new conversation with its own KV cache, sharing this engine's weights.
    pub fn new_session(self: Arc<Self>) -> Result<Arc<Session>, EmberError> {
        guard("Engine.new_session", || {
            let mut s = self.inner.new_session_with_ctx(self.n_ctx)?;
            s.set_speculation(self.speculation.as_ref())?;
            Ok(Arc::new(Session::new(self.clone(), s)))
        })
    }
}

#[cfg(unix)]
fn dup_fd(fd: i32) -> Result<std::fs::File, EmberError> {
    use std::os::fd::BorrowedFd;
    if fd < 0 {
        return Err(EmberError::InvalidParams(format!("invalid file descriptor {fd}")));
    }
    // SAFETY: the caller guarantees `fd` is open for the duration of this call;
    // we only borrow it to duplicate it and never close it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed.try_clone_to_owned().map_err(|e| EmberError::Io(format!("cannot duplicate file descriptor {fd}: {e}")))?;
    Ok(std::fs::File::from(owned))
}

#[cfg(not(unix))]
fn dup_fd(fd: i32) -> Result<std::fs::File, EmberError> {
    Err(EmberError::InvalidParams(format!("loading from a file descriptor ({fd}) needs a unix platform")))
}
