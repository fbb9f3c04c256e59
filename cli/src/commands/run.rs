use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use ember::constrain::Constraint;
use ember::sampling::{self, SamplingParams};
use ember::session::GenerateParams;

use super::speculation::SpecArgs;
use super::{load_engine_routed, route_note, RemoteArgs};
use crate::EvalOpts;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// The prompt (or give it as the positional argument).
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// The prompt, when -p is not used.
    #[arg(conflicts_with = "prompt")]
    prompt_text: Option<String>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    n_predict: usize,
    /// Session context size (default: the model's, capped at 4096).
    #[arg(long = "ctx")]
    ctx: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Stop when the output contains this text (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    #[command(flatten)]
    constraint: ConstraintArgs,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(flatten)]
    speculation: SpecArgs,
    /// A saved session (like llama.cpp's --prompt-cache): loaded when FILE
    /// exists, the part of the prompt it holds is not evaluated again; saved
    /// after generating. Same model, --ctx and cache types as when saved.
    #[arg(long = "session", value_name = "FILE")]
    session: Option<std::path::PathBuf>,
}

/// Constrained output: at most one of these (a token mask before sampling).
#[derive(Args, Clone, Debug, Default)]
pub struct ConstraintArgs {
    /// The output is JSON valid against this JSON schema file.
    #[arg(long = "json-schema", value_name = "FILE", group = "constraint")]
    pub json_schema: Option<std::path::PathBuf>,
    /// The output is a JSON object (any).
    #[arg(long = "json", group = "constraint")]
    pub json: bool,
    /// The output follows this grammar file: llama.cpp GBNF (`root ::= …`) or llguidance Lark (`start: …`).
    #[arg(long = "grammar", value_name = "FILE", group = "constraint")]
    pub grammar: Option<std::path::PathBuf>,
    /// The whole output matches this regular expression.
    #[arg(long = "regex", value_name = "RE", group = "constraint")]
    pub regex: Option<String>,
}

impl ConstraintArgs {
    /// The constraint asked for, its file read; `None` without one.
    pub fn to_constraint(&self) -> Result<Option<Constraint>> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", p.display()))
        };
        Ok(if let Some(p) = &self.json_schema {
            Some(Constraint::JsonSchema(read(p, "JSON schema")?))
        } else if let Some(p) = &self.grammar {
            Some(Constraint::Grammar(read(p, "grammar")?))
        } else if let Some(rx) = &self.regex {
            Some(Constraint::Regex(rx.clone()))
        } else if self.json {
            Some(Constraint::JsonObject)
        } else {
            None
        })
    }
}

/// Sampling flags, named as in llama.cpp.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = sampling::DEFAULT_TEMPERATURE)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long = "top-k", default_value_t = sampling::DEFAULT_TOP_K)]
    pub top_k: usize,
    /// Top-p nucleus (1 = off).
    #[arg(long = "top-p", default_value_t = sampling::DEFAULT_TOP_P)]
    pub top_p: f32,
    /// Min-p relative to the most likely token (0 = off).
    #[arg(long = "min-p", default_value_t = sampling::DEFAULT_MIN_P)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = sampling::DEFAULT_REPEAT_PENALTY)]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over.
    #[arg(long = "repeat-last-n", default_value_t = sampling::DEFAULT_REPEAT_LAST_N)]
    pub repeat_last_n: usize,
    #[arg(long = "frequency-penalty", default_value_t = sampling::DEFAULT_FREQUENCY_PENALTY)]
    pub frequency_penalty: f32,
    #[arg(long = "presence-penalty", default_value_t = sampling::DEFAULT_PRESENCE_PENALTY)]
    pub presence_penalty: f32,
    /// RNG seed (default: random; printed with the stats).
    #[arg(long = "seed")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn to_params(&self) -> SamplingParams {
        let seed = self.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            t.as_nanos() as u64 ^ (std::process::id() as u64) << 32
        });
        SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed,
        }
    }
}

pub fn run(a: RunArgs) -> Result<()> {
    let Some(prompt) = a.prompt.or(a.prompt_text) else {
        bail!("no prompt: use -p PROMPT or give the prompt as an argument");
    };
    let constraint = a.constraint.to_constraint()?;
    let engine = load_engine_routed(&a.opts, a.ctx, &a.remote, 1)?;
    let mut session = engine.new_session();
    session.set_speculation(a.speculation.load(&a.opts, a.ctx)?.as_ref())?;
    if engine.config().route_policy() == ember::remote::RoutePolicy::Local {
        let n = engine.tokenizer()?.encode(&prompt, true, true)?.len();
        if n >= session.n_ctx() {
            bail!("the prompt has {n} tokens; the context holds {} (raise --ctx)", session.n_ctx());
        }
    }
    let params = GenerateParams { sampling: a.sampling.to_params(), max_tokens: a.n_predict, stop: a.stop, constraint };
    if let Some(c) = params.constraint.as_ref().filter(|_| a.remote.remote.is_none()) {
        // Compiled now, so a bad schema or grammar is reported before the prompt is evaluated.
        engine.constraint_mask(c)?;
    }
    let mut out = std::io::stdout().lock();
    let mut write_failed = false;
    let mut on_text = |text: &str| {
        // A closed pipe (e.g. `| head`) ends generation quietly.
        write_failed = out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err();
        !write_failed
    };
    let stats = match &a.session {
        Some(file) => super::saved_session::run_with_session(&mut session, file, &prompt, &params, &mut on_text)?,
        None => session.complete(&prompt, &params, &mut on_text)?,
    };
    if !write_failed {
        let _ = writeln!(out);
    }
    eprintln!(
        "ember: prompt {} tokens, {:.1} tok/s | generated {} tokens, {:.1} tok/s | stop: {} | seed {}{}",
        stats.prompt_tokens,
        stats.prompt_tps(),
        stats.generated_tokens,
        stats.generation_tps(),
        stats.stop_reason.as_str(),
        params.sampling.seed,
        route_note(&stats)
    );
    if let Some(s) = session.take_speculation_stats() {
        eprintln!(
            "ember: speculation: {} of {} drafted tokens accepted ({:.0}%) in {} passes",
            s.accepted,
            s.drafted,
            100.0 * s.acceptance_rate(),
            s.rounds
        );
    }
    Ok(())
}
