use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use ember::model::LogitsWanted;
use indicatif::{ProgressBar, ProgressStyle};

use super::load_engine;
use crate::EvalOpts;

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Window (and context) size in tokens.
    #[arg(long = "ctx", default_value_t = 512)]
    ctx: usize,
    /// Score only the first N windows (llama.cpp's --chunks; 0 = all).
    #[arg(long = "chunks", default_value_t = 0)]
    chunks: usize,
}

/// −log p(target) from a row of logits, in f64.
fn nll(row: &[f32], target: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - row[target as usize] as f64
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    if a.ctx < 2 {
        bail!("--ctx must be at least 2 to score anything");
    }
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let engine = load_engine(&a.opts, Some(a.ctx))?;
    let mut tokens = engine.tokenizer()?.encode(&text, true, false)?;
    if tokens.len() < 2 {
        bail!("the text has {} token(s); at least 2 are needed", tokens.len());
    }
    if a.chunks > 0 {
        tokens.truncate(a.chunks.saturating_mul(a.ctx));
    }
    let n_vocab = engine.info().n_vocab;
    // Evaluate each window in sub-batches so the logits of a big vocabulary stay small.
    let sub = (16usize << 20).div_ceil(n_vocab).clamp(1, 512);
    let mut session = engine.new_session();
    let bar = ProgressBar::new(tokens.len() as u64).with_style(
        ProgressStyle::with_template("perplexity [{bar:40}] {pos}/{len} tokens ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let (mut sum_nll, mut scored) = (0f64, 0usize);
    for window in tokens.chunks(a.ctx) {
        session.reset();
        for (c, chunk) in window.chunks(sub).enumerate() {
            let logits = session.eval(chunk, LogitsWanted::All)?;
            for (i, row) in logits.chunks(n_vocab).enumerate() {
                // Row i of this chunk predicts window token c·sub + i + 1.
                if let Some(&target) = window.get(c * sub + i + 1) {
                    sum_nll += nll(row, target);
                    scored += 1;
                }
            }
            bar.inc(chunk.len() as u64);
        }
        bar.set_message(format!("ppl {:.4}", (sum_nll / scored.max(1) as f64).exp()));
    }
    bar.finish_and_clear();
    let ppl = (sum_nll / scored as f64).exp();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "ember: {} tokens in {:.1} s ({:.1} tok/s), {} scored, perplexity {:.4}",
        tokens.len(),
        secs,
        tokens.len() as f64 / secs,
        scored,
        ppl
    );
    println!("{}", serde_json::json!({ "perplexity": ppl, "tokens": tokens.len(), "scored": scored }));
    Ok(())
}
