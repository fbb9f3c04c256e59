//! Tokenizers that reproduce llama.cpp exactly (src/llama-vocab.cpp, src/unicode.cpp):
//! SentencePiece-style score merges with byte fallback (`tokenizer.ggml.model = "llama"`) and
//! GPT-2 byte-level BPE with per-model pre-tokenizers (`"gpt2"`).
//!
//! Encoding first partitions the text on special tokens (user-defined ones always, control ones
//! only with `parse_special`), then runs the model algorithm on each raw fragment.

mod bpe;
pub mod pretokenize;
mod spm;
mod stream;
mod unicode;
mod unicode_tables;

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

const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
];
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

enum Frag {
    Token(u32),
    Raw(usize, usize),
}

fn tok_err(msg: impl Into<String>) -> Error {
    Error::Tokenizer(msg.into())
}

impl Tokenizer {
    /// Load the vocabulary from GGUF metadata, with llama.cpp's defaults and auto-detection.
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let model_name = g.str_opt("tokenizer.ggml.model")?.ok_or_else(|| tok_err("missing tokenizer.ggml.model"))?;
        let pre = g.str_opt("tokenizer.ggml.pre")?.unwrap_or("").to_string();
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

        let mut merges = bpe::Merges::default();
        let (model, mut bos, mut eos, mut unk);
        let (mut add_bos, mut add_eos, mut add_space_prefix, mut ignore_merges, mut clean_spaces) =
            (false, false, false, false, false);
        let mut pre_kind = PreKind::Default;
        match model_name {
            "llama" => {
                model = Model::Spm;
                (bos, eos, unk) = (Some(1), Some(2), Some(0));
                add_space_prefix = true;
                add_bos = true;
            }
            "gpt2" => {
                model = Model::Bpe;
                let m = g
                    .str_array("tokenizer.ggml.merges")?
                    .ok_or_else(|| tok_err("cannot find tokenizer merges in model file"))?;
                merges = bpe::Merges::from_strings(&m);
                (bos, eos, unk) = (Some(11), Some(11), None);
                let info = pretokenize::pre_info(&pre);
                if !info.known {
                    log::warn!("unsupported pre-tokenizer '{pre}', using 'default' (tokenization may differ from llama.cpp)");
                }
                pre_kind = info.kind;
                ignore_merges = info.ignore_merges;
                clean_spaces = info.clean_spaces;
                if let Some(b) = info.add_bos {
                    add_bos = b;
                }
                if info.no_bos {
                    bos = None;
                }
            }
            other => return Err(tok_err(format!("unsupported tokenizer model '{other}' (supported: llama, gpt2)"))),
        }
        if let Some(v) = g.bool_opt("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        let mut toks = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { t.to_string() };
            if token_to_id.contains_key(&text) {
                log::warn!("duplicate token in vocabulary: '{text}' (id {i}); keeping the first");
            } else {
                token_to_id.insert(text.clone(), i as u32);
            }
            let score = scores.as_ref().map_or(0.0, |s| s[i]);
            let attr = types.as_ref().map_or(attr::NORMAL, |t| attr_from_type(t[i]));
            toks.push(TokenData { text, score, attr });
        }
        drop(tokens);

        // special ids: defaults out of range are disabled; keys override when in range
        let in_range = |id: Option<u32>| id.filter(|&x| (x as usize) < n);
        (bos, eos, unk) = (in_range(bos), in_range(eos), in_range(unk));
        let key_id = |key: &str, cur: Option<u32>| -> Result<Option<u32>> {
            match g.i64_opt(key)? {
                Some(v) if v >= 0 && (v as usize) < n => Ok(Some(v as u32)),
                Some(v) => {
                    log::warn!("bad special token {key} = {v}, using default");
                    Ok(cur)
                }
                None => Ok(cur),
            }
        };
        bos = key_id("tokenizer.ggml.bos_token_id", bos)?;
        eos = key_id("tokenizer.ggml.eos_token_id", eos)?;
        let mut eot = key_id("tokenizer.ggml.eot_token_id", None)?;
        let mut eom = key_id("tokenizer.ggml.eom_token_id", None)?;
        unk = key_id("tokenizer.ggml.unknown_token_id", unk)?;
        let mut fim_pad = key_id("tokenizer.ggml.fim_pad_token_id", None)?;
        let mut fim_rep = key_id("tokenizer.ggml.fim_rep_token_id", None)?;
        let mut fim_sep = key_id("tokenizer.ggml.fim_sep_token_id", None)?;

        if let Some(v) = g.bool_opt("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = g.bool_opt("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            return Err(tok_err("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set"));
        }
        if add_eos && eos.is_none() {
            return Err(tok_err("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set"));
        }

        // auto-detect special tokens by their text (llama.cpp does this in hash-map order; we go
        // by id, which only matters for vocabularies with several candidates)
        let mark_control = |toks: &mut Vec<TokenData>, id: u32| {
            toks[id as usize].attr |= attr::CONTROL;
        };
        // (only texts starting with one of these bytes can be on the lists)
        let candidate = |t: &str| matches!(t.as_bytes().first(), Some(b'<' | b'[' | b'_'));
        for id in 0..n as u32 {
            let t = toks[id as usize].text.as_str();
            if !candidate(t) {
                continue;
            }
            let lists: [&[&str]; 5] = [EOT_TEXTS, &["<|eom_id|>"], FIM_PAD_TEXTS, FIM_REP_TEXTS, FIM_SEP_TEXTS];
            let hit = lists.iter().position(|l| l.contains(&t));
            let slot = match hit {
                Some(0) => &mut eot,
                Some(1) => &mut eom,
                Some(2) => &mut fim_pad,
                Some(3) => &mut fim_rep,
                Some(4) => &mut fim_sep,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(id);
                mark_control(&mut toks, id);
            }
        }
        for td in toks.iter_mut() {
            if td.attr & attr::CONTROL != 0 && td.text.contains("unused") {
                td.attr |= attr::UNUSED;
            }
        }
        let mut eog: HashSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for td in toks.iter_mut() {
            let t = td.text.as_str();
            if matches!(t, "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>") {
                td.attr = attr::USER_DEFINED;
            }
        }
        for id in 0..n as u32 {
            let t = toks[id as usize].text.as_str();
            if candidate(t) && EOG_TEXTS.contains(&t) {
                eog.insert(id);
                mark_control(&mut toks, id);
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        let find_eog = |toks: &[TokenData], eog: &HashSet<u32>, texts: &[&str]| {
            eog.iter().copied().find(|&i| texts.contains(&toks[i as usize].text.as_str()))
        };
        if let Some(end) = find_eog(&toks, &eog, &["<|end|>"]) {
            let has = |t: &[&str]| find_eog(&toks, &eog, t).is_some();
            if (has(&["<|return|>"]) && has(&["<|call|>", "<|calls|>"])) || (has(&["<|call|>", "<|calls|>"]) && has(&["<|flush|>"])) {
                eog.remove(&end);
                toks[end as usize].attr = attr::USER_DEFINED;
            }
        }
        if let (Some(s), Some(_)) = (find_eog(&toks, &eog, &["</s>"]), find_eog(&toks, &eog, &["<|tool_response>"])) {
            eog.remove(&s);
            toks[s as usize].attr = attr::NORMAL;
        }

        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&i| toks[i as usize].attr & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        special_cache.sort_by(|&a, &b| toks[b as usize].text.len().cmp(&toks[a as usize].text.len()));

        // per-model strip attributes (llama.cpp sets these by model / pre-tokenizer name)
        let name = g.str_opt("general.name").ok().flatten().unwrap_or("").to_lowercase();
        let arch = g.str_opt("general.architecture").ok().flatten().unwrap_or("");
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].iter().any(|s| pre.contains(s))
            || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|s| arch.contains(s))
        {
            if let Some(&id) = token_to_id.get("<mask>") {
                toks[id as usize].attr |= attr::LSTRIP;
            }
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_cache {
                toks[id as usize].attr |= attr::RSTRIP;
            }
            if let Some(&id) = token_to_id.get("</s>") {
                toks[id as usize].attr |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = token_to_id.get(t) {
                    toks[id as usize].attr &= !attr::RSTRIP;
                }
            }
        }

        let byte_tokens = (0..=255u8)
            .map(|b| {
                token_to_id.get(format!("<0x{b:02X}>").as_str()).copied().or_else(|| {
                    if b < 0x80 {
                        token_to_id.get(std::str::from_utf8(&[b]).unwrap()).copied()
                    } else {
                        None
                    }
                })
            })
            .collect();

        let chat_template = g.str_opt("tokenizer.chat_template").ok().flatten().map(str::to_string);
        Ok(Tokenizer {
            model,
            model_name: model_name.to_string(),
            pre,
            pre_kind,
            tokens: toks,
            token_to_id,
            merges,
            bos,
            eos,
            eot,
            eom,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
            ignore_merges,
            clean_spaces,
            special_cache,
            eog,
            byte_tokens,
            byte_to_char: bpe::byte_to_char_table(),
            char_to_byte: bpe::char_to_byte_table(),
            chat_template,
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
                            spm::spm_tokenize(&t, &|p| self.lookup(p), &score, &byte, &mut out).map_err(|b| {
                                tok_err(format!("byte 0x{b:02X} has no token and the vocabulary has no <unk>"))
                            })?;
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

