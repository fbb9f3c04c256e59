//! `Session`: one conversation (its KV cache) on an `Engine`, with streaming
//! generation through a foreign `TokenSink`, `cancel()` from any thread, and
//! async forms of `generate`/`chat`.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::Engine;
use crate::error::{guard, EmberError};
use crate::oneshot;
use crate::records::{ChatMessage, GenerateParams, GenerationStats};

/// Receives generated text as it is produced (implemented in Kotlin/Swift/Python).
/// An exception thrown by either method is an error value here, not a panic:
/// from `on_token` it stops the generation and `generate` fails with
/// `EmberError.Callback` naming it; from `on_done` it is logged once and the
/// finished generation's stats are still returned.
#[uniffi::export(with_foreign)]
pub trait TokenSink: Send + Sync {
    /// A newly complete piece of UTF-8 text. Return false to stop generating
    /// (the stats then say "cancelled").
    fn on_token(&self, text: String) -> Result<bool, EmberError>;
    /// Called once when the generation ends without error, with its stats
    /// (also the return value of `generate`/`chat`).
    fn on_done(&self, stats: GenerationStats) -> Result<(), EmberError>;
}

#[derive(uniffi::Object)]
pub struct Session {
    engine: Arc<Engine>,
    inner: Mutex<ember::Session>,
    /// The runtime session's cancel flag, reachable without `inner`'s lock.
    cancel: Arc<AtomicBool>,
    /// [`thread_tag`] of the thread holding `inner` (0: none): a call from that
    /// thread is re-entrant (from a callback) and gets `Busy`, not a deadlock.
    owner: AtomicU64,
    /// Calls that will generate, running or waiting for the lock: `cancel()`
    /// with none is a no-op (the runtime keeps a set flag for the next one).
    active: Arc<AtomicUsize>,
    n_ctx: u32,
}

/// Counts a generating call in `active` while alive (an async call's guard
/// is made with the call and moves into its thread).
struct Active(Arc<AtomicUsize>);

impl Active {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Active(n.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A small id per thread (std's `ThreadId` has no stable integer form).
fn thread_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TAG.with(|t| *t)
}

/// The locked runtime session; clears the owner before unlocking.
struct Held<'a> {
    guard: MutexGuard<'a, ember::Session>,
    owner: &'a AtomicU64,
}

impl Deref for Held<'_> {
    type Target = ember::Session;
    fn deref(&self) -> &ember::Session {
        &self.guard
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut ember::Session {
        &mut self.guard
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Runs before `guard` is dropped (fields drop after this), so a waiting
        // thread never sees a stale owner.
        self.owner.store(0, Ordering::Release);
    }
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, s: ember::Session) -> Session {
        let cancel = s.cancel_handle();
        let n_ctx = s.n_ctx() as u32;
        Session { engine, inner: Mutex::new(s), cancel, owner: AtomicU64::new(0), active: Arc::new(AtomicUsize::new(0)), n_ctx }
    }

    /// The session, recovering from a panic in an earlier call (its context is
    /// then dropped: the KV cache may be half-written); `Busy` when this thread
    /// already holds it (a call from inside the session's own callback).
    fn lock(&self) -> Result<Held<'_>, EmberError> {
        let me = thread_tag();
        if self.owner.load(Ordering::Acquire) == me {
            return Err(EmberError::Busy(
                "this session is generating on this thread: it was called from inside its own callback (on_token/on_done); \
                 call it after generate returns (cancel() is the one call allowed there)"
                    .into(),
            ));
        }
        let guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                g.reset();
                self.inner.clear_poison();
                g
            }
        };
        self.owner.store(me, Ordering::Release);
        Ok(Held { guard, owner: &self.owner })
    }

    /// The local tokenizer (`InvalidParams` on a remote-only engine).
    fn tokenizer(&self) -> Result<&ember::tokenizer::Tokenizer, EmberError> {
        Ok(self.engine.inner.tokenizer()?)
    }

    /// The runtime's parameters, checked before the session is touched
    /// (a bad schema or grammar is the runtime's to find, also before the
    /// prompt is evaluated: `InvalidConstraint`).
    fn runtime_params(params: &GenerateParams) -> Result<ember::GenerateParams, EmberError> {
        // As the server and the CLI: a negative temperature is a mistake here,
        // not a way to ask for greedy (that is 0).
        if params.temperature < 0.0 {
            return Err(EmberError::InvalidParams(format!("temperature must be ≥ 0 (0 = greedy), got {}", params.temperature)));
        }
        let rt = params.to_runtime()?;
        rt.sampling.validate()?;
        Ok(rt)
    }

    /// Generates after `prompt` ids (appended to what `s` holds) and reports
    /// to `sink`; with `tools` (offered to a chat), the calls in the reply
    /// are parsed into the stats ("tool_calls") before `on_done`;
    /// `dropped_messages`: what a chat's context shift left out, reported.
    fn run(
        s: &mut ember::Session,
        prompt: &[u32],
        rt: &ember::GenerateParams,
        tools: &[ember::chat::tools::Tool],
        sink: &dyn TokenSink,
        dropped_messages: usize,
    ) -> Result<GenerationStats, EmberError> {
        let mut failed = None;
        let mut text = String::new();
        let stats = s.generate(prompt, rt, &mut |piece: &str| {
            if !tools.is_empty() {
                text.push_str(piece);
            }
            match sink.on_token(piece.to_string()) {
                Ok(go_on) => go_on,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut stats = GenerationStats { dropped_messages: dropped_messages as u32, ..GenerationStats::from(&stats) };
        if !tools.is_empty() {
            let parsed = ember::chat::tools::parse_tool_calls(&text, tools);
            if !parsed.tool_calls.is_empty() {
                stats.stop_reason = "tool_calls".into();
                stats.tool_calls = parsed.tool_calls.into_iter().map(Into::into).collect();
            }
        }
        if let Err(e) = sink.on_done(stats.clone()) {
            // The generation is done and its text delivered: keep the result.
            log::warn!("TokenSink.on_done failed (the result is kept): {e}");
        }
        Ok(stats)
    }

    /// Whether requests follow a route policy other than "local" (a remote engine is configured).
    fn routed(&self) -> bool {
        self.engine.inner.config().route_policy() != ember::remote::RoutePolicy::Local
    }

    /// The runtime's text callback over `sink` (an exception stops it, kept in `failed`).
    fn forward<'a>(sink: &'a dyn TokenSink, failed: &'a mut Option<EmberError>) -> impl FnMut(&str) -> bool + 'a {
        move |piece: &str| match sink.on_token(piece.to_string()) {
            Ok(go_on) => go_on,
            Err(e) => {
                *failed = Some(e);
                false
            }
        }
    }

    /// The stats of a routed request, reported to `sink`.
    fn finish(stats: ember::GenerationStats, failed: Option<EmberError>, sink: &dyn TokenSink) -> Result<GenerationStats, EmberError> {
        if let Some(e) = failed {
            return Err(e);
        }
        let stats = GenerationStats::from(&stats);
        if let Err(e) = sink.on_done(stats.clone()) {
            log::warn!("TokenSink.on_done failed (the result is kept): {e}");
        }
        Ok(stats)
    }

    fn generate_blocking(&self, prompt: &str, params: &GenerateParams, sink: &dyn TokenSink) -> Result<GenerationStats, EmberError> {
        let _active = Active::new(&self.active);
        let rt = Self::runtime_params(params)?;
        if !params.tools.is_empty() || params.tool_choice.is_some() {
            return Err(EmberError::InvalidParams("tools and tool_choice apply to chat only".into()));
        }
        if self.routed() {
            // Routed requests are whole prompts (the remote side keeps no context).
            let mut s = self.lock()?;
            let mut failed = None;
            let stats = s.complete(prompt, &rt, &mut Self::forward(sink, &mut failed))?;
            return Self::finish(stats, failed, sink);
        }
        let mut s = self.lock()?;
        // BOS (when the model wants one) only at the start of the context.
        let ids = self.tokenizer()?.encode(prompt, s.tokens().is_empty(), true)?;
        if ids.is_empty() {
            return Err(EmberError::InvalidParams("the prompt is empty".into()));
        }
        Self::run(&mut s, &ids, &rt, &[], sink, 0)
    }

    fn chat_blocking(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        sink: &dyn TokenSink,
    ) -> Result<GenerationStats, EmberError> {
        let _active = Active::new(&self.active);
        let mut rt = Self::runtime_params(params)?;
        let (tools, choice) = crate::chat::tools(params)?;
        // A forced call is a grammar, which takes the place of any other constraint.
        if let Some(c) = ember::chat::tools::tool_call_constraint(&tools, &choice)? {
            rt.constraint = Some(c);
        }
        if self.routed() {
            if !tools.is_empty() {
                return Err(EmberError::InvalidParams(
                    "tools are not sent to remote engines yet (route \"local\" for tool calling)".into(),
                ));
            }
            let template = match self.engine.inner.is_remote_only() {
                // Never rendered: the remote server renders its own model's template.
                true => ember::chat::ChatTemplate::builtin("chatml", "", "")?,
                false => crate::chat::template(self.tokenizer()?)?,
            };
            let msgs = crate::chat::runtime_messages(messages)?;
            let mut s = self.lock()?;
            let mut failed = None;
            let stats = s.chat(&template, &msgs, &rt, &mut Self::forward(sink, &mut failed))?;
            return Self::finish(stats, failed, sink);
        }
        let n_ctx = self.n_ctx as usize;
        let reserve = ember::chat::fit::answer_reserve(n_ctx, rt.max_tokens);
        let (ids, dropped) = crate::chat::encode_fitted(self.tokenizer()?, messages, &tools, n_ctx, reserve)?;
        if ids.is_empty() {
            return Err(EmberError::InvalidParams("the rendered chat prompt is empty".into()));
        }
        let mut s = self.lock()?;
        // `messages` is the whole conversation: keep the KV of the prefix it
        // shares with what the session holds (the previous turns, or after a
        // context shift the system message), evaluate the rest.
        let keep = s.reuse_prefix(&ids);
        Self::run(&mut s, &ids[keep..], &rt, &tools, sink, dropped)
    }
}

#[uniffi::export]
impl Session {
    /// Appends `prompt` (raw text; special tokens like `<|im_start|>` are
    /// parsed) to the conversation and generates, streaming text to `sink`.
    /// Blocks until done: call it off the UI thread, or use `generate_async`.
    pub fn generate(&self, prompt: String, params: GenerateParams, sink: Arc<dyn TokenSink>) -> Result<GenerationStats, EmberError> {
        guard("Session.generate", || self.generate_blocking(&prompt, &params, sink.as_ref()))
    }

    /// Renders `messages` (the whole conversation so far) with the model's
    /// chat template and generates the assistant's reply. The KV cache of the
    /// prefix shared with the previous call is reused. A conversation longer
    /// than the context keeps its system message and newest turns, the oldest
    /// left out (`stats.dropped_messages` says how many).
    pub fn chat(
        &self,
        messages: Vec<ChatMessage>,
        params: GenerateParams,
        sink: Arc<dyn TokenSink>,
    ) -> Result<GenerationStats, EmberError> {
        guard("Session.chat", || self.chat_blocking(&messages, &params, sink.as_ref()))
    }

    /// `generate` as a suspend/async function (runs on its own thread).
    /// Cancelling the coroutine/task cancels the generation.
    pub async fn generate_async(
        self: Arc<Self>,
        prompt: String,
        params: GenerateParams,
        sink: Arc<dyn TokenSink>,
    ) -> Result<GenerationStats, EmberError> {
        let cancel = self.cancel.clone();
        // Counted from here, not from when the thread gets going: a cancel()
        // in between is for this call.
        let pending = Active::new(&self.active);
        oneshot::spawn("generate", Some(cancel), move || {
            let _pending = pending;
            self.generate_blocking(&prompt, &params, sink.as_ref())
        })
        .await
    }

    /// `chat` as a suspend/async function (runs on its own thread).
    pub async fn chat_async(
        self: Arc<Self>,
        messages: Vec<ChatMessage>,
        params: GenerateParams,
        sink: Arc<dyn TokenSink>,
    ) -> Result<GenerationStats, EmberError> {
        let cancel = self.cancel.clone();
        let pending = Active::new(&self.active);
        oneshot::spawn("chat", Some(cancel), move || {
            let _pending = pending;
            self.chat_blocking(&messages, &params, sink.as_ref())
        })
        .await
    }

    /// Stops the running generation (if any) within one token, or within
    /// one step of its prompt; a call that has not reached the session yet
    /// (waiting for the lock, an async task just started) stops at once.
    /// Callable from any thread, never blocks. The generation returns
    /// normally with `stop_reason == "cancelled"`.
    pub fn cancel(&self) {
        if self.active.load(Ordering::Acquire) > 0 {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Forgets the conversation (the KV cache is kept allocated). Waits for a
    /// running generation to finish: call `cancel()` first to stop it. `Busy`
    /// from inside the session's own callback.
    pub fn reset(&self) -> Result<(), EmberError> {
        guard("Session.reset", || {
            self.lock()?.reset();
            Ok(())
        })
    }

    /// Tokens currently in this session's context (waits for a running
    /// generation; `Busy` from inside the session's own callback).
    pub fn context_tokens(&self) -> Result<u32, EmberError> {
        guard("Session.context_tokens", || Ok(self.lock()?.tokens().len() as u32))
    }

    /// Saves the context (its tokens and KV cache rows) to the file `path`,
    /// e.g. when the app goes to the background; `restore` brings it back in
    /// a later process. Waits for a running generation; `Busy` from inside
    /// the session's own callback.
    pub fn save(&self, path: String) -> Result<(), EmberError> {
        guard("Session.save", || Ok(self.lock()?.save(&path)?))
    }

    /// Replaces the context with one saved by `save` with the same model,
    /// context size and KV cache types; then `generate`/`chat` with the
    /// whole conversation evaluate only what the file does not hold.
    /// `InvalidSession` when the file is damaged or from another model,
    /// context size or cache type (the session is then unchanged); `Io`
    /// when it cannot be read.
    pub fn restore(&self, path: String) -> Result<(), EmberError> {
        guard("Session.restore", || Ok(self.lock()?.load(&path)?))
    }

    /// The session's context size (tokens).
    pub fn context_size(&self) -> u32 {
        self.n_ctx
    }
}
