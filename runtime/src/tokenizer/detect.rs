//! Which algorithm a vocabulary needs (`tokenizer.ggml.model`) and, for BPE,
//! which merges and pre-tokenizer (`tokenizer.ggml.pre`), with the per-model
//! defaults llama.cpp starts from before the GGUF keys override them.

use super::{bpe, pretokenize, tok_err, Model, PreKind};
use crate::gguf::GgufFile;
use crate::Result;

/// What `tokenizer.ggml.model` / `tokenizer.ggml.pre` imply.
pub(super) struct ModelConfig {
    pub model: Model,
    pub merges: bpe::Merges,
    pub pre_kind: PreKind,
    /// Default special ids, before the range check and the GGUF keys
    /// (see `special::read_ids`).
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    /// Default for `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
    pub add_space_prefix: bool,
    pub ignore_merges: bool,
    pub clean_spaces: bool,
}

pub(super) fn detect(g: &GgufFile, model_name: &str, pre: &str) -> Result<ModelConfig> {
    let mut cfg = match model_name {
        "llama" => ModelConfig {
            model: Model::Spm,
            merges: bpe::Merges::default(),
            pre_kind: PreKind::Default,
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            add_bos: true,
            add_space_prefix: true,
            ignore_merges: false,
            clean_spaces: false,
        },
        "gpt2" => {
            let m = g.str_array("tokenizer.ggml.merges")?.ok_or_else(|| tok_err("cannot find tokenizer merges in model file"))?;
            let info = pretokenize::pre_info(pre);
            if !info.known {
                log::warn!("unsupported pre-tokenizer '{pre}', using 'default' (tokenization may differ from llama.cpp)");
            }
            ModelConfig {
                model: Model::Bpe,
                merges: bpe::Merges::from_strings(&m),
                pre_kind: info.kind,
                bos: if info.no_bos { None } else { Some(11) },
                eos: Some(11),
                unk: None,
                add_bos: info.add_bos.unwrap_or(false),
                add_space_prefix: false,
                ignore_merges: info.ignore_merges,
                clean_spaces: info.clean_spaces,
            }
        }
        other => return Err(tok_err(format!("unsupported tokenizer model '{other}' (supported: llama, gpt2)"))),
    };
    if let Some(v) = g.bool_opt("tokenizer.ggml.add_space_prefix")? {
        cfg.add_space_prefix = v;
    }
    Ok(cfg)
}
