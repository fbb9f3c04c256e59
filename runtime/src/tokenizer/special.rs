//! Special tokens, as llama.cpp's `llama_vocab::impl::load` finds them: the
//! BOS/EOS/EOT/EOM/UNK/FIM ids (model defaults, then the GGUF keys, then
//! detection by token text), whether BOS/EOS are added, the end-of-generation
//! set, and the list `encode` splits special tokens out by.

use std::collections::HashSet;

use super::{attr, tok_err, TokenData};
use crate::gguf::GgufFile;
use crate::Result;

const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Only texts starting with one of these bytes can be on the lists above, so
/// the scans over the whole vocabulary skip the rest cheaply.
fn candidate(t: &str) -> bool {
    matches!(t.as_bytes().first(), Some(b'<' | b'[' | b'_'))
}

/// The special ids of a vocabulary.
pub(super) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// The model's default ids (disabled when out of range for a vocabulary of
/// `n`), each overridden by its `tokenizer.ggml.*_token_id` key when that is
/// in range (out of range: a warning, and the default stays).
pub(super) fn read_ids(g: &GgufFile, n: usize, bos: Option<u32>, eos: Option<u32>, unk: Option<u32>) -> Result<SpecialIds> {
    let in_range = |id: Option<u32>| id.filter(|&x| (x as usize) < n);
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
    Ok(SpecialIds {
        bos: key_id("tokenizer.ggml.bos_token_id", in_range(bos))?,
        eos: key_id("tokenizer.ggml.eos_token_id", in_range(eos))?,
        eot: key_id("tokenizer.ggml.eot_token_id", None)?,
        eom: key_id("tokenizer.ggml.eom_token_id", None)?,
        unk: key_id("tokenizer.ggml.unknown_token_id", in_range(unk))?,
        fim_pad: key_id("tokenizer.ggml.fim_pad_token_id", None)?,
        fim_rep: key_id("tokenizer.ggml.fim_rep_token_id", None)?,
        fim_sep: key_id("tokenizer.ggml.fim_sep_token_id", None)?,
    })
}

/// `tokenizer.ggml.add_bos_token` / `add_eos_token` over the model's
/// defaults; asking for a token the vocabulary lacks is an error.
pub(super) fn read_add_flags(g: &GgufFile, ids: &SpecialIds, mut add_bos: bool, mut add_eos: bool) -> Result<(bool, bool)> {
    if let Some(v) = g.bool_opt("tokenizer.ggml.add_bos_token")? {
        add_bos = v;
    }
    if let Some(v) = g.bool_opt("tokenizer.ggml.add_eos_token")? {
        add_eos = v;
    }
    if add_bos && ids.bos.is_none() {
        return Err(tok_err("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set"));
    }
    if add_eos && ids.eos.is_none() {
        return Err(tok_err("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set"));
    }
    Ok((add_bos, add_eos))
}

/// Fills the EOT/EOM/FIM ids no key set from well-known token texts, and
/// marks what it finds CONTROL. llama.cpp does this in hash-map order; we go
/// by id, which only matters for vocabularies with several candidates.
pub(super) fn detect_by_text(toks: &mut [TokenData], ids: &mut SpecialIds) {
    let lists: [&[&str]; 5] = [EOT_TEXTS, &["<|eom_id|>"], FIM_PAD_TEXTS, FIM_REP_TEXTS, FIM_SEP_TEXTS];
    for id in 0..toks.len() as u32 {
        let t = toks[id as usize].text.as_str();
        if !candidate(t) {
            continue;
        }
        let slot = match lists.iter().position(|l| l.contains(&t)) {
            Some(0) => &mut ids.eot,
            Some(1) => &mut ids.eom,
            Some(2) => &mut ids.fim_pad,
            Some(3) => &mut ids.fim_rep,
            Some(4) => &mut ids.fim_sep,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(id);
            toks[id as usize].attr |= attr::CONTROL;
        }
    }
}

/// Control tokens named "...unused..." (Gemma's reserved slots) are UNUSED too.
pub(super) fn mark_unused(toks: &mut [TokenData]) {
    for td in toks.iter_mut() {
        if td.attr & attr::CONTROL != 0 && td.text.contains("unused") {
            td.attr |= attr::UNUSED;
        }
    }
}

/// The end-of-generation set: the FIM ids, every token with an EOG text
/// (marked CONTROL), EOS/EOT/EOM; then llama.cpp's two exceptions, below.
pub(super) fn eog_set(toks: &mut [TokenData], ids: &SpecialIds) -> HashSet<u32> {
    let mut eog: HashSet<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep].into_iter().flatten().collect();
    for id in 0..toks.len() as u32 {
        let t = toks[id as usize].text.as_str();
        if candidate(t) && EOG_TEXTS.contains(&t) {
            eog.insert(id);
            toks[id as usize].attr |= attr::CONTROL;
        }
    }
    eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
    let find_eog = |toks: &[TokenData], eog: &HashSet<u32>, texts: &[&str]| {
        eog.iter().copied().find(|&i| texts.contains(&toks[i as usize].text.as_str()))
    };
    // gpt-oss (harmony): `<|end|>` ends a message, not the generation, when
    // `<|return|>` / `<|call|>` / `<|flush|>` are there to end it.
    if let Some(end) = find_eog(toks, &eog, &["<|end|>"]) {
        let has = |t: &[&str]| find_eog(toks, &eog, t).is_some();
        if (has(&["<|return|>"]) && has(&["<|call|>", "<|calls|>"])) || (has(&["<|call|>", "<|calls|>"]) && has(&["<|flush|>"])) {
            eog.remove(&end);
            toks[end as usize].attr = attr::USER_DEFINED;
        }
    }
    // With `<|tool_response>` in the vocabulary, `</s>` is ordinary text.
    if let (Some(s), Some(_)) = (find_eog(toks, &eog, &["</s>"]), find_eog(toks, &eog, &["<|tool_response>"])) {
        eog.remove(&s);
        toks[s as usize].attr = attr::NORMAL;
    }
    eog
}

/// CONTROL / USER_DEFINED / UNKNOWN ids, longest text first: the order
/// `encode` splits them out of the text in.
pub(super) fn special_cache(toks: &[TokenData]) -> Vec<u32> {
    let mut cache: Vec<u32> =
        (0..toks.len() as u32).filter(|&i| toks[i as usize].attr & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0).collect();
    cache.sort_by(|&a, &b| toks[b as usize].text.len().cmp(&toks[a as usize].text.len()));
    cache
}
