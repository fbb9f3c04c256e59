//! Tokenizers that reproduce llama.cpp exactly (src/llama-vocab.cpp, src/unicode.cpp):
//! SentencePiece-style score merges with byte fallback (`tokenizer.ggml.model = "llama"`) and
//! GPT-2 byte-level BPE with per-model pre-tokenizers (`"gpt2"`).
//!
//! Encoding first partitions the text on special tokens (user-defined ones always, control ones
//! only with `parse_special`), then runs the model algorithm on each raw fragment.

mod bpe;
mod detect;
pub mod pretokenize;
mod quirks;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_tables;
mod vocab;

use std::collections::{HashMap, HashSet};

pub use pretokenize::PreKind;
pub use stream::StreamDecoder;

use crate::gguf::GgufFile;
use crate::{Error, Result};

/// Token attributes (llama.cpp `llama_token_attr`).
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Spm,
    Bpe,
}

struct TokenData {
    text: String,
    score: f32,
    attr: u32,
}

/// A vocabulary plus the algorithm llama.cpp would use for it.
pub struct Tokenizer {
    model: Model,
    model_name: String,
    pre: String,
    pre_kind: PreKind,
    tokens: Vec<TokenData>,
    token_to_id: HashMap<String, u32>,
    merges: bpe::Merges,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    ignore_merges: bool,
    clean_spaces: bool,
    /// CONTROL / USER_DEFINED / UNKNOWN ids, longest text first.
    special_cache: Vec<u32>,
    eog: HashSet<u32>,
    /// SPM byte fallback: `<0xXX>` (or the single-byte string) for every byte.
    byte_tokens: Vec<Option<u32>>,
    byte_to_char: [char; 256],
    char_to_byte: Vec<Option<u8>>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model_name)
            .field("pre", &self.pre)
            .field("n_vocab", &self.tokens.len())
            .field("n_merges", &self.merges.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("add_space_prefix", &self.add_space_prefix)
            .finish_non_exhaustive()
    }
}

enum Frag {
    Token(u32),
    Raw(usize, usize),
}

fn tok_err(msg: impl Into<String>) -> Error {
    Error::Tokenizer(msg.into())
}

impl Tokenizer {
    /// Load the vocabulary from GGUF metadata, with llama.cpp's defaults and auto-detection.
    /// The steps run in llama.cpp's order: later ones read and overwrite the token attributes
    /// earlier ones set (the EOG set's exceptions, the strip flags over `special_cache`).
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let model_name = g.str_opt("tokenizer.ggml.model")?.ok_or_else(|| tok_err("missing tokenizer.ggml.model"))?;
        let pre = g.str_opt("tokenizer.ggml.pre")?.unwrap_or("").to_string();
        let raw = vocab::RawVocab::read(g)?;
        let cfg = detect::detect(g, model_name, &pre)?;
        let (mut toks, token_to_id) = raw.build();

        let mut ids = special::read_ids(g, toks.len(), cfg.bos, cfg.eos, cfg.unk)?;
        let (add_bos, add_eos) = special::read_add_flags(g, &ids, cfg.add_bos, false)?;
        special::detect_by_text(&mut toks, &mut ids);
        special::mark_unused(&mut toks);
        quirks::harmony_user_defined(&mut toks);
        let eog = special::eog_set(&mut toks, &ids);
        let special_cache = special::special_cache(&toks);
        quirks::strip_attributes(g, &pre, &mut toks, &token_to_id, &special_cache);

        Ok(Tokenizer {
            model: cfg.model,
            model_name: model_name.to_string(),
            pre,
            pre_kind: cfg.pre_kind,
            tokens: toks,
            merges: cfg.merges,
            bos: ids.bos,
            eos: ids.eos,
            eot: ids.eot,
            eom: ids.eom,
            unk: ids.unk,
            add_bos,
            add_eos,
            add_space_prefix: cfg.add_space_prefix,
            ignore_merges: cfg.ignore_merges,
            clean_spaces: cfg.clean_spaces,
            special_cache,
            eog,
            byte_tokens: vocab::byte_tokens(&token_to_id),
            token_to_id,
            byte_to_char: bpe::byte_to_char_table(),
            char_to_byte: bpe::char_to_byte_table(),
            chat_template: g.str_opt("tokenizer.chat_template").ok().flatten().map(str::to_string),
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    /// End-of-turn token (`tokenizer.ggml.eot_token_id` or auto-detected).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS / appends EOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.eog.iter().copied().collect();
        v.sort_unstable();
        v
    }
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| t.text.as_str())
    }
    /// The id of a token by its exact vocabulary text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
    /// Token attributes ([`attr`] bits), `None` for a bad id.
    pub fn token_attr(&self, id: u32) -> Option<u32> {
        self.tokens.get(id as usize).map(|t| t.attr)
    }
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.tokens.get(id as usize).map(|t| t.score)
    }
    /// Whether a token is CONTROL (or UNKNOWN): it detokenizes to nothing.
    pub fn is_control(&self, id: u32) -> bool {
        self.tokens.get(id as usize).is_some_and(|t| t.attr & (attr::CONTROL | attr::UNKNOWN) != 0)
    }
    /// `tokenizer.ggml.model` ("gpt2" / "llama").
    pub fn kind(&self) -> &str {
        &self.model_name
    }
    /// `tokenizer.ggml.pre` as stored ("" when absent).
    pub fn pre(&self) -> &str {
        &self.pre
    }
    pub fn pre_kind(&self) -> PreKind {
        self.pre_kind
    }
    pub fn n_merges(&self) -> usize {
        self.merges.len()
    }
    /// SPM: a space is put before the text (and taken off the first decoded token).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }
    /// Decode cleans up spaces before punctuation and contractions (llama.cpp's `clean_spaces`).
    pub fn clean_spaces(&self) -> bool {
        self.clean_spaces
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    #[inline]
    fn lookup(&self, s: &str) -> Option<u32> {
        self.token_to_id.get(s).copied()
    }

    /// llama.cpp `tokenizer_st_partition`: split out special tokens, longest first.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Frag::Raw(0, text.len()));
        let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
        for &id in &self.special_cache {
            let td = &self.tokens[id as usize];
            if !parse_special && td.attr & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let t = td.text.as_str();
            if !frags.iter().any(|f| matches!(*f, Frag::Raw(s, e) if text[s..e].contains(t))) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Frag::Raw(mut s, e) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(m) = text[s..e].find(t).map(|m| m + s) {
                    let mut le = m;
                    if td.attr & attr::LSTRIP != 0 {
                        while le > s && is_space(text.as_bytes()[le - 1]) {
                            le -= 1;
                        }
                    }
                    if le > s {
                        next.push(Frag::Raw(s, le));
                    }
                    next.push(Frag::Token(id));
                    s = m + t.len();
                    if td.attr & attr::RSTRIP != 0 {
                        while s < e && is_space(text.as_bytes()[s]) {
                            s += 1;
                        }
                    }
                }
                if s < e {
                    next.push(Frag::Raw(s, e));
                }
            }
            frags = next;
        }
        frags
    }

    /// Tokenize like `llama_tokenize(vocab, text, add_special, parse_special)`.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let frags = self.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.push(self.bos.ok_or_else(|| tok_err("add_bos is set but there is no BOS token"))?);
        }
        match self.model {
            Model::Spm => {
                let mut prev_special = true;
                let score = |id: u32| self.tokens[id as usize].score;
                let unk = self.unk;
                let byte = |b: u8| self.byte_tokens[b as usize].or(unk);
                for f in &frags {
                    match *f {
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Frag::Raw(s, e) => {
                            let mut t = String::with_capacity(e - s + 8);
                            if self.add_space_prefix && prev_special {
                                t.push(' ');
                            }
                            t.push_str(&text[s..e]);
                            let t = t.replace(' ', "\u{2581}");
                            spm::spm_tokenize(&t, &|p| self.lookup(p), &score, &byte, &mut out)
                                .map_err(|b| tok_err(format!("byte 0x{b:02X} has no token and the vocabulary has no <unk>")))?;
                            prev_special = false;
                        }
                    }
                }
            }
            Model::Bpe => {
                let mut word = String::new();
                for f in &frags {
                    match *f {
                        Frag::Token(id) => out.push(id),
                        Frag::Raw(s, e) => {
                            for piece in pretokenize::split(self.pre_kind, &text[s..e]) {
                                word.clear();
                                for b in piece.bytes() {
                                    word.push(self.byte_to_char[b as usize]);
                                }
                                bpe::bpe_word(&word, &self.merges, &|p| self.lookup(p), self.ignore_merges, &mut out);
                            }
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(self.eos.ok_or_else(|| tok_err("add_eos is set but there is no EOS token"))?);
        }
        Ok(out)
    }

    fn check(&self, id: u32) -> Result<&TokenData> {
        self.tokens.get(id as usize).ok_or(Error::TokenOutOfVocab { id, n_vocab: self.tokens.len() })
    }

    /// The bytes a token detokenizes to (llama.cpp `token_to_piece`, special = false).
    pub fn token_to_piece(&self, id: u32) -> Result<Vec<u8>> {
        let td = self.check(id)?;
        let a = td.attr;
        if a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Ok(Vec::new());
        }
        if a & attr::USER_DEFINED != 0 {
            return Ok(td.text.as_bytes().to_vec());
        }
        if a & attr::NORMAL != 0 {
            return Ok(match self.model {
                Model::Spm => td.text.replace('\u{2581}', " ").into_bytes(),
                Model::Bpe => self.bpe_decode_text(&td.text),
            });
        }
        if a & attr::BYTE != 0 {
            // "<0xXX>": strtol on the two hex digits
            let b = td.text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
            return Ok(vec![b]);
        }
        Ok(Vec::new())
    }

    /// llama.cpp `llama_decode_text`: GPT-2 byte-decode each codepoint.
    fn bpe_decode_text(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.char_to_byte.get(c as usize).copied().flatten() {
                Some(b) => out.push(b),
                None => {
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out.extend_from_slice(text.as_bytes());
                    out.push(b']');
                }
            }
        }
        out
    }

    /// Detokenize like `llama_detokenize(remove_special = false, unparse_special = false)`:
    /// control tokens vanish; with `add_space_prefix` the first token loses one leading space;
    /// BPE vocabularies with `clean_spaces` get llama.cpp's clean-up of " ." " 's" etc.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let bytes = self.decode_bytes(ids)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// [`decode`](Self::decode) without the final UTF-8 conversion.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut text = Vec::new();
        let mut remove_space = self.add_space_prefix;
        for &id in ids {
            let piece = self.token_to_piece(id)?;
            let p = if remove_space && piece.first() == Some(&b' ') { &piece[1..] } else { &piece[..] };
            text.extend_from_slice(p);
            remove_space = false;
        }
        if self.clean_spaces {
            text = clean_spaces(&text);
        }
        Ok(text)
    }
}

/// llama.cpp's three clean-up passes over the detokenized bytes, ported literally (in place,
/// including its quirk that a removed " ' " leaves a NUL behind that the next step sees).
fn clean_spaces(t: &[u8]) -> Vec<u8> {
    let mut text = t.to_vec();
    let mut total = text.len();
    // pass 1: " ?", " !", " .", " ," lose the space
    let total1 = total;
    total = usize::from(total > 0);
    for i in 1..total1 {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    // pass 2: " ' " -> "'"
    let total2 = total;
    total = usize::from(total > 0);
    let mut i = 1;
    while i < total2 {
        let x = text[i];
        if x == b'\'' && i + 1 < total2 && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    // pass 3: " 's", " 'm", " 're", " 've" lose the space
    let total3 = total;
    total = usize::from(total > 0);
    for i in 1..total3 {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < total3 {
            let x1 = text[i + 1];
            if x1 == b't' || x1 == b'd' {
            } else if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if i + 2 < total3 {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
    text
}
