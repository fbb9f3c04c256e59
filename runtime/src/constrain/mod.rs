//! Constrained generation: a JSON schema, "any JSON object", a regex or a
//! grammar (llguidance's Lark syntax or llama.cpp's GBNF) applied to the
//! logits as a token mask before sampling.
//!
//! The work is llguidance's (an Earley parser over a lexer of regex
//! automata, walking a trie of the vocabulary's token bytes to find the
//! allowed tokens); this module adapts our tokenizer to it ([`vocab`]),
//! translates GBNF ([`gbnf`]) and gives a session what it needs per token:
//! [`TokenMask::apply`] before sampling, [`TokenMask::accept`] after.

pub mod gbnf;
mod vocab;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::TokEnv;
use llguidance::{Matcher, ParserFactory};

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// What the generated text must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// A JSON schema (its JSON text). Output is compact JSON (`", "` and
    /// `": "` separators, no free whitespace) unless the schema's
    /// `x-guidance` object says otherwise.
    JsonSchema(String),
    /// Any JSON object.
    JsonObject,
    /// A regular expression (Rust `regex` syntax) the whole output matches.
    Regex(String),
    /// A grammar: llama.cpp's GBNF (`root ::= …`) or llguidance's Lark
    /// syntax (`start: …`), told apart by `::=`.
    Grammar(String),
}

impl Constraint {
    /// A short name for logs and stats.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::JsonSchema(_) => "json_schema",
            Constraint::JsonObject => "json_object",
            Constraint::Regex(_) => "regex",
            Constraint::Grammar(g) if gbnf::looks_like_gbnf(g) => "gbnf",
            Constraint::Grammar(_) => "lark",
        }
    }

    fn to_grammar(&self) -> Result<TopLevelGrammar> {
        let bad = |what: &str, e: String| Error::InvalidConstraint(format!("{what}: {e}"));
        Ok(match self {
            Constraint::JsonSchema(text) => {
                let mut schema: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| bad("the JSON schema is not JSON", e.to_string()))?;
                match &mut schema {
                    serde_json::Value::Object(map) => {
                        // Small models given free whitespace tend to emit it forever.
                        map.entry("x-guidance").or_insert_with(
                            || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
                        );
                    }
                    serde_json::Value::Bool(_) => {}
                    _ => return Err(bad("invalid JSON schema", "a schema is an object or a boolean".into())),
                }
                TopLevelGrammar::from_json_schema(schema)
            }
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(serde_json::json!({
                "type": "object",
                "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}
            })),
            Constraint::Regex(rx) => {
                if rx.is_empty() {
                    return Err(bad("invalid regex", "it is empty".into()));
                }
                TopLevelGrammar::from_regex(rx)
            }
            Constraint::Grammar(g) if g.trim().is_empty() => return Err(bad("invalid grammar", "it is empty".into())),
            Constraint::Grammar(g) if gbnf::looks_like_gbnf(g) => {
                TopLevelGrammar::from_lark(gbnf::gbnf_to_lark(g).map_err(|e| bad("invalid GBNF grammar", e))?)
            }
            Constraint::Grammar(g) => TopLevelGrammar::from_lark(g.clone()),
        })
    }
}

/// The vocabulary as llguidance sees it, made once per engine (a trie of
/// every token's bytes: tens of milliseconds for a 150k vocabulary).
pub struct Grammars {
    factory: ParserFactory,
    n_vocab: usize,
}

impl Grammars {
    /// `n_vocab` is the model's logit count (it may exceed the tokenizer's).
    pub fn new(tok: Arc<Tokenizer>, n_vocab: usize) -> Result<Grammars> {
        let env: TokEnv = Arc::new(vocab::EmberTokEnv::new(tok, n_vocab)?);
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::InvalidConstraint(format!("token trie: {e}")))?;
        // Warnings about the grammar go to our log, not to stderr.
        factory.quiet();
        Ok(Grammars { factory, n_vocab })
    }

    /// A fresh mask for one generation; the constraint is compiled here, so
    /// a bad schema or grammar fails before any token is evaluated.
    pub fn mask(&self, c: &Constraint) -> Result<TokenMask> {
        let grammar = c.to_grammar()?;
        let parser = self.factory.create_parser(grammar).map_err(|e| Error::InvalidConstraint(format!("invalid {}: {e}", c.kind())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::InvalidConstraint(format!("invalid {}: {e}", c.kind())));
        }
        Ok(TokenMask { matcher, n_vocab: self.n_vocab })
    }
}

/// One generation's constraint state.
pub struct TokenMask {
    matcher: Matcher,
    n_vocab: usize,
}

impl TokenMask {
    /// Sets every logit the constraint forbids to -inf. End-of-generation
    /// tokens are allowed exactly when the constraint can end here.
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.matcher.compute_mask_or_eos().map_err(|e| self.failed(e.to_string()))?;
        if mask.num_set() == 0 {
            return Err(self.failed("no token can continue the constrained output".into()));
        }
        let n = logits.len().min(self.n_vocab);
        mask.iter_unset_entries(|i| {
            if i < n {
                logits[i] = f32::NEG_INFINITY;
            }
        });
        // Logits past the vocabulary llguidance knows (padding rows) are never allowed.
        for l in logits.iter_mut().skip(mask.len()) {
            *l = f32::NEG_INFINITY;
        }
        Ok(())
    }

    /// Advances the constraint by the sampled token.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(|e| self.failed(e.to_string()))
    }

    /// True when the constraint is complete and allows nothing but the end.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }

    fn failed(&self, e: String) -> Error {
        Error::InvalidConstraint(format!("constrained decoding failed: {e}"))
    }
}

#[cfg(test)]
mod tests;
