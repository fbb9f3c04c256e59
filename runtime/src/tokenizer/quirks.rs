//! Per-model token attribute fixes that llama.cpp hard-codes by model,
//! architecture or pre-tokenizer name rather than reading from the GGUF.

use std::collections::HashMap;

use super::{attr, TokenData};
use crate::gguf::GgufFile;

/// gpt-oss (harmony): its structural markers are USER_DEFINED so they stay
/// visible in the detokenized text, whatever the GGUF says.
pub(super) fn harmony_user_defined(toks: &mut [TokenData]) {
    for td in toks.iter_mut() {
        if matches!(td.text.as_str(), "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>") {
            td.attr = attr::USER_DEFINED;
        }
    }
}

/// LSTRIP / RSTRIP: whether a special token swallows the whitespace before /
/// after it when `encode` splits it out. Jina v2 / nomic-bert-moe / jina-bert-v3:
/// `<mask>` strips left; Phi-3: every special token strips right except
/// `<unk>`, `<s>`, `<|endoftext|>`, and `</s>` does too.
pub(super) fn strip_attributes(g: &GgufFile, pre: &str, toks: &mut [TokenData], token_to_id: &HashMap<String, u32>, special_cache: &[u32]) {
    let name = g.str_opt("general.name").ok().flatten().unwrap_or("").to_lowercase();
    let arch = g.str_opt("general.architecture").ok().flatten().unwrap_or("");
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].iter().any(|s| pre.contains(s))
        || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|s| arch.contains(s))
    {
        if let Some(&id) = token_to_id.get("<mask>") {
            toks[id as usize].attr |= attr::LSTRIP;
        }
    } else if name.contains("phi-3") || name.contains("phi3") {
        for &id in special_cache {
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
}
