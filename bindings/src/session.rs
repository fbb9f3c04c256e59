//! `Session`: one conversation (its KV cache) on an `Engine`, with streaming
//! generation through a foreign `TokenSink`, `cancel()` from any thread, and
//! async forms of `generate`/`chat`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::Engine;
use crate::error::{guard, EmberError};
use crate::oneshot;
use crate::records::{ChatMessage, GenerateParams, GenerationStats};

/// Receives generated text as it is produced (implemented in Kotlin/Swift/Python).
#[uniffi::export(with_foreign)]
pub trait TokenSink: Send + Sync {
    /// A newly complete piece of UTF-8 text. Return false to stop generating
    /// (the stats then say "cancelled").
    fn on_token(&self, text: String) -> bool;
    /// Called once when the generation ends without error, with its stats
    /// (also the return value of `generate`/`chat`).
    fn on_done(&self, stats: GenerationStats);
}

#[derive(uniffi::Object)]
pub struct Session {
    engine: Arc<Engine>,
    inner: Mutex<ember::Session>,
    /// The runtime session's cancel flag, reachable without `inner`'s lock.
    cancel: Arc<AtomicBool>,
    n_ctx: u32,
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, s: ember::Session) -> Session {
        let cancel = s.cancel_handle();
        let n_ctx = s.n_ctx() as u32;
        Session { engine, inner: Mutex::new(s), cancel, n_ctx }
    }

    /// The session, recovering from a panic in an earlier call (its context is
    /// then dropped: the KV cache may be half-written).
    fn lock(&self) -> MutexGuard<'_, ember::Session> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                g.reset();
                self.inner.clear_poison();
                g
            }
        }
    }

    fn tokenizer(&self) -> &ember::tokenizer::Tokenizer {
        self.engine.inner.tokenizer()
    }

    /// Generates after `prompt` ids (appended to what `s` holds) and reports to `sink`.
    fn run(s: &mut ember::Session, prompt: &[u32], params: &GenerateParams, sink: &dyn TokenSink) -> Result<GenerationStats, EmberError> {
        let rt = params.to_runtime();
        rt.sampling.validate()?;
        let stats = s.generate(prompt, &rt, &mut |text: &str| sink.on_token(text.to_string()))?;
        let stats = GenerationStats::from(&stats);
        sink.on_done(stats.clone());
        Ok(stats)
    }

    fn generate_blocking(&self, prompt: &str, params: &GenerateParams, sink: &dyn TokenSink) -> Result<GenerationStats, EmberError> {
        let mut s = self.lock();
        // BOS (when the model wants one) only at the start of the context.
        let ids = self.tokenizer().encode(prompt, s.tokens().is_empty(), true)?;
        if ids.is_empty() {
            return Err(EmberError::InvalidParams("the prompt is empty".into()));
        }
        Self::run(&mut s, &ids, params, sink)
    }

    fn chat_blocking(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        sink: &dyn TokenSink,
    ) -> Result<GenerationStats, EmberError> {
        let tok = self.tokenizer();
        let ids = crate::chat::encode(tok, messages)?;
        if ids.is_empty() {
            return Err(EmberError::InvalidParams("the rendered chat prompt is empty".into()));
        }
        let mut s = self.lock();
        // `messages` is the whole conversation: keep the KV of the prefix it
        // shares with what the session holds (the previous turns), evaluate the rest.
        let keep = s.reuse_prefix(&ids);
        Self::run(&mut s, &ids[keep..], params, sink)
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
    /// prefix shared with the previous call is reused.
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
        oneshot::spawn("generate", Some(cancel), move || self.generate_blocking(&prompt, &params, sink.as_ref())).await
    }

    /// `chat` as a suspend/async function (runs on its own thread).
    pub async fn chat_async(
        self: Arc<Self>,
        messages: Vec<ChatMessage>,
        params: GenerateParams,
        sink: Arc<dyn TokenSink>,
    ) -> Result<GenerationStats, EmberError> {
        let cancel = self.cancel.clone();
        oneshot::spawn("chat", Some(cancel), move || self.chat_blocking(&messages, &params, sink.as_ref())).await
    }

    /// Stops the running generation (if any) within one token; callable from
    /// any thread, never blocks. The generation returns normally with
    /// `stop_reason == "cancelled"`.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Forgets the conversation (the KV cache is kept allocated). Waits for a
    /// running generation to finish: call `cancel()` first to stop it.
    pub fn reset(&self) {
        let _ = guard("Session.reset", || {
            self.lock().reset();
            Ok(())
        });
    }

    /// Tokens currently in this session's context (waits for a running generation).
    pub fn context_tokens(&self) -> u32 {
        self.lock().tokens().len() as u32
    }

    /// The session's context size (tokens).
    pub fn context_size(&self) -> u32 {
        self.n_ctx
    }
}
