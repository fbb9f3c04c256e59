//! `Session`: one conversation on an [`Engine`]: its KV cache, the tokens it
//! holds, and generation (prompt → sampled tokens → streamed text).

use crate::time::Instant;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::constrain::{Constraint, TokenMask};
use crate::engine::Engine;
use crate::graph::{OpProfile, Runner, Want};
use crate::kv_state::{KvState, LayerKv};
use crate::model::LogitsWanted;
use crate::sampling::{Sampler, SamplingParams};
use crate::session_file::{self, SessionHeader};
use crate::speculative::{SpecStats, Speculation, Speculator};
use crate::stop::StopMatcher;
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};

/// Tokens evaluated per forward pass while processing a prompt.
pub const PROMPT_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops when the text contains one of these (not emitted).
    pub stop: Vec<String>,
    /// What the output must match (JSON schema, regex, grammar): a token
    /// mask applied before sampling; the constraint's end ends generation.
    pub constraint: Option<Constraint>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams { sampling: SamplingParams::default(), max_tokens: 256, stop: Vec::new(), constraint: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token (EOS, EOT …).
    Eog,
    /// `max_tokens` reached.
    Length,
    /// A stop string matched.
    StopString,
    /// The caller's callback asked to stop, or `cancel()` was called.
    Cancelled,
    /// The session's context is full.
    ContextFull,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::Length => "length",
            StopReason::StopString => "stop",
            StopReason::Cancelled => "cancelled",
            StopReason::ContextFull => "context_full",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
    pub stop_reason: StopReason,
    /// Where the request ran and why: set by [`Session::complete`] and
    /// [`Session::chat`] (the route policy), `None` from `generate`.
    pub route: Option<crate::remote::RouteChoice>,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        tps(self.prompt_tokens, self.prompt_ms)
    }
    pub fn generation_tps(&self) -> f64 {
        tps(self.generated_tokens, self.generation_ms)
    }
}

/// Length of the longest common prefix of two token sequences.
pub fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn tps(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

pub struct Session {
    engine: Arc<Engine>,
    n_ctx: usize,
    /// The KV cache and buffers on the engine's backend; made at the first eval.
    runner: Option<Box<dyn Runner>>,
    /// Whether `runner` runs on the GPU (a GPU failure may move it to the CPU).
    runner_on_gpu: bool,
    /// Whether passes are timed (applied when the runner is made).
    profiling: bool,
    /// Whether named intermediates are kept (applied when the runner is made).
    dumping: bool,
    /// Tokens whose K/V are in the cache, in order.
    tokens: Vec<u32>,
    logits: Vec<f32>,
    cancel: Arc<AtomicBool>,
    /// Drafts and verifies several tokens per pass (see [`crate::speculative`]).
    speculator: Option<Speculator>,
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, n_ctx: usize) -> Session {
        Session {
            engine,
            n_ctx,
            runner: None,
            runner_on_gpu: false,
            profiling: false,
            dumping: false,
            tokens: Vec::new(),
            logits: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            speculator: None,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The logits of the last evaluation (see [`Session::eval`]).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Tokens currently in the context.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets the conversation (the cache is reused, not reallocated).
    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Starts (or stops) timing each product per weight type and attention
    /// in this session's CPU forward passes (`ember bench --per-type`); the
    /// GPU backend records nothing.
    pub fn set_profiling(&mut self, on: bool) {
        self.profiling = on;
        if let Some(r) = &mut self.runner {
            r.set_profiling(on);
        }
    }

    /// Keeps every layer's named intermediates (`attn_norm-3`, `ffn_out-3`, …)
    /// of the following evaluations, from either backend (`ember logits
    /// --dump-layers`), to find where two backends part.
    pub fn set_dump(&mut self, on: bool) -> Result<()> {
        self.dumping = on;
        match &mut self.runner {
            Some(r) => r.set_dump(on),
            None => Ok(()),
        }
    }

    /// The named intermediates kept since dumping started.
    pub fn take_dump(&mut self) -> Vec<crate::graph::Dumped> {
        self.runner.as_mut().map(|r| r.take_dump()).unwrap_or_default()
    }

    /// What was timed since profiling started or the last call (empty when off).
    pub fn take_profile(&mut self) -> OpProfile {
        self.runner.as_mut().map(|r| r.take_profile()).unwrap_or_default()
    }

    /// Speculative decoding from now on (`None`: off). A draft model must
    /// share this model's vocabulary ([`Error::InvalidParam`] otherwise).
    pub fn set_speculation(&mut self, spec: Option<&Speculation>) -> Result<()> {
        self.speculator = spec.map(|s| Speculator::new(s, &self.engine, self.n_ctx)).transpose()?;
        Ok(())
    }

    /// Tokens drafted and accepted since the last call (`None` without
    /// speculation).
    pub fn take_speculation_stats(&mut self) -> Option<SpecStats> {
        self.speculator.as_mut().map(|s| s.take_stats())
    }

    /// Saves the context's tokens and their KV rows to `path` (format and
    /// checks: [`crate::session_file`]); the session is unchanged.
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let header = SessionHeader::for_engine(&self.engine, self.n_ctx)?;
        let kv = match self.tokens.len() {
            // Nothing to read: no runner is made for an empty session.
            0 => KvState { type_k: header.type_k, type_v: header.type_v, n_tokens: 0, layers: vec![LayerKv::default(); header.dims.len()] },
            n => self.runner()?.kv_read(n)?,
        };
        session_file::write(path.as_ref(), &header, &self.tokens, &kv)
    }

    /// Replaces the context with a session saved by [`Session::save`] on the
    /// same model, context size and KV cache types (else
    /// [`Error::SessionFile`], and the session is unchanged). Continue with
    /// [`Session::generate_from`]: its last token is evaluated again for
    /// fresh logits, as llama.cpp does with a prompt cache.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let header = SessionHeader::for_engine(&self.engine, self.n_ctx)?;
        let saved = session_file::read(path.as_ref(), &header, self.engine.info().n_vocab)?;
        if saved.kv.n_tokens > 0 {
            self.runner()?.kv_write(&saved.kv)?;
        }
        self.tokens = saved.tokens;
        self.logits.clear();
        Ok(())
    }

    /// The first `n` tokens of the context and their KV rows, for another
    /// session of this engine and context size to start from
    /// ([`Session::set_kv_prefix`]: a server's shared prompt prefix).
    pub fn kv_prefix(&mut self, n: usize) -> Result<(Vec<u32>, KvState)> {
        let n = n.min(self.tokens.len());
        let kv = self.runner()?.kv_read(n)?;
        Ok((self.tokens[..n].to_vec(), kv))
    }

    /// Replaces the context with `tokens` and their rows `kv` (from
    /// [`Session::kv_prefix`] of a session of the same engine and context
    /// size; checked against this cache's layout and types).
    pub fn set_kv_prefix(&mut self, tokens: &[u32], kv: &KvState) -> Result<()> {
        if tokens.len() != kv.n_tokens {
            return Err(Error::InvalidParam(format!("{} tokens but KV rows for {}", tokens.len(), kv.n_tokens)));
        }
        self.runner()?.kv_write(kv)?;
        self.tokens = tokens.to_vec();
        self.logits.clear();
        Ok(())
    }

    /// Drops tokens after the first `n` (e.g. to rewind to a common prefix).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
    }

    /// A flag that, once set, stops the current generation: within one
    /// token, and inside the prompt within one product (CPU) or micro-batch
    /// (GPU). A set flag is never lost: a `generate` that starts with it set
    /// stops at once; `generate` clears it when it ends (the cancel is
    /// consumed). `eval` with it set fails with [`Error::Cancelled`].
    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Uses `flag` as this session's cancel flag from now on (a server
    /// gives each request its own, set when the client goes away).
    pub fn set_cancel_handle(&mut self, flag: Arc<AtomicBool>) {
        if let Some(r) = &mut self.runner {
            r.set_cancel(Some(flag.clone()));
        }
        self.cancel = flag;
    }

    /// Appends `ids` to the context and evaluates them, in batches of
    /// [`PROMPT_BATCH`]. Returns the logits: the last token's row, or one row
    /// per id in `ids` for [`LogitsWanted::All`].
    pub fn eval(&mut self, ids: &[u32], wanted: LogitsWanted) -> Result<&[f32]> {
        // Before the context check: a remote-only engine has no model to run.
        self.engine.model()?;
        if self.tokens.len() + ids.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: self.tokens.len() + ids.len(), n_ctx: self.n_ctx });
        }
        let want = if wanted == LogitsWanted::All { Want::All } else { Want::Last };
        let mut all = Vec::new();
        let mut batch_logits = std::mem::take(&mut self.logits);
        for chunk in ids.chunks(PROMPT_BATCH) {
            let is_last = chunk.as_ptr_range().end == ids.as_ptr_range().end;
            if let Err(e) = self.forward(chunk, want, &mut batch_logits) {
                self.logits = batch_logits;
                return Err(e);
            }
            if wanted == LogitsWanted::All && !is_last {
                all.extend_from_slice(&batch_logits);
            }
        }
        if wanted == LogitsWanted::All && !all.is_empty() {
            all.extend_from_slice(&batch_logits);
            batch_logits = all;
        }
        self.logits = batch_logits;
        Ok(&self.logits)
    }

    /// Makes the context hold `prompt` as a prefix, reusing the KV cache: keeps
    /// the longest common prefix of [`Session::tokens`] and `prompt` (at least one
    /// prompt token is left to evaluate, so fresh logits exist) and returns how
    /// many tokens of `prompt` are already in the cache.
    pub fn reuse_prefix(&mut self, prompt: &[u32]) -> usize {
        let n = common_prefix_len(&self.tokens, prompt).min(prompt.len().saturating_sub(1));
        self.tokens.truncate(n);
        n
    }

    /// Like [`Session::generate`], but `prompt` is the whole context wanted (e.g.
    /// the rendered conversation so far), not a suffix: only the part not already
    /// in the cache is evaluated (see [`Session::reuse_prefix`]). The stats'
    /// `prompt_tokens` counts the tokens evaluated.
    pub fn generate_from(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        if prompt.is_empty() {
            return Err(Error::InvalidParam("the prompt is empty".into()));
        }
        // Checked before the cache is trimmed: bad parameters cost nothing.
        let sampler = Sampler::new(params.sampling.clone())?;
        let mask = self.compile_constraint(params)?;
        let n = self.reuse_prefix(prompt);
        let r = self.generate_inner(&prompt[n..], params, sampler, mask, on_text);
        self.cancel.store(false, Ordering::Relaxed);
        r
    }

    fn compile_constraint(&self, params: &GenerateParams) -> Result<Option<TokenMask>> {
        params.constraint.as_ref().map(|c| self.engine.constraint_mask(c)).transpose()
    }

    /// The session's state on the engine's backend, made at first use.
    fn runner(&mut self) -> Result<&mut Box<dyn Runner>> {
        if self.runner.is_none() {
            self.runner_on_gpu = self.engine.backend_name() == "wgpu";
            let mut r = self.engine.new_runner(self.n_ctx)?;
            r.set_cancel(Some(self.cancel.clone()));
            r.set_profiling(self.profiling);
            r.set_dump(self.dumping)?;
            self.runner = Some(r);
        }
        self.runner.as_mut().ok_or_else(|| Error::Backend("no runner".into()))
    }

    /// One forward pass over `ids` at the end of the context (checked
    /// here, for every backend), appended to [`Session::tokens`].
    fn forward(&mut self, ids: &[u32], want: Want, logits: &mut Vec<f32>) -> Result<Option<u32>> {
        // A remote-only engine has no model to run: `Error::NoLocalModel`.
        let n_vocab = self.engine.model()?.info().n_vocab;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(Error::TokenOutOfVocab { id, n_vocab });
        }
        if self.tokens.len() + ids.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: self.tokens.len() + ids.len(), n_ctx: self.n_ctx });
        }
        if ids.is_empty() {
            logits.clear();
            return Ok(None);
        }
        let pos0 = self.tokens.len();
        let id = match self.runner()?.forward(ids, pos0, want, logits) {
            Err(e) if self.runner_on_gpu && self.engine.fall_back_to_cpu(&e) => {
                self.reevaluate_on_cpu()?;
                self.runner()?.forward(ids, pos0, want, logits)?
            }
            r => r?,
        };
        self.tokens.extend_from_slice(ids);
        Ok(id)
    }

    /// The GPU failed under `backend auto`: a CPU runner takes over and
    /// evaluates the tokens the GPU's cache held, so the conversation goes on.
    fn reevaluate_on_cpu(&mut self) -> Result<()> {
        self.runner = None;
        let tokens = self.tokens.clone();
        let r = self.runner()?;
        let mut scratch = Vec::new();
        for (i, chunk) in tokens.chunks(PROMPT_BATCH).enumerate() {
            r.forward(chunk, i * PROMPT_BATCH, Want::Last, &mut scratch)?;
        }
        log::info!("session: {} tokens re-evaluated on the CPU", tokens.len());
        Ok(())
    }

    /// Evaluates `ids` and returns the next id when it can be picked on the
    /// GPU (pure greedy sampling on wgpu: only the id is read back); else
    /// evaluates them for the last row's logits and returns `None`.
    fn eval_next(&mut self, ids: &[u32], params: &GenerateParams) -> Result<Option<u32>> {
        let p = &params.sampling;
        // A constraint masks the logits on the CPU, so they are read back.
        let greedy = params.constraint.is_none()
            && p.temperature <= 0.0
            && (p.repeat_penalty == 1.0 || p.repeat_last_n == 0)
            && p.frequency_penalty == 0.0
            && p.presence_penalty == 0.0;
        if !greedy || ids.is_empty() || !self.runner()?.argmax_on_device() {
            self.eval(ids, LogitsWanted::Last)?;
            return Ok(None);
        }
        if self.tokens.len() + ids.len() > self.n_ctx {
            return Err(Error::ContextFull { needed: self.tokens.len() + ids.len(), n_ctx: self.n_ctx });
        }
        let mut logits = std::mem::take(&mut self.logits);
        let mut id = None;
        for chunk in ids.chunks(PROMPT_BATCH) {
            match self.forward(chunk, Want::Argmax, &mut logits) {
                Ok(i) => id = i,
                Err(e) => {
                    self.logits = logits;
                    return Err(e);
                }
            }
        }
        self.logits = logits;
        Ok(id)
    }

    /// Evaluates `prompt` (appended to the context) and generates up to
    /// `params.max_tokens` tokens, calling `on_text` with each newly complete
    /// piece of UTF-8 text; `on_text` returns `false` to stop.
    pub fn generate(&mut self, prompt: &[u32], params: &GenerateParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<GenerationStats> {
        // Compiled before the prompt is evaluated: a bad schema costs nothing.
        let r = Sampler::new(params.sampling.clone()).and_then(|sampler| {
            let mask = self.compile_constraint(params)?;
            self.generate_inner(prompt, params, sampler, mask, on_text)
        });
        // The cancel (if any) was for this generation: consumed.
        self.cancel.store(false, Ordering::Relaxed);
        r
    }

    /// Puts the emitted `id` in the cache and returns the token after it when
    /// known: the next of a verification's tokens (`id` was then one of its
    /// accepted drafts, already in the cache), a speculation step's first, or
    /// [`Session::eval_next`]'s.
    fn advance(
        &mut self,
        id: u32,
        params: &GenerateParams,
        sampler: &mut Sampler,
        speculate: bool,
        pending: &mut std::collections::VecDeque<u32>,
    ) -> Result<Option<u32>> {
        if let Some(t) = pending.pop_front() {
            return Ok(Some(t));
        }
        if let Some(mut s) = self.speculator.take_if(|_| speculate) {
            // Out of the session while it drives it (put back before any error returns).
            let r = s.step(self, id, sampler);
            self.speculator = Some(s);
            if let Some(tokens) = r? {
                pending.extend(&tokens[1..]);
                return Ok(Some(tokens[0]));
            }
        }
        self.eval_next(&[id], params)
    }

    fn generate_inner(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        mut sampler: Sampler,
        mut mask: Option<TokenMask>,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        if prompt.is_empty() && self.tokens.is_empty() {
            return Err(Error::InvalidParam("the prompt is empty".into()));
        }
        if prompt.is_empty() && self.logits.is_empty() {
            // A restored session has no logits yet.
            return Err(Error::InvalidParam("no logits to continue from: pass the prompt (generate_from)".into()));
        }
        let t0 = Instant::now();
        let mut next = None;
        let mut cancelled = self.cancel.load(Ordering::Relaxed);
        if !prompt.is_empty() && !cancelled {
            match self.eval_next(prompt, params) {
                Ok(id) => next = id,
                Err(Error::Cancelled) => cancelled = true,
                Err(e) => return Err(e),
            }
        }
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        if cancelled {
            // Stopped before the first token: the prompt's evaluated part stays in the context.
            return Ok(GenerationStats {
                prompt_tokens: prompt.len(),
                generated_tokens: 0,
                prompt_ms,
                generation_ms: 0.0,
                stop_reason: StopReason::Cancelled,
                route: None,
            });
        }
        let t1 = Instant::now();

        let engine = self.engine.clone();
        let tok = engine.tokenizer()?;
        let mut decoder = StreamDecoder::new();
        let mut stops = StopMatcher::new(params.stop.clone());
        let mut generated = 0usize;
        let mut logits = Vec::new();
        // A mask is applied before each sample: no drafts to verify at once.
        let speculate = mask.is_none();
        // Tokens decided by a verification, after `next`; all but the last are in the cache.
        let mut pending = std::collections::VecDeque::new();
        // The tokens the cache holds without speculation's accepted-but-unemitted drafts.
        let mut n_ctx_used = self.tokens.len();
        let reason = loop {
            if generated >= params.max_tokens {
                break StopReason::Length;
            }
            if self.cancel.load(Ordering::Relaxed) {
                break StopReason::Cancelled;
            }
            let id = match next.take() {
                Some(id) => id,
                None => {
                    logits.clear();
                    logits.extend_from_slice(&self.logits);
                    if let Some(m) = &mut mask {
                        m.apply(&mut logits)?;
                    }
                    sampler.sample(&mut logits, &self.tokens)
                }
            };
            if tok.is_eog(id) {
                break StopReason::Eog;
            }
            if let Some(m) = &mut mask {
                m.accept(id)?;
            }
            generated += 1;
            let piece = decoder.push(tok, id)?;
            let (emit, stopped) = stops.push(&piece);
            if !emit.is_empty() && !on_text(&emit) {
                break StopReason::Cancelled;
            }
            if stopped {
                break StopReason::StopString;
            }
            if mask.as_ref().is_some_and(|m| m.is_done()) {
                // The constraint is complete: nothing but the end may follow.
                break StopReason::Eog;
            }
            if n_ctx_used >= self.n_ctx {
                break StopReason::ContextFull;
            }
            next = match self.advance(id, params, &mut sampler, speculate, &mut pending) {
                Ok(n) => n,
                Err(Error::Cancelled) => break StopReason::Cancelled,
                Err(e) => return Err(e),
            };
            n_ctx_used += 1;
        };
        // Drafts accepted but not emitted (generation stopped first) leave the cache.
        self.tokens.truncate(n_ctx_used);
        if reason != StopReason::StopString {
            let mut rest = decoder.flush();
            let (emit, _) = stops.push(&rest);
            rest = emit + &stops.flush();
            if !rest.is_empty() && reason != StopReason::Cancelled {
                on_text(&rest);
            }
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            generated_tokens: generated,
            prompt_ms,
            generation_ms: t1.elapsed().as_secs_f64() * 1e3,
            stop_reason: reason,
            route: None,
        })
    }
}
