//! Layer dumps: `ember logits --dump-layers DIR` writes a pass's named
//! intermediates; `ember compare-dumps A B` says where two dumps (two
//! backends, two builds) part, tensor by tensor in pass order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ember::graph::Dumped;

/// Writes `DIR/NAME.f32` per tensor and `DIR/dump.json` listing them in order.
pub fn write(dir: &Path, dumped: &[Dumped], backend: &str, n_tok: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut list = Vec::new();
    for d in dumped {
        let bytes: Vec<u8> = d.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = format!("{}.f32", d.name);
        std::fs::write(dir.join(&file), bytes).with_context(|| format!("cannot write {file}"))?;
        list.push(serde_json::json!({ "name": d.name, "file": file, "width": d.width, "rows": d.data.len() / d.width.max(1) }));
    }
    let index = serde_json::json!({ "backend": backend, "tokens": n_tok, "tensors": list });
    std::fs::write(dir.join("dump.json"), serde_json::to_vec_pretty(&index)?)?;
    Ok(())
}

fn read(dir: &Path) -> Result<(String, Vec<Dumped>)> {
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("dump.json"))
            .with_context(|| format!("{}: no dump.json (make one with `ember logits --dump-layers`)", dir.display()))?,
    )
    .with_context(|| format!("{}/dump.json is not JSON", dir.display()))?;
    let backend = index["backend"].as_str().unwrap_or("?").to_string();
    let mut out = Vec::new();
    for t in index["tensors"].as_array().context("dump.json has no tensors")? {
        let (Some(name), Some(file), Some(width)) = (t["name"].as_str(), t["file"].as_str(), t["width"].as_u64()) else {
            bail!("{}/dump.json: a tensor without name, file or width", dir.display());
        };
        if file.contains('/') || file.contains("..") {
            bail!("{}/dump.json: bad file name {file:?}", dir.display());
        }
        let bytes = std::fs::read(dir.join(file)).with_context(|| format!("cannot read {file}"))?;
        let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.push(Dumped { name: name.to_string(), width: width as usize, data });
    }
    Ok((backend, out))
}

#[derive(Args)]
pub struct CompareArgs {
    /// A directory written by `ember logits --dump-layers`.
    a: PathBuf,
    /// Another one (same model and prompt; e.g. the other backend).
    b: PathBuf,
    /// A tensor parts when max|Δ| / max|a| exceeds this.
    #[arg(long, default_value_t = 1e-2)]
    tol: f32,
}

/// Prints max|Δ| and the relative error per tensor; fails (exit 1) naming
/// the first tensor over `--tol`, which is where the two passes part.
pub fn compare(a: CompareArgs) -> Result<()> {
    let (ba, da) = read(&a.a)?;
    let (bb, db) = read(&a.b)?;
    println!("{:<24} {:>8} {:>12} {:>12}   ({} vs {})", "tensor", "width", "max|Δ|", "rel", ba, bb);
    let mut first_bad = None;
    let mut compared = 0;
    for x in &da {
        let Some(y) = db.iter().find(|y| y.name == x.name) else { continue };
        if x.width != y.width || x.data.len() != y.data.len() {
            println!(
                "{:<24} shapes differ: {}×{} vs {}×{}",
                x.name,
                x.data.len() / x.width.max(1),
                x.width,
                y.data.len() / y.width.max(1),
                y.width
            );
            first_bad.get_or_insert(x.name.clone());
            continue;
        }
        let max_d =
            x.data.iter().zip(&y.data).map(|(p, q)| (p - q).abs()).fold(0f32, |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) });
        let scale = x.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let rel = max_d / scale;
        let flag = if rel > a.tol { "  <- parts here" } else { "" };
        if rel > a.tol {
            first_bad.get_or_insert(x.name.clone());
        }
        println!(
            "{:<24} {:>8} {:>12.3e} {:>12.3e}{}",
            x.name,
            x.width,
            max_d,
            rel,
            if first_bad.as_deref() == Some(&x.name) { flag } else { "" }
        );
        compared += 1;
    }
    if compared == 0 {
        bail!("the two dumps share no tensor");
    }
    match first_bad {
        Some(name) => bail!("the dumps part at {name} (relative error over {})", a.tol),
        None => {
            println!("all {compared} shared tensors within {}", a.tol);
            Ok(())
        }
    }
}
