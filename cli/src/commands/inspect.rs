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
    /// Print only the memory plan: weights + KV cache + scratch at --ctx with the KV types,
    /// on the CPU and the GPU, against --memory-budget (or the memory available), and what
    /// --fit would choose. Loads nothing but the file's metadata.
    #[arg(long)]
    plan: bool,
    /// Plan: the session context (default: the model's training context, at most 4096).
    #[arg(long, requires = "plan")]
    ctx: Option<usize>,
    /// Plan: the KV cache types (f16, q8_0, q4_0).
    #[arg(long = "cache-type-k", visible_alias = "ctk", default_value = "f16", requires = "plan")]
    cache_type_k: String,
    #[arg(long = "cache-type-v", visible_alias = "ctv", default_value = "f16", requires = "plan")]
    cache_type_v: String,
    /// Plan: sessions at once (the server's --parallel).
    #[arg(long, default_value_t = 1, requires = "plan")]
    parallel: usize,
    /// Plan: the budget (1.5G, 800M, bytes; default: the memory available).
    #[arg(long = "memory-budget", value_name = "SIZE", requires = "plan")]
    memory_budget: Option<String>,
    /// Plan: print it as JSON.
    #[arg(long, requires = "plan")]
    json: bool,
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
    if a.plan {
        return plan(&a, file);
    }
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

/// `ember inspect --plan`: the memory plan on each backend, the budget, and
/// what `--fit` would choose (the engine's own decision, `memory_plan::settle`).
fn plan(a: &InspectArgs, file: Arc<GgufFile>) -> Result<()> {
    use ember::memory_plan::{self, Budget, BudgetSource, PlanBackend, PlanModel, PlanRequest};
    let model = Model::from_gguf(file).context("cannot plan a model Ember cannot run")?;
    let pm = PlanModel::of(&model);
    let kv_types: (KvType, KvType) = (a.cache_type_k.parse()?, a.cache_type_v.parse()?);
    ember::kv_cache::check_types(&model.forward().graph().kv, kv_types.0, kv_types.1)?;
    let n_ctx = a.ctx.unwrap_or_else(|| pm.n_ctx_train.clamp(1, ember::config::DEFAULT_MAX_CTX));
    if n_ctx == 0 || a.parallel == 0 {
        anyhow::bail!("--ctx and --parallel must be at least 1");
    }
    let budget = Budget::resolve(
        a.memory_budget.as_deref().map(memory_plan::parse_size).transpose().map_err(|e| anyhow::anyhow!("--memory-budget: {e}"))?,
    );
    let f16 = kv_types == (KvType::F16, KvType::F16);
    // The GPU stores an f16 cache only; its plan is shown for f16.
    let backends: Vec<PlanBackend> =
        if f16 { vec![PlanBackend::Cpu, PlanBackend::Gpu { software: false }] } else { vec![PlanBackend::Cpu] };
    let mut out = Vec::new();
    for backend in backends {
        let req = PlanRequest { backend, n_ctx, kv_types, sessions: a.parallel };
        let p = memory_plan::MemoryPlan::new(&pm, req).context("no plan")?;
        let gpu = matches!(backend, PlanBackend::Gpu { .. });
        let as_asked = memory_plan::settle(&pm, req, budget, false, true);
        let fitted = memory_plan::settle(&pm, req, budget, true, gpu || !f16);
        out.push((p, as_asked, fitted));
    }
    if a.json {
        let j: Vec<serde_json::Value> = out
            .iter()
            .map(|(p, asked, fitted)| {
                serde_json::json!({
                    "plan": p.to_json(),
                    "fits": asked.is_ok(),
                    "refusal": asked.as_ref().err(),
                    "fit": fitted.as_ref().ok().map(|f| f.to_json()),
                    "fit_error": fitted.as_ref().err(),
                })
            })
            .collect();
        let b = budget.map(|b| serde_json::json!({"bytes": b.bytes, "source": if b.source == BudgetSource::Configured { "configured" } else { "available" }}));
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "budget": b, "backends": j }))?);
        return Ok(());
    }
    match budget {
        Some(b) => println!("budget: {}", b.to_string().trim_start_matches("the ")),
        None => println!("budget: none (the memory available is unknown here)"),
    }
    for (p, asked, fitted) in &out {
        let r = p.request;
        println!("\n{} plan: ctx {}, KV {}/{}, {} session(s)", r.backend, r.n_ctx, r.kv_types.0, r.kv_types.1, r.sessions);
        println!("  weights    {:>12}", memory_plan::mib(p.weights));
        println!("  KV cache   {:>12}  ({} bytes/token)", memory_plan::mib(p.kv), p.kv_per_token);
        println!("  scratch    {:>12}", memory_plan::mib(p.scratch));
        println!("  tokenizer  {:>12}", memory_plan::mib(p.tokenizer));
        println!("  total      {:>12}  ({} bytes)", memory_plan::mib(p.total()), p.total());
        match asked {
            Ok(_) => println!("  fits"),
            Err(e) => println!("  refused: {e}"),
        }
        match fitted {
            Ok(f) if f.request != r => println!(
                "  --fit: ctx {}, KV {}/{} ({})",
                f.request.n_ctx,
                f.request.kv_types.0,
                f.request.kv_types.1,
                memory_plan::mib(f.total())
            ),
            Ok(_) => {}
            Err(_) if asked.is_err() => println!("  --fit: nothing fits"),
            Err(_) => {}
        }
    }
    Ok(())
}
