use anyhow::{Context, Result};
use clap::Args;
use ember::gguf::GgufFile;
use ember::tokenizer::Tokenizer;

use crate::catalog;

#[derive(Args)]
pub struct TokenizeArgs {
    /// Model: a GGUF path or a known name.
    #[arg(short = 'm', long = "model")]
    model: Option<String>,
    /// Don't add BOS/EOS (default: add them as the GGUF says).
    #[arg(long)]
    no_add_special: bool,
    /// Turn special-token text such as <|im_end|> into its token.
    #[arg(long)]
    parse_special: bool,
    /// The text (may be empty; put it after `--` if it starts with a dash).
    text: String,
}

pub fn run(a: TokenizeArgs) -> Result<()> {
    let path = catalog::resolve(a.model.as_deref())?;
    // Only the vocabulary is needed: no weights are touched.
    let file = GgufFile::open(&path).with_context(|| format!("cannot load {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&a.text, !a.no_add_special, a.parse_special)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}
