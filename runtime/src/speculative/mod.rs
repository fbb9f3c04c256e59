//! Speculative decoding: a cheap drafter proposes the next tokens, the target
//! model scores them all in one forward pass, and the longest prefix the
//! target's own sampler agrees with is kept.
//!
//! The step after an emitted token `id` (not yet in the cache), with drafts
//! `d1..dn`: evaluate `[id, d1..dn]` with logits for every row; row `i` is the
//! target's distribution after `d1..di`. Sample `y_i` from row `i` with the
//! session's [`Sampler`] (penalties, top-k/p, min-p, temperature: its final
//! distribution `p`); keep `d_{i+1}` while `y_i == d_{i+1}`; the first `y_i`
//! that differs (or the one after the last draft) is the next token. The
//! cache is rolled back by truncating the session's tokens: the rows of
//! rejected drafts are overwritten by later passes.
//!
//! Both drafters are deterministic (`q` is one-hot on the draft `d`), and then
//! this *is* standard speculative sampling: "accept `d` with probability
//! `min(1, p(d)/q(d)) = p(d)`, else draw from `norm(max(0, p − q))` = `p`
//! without `d`" emits `d` with probability `p(d)` and any other `y` with
//! `p(y)`, exactly like drawing `y ~ p`. Each emitted token costs the sampler
//! one draw, in the same order as without speculation, so with the same seed
//! (and the same logits) the output is the same token for token; under
//! greedy it is the argmax, as without.
//!
//! A constrained generation (grammar mask) does not speculate.

pub mod draft_model;
pub mod ngram;

use std::sync::Arc;

use crate::engine::Engine;
use crate::model::LogitsWanted;
use crate::sampling::Sampler;
use crate::session::Session;
use crate::{Error, Result};

pub use draft_model::DraftModel;

/// llama.cpp's default `--draft-max`.
pub const DEFAULT_DRAFT_MAX: usize = 16;

/// How a session drafts.
#[derive(Clone)]
pub enum Speculation {
    /// Prompt lookup: up to `max` tokens that followed the latest earlier
    /// occurrence of the context's last n-gram (see [`ngram`]).
    Lookup { max: usize },
    /// A draft model of the same vocabulary proposes up to `max` tokens.
    DraftModel { engine: Arc<Engine>, max: usize },
}

impl std::fmt::Debug for Speculation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speculation::Lookup { max } => write!(f, "Lookup {{ max: {max} }}"),
            Speculation::DraftModel { engine, max } => {
                write!(f, "DraftModel {{ {}, max: {max} }}", engine.info().name.as_deref().unwrap_or("?"))
            }
        }
    }
}

/// Tokens drafted and accepted since the counters were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpecStats {
    /// Verification passes (each of one or more drafted tokens).
    pub rounds: usize,
    pub drafted: usize,
    pub accepted: usize,
}

impl SpecStats {
    /// Accepted / drafted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

enum Drafter {
    Lookup,
    Model(Box<DraftModel>),
}

/// A session's speculation state: the drafter (a draft model's session) and
/// its counters.
pub struct Speculator {
    drafter: Drafter,
    max: usize,
    stats: SpecStats,
    drafts: Vec<u32>,
    row: Vec<f32>,
}

impl Speculator {
    /// The drafter `spec` asks for, for a session on `target` of `n_ctx`
    /// positions; a draft model of another vocabulary is refused.
    pub fn new(spec: &Speculation, target: &Engine, n_ctx: usize) -> Result<Speculator> {
        let (drafter, max) = match spec {
            Speculation::Lookup { max } => (Drafter::Lookup, *max),
            Speculation::DraftModel { engine, max } => (Drafter::Model(Box::new(DraftModel::new(target, engine, n_ctx)?)), *max),
        };
        if max == 0 {
            return Err(Error::InvalidParam("the number of tokens to draft must be at least 1".into()));
        }
        Ok(Speculator { drafter, max, stats: SpecStats::default(), drafts: Vec::new(), row: Vec::new() })
    }

    /// The counters since the last call.
    pub fn take_stats(&mut self) -> SpecStats {
        std::mem::take(&mut self.stats)
    }

    /// One step after `id` (sampled, not yet in `session`'s cache): drafts,
    /// verifies, and returns the tokens that follow `id` — the accepted drafts
    /// (left in the cache after `id`) and the target's own next token (not in
    /// it). `None` when nothing was drafted (the caller evaluates `id` alone).
    pub fn step(&mut self, session: &mut Session, id: u32, sampler: &mut Sampler) -> Result<Option<Vec<u32>>> {
        let base = session.tokens().len();
        // `id` and the drafts must fit in the context.
        let room = session.n_ctx().saturating_sub(base + 1).min(self.max);
        let mut drafts = std::mem::take(&mut self.drafts);
        let r = self.draft(session.tokens(), id, room, &mut drafts);
        let r = r.and_then(|()| if drafts.is_empty() { Ok(None) } else { self.verify(session, id, &drafts, sampler).map(Some) });
        self.drafts = drafts;
        r
    }

    fn draft(&mut self, tokens: &[u32], id: u32, max: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        if max == 0 {
            return Ok(());
        }
        // The context the drafts continue: the cache's tokens, then `id`.
        let mut context = Vec::with_capacity(tokens.len() + 1);
        context.extend_from_slice(tokens);
        context.push(id);
        match &mut self.drafter {
            Drafter::Lookup => ngram::lookup(&context, max, out),
            Drafter::Model(m) => m.draft(&context, max, out)?,
        }
        out.truncate(max);
        Ok(())
    }

    fn verify(&mut self, session: &mut Session, id: u32, drafts: &[u32], sampler: &mut Sampler) -> Result<Vec<u32>> {
        let base = session.tokens().len();
        let mut batch = Vec::with_capacity(drafts.len() + 1);
        batch.push(id);
        batch.extend_from_slice(drafts);
        session.eval(&batch, LogitsWanted::All)?;
        let accepted = accept(sampler, session.logits(), session.tokens(), drafts, &mut self.row);
        self.stats.rounds += 1;
        self.stats.drafted += drafts.len();
        self.stats.accepted += accepted.len() - 1;
        // Keep `id` and the accepted drafts; the last token is not evaluated yet.
        session.truncate(base + accepted.len());
        Ok(accepted)
    }
}

/// The accept step: `rows` holds `drafts.len() + 1` logit rows, row `i` the
/// target's scores after `history[..history.len() - drafts.len() + i]`
/// (`history` ends with the drafts). Samples row by row while the sample
/// equals the draft; returns the accepted drafts and the first sample that
/// differs (or the one after the last draft): never empty.
pub fn accept(sampler: &mut Sampler, rows: &[f32], history: &[u32], drafts: &[u32], row: &mut Vec<f32>) -> Vec<u32> {
    let n_rows = drafts.len() + 1;
    let n_vocab = rows.len() / n_rows;
    let first = history.len() - drafts.len();
    let mut out = Vec::with_capacity(n_rows);
    for i in 0..n_rows {
        row.clear();
        row.extend_from_slice(&rows[i * n_vocab..(i + 1) * n_vocab]);
        // The penalties see what the sampler would have seen without drafts.
        let y = sampler.sample(row, &history[..first + i]);
        out.push(y);
        if drafts.get(i) != Some(&y) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
