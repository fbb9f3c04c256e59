//! Draft-model drafting: a smaller model of the same vocabulary proposes the
//! next tokens greedily, on a session of its own that follows the target's
//! context (only the tokens it has not seen are evaluated).

use std::sync::Arc;

use crate::engine::Engine;
use crate::model::LogitsWanted;
use crate::sampling::argmax;
use crate::session::Session;
use crate::{Error, Result};

/// Drafting stops at a token the draft model itself gives less than this
/// probability (llama.cpp's `--draft-p-min` default): a doubtful guess costs
/// a verification row and is likely rejected.
pub const DRAFT_P_MIN: f32 = 0.75;

pub struct DraftModel {
    session: Session,
}

impl DraftModel {
    /// A draft session of `n_ctx` positions on `draft`, after checking it
    /// shares `target`'s vocabulary.
    pub fn new(target: &Engine, draft: &Arc<Engine>, n_ctx: usize) -> Result<DraftModel> {
        check_same_vocab(target, draft)?;
        Ok(DraftModel { session: draft.new_session_with_ctx(n_ctx)? })
    }

    /// Up to `max` tokens the draft model expects after `context`.
    pub fn draft(&mut self, context: &[u32], max: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        if max == 0 {
            return Ok(());
        }
        // What the draft session holds from the last round is kept up to the
        // first token the target did not accept.
        let n = self.session.reuse_prefix(context);
        self.session.eval(&context[n..], LogitsWanted::Last)?;
        let tok = self.session.engine().tokenizer()?;
        let eog: Vec<u32> = tok.eog_ids();
        loop {
            let logits = self.session.logits();
            let x = argmax(logits);
            if top_probability(logits, x) < DRAFT_P_MIN {
                break;
            }
            out.push(x);
            if out.len() >= max || eog.contains(&x) {
                break;
            }
            self.session.eval(&[x], LogitsWanted::Last)?;
        }
        Ok(())
    }
}

/// softmax(logits)[x] for the row's argmax `x` (0 for an empty or NaN row).
fn top_probability(logits: &[f32], x: u32) -> f32 {
    let Some(&max) = logits.get(x as usize) else {
        return 0.0;
    };
    let sum: f32 = logits.iter().filter(|l| !l.is_nan()).map(|&l| (l - max).exp()).sum();
    if sum.is_finite() && sum > 0.0 {
        1.0 / sum
    } else {
        0.0
    }
}

/// The draft's tokens must mean the same as the target's: the same
/// tokenizer size, the same text for every id, and no logit row the target
/// has not (the GGUF head may be padded past the tokenizer's size).
pub fn check_same_vocab(target: &Engine, draft: &Engine) -> Result<()> {
    let (t, d) = (target.tokenizer()?, draft.tokenizer()?);
    let refuse = |what: String| Err(Error::InvalidParam(format!("the draft model cannot draft for this model: {what}")));
    if t.n_vocab() != d.n_vocab() {
        return refuse(format!("its vocabulary has {} tokens, the model's {}", d.n_vocab(), t.n_vocab()));
    }
    if draft.info().n_vocab > target.info().n_vocab {
        return refuse(format!("it scores {} tokens, the model only {}", draft.info().n_vocab, target.info().n_vocab));
    }
    if let Some(id) = (0..t.n_vocab() as u32).find(|&id| t.token_text(id) != d.token_text(id)) {
        return refuse(format!(
            "token {id} is {:?} in the draft, {:?} in the model",
            d.token_text(id).unwrap_or(""),
            t.token_text(id).unwrap_or("")
        ));
    }
    Ok(())
}
