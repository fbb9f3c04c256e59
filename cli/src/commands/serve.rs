//! `ember serve`: the OpenAI-compatible HTTP server (see docs/SERVER.md).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ember::chat::ChatTemplate;
use ember_server::api::Limits;
use ember_server::{AppState, ServerConfig};

use super::{load_engine_routed, RemoteArgs};
use crate::EvalOpts;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// Address to listen on (loopback by default; use --api-key on any other).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// Requests generating at once (one session each); more wait in a queue.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Context size of each session (default: the model's, capped at 4096).
    #[arg(long = "ctx")]
    ctx: Option<usize>,
    /// Largest max_tokens a request may ask for (and the default).
    #[arg(long = "max-tokens", default_value_t = 2048)]
    max_tokens: usize,
    /// Most prompt tokens a request may have (default: the context size - 1).
    #[arg(long = "max-prompt-tokens")]
    max_prompt_tokens: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long = "max-body-bytes", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Chat template: the model's own (default) or a built-in one (chatml, gemma).
    #[arg(long = "chat-template")]
    chat_template: Option<String>,
    /// Close a connection that sends no complete request header for this many
    /// seconds (after connecting, or after its last response); never while a
    /// request is being answered.
    #[arg(long = "idle-timeout", value_name = "SECS", default_value_t = ServerConfig::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    /// Connections open at once; more wait until one closes.
    #[arg(long = "max-connections", default_value_t = ServerConfig::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Directory for `POST /slots/{id}?action=save|restore` (llama-server's slot files: a
    /// slot's tokens and KV cache); made when missing. Without it those actions answer 501.
    #[arg(long = "slot-save-path", value_name = "DIR")]
    slot_save_path: Option<std::path::PathBuf>,
    #[command(flatten)]
    speculation: super::speculation::SpecArgs,
    #[command(flatten)]
    remote: ServeRemoteArgs,
}

/// A remote engine behind this server: each request goes local or remote by
/// `--route` (see docs/REMOTE.md); the choice and its reason are logged per
/// request. Named `--remote-*` where `run`'s flag would clash with the
/// server's own (`--api-key` is this server's key).
#[derive(Args, Clone, Debug, Default)]
pub struct ServeRemoteArgs {
    /// An OpenAI-compatible server to route requests to: https://host[:port], or http:// on loopback.
    #[arg(long = "remote", value_name = "URL")]
    remote: Option<String>,
    /// Its API key (default: $EMBER_REMOTE_API_KEY).
    #[arg(long = "remote-api-key", value_name = "KEY", requires = "remote")]
    api_key: Option<String>,
    /// The `model` field of its requests (default: none, the server's own).
    #[arg(long = "remote-model", value_name = "NAME", requires = "remote")]
    remote_model: Option<String>,
    /// local, remote (the default with --remote) or local-first (remote only when the prompt
    /// does not fit --ctx or the local engine fails).
    #[arg(long = "route", value_name = "POLICY")]
    route: Option<String>,
    /// Allow plain http:// to a remote host other than loopback.
    #[arg(long = "remote-allow-http", requires = "remote")]
    allow_http: bool,
    /// Seconds to wait for the remote server's answer and between two pieces of its stream.
    #[arg(long = "remote-timeout", value_name = "SECS", requires = "remote")]
    timeout: Option<u64>,
    /// Retries of a remote request that failed before its first token.
    #[arg(long = "remote-retries", value_name = "N", requires = "remote")]
    retries: Option<u32>,
}

impl From<&ServeRemoteArgs> for RemoteArgs {
    fn from(a: &ServeRemoteArgs) -> RemoteArgs {
        RemoteArgs {
            remote: a.remote.clone(),
            api_key: a.api_key.clone(),
            remote_model: a.remote_model.clone(),
            route: a.route.clone(),
            allow_http: a.allow_http,
            timeout: a.timeout,
            retries: a.retries,
        }
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    // Before any thread allocates (the engine's start at load): one malloc arena,
    // so the heap can shrink back after a flood of connections.
    ember_server::memory::limit_arenas();
    if a.parallel == 0 || a.parallel > 64 {
        bail!("--parallel must be between 1 and 64");
    }
    if a.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    if a.idle_timeout == 0 || a.idle_timeout > 86_400 {
        bail!("--idle-timeout must be between 1 and 86400 seconds");
    }
    if a.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    // The server always loads a local model (the default one without -m): it
    // tokenizes every request, and routes by its length.
    let mut opts = a.opts.clone();
    opts.model.get_or_insert_with(|| crate::catalog::DEFAULT_MODEL.to_owned());
    let engine = load_engine_routed(&opts, a.ctx, &RemoteArgs::from(&a.remote), a.parallel)?;
    let n_ctx = engine.n_ctx();
    let path = crate::catalog::resolve(a.opts.model.as_deref())?;
    let model_id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let model_aliases = vec![a.opts.model.clone().unwrap_or_else(|| crate::catalog::DEFAULT_MODEL.to_owned())];
    let template = ChatTemplate::for_tokenizer(engine.tokenizer()?, a.chat_template.as_deref());
    if let Err(e) = &template {
        if a.chat_template.is_some() {
            bail!("{e}");
        }
        log::warn!("{e}; /v1/chat/completions will answer 400");
    }
    let limits = Limits {
        max_body_bytes: a.max_body_bytes,
        max_prompt_tokens: a.max_prompt_tokens.unwrap_or(n_ctx - 1).min(n_ctx.saturating_sub(1)),
        max_tokens: a.max_tokens,
        n_ctx,
    };
    let config = ServerConfig {
        host: a.host,
        port: a.port,
        api_key: a.api_key,
        parallel: a.parallel,
        model_id,
        model_aliases,
        limits,
        idle_timeout: Duration::from_secs(a.idle_timeout),
        max_connections: a.max_connections,
        slot_save_path: match &a.slot_save_path {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("--slot-save-path {}", dir.display()))?;
                Some(dir.clone())
            }
            None => None,
        },
    };
    let speculation = a.speculation.load(&a.opts, a.ctx)?;
    if let Some(ember::speculative::Speculation::DraftModel { engine: draft, .. }) = &speculation {
        // Refused now rather than at the first request.
        ember::speculative::draft_model::check_same_vocab(&engine, draft)?;
    }
    ember_server::serve_blocking(AppState::with_speculation(engine, template, config, speculation))
}
