//! `ember bench --lookup N | --draft-model M`: generation from a text prompt
//! (greedy) with and without speculation, runs alternating so a change of
//! machine load hits both; reports both speeds, the speed-up and the
//! acceptance rate, and whether the two outputs are the same text.

use std::sync::Arc;

use anyhow::Result;
use ember::sampling::SamplingParams;
use ember::speculative::{SpecStats, Speculation};
use ember::{Engine, GenerateParams, Session};

/// The default prompts: code to complete for a draft model, a text to
/// summarise (its words come back) for prompt lookup.
pub const CODE_PROMPT: &str = "def quicksort(arr):\n";
pub const SUMMARY_PROMPT: &str = "The lighthouse on the northern cape was built in 1871 to guide fishing boats past the reef. \
For ninety years a keeper lived in the tower, trimming the wick every four hours and writing the weather into a logbook. \
In 1962 the light was automated, the keeper's house became a small museum, and the logbooks were moved to the town library, \
where historians now use them to study how storms on the cape have changed.\n\nSummarise the text above:\n";

pub struct SpecBench {
    pub prompt_tokens: usize,
    pub generated: usize,
    pub plain_tps: f64,
    pub spec_tps: f64,
    /// Median of the per-repetition ratios spec / plain.
    pub speedup: f64,
    pub stats: SpecStats,
    /// The two runs gave the same text (greedy: they must).
    pub identical: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn timed(session: &mut Session, prompt: &[u32], params: &GenerateParams) -> Result<(f64, usize, String)> {
    session.reset();
    let mut text = String::new();
    let st = session.generate(prompt, params, &mut |t| {
        text.push_str(t);
        true
    })?;
    Ok((st.generation_tps(), st.generated_tokens, text))
}

/// `reps` alternating pairs after one warm-up pair.
pub fn run(engine: &Arc<Engine>, spec: &Speculation, prompt: &str, n_gen: usize, reps: usize) -> Result<SpecBench> {
    let ids = engine.tokenizer()?.encode(prompt, true, false)?;
    let n_ctx = ids.len() + n_gen + 1;
    let mut plain = engine.new_session_with_ctx(n_ctx)?;
    let mut fast = engine.new_session_with_ctx(n_ctx)?;
    fast.set_speculation(Some(spec))?;
    let params = GenerateParams { sampling: SamplingParams::greedy(), max_tokens: n_gen, stop: Vec::new(), constraint: None };
    let (mut p_tps, mut s_tps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut identical, mut generated) = (true, 0);
    for rep in 0..=reps {
        let (p, n, p_text) = timed(&mut plain, &ids, &params)?;
        fast.take_speculation_stats();
        let (s, _, s_text) = timed(&mut fast, &ids, &params)?;
        identical &= p_text == s_text;
        if rep > 0 {
            p_tps.push(p);
            s_tps.push(s);
            ratios.push(s / p);
            generated = n;
        }
    }
    // The acceptance of the last run (greedy: every run drafts the same).
    let stats = fast.take_speculation_stats().unwrap_or_default();
    Ok(SpecBench {
        prompt_tokens: ids.len(),
        generated,
        plain_tps: median(&mut p_tps),
        spec_tps: median(&mut s_tps),
        speedup: median(&mut ratios),
        stats,
        identical,
    })
}
