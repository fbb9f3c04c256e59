//! One module per subcommand, plus the loading they share.

pub mod bench;
pub mod bench_spec;
pub mod chat;
pub mod dumps;
pub mod gpu_check;
pub mod inspect;
pub mod logits;
pub mod perplexity;
pub mod pull;
pub mod run;
pub mod saved_session;
pub mod serve;
pub mod speculation;
pub mod tokenize;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use ember::config::{BackendKind, EngineConfig, WeightMemory};
use ember::engine::Engine;
use ember::remote::{ApiKey, RemoteConfig, RoutePolicy};

use crate::catalog;
use crate::EvalOpts;

/// Loads the engine the options name, with a session context of `n_ctx`.
pub fn load_engine(opts: &EvalOpts, n_ctx: Option<usize>) -> Result<Arc<Engine>> {
    load_engine_routed(opts, n_ctx, &RemoteArgs::default(), 1)
}

/// [`load_engine`] with a remote engine and route policy (`run`, `chat`,
/// `serve`, whose `parallel` sessions the memory plan provides for). With
/// `--remote` and no `-m`, no local model is loaded (nor the default one
/// fetched): a remote-only engine (see docs/REMOTE.md).
pub fn load_engine_routed(opts: &EvalOpts, n_ctx: Option<usize>, remote: &RemoteArgs, parallel: usize) -> Result<Arc<Engine>> {
    let backend: BackendKind = opts.backend.parse()?;
    let weights: WeightMemory = opts.weights.parse()?;
    let (remote, route) = remote.to_config()?;
    let remote_only = remote.is_some() && opts.model.is_none();
    let config = EngineConfig {
        backend,
        n_threads: opts.threads,
        n_ctx,
        force_scalar: opts.scalar,
        weights,
        cache_type_k: opts.cache_type_k.parse()?,
        cache_type_v: opts.cache_type_v.parse()?,
        remote,
        route,
        memory_budget: opts
            .memory_budget
            .as_deref()
            .map(ember::memory_plan::parse_size)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--memory-budget: {e}"))?,
        fit: opts.fit,
        parallel,
        ..Default::default()
    };
    if remote_only {
        return Ok(Engine::remote_only(config)?);
    }
    let path = catalog::resolve(opts.model.as_deref())?;
    let asked = (config.n_ctx, config.cache_type_k, config.cache_type_v);
    let engine = Engine::load(&path, config).with_context(|| format!("cannot load {}", path.display()))?;
    // Say so when the memory plan chose other than what was asked (--fit, local-first).
    if let Some(p) = engine.memory_plan() {
        let r = p.request;
        if asked.0.is_some_and(|n| n != r.n_ctx) || (asked.1, asked.2) != r.kv_types || engine.memory_limit().is_some() {
            eprintln!("[memory plan: ctx {} with a {}/{} KV cache, {}]", r.n_ctx, r.kv_types.0, r.kv_types.1, p.summary());
        }
    }
    Ok(engine)
}

/// A remote engine for `run` and `chat` (see docs/REMOTE.md). With `-m`, the
/// local model is loaded too: it tokenizes, so prompt lengths are known and
/// routed; without `-m` the engine is remote-only.
#[derive(Args, Clone, Debug, Default)]
pub struct RemoteArgs {
    /// An OpenAI-compatible server (ember serve, llama.cpp's server, vLLM): https://host[:port],
    /// or http:// on loopback.
    #[arg(long = "remote", value_name = "URL")]
    pub remote: Option<String>,
    /// Its API key (sent as a bearer token; default: $EMBER_REMOTE_API_KEY).
    #[arg(long = "api-key", value_name = "KEY", requires = "remote")]
    pub api_key: Option<String>,
    /// The `model` field of its requests (default: none, the server's own).
    #[arg(long = "remote-model", value_name = "NAME", requires = "remote")]
    pub remote_model: Option<String>,
    /// local, remote (the default with --remote) or local-first (remote only when the prompt
    /// does not fit --ctx or the local engine fails).
    #[arg(long = "route", value_name = "POLICY")]
    pub route: Option<String>,
    /// Allow plain http:// to a host other than loopback.
    #[arg(long = "allow-http", requires = "remote")]
    pub allow_http: bool,
    /// Seconds to wait for the server's answer and between two pieces of its stream.
    #[arg(long = "remote-timeout", value_name = "SECS", requires = "remote")]
    pub timeout: Option<u64>,
    /// Retries of a request that failed before its first token.
    #[arg(long = "remote-retries", value_name = "N", requires = "remote")]
    pub retries: Option<u32>,
}

impl RemoteArgs {
    pub fn to_config(&self) -> Result<(Option<RemoteConfig>, Option<RoutePolicy>)> {
        let route = self.route.as_deref().map(str::parse::<RoutePolicy>).transpose()?;
        let Some(url) = &self.remote else {
            if route.is_some_and(|r| r != RoutePolicy::Local) {
                anyhow::bail!("--route {} needs --remote URL", route.map(|r| r.to_string()).unwrap_or_default());
            }
            return Ok((None, route));
        };
        let mut c = RemoteConfig::new(url.clone());
        let key = self.api_key.clone().or_else(|| std::env::var("EMBER_REMOTE_API_KEY").ok().filter(|k| !k.is_empty()));
        c.api_key = key.map(ApiKey::new);
        c.model = self.remote_model.clone();
        c.allow_http = self.allow_http;
        if let Some(t) = self.timeout {
            c.read_timeout = std::time::Duration::from_secs(t.max(1));
        }
        if let Some(n) = self.retries {
            c.max_retries = n;
        }
        Ok((Some(c), route))
    }
}

/// `route: remote (the route policy)` for the stats line, when a route was taken.
pub fn route_note(stats: &ember::GenerationStats) -> String {
    match &stats.route {
        // Without a remote engine there is nothing to say.
        Some(r) if !(r.target == ember::remote::Target::Local && r.reason == ember::remote::RouteReason::Policy) => {
            format!(" | route: {r}")
        }
        _ => String::new(),
    }
}
