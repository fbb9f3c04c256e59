//! Our tokenizer as llguidance's `TokenizerEnv`: each token's bytes (what it
//! detokenizes to) in a `TokTrie`, and text → ids for the grammar's own use.

use std::sync::Arc;

use llguidance::toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub(super) struct EmberTokEnv {
    tok: Arc<Tokenizer>,
    trie: TokTrie,
}

impl EmberTokEnv {
    pub(super) fn new(tok: Arc<Tokenizer>, n_vocab: usize) -> Result<EmberTokEnv> {
        let n_vocab = n_vocab.max(tok.n_vocab());
        let words: Vec<Vec<u8>> = (0..n_vocab as u32).map(|id| token_bytes(&tok, id)).collect();
        let eog: Vec<TokenId> = tok.eog_ids().into_iter().filter(|&id| (id as usize) < n_vocab).collect();
        let Some(&eos) = eog.first() else {
            return Err(Error::InvalidConstraint("the model has no end-of-generation token, so a constraint could never end".into()));
        };
        let mut info = TokRxInfo::new(n_vocab as u32, eos);
        info.tok_bos = tok.bos();
        info.tok_unk = tok.unk();
        info.tok_end_of_turn = tok.eot();
        // Any of the model's end tokens ends a constrained generation.
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        Ok(EmberTokEnv { tok, trie })
    }
}

/// A token's bytes for the trie: its text for normal, byte and user-defined
/// tokens; control and unknown tokens (`<|im_end|>`, `<unk>`) are "special":
/// llguidance's marker byte 0xFF and their name, so no text can spell them;
/// padding rows past the tokenizer are empty (never allowed).
fn token_bytes(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let piece = tok.token_to_piece(id).unwrap_or_default();
    if !piece.is_empty() {
        return piece;
    }
    match tok.token_text(id) {
        Some(name) if !name.is_empty() => {
            let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
            b.extend_from_slice(name.as_bytes());
            b
        }
        _ => Vec::new(),
    }
}

impl TokenizerEnv for EmberTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) if self.tokenize_is_canonical() => self.tok.encode(text, false, false).unwrap_or_default(),
            _ => self.trie.greedy_tokenize(s),
        }
    }

    /// llguidance forces whole tokens (JSON keys, literals) by tokenizing the
    /// forced bytes; that is only right when our encoding of a piece of text
    /// is what the model would produce mid-output. SentencePiece with a
    /// space prefix encodes "{" as "▁{": there the forced bytes are left to
    /// the mask instead.
    fn tokenize_is_canonical(&self) -> bool {
        !self.tok.add_space_prefix()
    }
}
