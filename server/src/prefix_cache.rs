//! The pool's shared prefix cache: the KV rows of the last prompt evaluated,
//! kept so that a request on *another* slot whose prompt starts the same way
//! (a system prompt, few-shot examples) copies those rows instead of
//! evaluating them. Within one slot the pool already reuses a session's own
//! cache ([`crate::pool`]); this covers the slot that has never seen the prefix.

use std::sync::Mutex;

use ember::kv_state::KvState;
use ember::session::{common_prefix_len, Session};

/// Prompts shorter than this are not kept (copying beats evaluating only for
/// a prefix of some length; a short prompt is cheap to evaluate anyway).
pub const MIN_TOKENS: usize = 16;

#[derive(Default)]
pub struct PrefixCache {
    last: Mutex<Option<(Vec<u32>, KvState)>>,
}

impl PrefixCache {
    /// Before `session` evaluates `prompt`: when the cached prompt shares a
    /// longer prefix with it than the session's own tokens do, copies that
    /// prefix's rows into the session. Returns the tokens copied (0: none).
    /// Keeps at least one prompt token to evaluate (for fresh logits).
    pub fn apply(&self, session: &mut Session, prompt: &[u32], dims: &[(usize, usize)]) -> usize {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let Some((tokens, kv)) = last.as_ref() else { return 0 };
        let n = common_prefix_len(tokens, prompt).min(prompt.len().saturating_sub(1));
        if n < MIN_TOKENS || n <= common_prefix_len(session.tokens(), prompt) {
            return 0;
        }
        let copied = kv.prefix(n, dims).and_then(|rows| session.set_kv_prefix(&tokens[..n], &rows));
        match copied {
            Ok(()) => n,
            Err(e) => {
                // Not fatal: the prompt is simply evaluated.
                log::warn!("prefix cache: cannot copy {n} rows ({e})");
                session.reset();
                0
            }
        }
    }

    /// After `session` evaluated `prompt`: keeps the rows of its tokens
    /// (`prompt` and what followed) for the next request.
    pub fn remember(&self, session: &mut Session, prompt: &[u32]) {
        let n = common_prefix_len(session.tokens(), prompt);
        if n < MIN_TOKENS {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_some_and(|(t, _)| t[..] == session.tokens()[..n]) {
            return;
        }
        match session.kv_prefix(n) {
            Ok(entry) => *last = Some(entry),
            Err(e) => log::warn!("prefix cache: cannot read {n} rows ({e})"),
        }
    }
}
