use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use ember::model::LogitsWanted;

use super::load_engine;
use crate::EvalOpts;

#[derive(Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// Prompt text (tokenized like `run`: special tokens added and parsed).
    #[arg(short = 'p', long = "prompt", conflicts_with = "ids", required_unless_present = "ids")]
    prompt: Option<String>,
    /// Token ids, comma-separated.
    #[arg(long = "ids")]
    ids: Option<String>,
    /// Print only the K highest logits per position (default: all logits).
    #[arg(long = "top")]
    top: Option<usize>,
    /// Print only the last position's row (one line; `pos` is the last position).
    #[arg(long = "last")]
    last: bool,
    /// Session context size (default: the model's, capped at 4096).
    #[arg(long = "ctx")]
    ctx: Option<usize>,
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u32>().with_context(|| format!("'{t}' is not a token id")))
        .collect()
}

pub fn run(a: LogitsArgs) -> Result<()> {
    let engine = load_engine(&a.opts, a.ctx)?;
    let ids = match (&a.prompt, &a.ids) {
        (Some(p), _) => engine.tokenizer().encode(p, true, true)?,
        (None, Some(s)) => parse_ids(s)?,
        (None, None) => bail!("give -p PROMPT or --ids"),
    };
    if ids.is_empty() {
        bail!("no tokens to evaluate");
    }
    let n_vocab = engine.info().n_vocab;
    let mut session = engine.new_session();
    let (wanted, first) = if a.last { (LogitsWanted::Last, ids.len() - 1) } else { (LogitsWanted::All, 0) };
    let logits = session.eval(&ids, wanted)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, row) in logits.chunks(n_vocab).enumerate() {
        let pos = first + i;
        let line = match a.top {
            Some(k) => {
                let mut order: Vec<u32> = (0..n_vocab as u32).collect();
                let k = k.min(n_vocab);
                let by_logit = |x: &u32, y: &u32| row[*y as usize].total_cmp(&row[*x as usize]).then(x.cmp(y));
                if k < n_vocab {
                    order.select_nth_unstable_by(k, by_logit);
                }
                order.truncate(k);
                order.sort_by(by_logit);
                let top: Vec<(u32, f32)> = order.iter().map(|&i| (i, row[i as usize])).collect();
                serde_json::json!({ "pos": pos, "top": top })
            }
            None => serde_json::json!({ "pos": pos, "logits": row }),
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
