//! `ember-server`: an OpenAI-compatible HTTP server over an [`ember::Engine`]
//! (axum + tokio), used by `ember serve`.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions` (both streamed
//! as server-sent events with `"stream": true`), `GET /v1/models`, `GET /health`.
//! Generation runs on blocking threads; text flows to the client through a
//! channel, and a client that goes away cancels its generation. Idle
//! connections are closed and open ones capped ([`conn`]); free memory goes
//! back to the OS after a burst ([`memory`]).

pub mod api;
pub mod conn;
pub mod error;
pub mod memory;
pub mod pool;
pub mod prefix_cache;
mod slots;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ember::chat::tools::{parse_tool_calls, tool_call_constraint, StreamItem, Tool, ToolCall, ToolCallStream, ToolChoice};
use ember::chat::{encode_prompt, ChatTemplate};
use ember::constrain::Constraint;
use ember::remote::route::decide;
use ember::remote::{RemotePrompt, RoutePolicy, Target};
use ember::session::{GenerateParams, StopReason};
use ember::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{Limits, PromptIn};
use crate::error::ApiError;
use crate::pool::SessionPool;

/// Everything `ember serve` decides.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// When set, every route but `/health` needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Requests generating at once; more wait in a queue.
    pub parallel: usize,
    /// The id `/v1/models` lists; requests naming another model get 404.
    pub model_id: String,
    /// Other names accepted for the model (e.g. what `-m` was given).
    pub model_aliases: Vec<String>,
    pub limits: Limits,
    /// A connection must deliver a request's whole header within this long of
    /// being opened or of its previous response ending (else it is closed), and
    /// then the body within as long again (else 408). Never applies while a
    /// request is being answered. See [`conn`].
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Where `POST /slots/{id}?action=save|restore` keep their files (`--slot-save-path`);
    /// `None`: those actions are refused (see [`slots`]).
    pub slot_save_path: Option<std::path::PathBuf>,
}

impl ServerConfig {
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
}

pub struct AppState {
    engine: Arc<Engine>,
    template: Option<ChatTemplate>,
    template_error: Option<String>,
    pool: Arc<SessionPool>,
    config: ServerConfig,
    created: u64,
    next_id: AtomicU64,
}

impl AppState {
    /// `template`: the chat template (`None` when the model has none: chat requests then get a 400).
    pub fn new(engine: Arc<Engine>, template: ember::Result<ChatTemplate>, config: ServerConfig) -> Arc<AppState> {
        Self::with_speculation(engine, template, config, None)
    }

    /// [`AppState::new`] whose sessions draft and verify several tokens per
    /// pass (a draft model's vocabulary checked by the caller:
    /// `ember::speculative::draft_model::check_same_vocab`).
    pub fn with_speculation(
        engine: Arc<Engine>,
        template: ember::Result<ChatTemplate>,
        config: ServerConfig,
        speculation: Option<ember::speculative::Speculation>,
    ) -> Arc<AppState> {
        let pool = SessionPool::new(engine.clone(), config.parallel, config.limits.n_ctx, speculation);
        let (template, template_error) = match template {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Arc::new(AppState { engine, template, template_error, pool, config, created: now(), next_id: AtomicU64::new(1) })
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{:x}{:06x}", self.created, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn check_model(&self, model: &Option<String>) -> Result<(), ApiError> {
        match model {
            Some(m) if !m.is_empty() && *m != self.config.model_id && !self.config.model_aliases.contains(m) => {
                Err(ApiError::model_not_found(m))
            }
            _ => Ok(()),
        }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The routes, with auth, body limit and JSON fallbacks.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/slots", get(slots::list))
        .route("/slots/{id}", post(slots::action))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "method not allowed").into_response()
        })
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .with_state(state)
}

/// Binds and serves until Ctrl-C. Prints the address it listens on to stderr.
pub async fn serve(state: Arc<AppState>) -> anyhow::Result<()> {
    let cfg = &state.config;
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    let addr = listener.local_addr()?;
    eprintln!("ember: serving {} on http://{addr} (parallel {})", cfg.model_id, cfg.parallel);
    if !addr.ip().is_loopback() && cfg.api_key.is_none() {
        log::warn!("listening on a non-loopback address without --api-key");
    }
    conn::serve_on(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.config.api_key {
        let given =
            req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "status": "ok", "model": st.config.model_id, "slots": st.pool.size(), "busy": st.pool.busy() }))
}

async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    let info = st.engine.info();
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.config.model_id,
            "object": "model",
            "created": st.created,
            "owned_by": "ember",
            "meta": { "arch": info.arch, "n_params": info.n_params, "n_ctx": st.config.limits.n_ctx }
        }]
    }))
}

fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", format!("the request body is larger than {limit} bytes"))
                .with_code("request_too_large")
        } else {
            ApiError::invalid(format!("cannot read the request body: {r}"))
        }
    })
}

/// The request's body, read within the idle timeout (a client that stalls
/// mid-body gets 408 and its connection closed) and the body limit (413).
async fn read_body(st: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let limit = st.config.limits.max_body_bytes;
    match tokio::time::timeout(st.config.idle_timeout, Bytes::from_request(req, &())).await {
        Ok(body) => body_bytes(body, limit),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("the request body did not arrive within {} s", st.config.idle_timeout.as_secs_f64()),
        )
        .with_code("request_timeout")),
    }
}

fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::Length | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

/// What one request generates, prepared and validated.
struct Job {
    ids: Vec<u32>,
    params: GenerateParams,
    /// The request in the remote engine's form, when the server routes
    /// (`ember serve --remote`); `None`: always local.
    remote: Option<RemotePrompt>,
}

/// Sets the flag when the request's future is dropped before finishing (the client went away).
struct CancelOnDrop(Arc<AtomicBool>, bool);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

struct Done {
    text: String,
    prompt_tokens: usize,
    /// Prompt tokens whose KV came from a cache (not evaluated).
    cached_tokens: usize,
    completion_tokens: usize,
    reason: StopReason,
}

/// Runs `job` on a pooled session on a blocking thread; `on_text` gets each
/// piece and returns false to stop.
async fn generate(
    st: &Arc<AppState>,
    job: Job,
    cancel: Arc<AtomicBool>,
    mut on_text: impl FnMut(&str) -> bool + Send + 'static,
) -> Result<Done, ApiError> {
    let mut lease = st.pool.acquire(&job.ids).await.map_err(|e| ApiError::internal(e.to_string()))?;
    if cancel.load(Ordering::Relaxed) {
        return Err(ApiError::internal("cancelled"));
    }
    let st = st.clone();
    let task = tokio::task::spawn_blocking(move || {
        let session = lease.session();
        if let Ok(model) = st.engine.model() {
            st.pool.prefix_cache().apply(session, &job.ids, &model.forward().graph().kv);
        }
        // The request's flag is the session's for this job: a client that goes
        // away stops the prompt's evaluation too (within one product or micro-batch).
        session.set_cancel_handle(cancel.clone());
        let mut text = String::new();
        let mut on_piece = |piece: &str| {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            text.push_str(piece);
            on_text(piece)
        };
        let stats = match &job.remote {
            Some(remote) => session.generate_routed(&job.ids, remote, &job.params, &mut on_piece),
            None => session.generate_from(&job.ids, &job.params, &mut on_piece),
        };
        // A prompt that ran here leaves its rows for other slots (not one the remote engine answered).
        let ran_here = stats.as_ref().is_ok_and(|s| s.route.as_ref().is_none_or(|r| r.target == ember::remote::Target::Local));
        if ran_here {
            st.pool.prefix_cache().remember(session, &job.ids);
        }
        drop(lease);
        if let Ok(s) = &stats {
            // One line per request; with a remote engine it starts with the route and its reason.
            let route = s.route.as_ref().map(|r| format!("route: {r} | ")).unwrap_or_default();
            log::info!(
                "{route}prompt {} tokens ({} reused) {:.0} ms | generated {} tokens {:.1} tok/s | stop: {}",
                job.ids.len(),
                job.ids.len().saturating_sub(s.prompt_tokens),
                s.prompt_ms,
                s.generated_tokens,
                s.generation_tps(),
                s.stop_reason.as_str()
            );
        }
        stats.map(|s| Done {
            text,
            prompt_tokens: job.ids.len(),
            cached_tokens: job.ids.len() - s.prompt_tokens,
            completion_tokens: s.generated_tokens,
            reason: s.stop_reason,
        })
    });
    match task.await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("generation failed: {e}"))),
    }
}

fn usage(d: &Done) -> Value {
    json!({
        "prompt_tokens": d.prompt_tokens,
        "completion_tokens": d.completion_tokens,
        "total_tokens": d.prompt_tokens + d.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": d.cached_tokens },
    })
}

/// `remote`: the request in the remote engine's form, used when the server
/// routes (`ember serve --remote`): a request bound for the remote engine is
/// not held to the local context (the remote engine has its own limits).
fn prepare(st: &AppState, ids: Vec<u32>, f: &api::SamplingFields, remote: RemotePrompt) -> Result<Job, ApiError> {
    let n_vocab = st.engine.info().n_vocab;
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= n_vocab) {
        return Err(ApiError::param("prompt", format!("token id {bad} is out of the vocabulary ({n_vocab})")));
    }
    let policy = st.engine.config().route_policy();
    if policy == RoutePolicy::Local {
        let params = api::generate_params(f, ids.len(), &st.config.limits)?;
        return Ok(Job { ids, params, remote: None });
    }
    let limits = match decide(policy, ids.len(), st.config.limits.n_ctx, st.engine.memory_limit()).target {
        Target::Local => st.config.limits.clone(),
        Target::Remote => Limits { max_prompt_tokens: usize::MAX - 1, n_ctx: usize::MAX, ..st.config.limits.clone() },
    };
    let params = api::generate_params(f, ids.len(), &limits)?;
    Ok(Job { ids, params, remote: Some(remote) })
}

/// Compiles `c` against the model's vocabulary (off the async threads), so a
/// bad schema or grammar is a 400 naming `param` before the request queues.
async fn check_constraint(st: &AppState, c: &Constraint, param: &str) -> Result<(), ApiError> {
    let (engine, c2) = (st.engine.clone(), c.clone());
    match tokio::task::spawn_blocking(move || engine.constraint_mask(&c2).map(|_| ())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ember::Error::InvalidConstraint(msg))) => Err(ApiError::param(param, msg)),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(e) => Err(ApiError::internal(format!("compiling the constraint failed: {e}"))),
    }
}

/// A request's constraint (`response_format`, `grammar`, `json_schema`), compiled.
async fn request_constraint(st: &AppState, f: &api::ConstraintFields) -> Result<Option<Constraint>, ApiError> {
    match api::constraint(f)? {
        Some((c, param)) => {
            check_constraint(st, &c, param).await?;
            Ok(Some(c))
        }
        None => Ok(None),
    }
}

/// Streams a generation as SSE: `first` (if any), the events `chunk` makes of
/// each piece of text, the `last` events, then `[DONE]`; an error becomes an
/// error event.
fn sse_response(
    st: Arc<AppState>,
    job: Job,
    first: Option<Value>,
    mut chunk: impl FnMut(&str) -> Vec<Value> + Send + 'static,
    last: impl FnOnce(&Done) -> Vec<Value> + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let cancel = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        if let Some(v) = first {
            let _ = tx.send(Ok(Event::default().data(v.to_string()))).await;
        }
        let tx2 = tx.clone();
        let cancel2 = cancel.clone();
        let cancel3 = cancel.clone();
        let generation = generate(&st, job, cancel, move |piece| {
            let ok = chunk(piece).into_iter().all(|v| tx2.blocking_send(Ok(Event::default().data(v.to_string()))).is_ok());
            if !ok {
                cancel2.store(true, Ordering::Relaxed);
            }
            ok
        });
        // The client going away drops the stream (and `rx`): cancel at once, even while queued.
        let r = tokio::select! {
            r = generation => r,
            _ = tx.closed() => {
                cancel3.store(true, Ordering::Relaxed);
                return;
            }
        };
        match r {
            Ok(done) => {
                for v in last(&done) {
                    let _ = tx.send(Ok(Event::default().data(v.to_string()))).await;
                }
                let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
            }
            Err(e) => {
                let _ = tx.send(Ok(Event::default().data(e.body().to_string()))).await;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response()
}

async fn chat_completions(State(st): State<Arc<AppState>>, req: Request) -> Response {
    match chat_inner(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// A call as OpenAI returns it in `message.tool_calls`.
fn call_json(c: &ToolCall) -> Value {
    json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } })
}

/// A streamed chat's parser of tool calls, and the index the next call gets.
struct ToolDeltas {
    stream: ToolCallStream,
    next_index: usize,
}

impl ToolDeltas {
    /// OpenAI's deltas for `items`: text as `content`; a call as one delta
    /// with its index, id, type and name (arguments empty), then one with
    /// its arguments.
    fn deltas(&mut self, items: Vec<StreamItem>) -> Vec<Value> {
        let mut v = Vec::new();
        for item in items {
            match item {
                StreamItem::Text(t) => v.push(json!({ "content": t })),
                StreamItem::Call(c) => {
                    let index = self.next_index;
                    self.next_index += 1;
                    v.push(json!({ "tool_calls": [{ "index": index, "id": c.id, "type": "function",
                                                    "function": { "name": c.name, "arguments": "" } }] }));
                    v.push(json!({ "tool_calls": [{ "index": index, "function": { "arguments": c.arguments } }] }));
                }
            }
        }
        v
    }
}

/// The prompt of a conversation, fitted to the context: an OpenAI client
/// sends the whole history with each request, so when it outgrows a slot's
/// context the oldest turns are dropped, the system message and the newest
/// turns kept (context shift, `ember::chat::fit`), and the response says how
/// many messages were dropped. Returns the ids and that count. A conversation
/// that cannot fit even so is left whole, for `prepare` to refuse with the
/// usual `context_length_exceeded`.
fn fit_chat(
    st: &AppState,
    template: &ChatTemplate,
    messages: &[ember::chat::ChatMessage],
    offered: &[Tool],
    f: &api::SamplingFields,
) -> Result<(Vec<u32>, usize), ApiError> {
    let tok = st.engine.tokenizer()?;
    let encode = |m: &[ember::chat::ChatMessage]| encode_prompt(tok, &template.render_with_tools(m, offered, true)?);
    let limits = &st.config.limits;
    let reserve = api::chat_reserve(f, limits);
    // The prompt limit may be below the context's.
    let n_fit = limits.n_ctx.min(limits.max_prompt_tokens.saturating_add(reserve));
    match ember::chat::fit::fit_conversation(messages, n_fit, reserve, encode) {
        Ok(fitted) => {
            let dropped = fitted.dropped();
            if dropped > 0 {
                log::info!("context shift: {dropped} oldest messages of {} dropped to fit the context", messages.len());
            }
            Ok((fitted.ids, dropped))
        }
        Err(ember::Error::ContextFull { .. }) => Ok((encode(messages)?, 0)),
        Err(e) => Err(e.into()),
    }
}

async fn chat_inner(st: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let bytes = read_body(&st, req).await?;
    let req: api::ChatRequest = api::parse_body(&bytes)?;
    st.check_model(&req.model)?;
    let messages = api::chat_messages(&req)?;
    let (tools, choice) = api::tools(&req)?;
    let requested = api::constraint(&req.constraint)?;
    let Some(template) = &st.template else {
        return Err(ApiError::invalid(st.template_error.clone().unwrap_or_default()).with_code("no_chat_template"));
    };
    // Tools are offered (and calls parsed) unless tool_choice is "none"; a
    // forced choice is a grammar, which takes the place of a response_format.
    let offered: Vec<Tool> = if choice == ToolChoice::None { Vec::new() } else { tools };
    let constraint = match tool_call_constraint(&offered, &choice).map_err(|e| ApiError::param("tool_choice", e.to_string()))? {
        Some(c) => Some((c, "tools")),
        None => requested,
    };
    // A conversation longer than the context loses its oldest turns (context
    // shift) when it runs here; with a remote engine in the route it goes whole.
    let (ids, dropped) = if st.engine.config().route_policy() == ember::remote::RoutePolicy::Local {
        fit_chat(&st, template, &messages, &offered, &req.sampling)?
    } else {
        (encode_prompt(st.engine.tokenizer()?, &template.render_with_tools(&messages, &offered, true)?)?, 0)
    };
    // Tools are not forwarded to a remote engine (see docs/REMOTE.md).
    let mut job = prepare(&st, ids, &req.sampling, RemotePrompt::Chat(messages.clone()))?;
    if let Some((c, param)) = constraint {
        check_constraint(&st, &c, param).await?;
        job.params.constraint = Some(c);
    }
    let id = st.id("chatcmpl");
    let model = st.config.model_id.clone();
    let created = now();
    if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let head = move |delta: Value, finish: Value, id: &str, model: &str| {
            json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }] })
        };
        let (id2, model2) = (id.clone(), model.clone());
        let first = head(json!({ "role": "assistant", "content": "" }), Value::Null, &id, &model);
        let tool_state =
            (!offered.is_empty()).then(|| Arc::new(Mutex::new(ToolDeltas { stream: ToolCallStream::new(&offered), next_index: 0 })));
        let tool_state2 = tool_state.clone();
        return Ok(sse_response(
            st.clone(),
            job,
            Some(first),
            move |piece| match &tool_state {
                None => vec![head(json!({ "content": piece }), Value::Null, &id, &model)],
                Some(t) => {
                    let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                    let items = t.stream.push(piece);
                    t.deltas(items).into_iter().map(|d| head(d, Value::Null, &id, &model)).collect()
                }
            },
            move |done| {
                let mut v = Vec::new();
                let mut finish = finish_reason(done.reason);
                if let Some(t) = tool_state2 {
                    let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                    let items = t.stream.finish();
                    v.extend(t.deltas(items).into_iter().map(|d| head(d, Value::Null, &id2, &model2)));
                    if t.next_index > 0 {
                        finish = "tool_calls";
                    }
                }
                let mut end = head(json!({}), json!(finish), &id2, &model2);
                if dropped > 0 {
                    end["dropped_messages"] = json!(dropped);
                }
                v.push(end);
                if include_usage {
                    v.push(json!({ "id": id2, "object": "chat.completion.chunk", "created": created, "model": model2,
                                   "choices": [], "usage": usage(done) }));
                }
                v
            },
        ));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let mut guard = CancelOnDrop(cancel.clone(), false);
    let done = generate(&st, job, cancel, |_| true).await?;
    guard.1 = true;
    let parsed = if offered.is_empty() { None } else { Some(parse_tool_calls(&done.text, &offered)) };
    let (message, finish) = match parsed {
        Some(p) if !p.tool_calls.is_empty() => (
            json!({ "role": "assistant", "content": p.content,
                    "tool_calls": p.tool_calls.iter().map(call_json).collect::<Vec<_>>() }),
            "tool_calls",
        ),
        _ => (json!({ "role": "assistant", "content": done.text }), finish_reason(done.reason)),
    };
    let mut body = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
        "usage": usage(&done),
    });
    if dropped > 0 {
        // Not OpenAI's: the oldest messages left out to fit the context.
        body["dropped_messages"] = json!(dropped);
    }
    Ok(Json(body).into_response())
}

async fn completions(State(st): State<Arc<AppState>>, req: Request) -> Response {
    match completions_inner(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(st: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let bytes = read_body(&st, req).await?;
    let req: api::CompletionRequest = api::parse_body(&bytes)?;
    st.check_model(&req.model)?;
    let (ids, remote) = match api::completion_prompt(&req.prompt)? {
        PromptIn::Text(t) => (st.engine.tokenizer()?.encode(&t, true, true)?, RemotePrompt::Text(t)),
        PromptIn::Ids(ids) => (ids, RemotePrompt::Ids),
    };
    let mut job = prepare(&st, ids, &req.sampling, remote)?;
    job.params.constraint = request_constraint(&st, &req.constraint).await?;
    let id = st.id("cmpl");
    let model = st.config.model_id.clone();
    let created = now();
    let chunk = move |text: &str, finish: Value, id: &str, model: &str| {
        json!({ "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{ "index": 0, "text": text, "logprobs": null, "finish_reason": finish }] })
    };
    if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let (id2, model2) = (id.clone(), model.clone());
        return Ok(sse_response(
            st.clone(),
            job,
            None,
            move |piece| vec![chunk(piece, Value::Null, &id, &model)],
            move |done| {
                let mut last = chunk("", json!(finish_reason(done.reason)), &id2, &model2);
                if include_usage {
                    last["usage"] = usage(done);
                }
                vec![last]
            },
        ));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let mut guard = CancelOnDrop(cancel.clone(), false);
    let done = generate(&st, job, cancel, |_| true).await?;
    guard.1 = true;
    let mut v = chunk(&done.text, json!(finish_reason(done.reason)), &id, &model);
    v["usage"] = usage(&done);
    Ok(Json(v).into_response())
}

/// Serves on a fresh multi-threaded tokio runtime until Ctrl-C (for callers without one).
///
/// Call [`memory::limit_arenas`] first thing in the process (before the engine's
/// threads start) for the heap to shrink back after a flood; see [`memory`].
pub fn serve_blocking(state: Arc<AppState>) -> anyhow::Result<()> {
    memory::limit_arenas();
    // Two I/O workers; blocking threads run one generation per session (at most
    // `parallel`) plus the odd address lookup: bounded, rather than tokio's 512.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(state.config.parallel + 2)
        .enable_all()
        .build()?;
    rt.block_on(serve(state))
}
