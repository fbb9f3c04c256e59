//! `ember bench`: prompt processing (pp) and generation (tg) speed, like
//! llama-bench: random token ids, one warm-up run, then the median over
//! `-r` repetitions; plus model load time and peak RSS. `--membw` adds a
//! streaming-read memory bandwidth measurement and, with a model, the
//! fraction of it that generation reaches (bytes per token × tok/s ÷ bandwidth).

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use ember::backend::cpu::OpProfile;
use ember::model::LogitsWanted;
use rayon::prelude::*;

use super::{bench_spec, load_engine};
use crate::EvalOpts;
use ember::speculative::Speculation;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// Prompt tokens per pp run (0 = skip pp).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens per tg run (0 = skip tg).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions (after one warm-up); the median is reported.
    #[arg(short = 'r', long = "reps", default_value_t = 5)]
    reps: usize,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also measure streaming-read memory bandwidth (alone when no model is given with -m).
    #[arg(long)]
    membw: bool,
    /// After the timed runs, one more pp and tg run that times every product per weight
    /// type and attention (CPU backend), printed as a table (or under "per_type" in JSON).
    #[arg(long)]
    per_type: bool,
    /// Also time generation through the sampler (greedy, from a short text prompt) with and
    /// without this JSON schema as a constraint: the cost of the token mask.
    #[arg(long = "json-schema", value_name = "FILE")]
    json_schema: Option<std::path::PathBuf>,
    /// With --lookup or --draft-model: -n tokens generated greedily from this text with and
    /// without speculation, alternating (default: a code prompt for a draft model, a text to
    /// summarise for lookup): speeds, speed-up, acceptance rate.
    #[arg(long = "spec-prompt", value_name = "TEXT")]
    spec_prompt: Option<String>,
    #[command(flatten)]
    speculation: super::speculation::SpecArgs,
}

/// One generation through `Session::generate` (sampling, detokenizing, the
/// mask when constrained): (tokens/s, tokens generated).
fn sampled_run(session: &mut ember::Session, prompt: &[u32], params: &ember::GenerateParams) -> Result<(f64, usize)> {
    session.reset();
    let st = session.generate(prompt, params, &mut |_| true)?;
    Ok((st.generation_tps(), st.generated_tokens))
}

/// The mask's cost, constrained and unconstrained runs alternating (so a
/// change of machine load hits both): (unconstrained t/s, constrained t/s,
/// median of the per-repetition ratios, constrained tokens).
fn json_schema_bench(engine: &std::sync::Arc<ember::Engine>, a: &BenchArgs, path: &std::path::Path) -> Result<(f64, f64, f64, usize)> {
    let schema = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = format!("A JSON document valid against this schema:\n{schema}\nThe document:\n");
    let prompt = engine.tokenizer()?.encode(&text, true, false)?;
    let n_ctx = prompt.len() + a.n_gen + 1;
    let mut session = engine.new_session_with_ctx(n_ctx)?;
    let plain = ember::GenerateParams {
        sampling: ember::sampling::SamplingParams::greedy(),
        max_tokens: a.n_gen,
        stop: Vec::new(),
        constraint: None,
    };
    let constrained = ember::GenerateParams { constraint: Some(ember::constrain::Constraint::JsonSchema(schema)), ..plain.clone() };
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    // Repetition 0 warms both up (page faults, the vocabulary trie).
    for rep in 0..=a.reps {
        let (w, n) = sampled_run(&mut session, &prompt, &constrained)?;
        let (p, _) = sampled_run(&mut session, &prompt, &plain)?;
        if rep > 0 {
            with.push(w);
            without.push(p);
            ratios.push(w / p);
            tokens = n;
        }
    }
    Ok((median(&mut without), median(&mut with), median(&mut ratios), tokens))
}

/// One profiled phase: the op rows plus the untimed rest (norms, RoPE, embedding …).
fn per_type_rows(p: &OpProfile, wall_ns: u64) -> Vec<serde_json::Value> {
    let mut ops = p.ops.clone();
    ops.sort_by_key(|o| std::cmp::Reverse(o.1.ns));
    let share = |ns: u64| if wall_ns == 0 { 0.0 } else { ns as f64 / wall_ns as f64 };
    let mut rows: Vec<serde_json::Value> = ops
        .iter()
        .map(|(k, s)| {
            serde_json::json!({
                "op": k.to_string(), "calls": s.calls, "ms": s.ns as f64 / 1e6, "share": share(s.ns),
                "gb_per_s": if s.ns == 0 { 0.0 } else { s.bytes as f64 / s.ns as f64 },
            })
        })
        .collect();
    let rest = wall_ns.saturating_sub(p.total_ns());
    rows.push(serde_json::json!({ "op": "other (norms, rope, embedding, sampling)", "calls": 0, "ms": rest as f64 / 1e6, "share": share(rest), "gb_per_s": 0.0 }));
    rows
}

/// Runs one pp and one tg pass with profiling on; (phase, rows) for each that ran.
fn profile_phases(session: &mut ember::Session, prompt: &[u32], gen_ids: &[u32]) -> Result<Vec<(String, Vec<serde_json::Value>)>> {
    let mut out = Vec::new();
    session.set_profiling(true);
    if !prompt.is_empty() {
        session.reset();
        let t = Instant::now();
        session.eval(prompt, LogitsWanted::Last)?;
        let ns = t.elapsed().as_nanos() as u64;
        out.push((format!("pp{}", prompt.len()), per_type_rows(&session.take_profile(), ns)));
    }
    if !gen_ids.is_empty() {
        session.reset();
        let t = Instant::now();
        for &id in gen_ids {
            session.eval(&[id], LogitsWanted::Last)?;
        }
        let ns = t.elapsed().as_nanos() as u64;
        out.push((format!("tg{}", gen_ids.len()), per_type_rows(&session.take_profile(), ns)));
    }
    session.set_profiling(false);
    Ok(out)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peak resident set size in MiB (VmHWM), 0 where /proc is not there.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Streaming-read bandwidth in GB/s (10^9 bytes/s): `threads` threads sum
/// 1 GiB of u64s, best of 5 passes (the buffer is written first so every
/// page is really mapped).
pub fn membw_gbs(threads: usize) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
    let n = (1usize << 30) / 8;
    let buf: Vec<u64> = pool.install(|| (0..n as u64).into_par_iter().collect());
    let mut best = 0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let s: u64 = pool.install(|| {
            buf.par_chunks(1 << 16)
                .map(|c| {
                    // 4 independent accumulators so the adds are not the bottleneck.
                    let mut a = [0u64; 4];
                    for q in c.chunks_exact(4) {
                        for i in 0..4 {
                            a[i] = a[i].wrapping_add(q[i]);
                        }
                    }
                    a.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                })
                .reduce(|| 0, |a, b| a.wrapping_add(b))
        });
        std::hint::black_box(s);
        best = best.max((n * 8) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    Ok(best)
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    let threads = if a.opts.threads == 0 { ember::backend::cpu::default_threads() } else { a.opts.threads };
    if a.membw && a.opts.model.is_none() {
        let bw = membw_gbs(threads)?;
        if a.json {
            println!("{}", serde_json::json!({ "membw_gbs": bw, "threads": threads }));
        } else {
            println!("memory bandwidth (streaming read, {threads} threads): {bw:.2} GB/s");
        }
        return Ok(());
    }

    let n_ctx = (a.n_prompt + a.n_gen).max(1);
    let t_load = Instant::now();
    let engine = load_engine(&a.opts, Some(n_ctx))?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let info = engine.info().clone();
    let isa = engine.cpu().kernels().isa;
    // Where the forward pass runs and with what: the CPU kernel table, or the GPU adapter.
    let backend = engine.backend_name();
    let kernels = match engine.gpu() {
        Some(g) => g.ctx.profile.adapter_name.clone(),
        None => isa.to_string(),
    };
    // Weight buffers on the device vs the same tensors in the file (GPU only).
    let gpu_bytes = engine.gpu().map(|g| g.weight_bytes());

    // Random ids like llama-bench (seeded LCG; the bench feeds ids, not text).
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut next_id = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % info.n_vocab as u64) as u32
    };
    let prompt: Vec<u32> = (0..a.n_prompt).map(|_| next_id()).collect();
    let gen_ids: Vec<u32> = (0..a.n_gen).map(|_| next_id()).collect();

    let mut session = engine.new_session_with_ctx(n_ctx)?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    // GPU: submits and dispatches the timed decode loops ran (measured), per token.
    let (mut gen_submits, mut gen_dispatches, mut gen_tokens) = (0u64, 0u64, 0u64);
    // Run 0 is the warm-up (page faults, pool start, scratch growth).
    for rep in 0..=a.reps {
        if a.n_prompt > 0 {
            session.reset();
            let t = Instant::now();
            session.eval(&prompt, LogitsWanted::Last)?;
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                pp.push(a.n_prompt as f64 / s);
            }
        }
        if a.n_gen > 0 {
            session.reset();
            let before = engine.gpu().map(|g| g.submitted());
            let t = Instant::now();
            for &id in &gen_ids {
                session.eval(&[id], LogitsWanted::Last)?;
            }
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                tg.push(a.n_gen as f64 / s);
            }
            if let (Some((s0, d0)), Some(g)) = (before, engine.gpu()) {
                let (s1, d1) = g.submitted();
                (gen_submits, gen_dispatches, gen_tokens) = (gen_submits + s1 - s0, gen_dispatches + d1 - d0, gen_tokens + a.n_gen as u64);
            }
        }
    }
    let (pp_tps, tg_tps) = (median(&mut pp), median(&mut tg));
    let per_type = if a.per_type {
        if engine.gpu().is_some() {
            bail!("--per-type times the CPU backend's kernels; run it with --backend cpu");
        }
        profile_phases(&mut session, &prompt, &gen_ids)?
    } else {
        Vec::new()
    };
    let schema_bench = match &a.json_schema {
        Some(p) if a.n_gen > 0 => Some(json_schema_bench(&engine, &a, p)?),
        Some(_) => bail!("--json-schema times generation: give -n > 0"),
        None => None,
    };
    let spec = match a.speculation.load(&a.opts, Some(n_ctx))? {
        Some(_) if a.n_gen == 0 => bail!("--lookup/--draft-model time generation: give -n > 0"),
        Some(s) => {
            let default = if matches!(s, Speculation::Lookup { .. }) { bench_spec::SUMMARY_PROMPT } else { bench_spec::CODE_PROMPT };
            let prompt = a.spec_prompt.as_deref().unwrap_or(default);
            Some((s.clone(), bench_spec::run(&engine, &s, prompt, a.n_gen, a.reps)?))
        }
        None => None,
    };
    let rss = peak_rss_mb();
    let model_name = a.opts.model.clone().unwrap_or_default();
    let bw = if a.membw { Some(membw_gbs(threads)?) } else { None };
    let bw_frac = bw.map(|bw| info.bytes_per_token as f64 * tg_tps / (bw * 1e9));

    if a.json {
        let mut j = serde_json::json!({
            "model": model_name,
            "arch": info.arch,
            "quant": info.quant,
            "n_params": info.n_params,
            "weight_bytes": info.weight_bytes,
            "bytes_per_token": info.bytes_per_token,
            "backend": backend,
            "backend_report": engine.backend_report().to_json(),
            "kernels": kernels,
            "threads": threads,
            "n_prompt": a.n_prompt,
            "n_gen": a.n_gen,
            "reps": a.reps,
            "pp_tps": pp_tps,
            "tg_tps": tg_tps,
            "pp_tps_all": pp,
            "tg_tps_all": tg,
            "load_ms": load_ms,
            "peak_rss_mb": rss,
            "cache_type_k": engine.kv_types().0.as_str(),
            "cache_type_v": engine.kv_types().1.as_str(),
            "kv_bytes_per_token": engine.kv_bytes_per_token(),
            "memory_plan_bytes": engine.memory_plan().map(|p| p.total()),
            "n_ctx": engine.n_ctx(),
        });
        if let Some(g) = engine.gpu() {
            if gen_tokens > 0 {
                j["dispatches_per_token"] = (gen_dispatches as f64 / gen_tokens as f64).into();
                j["submits_per_token"] = (gen_submits as f64 / gen_tokens as f64).into();
            }
            // The dry count of one decode token, split (see WgpuBackend::decode_dispatches).
            let c = g.decode_dispatches_for(engine.kv_types())?;
            j["dispatches_per_layer"] = c.per_layer.into();
            j["dispatches_head"] = c.head.into();
            j["gpu_tiers"] = format!("{:?}", g.ctx.profile.tiers).into();
        }
        if let Some(b) = gpu_bytes {
            j["gpu_weight_bytes"] = b.gpu.into();
            j["gguf_weight_bytes"] = b.gguf.into();
        }
        if let Some((plain, constrained, ratio, n)) = schema_bench {
            j["tg_sampled_tps"] = plain.into();
            j["tg_json_schema_tps"] = constrained.into();
            j["json_schema_tokens"] = n.into();
            j["json_schema_ratio"] = ratio.into();
        }
        if let Some((s, b)) = &spec {
            j["speculation"] = serde_json::json!({
                "kind": format!("{s:?}"),
                "prompt_tokens": b.prompt_tokens,
                "generated": b.generated,
                "tg_plain_tps": b.plain_tps,
                "tg_spec_tps": b.spec_tps,
                "speedup": b.speedup,
                "acceptance_rate": b.stats.acceptance_rate(),
                "drafted": b.stats.drafted,
                "accepted": b.stats.accepted,
                "rounds": b.stats.rounds,
                "identical": b.identical,
            });
        }
        if let (Some(bw), Some(f)) = (bw, bw_frac) {
            j["membw_gbs"] = bw.into();
            j["tg_membw_fraction"] = f.into();
        }
        if a.per_type {
            j["per_type"] = per_type
                .iter()
                .map(|(phase, rows)| (phase.clone(), serde_json::Value::from(rows.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{j}");
    } else {
        let size_mib = info.weight_bytes as f64 / (1024.0 * 1024.0);
        println!("| model | quant | size | params | backend | threads | test | t/s |");
        println!("| --- | --- | ---: | ---: | --- | ---: | --- | ---: |");
        let row = |test: String, tps: f64| {
            println!(
                "| {} | {} | {:.1} MiB | {:.1} M | {backend} ({kernels}) | {threads} | {test} | {tps:.2} |",
                info.arch,
                info.quant,
                size_mib,
                info.n_params as f64 / 1e6
            )
        };
        if a.n_prompt > 0 {
            row(format!("pp{}", a.n_prompt), pp_tps);
        }
        if a.n_gen > 0 {
            row(format!("tg{}", a.n_gen), tg_tps);
        }
        if let Some((plain, constrained, ratio, n)) = schema_bench {
            row(format!("tg{} sampled", a.n_gen), plain);
            row(format!("tg{} json-schema ({n} tokens)", a.n_gen), constrained);
            println!("json schema: {ratio:.3}× the unconstrained sampled generation (median of alternating pairs)");
        }
        if let Some((s, b)) = &spec {
            row(format!("tg{} greedy, {} prompt tokens", b.generated, b.prompt_tokens), b.plain_tps);
            row(format!("tg{} greedy, speculative", b.generated), b.spec_tps);
            println!(
                "speculation {s:?}: {:.2}× (median of alternating pairs), {} of {} drafted tokens accepted ({:.0}%) in {} passes; same text as without: {}",
                b.speedup,
                b.stats.accepted,
                b.stats.drafted,
                100.0 * b.stats.acceptance_rate(),
                b.stats.rounds,
                if b.identical { "yes" } else { "NO" }
            );
        }
        println!("load {load_ms:.0} ms, peak RSS {rss:.1} MiB, median of {} run(s) after a warm-up", a.reps);
        let (ctk, ctv) = engine.kv_types();
        println!("KV cache: {ctk}/{ctv}, {} bytes per token", engine.kv_bytes_per_token());
        if let Some(b) = gpu_bytes {
            println!(
                "weights on the GPU: {:.1} MiB ({:.4}× the {:.1} MiB of the same {} tensors in the file)",
                b.gpu as f64 / (1024.0 * 1024.0),
                b.gpu as f64 / b.gguf.max(1) as f64,
                b.gguf as f64 / (1024.0 * 1024.0),
                b.tensors
            );
        }
        if let (Some(bw), Some(f)) = (bw, bw_frac) {
            println!(
                "memory bandwidth {bw:.2} GB/s; generation reads {:.1} MB/token → {:.0}% of it",
                info.bytes_per_token as f64 / 1e6,
                f * 100.0
            );
        }
        for (phase, rows) in &per_type {
            println!("\n{phase}, one profiled run: time per op (products by weight type)\n");
            println!("| op | calls | ms | share | weight GB/s |");
            println!("| --- | ---: | ---: | ---: | ---: |");
            for r in rows {
                println!(
                    "| {} | {} | {:.1} | {:.1}% | {:.1} |",
                    r["op"].as_str().unwrap_or(""),
                    r["calls"],
                    r["ms"].as_f64().unwrap_or(0.0),
                    r["share"].as_f64().unwrap_or(0.0) * 100.0,
                    r["gb_per_s"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    Ok(())
}
