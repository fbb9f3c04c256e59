//! The vocabulary arrays of a GGUF (`tokenizer.ggml.tokens` / `scores` /
//! `token_type`) turned into [`TokenData`] and a text → id map.

use std::collections::HashMap;

use super::{attr, tok_err, TokenData};
use crate::gguf::GgufFile;
use crate::Result;

/// GGUF `tokenizer.ggml.token_type` values.
fn attr_from_type(t: i64) -> u32 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// The arrays as read and checked, not yet built into tokens: reading and
/// building are two steps so that `from_gguf` can check the model name in
/// between (its error comes before any duplicate-token warning).
pub(super) struct RawVocab<'a> {
    tokens: Vec<&'a str>,
    scores: Option<Vec<f32>>,
    types: Option<Vec<i64>>,
}

impl<'a> RawVocab<'a> {
    pub(super) fn read(g: &'a GgufFile) -> Result<RawVocab<'a>> {
        let tokens = g.str_array("tokenizer.ggml.tokens")?.ok_or_else(|| tok_err("missing tokenizer.ggml.tokens"))?;
        let n = tokens.len();
        if n == 0 {
            return Err(tok_err("empty vocabulary"));
        }
        let scores = g.f32_array("tokenizer.ggml.scores")?;
        let types = g.i64_array("tokenizer.ggml.token_type")?;
        if scores.as_ref().is_some_and(|s| s.len() < n) || types.as_ref().is_some_and(|t| t.len() < n) {
            return Err(tok_err("tokenizer.ggml.scores / token_type shorter than the vocabulary"));
        }
        Ok(RawVocab { tokens, scores, types })
    }

    /// Empty texts become `[EMPTY_<id>]`; of duplicate texts the first id
    /// wins the lookup map.
    pub(super) fn build(self) -> (Vec<TokenData>, HashMap<String, u32>) {
        let n = self.tokens.len();
        let mut toks = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in self.tokens.iter().enumerate() {
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { t.to_string() };
            if token_to_id.contains_key(&text) {
                log::warn!("duplicate token in vocabulary: '{text}' (id {i}); keeping the first");
            } else {
                token_to_id.insert(text.clone(), i as u32);
            }
            let score = self.scores.as_ref().map_or(0.0, |s| s[i]);
            let attr = self.types.as_ref().map_or(attr::NORMAL, |t| attr_from_type(t[i]));
            toks.push(TokenData { text, score, attr });
        }
        (toks, token_to_id)
    }
}

/// SPM byte fallback: the id of `<0xXX>` for every byte, or for ASCII bytes
/// the single-character token when there is no `<0xXX>`.
pub(super) fn byte_tokens(token_to_id: &HashMap<String, u32>) -> Vec<Option<u32>> {
    (0..=255u8)
        .map(|b| {
            token_to_id.get(format!("<0x{b:02X}>").as_str()).copied().or_else(|| {
                if b < 0x80 {
                    token_to_id.get(std::str::from_utf8(&[b]).unwrap()).copied()
                } else {
                    None
                }
            })
        })
        .collect()
}
