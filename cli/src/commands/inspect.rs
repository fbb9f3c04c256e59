use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use ember::gguf::{GgufFile, Value};
use ember::kv_cache::KvType;
use ember::model::Model;
use ember::quant::{self, GgmlType};
use ember::tokenizer::Tokenizer;

use crate::catalog;

#[derive(Args)]
pub struct InspectArgs {
    /// A GGUF path or a known model name.
    model: String,
    /// Also print every tensor (default: the first 12 and a summary).
    #[arg(long)]
    all_tensors: bool,
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

pub fn run(a: InspectArgs) -> Result<()> {
    let path: PathBuf = catalog::resolve(Some(&a.model))?;
    let file = Arc::new(GgufFile::open(&path).with_context(|| format!("cannot load {}", path.display()))?);
    let file_bytes = file.bytes().len() as u64;
    println!("file:          {} ({})", path.display(), human(file_bytes));
    println!(
        "gguf version:  {}, alignment {}, {} metadata keys, {} tensors",
        file.version,
        file.alignment,
        file.metadata().len(),
        file.tensors().len()
    );
    println!("architecture:  {}", file.architecture().unwrap_or("(missing general.architecture)"));

    println!("\nmetadata:");
    for (k, v) in file.metadata() {
        if k.starts_with("tokenizer.ggml.") && matches!(v, Value::Array(..)) || k == "tokenizer.chat_template" {
            continue;
        }
        println!("  {k:<48} {v}");
    }

    println!("\ntokenizer:");
    match Tokenizer::from_gguf(&file) {
        Ok(t) => {
            println!("  model {}, pre-tokenizer {}, {} tokens", t.kind(), t.pre(), t.n_vocab());
            let name = |id: Option<u32>| id.and_then(|i| t.token_text(i).map(|s| format!("{i} {s:?}"))).unwrap_or_else(|| "none".into());
            println!("  bos {}, eos {}", name(t.bos()), name(t.eos()));
            println!("  chat template: {}", if t.chat_template().is_some() { "present" } else { "none" });
        }
        Err(e) => println!("  cannot load: {e}"),
    }

    let (params, weight_bytes) = file.tensors().iter().fold((0u64, 0u64), |(p, b), t| (p + t.n_elements(), b + t.size));
    println!("\ntensors: {} ({} parameters, {} of weights)", file.tensors().len(), params, human(weight_bytes));
    let mut by_type: Vec<(GgmlType, usize, u64)> = Vec::new();
    for t in file.tensors() {
        match by_type.iter_mut().find(|(ty, _, _)| *ty == t.ty) {
            Some((_, c, b)) => {
                *c += 1;
                *b += t.size
            }
            None => by_type.push((t.ty, 1, t.size)),
        }
    }
    for (ty, count, bytes) in &by_type {
        let note = if quant::is_supported(*ty) { "" } else { "  (Ember cannot compute with this type)" };
        println!("  {:<7} {count:>5} tensors  {}{note}", ty.name(), human(*bytes));
    }
    let shown = if a.all_tensors { file.tensors().len() } else { 12.min(file.tensors().len()) };
    for t in &file.tensors()[..shown] {
        println!("  {:<40} {:<6} {:<22} {}", t.name, t.ty.name(), format!("{:?}", t.ne), human(t.size));
    }
    if shown < file.tensors().len() {
        println!("  … {} more (--all-tensors)", file.tensors().len() - shown);
    }

    println!("\nmodel:");
    match Model::from_gguf(file.clone()) {
        Ok(m) => {
            let i = m.info();
            println!(
                "  {} layers, n_embd {}, {} heads ({} kv), n_ff {}, vocab {}, trained context {}",
                i.n_layer, i.n_embd, i.n_head, i.n_head_kv, i.n_ff, i.n_vocab, i.n_ctx_train
            );
            println!("  parameters:            {}", i.n_params);
            println!("  weight bytes:          {} ({})", i.weight_bytes, human(i.weight_bytes));
            println!("  bytes read per token:  {} ({})", i.bytes_per_token, human(i.bytes_per_token));
            // Per cache type (--cache-type-k/-v, the same type for both here).
            let kv = &m.forward().graph().kv;
            let per_type: Vec<String> = [KvType::F16, KvType::Q8_0, KvType::Q4_0]
                .iter()
                .map(|&t| match ember::kv_cache::bytes_per_token(kv, t, t) {
                    Some(b) => format!("{b} ({}, {t})", human(b as u64)),
                    None => format!("- ({t}: rows not whole blocks)"),
                })
                .collect();
            println!("  KV-cache bytes/token:  {}", per_type.join(", "));
        }
        Err(e) => println!("  cannot run with Ember: {e}"),
    }
    Ok(())
}
