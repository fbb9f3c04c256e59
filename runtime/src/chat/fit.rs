//! Fitting a conversation into a session's context (context shift by
//! re-evaluation): when the rendered conversation plus room for the answer no
//! longer fits, the leading system message(s) are kept and the oldest turns
//! after them are dropped, newest kept. The caller then evaluates the kept
//! prompt with `Session::generate_from`, which reuses the system prompt's KV
//! (a common prefix) and evaluates the kept turns again — see
//! docs/PERFORMANCE.md for why re-evaluation rather than re-rotating the kept
//! keys' RoPE.
//!
//! The choice is stateless (a function of the messages alone), because an
//! OpenAI client sends the whole history with every request. Like
//! llama-server's prompt truncation, what is dropped is counted in blocks of
//! a quarter of the turns' space: between two requests that add a turn, the
//! same oldest turns stay dropped until the next block is crossed, so the kept
//! prompt is a prefix of the next one and its KV is reused; each shift frees at
//! least a block, so shifts (and their re-evaluation) come every few turns,
//! not every turn.

use super::{encode_prompt, ChatMessage, ChatTemplate};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Room for the answer a chat keeps free when `max_tokens` is asked: all of
/// it, up to a quarter of the context (a longer answer may still end with
/// `StopReason::ContextFull`; the next turn then drops older turns).
pub fn answer_reserve(n_ctx: usize, max_tokens: usize) -> usize {
    max_tokens.min(n_ctx / 4).max(1)
}

/// A conversation as it fits the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// The prompt's ids: the kept messages, rendered and tokenized.
    pub ids: Vec<u32>,
    /// How many leading system messages were kept (`messages[..n_system]`).
    pub n_system: usize,
    /// Index of the first message kept after them; the messages
    /// `n_system..first_kept` were dropped (none when equal).
    pub first_kept: usize,
}

impl Fitted {
    /// How many messages were dropped.
    pub fn dropped(&self) -> usize {
        self.first_kept - self.n_system
    }

    /// The kept messages: the system messages, then `first_kept..`.
    pub fn kept(&self, messages: &[ChatMessage]) -> Vec<ChatMessage> {
        let mut v = messages[..self.n_system].to_vec();
        v.extend_from_slice(&messages[self.first_kept..]);
        v
    }
}

/// Chooses which messages of `messages` to keep so that their prompt leaves
/// `reserve` of `n_ctx` tokens free (see [`answer_reserve`]). `encode` renders
/// and tokenizes messages (ending with the assistant's turn opened, as the
/// caller will evaluate them). Leading system messages and the last message
/// are always kept; a kept tail starts at a `user` message when there is one
/// to start at (templates that require alternating roles stay valid).
/// `Error::ContextFull` when even the system messages and the last turn leave
/// no `reserve`.
pub fn fit_conversation(
    messages: &[ChatMessage],
    n_ctx: usize,
    reserve: usize,
    mut encode: impl FnMut(&[ChatMessage]) -> Result<Vec<u32>>,
) -> Result<Fitted> {
    let n_system = messages.iter().take_while(|m| m.role == "system").count();
    let ids = encode(messages)?;
    if ids.len() + reserve <= n_ctx {
        return Ok(Fitted { ids, n_system, first_kept: n_system });
    }
    // Where a kept tail may start: each user message after the system ones,
    // else (no user turn to start at) any message; never past the last one.
    let last = messages.len().saturating_sub(1).max(n_system);
    let mut starts: Vec<usize> = (n_system + 1..=last).filter(|&i| messages[i].role == "user").collect();
    if starts.is_empty() {
        starts = (n_system + 1..=last).collect();
    }
    if starts.is_empty() {
        return Err(Error::ContextFull { needed: ids.len() + reserve, n_ctx });
    }
    // Token offsets of a tail's start in the whole prompt: the rendering of
    // the messages before it (templates render a conversation turn by turn).
    let head = if n_system == 0 { 0 } else { encode(&messages[..n_system])?.len() };
    // Drop at least the excess, rounded up to whole blocks of a quarter of the turns' space.
    let block = (n_ctx.saturating_sub(head) / 4).max(1);
    let excess = ids.len() + reserve - n_ctx;
    let target = head + excess.div_ceil(block) * block;
    // The first start at or past `target` (offsets grow with the index).
    let (mut lo, mut hi) = (0, starts.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        // A prefix the template refuses to render counts as short: the check below decides.
        if encode(&messages[..starts[mid]]).map_or(0, |v| v.len()) >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // Offsets are the template's, not a promise: check the kept prompt and
    // move on while it still does not fit.
    let mut best = None;
    for &start in &starts[lo.min(starts.len() - 1)..] {
        let fitted = Fitted { ids: Vec::new(), n_system, first_kept: start };
        let ids = encode(&fitted.kept(messages))?;
        let fits = ids.len() + reserve <= n_ctx;
        best = Some((Fitted { ids, ..fitted }, fits));
        if fits {
            break;
        }
    }
    match best {
        Some((f, true)) => {
            log::info!("context shift: {} oldest messages dropped, {} tokens kept of {n_ctx}", f.dropped(), f.ids.len());
            Ok(f)
        }
        Some((f, false)) => Err(Error::ContextFull { needed: f.ids.len() + reserve, n_ctx }),
        None => Err(Error::ContextFull { needed: ids.len() + reserve, n_ctx }),
    }
}

/// [`fit_conversation`] for a conversation rendered with `template` (no tools).
pub fn fit_chat(template: &ChatTemplate, tok: &Tokenizer, messages: &[ChatMessage], n_ctx: usize, reserve: usize) -> Result<Fitted> {
    fit_conversation(messages, n_ctx, reserve, |m| encode_prompt(tok, &template.render(m, true)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in template: 1 token of BOS, then per message a role token and
    /// one token per byte of content, then 1 token opening the answer.
    fn encode(msgs: &[ChatMessage]) -> Result<Vec<u32>> {
        let mut v = vec![0];
        for m in msgs {
            v.push(1);
            v.extend(m.content.bytes().map(u32::from));
        }
        v.push(2);
        Ok(v)
    }

    fn conversation(system: bool, turns: usize, len: usize) -> Vec<ChatMessage> {
        let mut v: Vec<ChatMessage> = system.then(|| ChatMessage::system("s".repeat(10))).into_iter().collect();
        for i in 0..turns {
            v.push(ChatMessage::user(format!("{i:0len$}")));
            v.push(ChatMessage::assistant("a".repeat(len)));
        }
        v.push(ChatMessage::user("q".repeat(len)));
        v
    }

    #[test]
    fn a_conversation_that_fits_is_kept_whole() {
        let msgs = conversation(true, 3, 5);
        let f = fit_conversation(&msgs, 100, 10, encode).unwrap();
        assert_eq!(f.dropped(), 0);
        assert_eq!(f.ids, encode(&msgs).unwrap());
        assert_eq!(f.kept(&msgs), msgs);
    }

    #[test]
    fn the_oldest_turns_go_first_and_the_system_message_stays() {
        let msgs = conversation(true, 20, 9); // 13 + 40 * 10 tokens + 10
        let (n_ctx, reserve) = (128, 16);
        let f = fit_conversation(&msgs, n_ctx, reserve, encode).unwrap();
        let kept = f.kept(&msgs);
        assert_eq!(kept[0], msgs[0], "the system message is kept");
        assert_eq!(kept.last(), msgs.last(), "the new turn is kept");
        assert_eq!(kept[1].role, "user", "the kept turns start at a user turn");
        assert_eq!(&msgs[f.first_kept..], &kept[1..], "the newest turns, contiguous");
        assert!(f.ids.len() + reserve <= n_ctx);
        assert_eq!(f.ids, encode(&kept).unwrap());
        assert!(f.dropped() > 0 && f.dropped() % 2 == 0, "whole user/assistant pairs: {}", f.dropped());
    }

    #[test]
    fn a_shift_frees_a_block_so_the_next_turns_keep_the_same_start() {
        // Growing the conversation one turn at a time (as an OpenAI client
        // sends it), the kept tail's start moves only every few turns: the
        // prompt of one request is then a prefix of the next one's.
        let (n_ctx, reserve) = (256, 16);
        let mut starts = Vec::new();
        for turns in 0..60 {
            let msgs = conversation(true, turns, 9);
            let f = fit_conversation(&msgs, n_ctx, reserve, encode).unwrap();
            assert!(f.ids.len() + reserve <= n_ctx);
            starts.push(f.first_kept);
        }
        // A block here is 60 tokens, 3 turns of 20: a move every third turn.
        let moves: Vec<usize> = (1..starts.len()).filter(|&i| starts[i] != starts[i - 1]).collect();
        assert!(moves.len() > 10, "the conversation outgrew the context: {starts:?}");
        assert!(moves.windows(2).all(|w| w[1] - w[0] >= 3), "the start moved every turn or two: {starts:?}");
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "never back: {starts:?}");
    }

    #[test]
    fn without_a_system_message_the_oldest_turns_still_go() {
        let msgs = conversation(false, 20, 9);
        let f = fit_conversation(&msgs, 128, 16, encode).unwrap();
        assert_eq!(f.n_system, 0);
        assert!(f.first_kept > 0 && msgs[f.first_kept].role == "user");
        assert!(f.ids.len() + 16 <= 128);
    }

    #[test]
    fn a_last_turn_too_long_for_the_context_is_an_error() {
        let mut msgs = conversation(true, 2, 5);
        msgs.push(ChatMessage::assistant("x"));
        msgs.push(ChatMessage::user("y".repeat(200)));
        assert!(matches!(fit_conversation(&msgs, 128, 16, encode), Err(Error::ContextFull { n_ctx: 128, .. })));
        let lone = vec![ChatMessage::user("y".repeat(200))];
        assert!(matches!(fit_conversation(&lone, 128, 16, encode), Err(Error::ContextFull { .. })));
    }

    #[test]
    fn answer_reserve_is_max_tokens_up_to_a_quarter() {
        assert_eq!(answer_reserve(256, 16), 16);
        assert_eq!(answer_reserve(256, 1024), 64);
        assert_eq!(answer_reserve(256, 0), 1);
    }
}
