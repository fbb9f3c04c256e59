//! `Engine`: one loaded model (weights mapped once, or for the CPU backend
//! copied into huge pages, see [`crate::config::WeightMemory`]; tokenizer,
//! compute backend), shared by any number of [`Session`]s.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::backend::cpu::{CpuBackend, CpuRunner};
use crate::backend::wgpu::trust::{self, GpuReport, TrustOptions};
use crate::backend::wgpu::{AdapterPolicy, GpuContext, WgpuBackend};
use crate::config::{BackendKind, EngineConfig, DEFAULT_MAX_CTX};
use crate::constrain::{Constraint, Grammars, TokenMask};
use crate::gguf::GgufFile;
use crate::graph::Runner;
use crate::kv_cache::KvType;
use crate::memory_plan::{self, Budget, FitOptions, MemoryLimit, MemoryPlan, PlanBackend, PlanModel, PlanRequest};
use crate::model::{Model, ModelInfo};
use crate::session::Session;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub struct Engine {
    /// The model file, the model and its tokenizer: `None` on a remote-only
    /// engine ([`Engine::remote_only`]), whose local-only calls then fail
    /// with [`Error::NoLocalModel`].
    file: Option<Arc<GgufFile>>,
    model: Option<Model>,
    tokenizer: Option<Arc<Tokenizer>>,
    /// What [`Engine::info`] shows for a remote-only engine (nothing is known locally).
    remote_info: ModelInfo,
    /// The vocabulary as the constraint library sees it, made at the first
    /// constrained generation (a trie of every token's bytes).
    grammars: OnceLock<Arc<Grammars>>,
    cpu: Arc<CpuBackend>,
    /// The GPU backend with the model's weights, when the forward pass runs on wgpu.
    gpu: Option<Arc<WgpuBackend>>,
    /// Set when the GPU failed mid-way under `backend auto`: new runners are CPU ones.
    gpu_failed: AtomicBool,
    /// Which backend runs and why.
    report: Mutex<BackendReport>,
    /// The remote engine, when the config names one.
    #[cfg(feature = "remote")]
    remote: Option<Arc<crate::remote::RemoteClient>>,
    /// What the engine holds, as planned before loading (`None` remote-only).
    plan: Option<MemoryPlan>,
    /// Set when the memory plan lowered the context below the one asked for.
    memory_limit: Option<MemoryLimit>,
    config: EngineConfig,
}

/// The backend actually used, the GPU tiers in use and the reason: in the
/// log, [`Engine::backend_report`], `ember bench --json` and the SDKs.
#[derive(Debug, Clone)]
pub struct BackendReport {
    /// "cpu" or "wgpu" ("remote" for a remote-only engine).
    pub backend: &'static str,
    /// What was asked for.
    pub requested: BackendKind,
    /// The adapter, when a GPU was considered.
    pub adapter: Option<String>,
    /// The GPU tiers in use ("none" = baseline), when on wgpu.
    pub tiers: Option<String>,
    /// Why this backend (a fallback's cause included).
    pub reason: String,
    /// The self-test and the rest of the GPU's judgement, when one ran.
    pub gpu: Option<GpuReport>,
}

impl BackendReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "backend": self.backend,
            "requested": self.requested.to_string(),
            "adapter": self.adapter,
            "tiers": self.tiers,
            "reason": self.reason,
            "gpu": self.gpu.as_ref().map(GpuReport::to_json),
        })
    }
}

/// Why a GPU was not used, with its report when it got as far as a self-test.
type GpuRefusal = (Error, Option<Box<GpuReport>>);

#[cfg(not(target_arch = "wasm32"))]
const NO_ADAPTER: &str = "no wgpu adapter found (for software Vulkan install mesa-vulkan-drivers)";
#[cfg(target_arch = "wasm32")]
const NO_ADAPTER: &str =
    "no WebGPU adapter, or only a software one (SwiftShader: `allowSoftware` lets auto use it, backend webgpu always does)";

/// Opens the best adapter under `policy`, holds the GPU's memory plan to the
/// budget (`plan_check`, told whether the adapter is a software one), decides
/// how far to trust it (self-test, quirks, verdict cache), then uploads the model.
fn open_gpu(
    policy: AdapterPolicy,
    opts: &TrustOptions,
    model: &Model,
    plan_check: &mut dyn FnMut(bool) -> Result<()>,
) -> std::result::Result<(WgpuBackend, GpuReport), GpuRefusal> {
    let ctx = GpuContext::new(policy).map_err(|e| (e, None))?.ok_or_else(|| (Error::Backend(NO_ADAPTER.into()), None))?;
    plan_check(ctx.profile.software).map_err(|e| (e, None))?;
    let t = trust::establish(ctx, opts).map_err(|(e, r)| (e, Some(r)))?;
    let be = WgpuBackend::with_kernels(t.ctx, model.forward().clone(), t.kernels).map_err(|e| (e, Some(Box::new(t.report.clone()))))?;
    Ok((be, t.report))
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
        let mut config = config;
        crate::kv_cache::check_types(&model.forward().graph().kv, config.cache_type_k, config.cache_type_v)?;
        if config.n_ctx == Some(0) {
            return Err(Error::InvalidParam("context size must be at least 1".into()));
        }
        // The memory plan, before anything big is allocated: on the CPU now (the
        // floor of every backend), on the GPU once its adapter is known.
        let plan_model = PlanModel::of(&model);
        let mut settled = match config.backend {
            BackendKind::Wgpu => None,
            _ => Some(settle_plan(&mut config, &plan_model, PlanBackend::Cpu)?),
        };
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() < model.info().n_vocab {
            log::warn!("tokenizer has {} tokens, the model's head {}", tokenizer.n_vocab(), model.info().n_vocab);
        }
        let cpu = Arc::new(CpuBackend::with_kernels(config.n_threads, config.force_scalar)?);
        // The GPU is probed only here, when a GPU backend is asked for: never at library load.
        let cpu_report = |reason: String, gpu: Option<GpuReport>| BackendReport {
            backend: "cpu",
            requested: config.backend,
            adapter: gpu.as_ref().map(|g| g.adapter.clone()),
            tiers: None,
            reason,
            gpu,
        };
        let gpu_report = |g: GpuReport| BackendReport {
            backend: "wgpu",
            requested: config.backend,
            adapter: Some(g.adapter.clone()),
            tiers: Some(g.tiers.describe()),
            reason: format!(
                "self-test {} on {} (tiers in use: {})",
                if g.fresh { "passed" } else { "passed earlier (stored verdict)" },
                g.adapter,
                g.tiers.describe()
            ),
            gpu: Some(g),
        };
        let (gpu, report) = match config.backend {
            BackendKind::Cpu => (None, cpu_report("--backend cpu".into(), None)),
            BackendKind::Wgpu => {
                let opts = TrustOptions::from_config(&config)?;
                let mut gpu_config = config.clone();
                let mut check = |software| {
                    settled = Some(settle_plan(&mut gpu_config, &plan_model, PlanBackend::Gpu { software })?);
                    Ok(())
                };
                let (be, r) = open_gpu(AdapterPolicy::AllowSoftware, &opts, &model, &mut check).map_err(|(e, _)| e)?;
                let report = gpu_report(r);
                config = gpu_config;
                (Some(be), report)
            }
            BackendKind::Auto => {
                let opts = TrustOptions::from_config(&config)?;
                let policy = if opts.allow_software { AdapterPolicy::AllowSoftware } else { AdapterPolicy::HardwareOnly };
                // The CPU's plan fits (settled above); the GPU's, bigger by its
                // micro-batch buffers, must fit the same budget or the CPU runs.
                let cpu_plan = settled.clone();
                let mut gpu_plan = None;
                let mut check = |software| {
                    let Some((p, _)) = &cpu_plan else { return Ok(()) };
                    let req = PlanRequest { backend: PlanBackend::Gpu { software }, ..p.request };
                    let plan = MemoryPlan::new(&plan_model, req).ok_or_else(|| Error::MemoryPlan("no GPU plan".into()))?;
                    match Budget::resolve(config.memory_budget) {
                        Some(b) if !plan.fits(Some(b)) => Err(Error::MemoryPlan(format!("the GPU needs {}, over {b}", plan.summary()))),
                        _ => {
                            gpu_plan = Some(plan);
                            Ok(())
                        }
                    }
                };
                let opened = open_gpu(policy, &opts, &model, &mut check);
                if let (Ok(_), Some(p), Some((_, limit))) = (&opened, gpu_plan, &cpu_plan) {
                    settled = Some((p, *limit));
                }
                match opened {
                    Ok((be, r)) => (Some(be), gpu_report(r)),
                    Err((e, r)) => {
                        // No adapter at all is the normal case on many machines: not a warning.
                        if r.is_some() {
                            log::warn!("backend auto: {e}; using the CPU");
                        } else {
                            log::info!("backend auto: {e}; using the CPU");
                        }
                        (None, cpu_report(format!("GPU not used: {e}"), r.map(|r| *r)))
                    }
                }
            }
        };
        log::info!("backend: {} ({})", report.backend, report.reason);
        let gpu = gpu.map(Arc::new);
        let (plan, memory_limit) = settled.map_or((None, None), |(p, l)| (Some(p), l));
        if let Some(p) = &plan {
            log::info!("memory plan: {}", p.summary());
        }
        let mut file = file;
        if gpu.is_none() && file.is_mapped() && config.weights.copies() {
            let t = crate::time::Instant::now();
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
            file: Some(file),
            model: Some(model),
            tokenizer: Some(Arc::new(tokenizer)),
            remote_info: crate::remote::remote_only::model_info(None),
            grammars: OnceLock::new(),
            cpu,
            gpu,
            gpu_failed: AtomicBool::new(false),
            report: Mutex::new(report),
            #[cfg(feature = "remote")]
            remote,
            plan,
            memory_limit,
            config,
        }))
    }

    /// An engine with no local model: every request goes to `config.remote`
    /// (the route must be `remote`, the default). `Session::complete`/`chat`
    /// work; prompt lengths are then the server's count (none locally), and
    /// local-only calls (`eval`, `generate`, the tokenizer) fail with
    /// [`Error::NoLocalModel`]. See `docs/REMOTE.md`.
    pub fn remote_only(config: EngineConfig) -> Result<Arc<Engine>> {
        let rc = config.remote.clone().ok_or_else(|| Error::InvalidParam("a remote-only engine needs a remote engine".into()))?;
        if config.route_policy() != crate::remote::RoutePolicy::Remote {
            return Err(Error::InvalidParam(format!("route {} needs a local model file", config.route_policy())));
        }
        #[cfg(not(feature = "remote"))]
        {
            let _ = rc;
            Err(Error::InvalidParam("a remote engine needs ember built with the `remote` feature".into()))
        }
        #[cfg(feature = "remote")]
        {
            let remote = Arc::new(crate::remote::RemoteClient::new(&rc)?);
            log::info!("remote-only engine: every request goes to {}", remote.base_url());
            let report = BackendReport {
                backend: "remote",
                requested: config.backend,
                adapter: None,
                tiers: None,
                reason: "remote-only: no local model".into(),
                gpu: None,
            };
            Ok(Arc::new(Engine {
                file: None,
                model: None,
                tokenizer: None,
                remote_info: crate::remote::remote_only::model_info(rc.model.as_deref()),
                grammars: OnceLock::new(),
                // Never runs a pass (there is no model); one thread costs next to nothing.
                cpu: Arc::new(CpuBackend::with_kernels(1, config.force_scalar)?),
                gpu: None,
                gpu_failed: AtomicBool::new(false),
                report: Mutex::new(report),
                remote: Some(remote),
                plan: None,
                memory_limit: None,
                config,
            }))
        }
    }

    /// The model's metadata; on a remote-only engine, a stand-in that names
    /// the remote model with every count zero (nothing is known locally).
    pub fn info(&self) -> &ModelInfo {
        self.model.as_ref().map_or(&self.remote_info, Model::info)
    }

    /// The local model ([`Error::NoLocalModel`] on a remote-only engine).
    pub fn model(&self) -> Result<&Model> {
        self.model.as_ref().ok_or_else(|| no_local_model("the model"))
    }

    /// The local tokenizer ([`Error::NoLocalModel`] on a remote-only engine).
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_deref().ok_or_else(|| no_local_model("tokenization"))
    }

    /// Whether this engine has no local model ([`Engine::remote_only`]).
    pub fn is_remote_only(&self) -> bool {
        self.model.is_none()
    }

    /// A fresh token mask for `c` (the constraint compiled against this
    /// model's vocabulary): fails with [`crate::Error::InvalidConstraint`]
    /// when the schema, regex or grammar is invalid.
    pub fn constraint_mask(&self, c: &Constraint) -> Result<TokenMask> {
        let grammars = match self.grammars.get() {
            Some(g) => g.clone(),
            None => {
                let tok = self.tokenizer.clone().ok_or_else(|| no_local_model("a local constraint"))?;
                let g = Arc::new(Grammars::new(tok, self.info().n_vocab)?);
                self.grammars.get_or_init(|| g).clone()
            }
        };
        grammars.mask(c)
    }

    /// The model file ([`Error::NoLocalModel`] on a remote-only engine).
    pub fn gguf(&self) -> Result<&GgufFile> {
        self.file.as_deref().ok_or_else(|| no_local_model("the model file"))
    }

    pub fn cpu(&self) -> &CpuBackend {
        &self.cpu
    }

    /// The GPU backend, when the forward pass runs on wgpu.
    pub fn gpu(&self) -> Option<&WgpuBackend> {
        self.live_gpu().map(|g| &**g)
    }

    fn live_gpu(&self) -> Option<&Arc<WgpuBackend>> {
        self.gpu.as_ref().filter(|_| !self.gpu_failed.load(Ordering::Relaxed))
    }

    /// A session's state on the engine's backend: the one place that picks
    /// the executor (see [`crate::graph`]).
    pub fn new_runner(&self, n_ctx: usize) -> Result<Box<dyn Runner>> {
        Ok(match self.live_gpu() {
            Some(g) => Box::new(g.new_runner_with_kv_types(n_ctx, self.kv_types())?),
            None => Box::new(CpuRunner::with_kv_types(self.cpu.clone(), self.model()?.forward().clone(), n_ctx, self.kv_types())?),
        })
    }

    /// "cpu" or "wgpu": where the forward pass runs ("remote" on a remote-only engine).
    pub fn backend_name(&self) -> &'static str {
        if self.is_remote_only() {
            "remote"
        } else if self.live_gpu().is_some() {
            "wgpu"
        } else {
            "cpu"
        }
    }

    /// The backend used, the tiers and the reason (updated by a mid-session fallback).
    pub fn backend_report(&self) -> BackendReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// After `e` from a GPU runner: under `backend auto`, when `e` means the
    /// GPU itself failed (device lost, watchdog, allocation, driver error),
    /// turns the GPU off for this engine and returns true (the caller
    /// re-evaluates its tokens on the CPU); else false (the caller gets `e`).
    pub(crate) fn fall_back_to_cpu(&self, e: &Error) -> bool {
        if self.config.backend != BackendKind::Auto || self.gpu.is_none() || !matches!(e, Error::DeviceLost(_) | Error::Backend(_)) {
            return false;
        }
        if !self.gpu_failed.swap(true, Ordering::Relaxed) {
            log::warn!("backend auto: {e}; continuing on the CPU");
            let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
            r.backend = "cpu";
            r.tiers = None;
            r.reason = format!("GPU failed mid-session ({e}); continued on the CPU");
        }
        true
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
        self.config.n_ctx.unwrap_or_else(|| default_ctx(self.info().n_ctx_train))
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

    /// A context size is at least 1 and the memory plan of a session of it
    /// fits the budget (the configured one, else the memory available), checked
    /// before anything is allocated; past the model's training context it is
    /// allowed, with a warning.
    pub fn check_ctx(&self, n_ctx: usize) -> Result<()> {
        if n_ctx == 0 {
            return Err(Error::InvalidParam("context size must be at least 1".into()));
        }
        let (Some(model), Some(plan)) = (&self.model, &self.plan) else { return Ok(()) };
        let pm = PlanModel::of(model);
        let req = PlanRequest { n_ctx, sessions: 1, ..plan.request };
        if let (Some(p), Some(budget)) = (MemoryPlan::new(&pm, req), Budget::resolve(self.config.memory_budget)) {
            if !p.fits(Some(budget)) {
                return Err(Error::MemoryPlan(memory_plan::refusal(&pm, &p, budget, FitOptions { kv_fixed: true })));
            }
        }
        let n_ctx_train = self.info().n_ctx_train;
        if n_ctx > n_ctx_train {
            log::warn!("context {n_ctx} is beyond the model's training context {n_ctx_train}");
        }
        Ok(())
    }

    /// What this engine holds, as planned before it was loaded (`None` on a
    /// remote-only engine): `ember inspect --plan`, the log, the SDKs.
    pub fn memory_plan(&self) -> Option<&MemoryPlan> {
        self.plan.as_ref()
    }

    /// Set when the memory plan lowered the context below the one asked for
    /// (`--fit`, or local-first routing): a longer request goes remote.
    pub fn memory_limit(&self) -> Option<&MemoryLimit> {
        self.memory_limit.as_ref()
    }

    /// The stored types of the KV cache's K and V (`--cache-type-k/-v`).
    pub fn kv_types(&self) -> (KvType, KvType) {
        (self.config.cache_type_k, self.config.cache_type_v)
    }

    /// KV cache bytes per token of context in the configured types
    /// (`ModelInfo::kv_bytes_per_token` is the f16 figure).
    pub fn kv_bytes_per_token(&self) -> usize {
        let (k, v) = self.kv_types();
        let Some(model) = &self.model else { return 0 };
        crate::kv_cache::bytes_per_token(&model.forward().graph().kv, k, v).unwrap_or(0)
    }
}

fn no_local_model(what: &str) -> Error {
    Error::NoLocalModel(format!("{what} needs a local model file; this engine is remote-only"))
}

/// Holds `config`'s plan on `backend` to its budget: unchanged when it fits;
/// refit when `--fit` (context and, unless the types were chosen, the KV
/// types: both backends store q8_0/q4_0) or under local-first routing
/// (context only: a longer request then goes remote), writing the choice back
/// into `config`; else the refusal, which says what would fit.
fn settle_plan(config: &mut EngineConfig, pm: &PlanModel, backend: PlanBackend) -> Result<(MemoryPlan, Option<MemoryLimit>)> {
    let n_ctx = config.n_ctx.unwrap_or_else(|| default_ctx(pm.n_ctx_train));
    let kv_types = (config.cache_type_k, config.cache_type_v);
    let req = PlanRequest { backend, n_ctx, kv_types, sessions: config.parallel.max(1) };
    let budget = Budget::resolve(config.memory_budget);
    let local_first = config.remote.is_some() && config.route_policy() == crate::remote::RoutePolicy::LocalFirst;
    // Local-first lowers only the context: what does not fit goes remote.
    let kv_fixed = !config.fit || kv_types != (KvType::F16, KvType::F16);
    let plan = memory_plan::settle(pm, req, budget, config.fit || local_first, kv_fixed).map_err(Error::MemoryPlan)?;
    let (got_ctx, got_types) = (plan.request.n_ctx, plan.request.kv_types);
    // Only a budget changes a plan.
    let Some(budget) = budget.filter(|_| (got_ctx, got_types) != (n_ctx, kv_types)) else { return Ok((plan, None)) };
    log::info!(
        "memory plan: ctx {got_ctx} {}/{} fits {budget} (asked: ctx {n_ctx} {}/{})",
        got_types.0,
        got_types.1,
        kv_types.0,
        kv_types.1
    );
    config.n_ctx = Some(got_ctx);
    (config.cache_type_k, config.cache_type_v) = got_types;
    Ok((plan, (got_ctx < n_ctx).then_some(MemoryLimit { wanted_ctx: n_ctx, budget })))
}

/// The context a session gets when none is asked for: the model's training
/// context, capped at [`DEFAULT_MAX_CTX`].
fn default_ctx(n_ctx_train: usize) -> usize {
    n_ctx_train.clamp(1, DEFAULT_MAX_CTX)
}
