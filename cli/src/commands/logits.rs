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
    #[arg(short = 'p', long = "prompt", conflicts_with_all = ["ids", "ids_file"], required_unless_present_any = ["ids", "ids_file"])]
    prompt: Option<String>,
    /// Token ids, comma-separated.
    #[arg(long = "ids", conflicts_with = "ids_file")]
    ids: Option<String>,
    /// Several sequences, one per line of FILE (comma-separated ids), each evaluated on its own
    /// (a fresh session) with the model loaded once; every output line gets `"seq": N` (the
    /// line's index among the non-empty lines).
    #[arg(long = "ids-file", value_name = "FILE", conflicts_with = "dump_layers")]
    ids_file: Option<std::path::PathBuf>,
    /// Print only the K highest logits per position (default: all logits).
    #[arg(long = "top")]
    top: Option<usize>,
    /// Print only the last position's row (one line; `pos` is the last position).
    #[arg(long = "last")]
    last: bool,
    /// Session context size (default: the model's, capped at 4096).
    #[arg(long = "ctx")]
    ctx: Option<usize>,
    /// Also write every layer's named intermediates (attn_norm-3, ffn_out-3, l_out-3 …) into
    /// DIR: one NAME.f32 file each (little-endian f32, [tokens, width]) and dump.json listing
    /// them; compare two such directories with `ember compare-dumps`.
    #[arg(long = "dump-layers", value_name = "DIR")]
    dump_layers: Option<std::path::PathBuf>,
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
    let seqs: Vec<Vec<u32>> = match (&a.prompt, &a.ids, &a.ids_file) {
        (Some(p), _, _) => vec![engine.tokenizer()?.encode(p, true, true)?],
        (None, Some(s), _) => vec![parse_ids(s)?],
        (None, None, Some(f)) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            text.lines().filter(|l| !l.trim().is_empty()).map(parse_ids).collect::<Result<_>>()?
        }
        (None, None, None) => bail!("give -p PROMPT, --ids or --ids-file"),
    };
    if seqs.is_empty() || seqs.iter().any(Vec::is_empty) {
        bail!("no tokens to evaluate");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (seq, ids) in seqs.iter().enumerate() {
        let mut session = engine.new_session();
        let (wanted, first) = if a.last { (LogitsWanted::Last, ids.len() - 1) } else { (LogitsWanted::All, 0) };
        if a.dump_layers.is_some() {
            session.set_dump(true)?;
        }
        session.eval(ids, wanted)?;
        if let Some(dir) = &a.dump_layers {
            let dumped = session.take_dump();
            super::dumps::write(dir, &dumped, engine.backend_name(), ids.len())?;
            eprintln!("ember: {} intermediates written to {}", dumped.len(), dir.display());
        }
        let seq = a.ids_file.is_some().then_some(seq);
        write_rows(&mut out, session.logits(), engine.info().n_vocab, first, a.top, seq)?;
    }
    out.flush()?;
    Ok(())
}

/// One JSON line per row of `logits` (positions from `first`): the top `k`
/// (id, logit) pairs, or the whole row; `"seq"` when several sequences run.
fn write_rows(out: &mut impl Write, logits: &[f32], n_vocab: usize, first: usize, top: Option<usize>, seq: Option<usize>) -> Result<()> {
    for (i, row) in logits.chunks(n_vocab).enumerate() {
        let pos = first + i;
        let mut line = match top {
            Some(k) => serde_json::json!({ "pos": pos, "top": ember::sampling::top_logits(row, k) }),
            None => serde_json::json!({ "pos": pos, "logits": row }),
        };
        if let Some(s) = seq {
            line["seq"] = s.into();
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
