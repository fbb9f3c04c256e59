//! The memory plan: what an engine will hold once loaded — the weights, the KV
//! cache of every session at the chosen context and cache types, the scratch
//! of a forward pass — worked out from the model's graph before anything is
//! allocated, and compared with a budget (`--memory-budget`,
//! `EngineConfig::memory_budget`) or, without one, with the memory the machine
//! has available. Too big is a [`crate::Error::MemoryPlan`] that says what
//! would fit; `--fit` ([`fit`]) picks the context and KV types itself.
//!
//! On phones the GPU shares the system's memory, so one budget covers both
//! backends; the GPU's plan adds its micro-batch buffers and host readback.

use std::fmt;

use crate::graph::Graph;
use crate::kv_cache::{self, KvType};
use crate::session::PROMPT_BATCH;

/// The context `--fit` does not go below to keep the full KV type: when the
/// asked context does not fit, a quantized cache is tried before the context
/// drops under this many tokens.
pub const FIT_PREFERRED_MIN_CTX: usize = 1024;
/// The smallest context `--fit` settles for (like the SDK's floor).
pub const FIT_MIN_CTX: usize = 256;
/// Fitted contexts are multiples of this (whole prompt batches' worth of rows).
const FIT_STEP: usize = 256;
/// Micro-batch on software GPU adapters (`GpuRunner`: short submits).
const SOFTWARE_UBATCH: usize = 64;

/// Which backend's buffers the plan counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanBackend {
    Cpu,
    /// wgpu; `software` adapters (lavapipe) use small micro-batches.
    Gpu {
        software: bool,
    },
}

impl fmt::Display for PlanBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanBackend::Cpu => "cpu",
            PlanBackend::Gpu { .. } => "wgpu",
        })
    }
}

/// Where the budget a plan is held to comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--memory-budget` / `EngineConfig::memory_budget`.
    Configured,
    /// The machine's available memory (`MemAvailable` of /proc/meminfo).
    Available,
}

/// A memory budget in bytes and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub source: BudgetSource,
}

impl Budget {
    /// The configured budget, else the machine's available memory, else none (no check).
    pub fn resolve(configured: Option<u64>) -> Option<Budget> {
        match configured {
            Some(bytes) => Some(Budget { bytes, source: BudgetSource::Configured }),
            None => mem_available().map(|bytes| Budget { bytes, source: BudgetSource::Available }),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            BudgetSource::Configured => write!(f, "the memory budget of {}", mib(self.bytes)),
            BudgetSource::Available => write!(f, "the {} of memory available", mib(self.bytes)),
        }
    }
}

/// A context the memory plan lowered: sessions hold `n_ctx` tokens because
/// `wanted_ctx` would not fit `budget`. Under local-first routing a request
/// longer than the local context but within `wanted_ctx` goes remote for
/// memory's sake ([`crate::remote::RouteReason::ExceedsMemory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    pub wanted_ctx: usize,
    pub budget: Budget,
}

/// What a plan is made from: the shapes of the model's graph and its weights' size.
#[derive(Debug, Clone)]
pub struct PlanModel {
    /// Per layer: values cached per position for K and for V.
    pub kv: Vec<(usize, usize)>,
    /// The activation buffers' widths, summed, and the widest.
    pub act_width_sum: usize,
    pub act_widest: usize,
    /// Bytes of cos/sin per position over every RoPE table.
    pub rope_bytes_per_pos: usize,
    pub n_embd: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    /// Bytes of the weight tensors (mapped or copied on the CPU, uploaded in
    /// their GGUF size on the GPU).
    pub weight_bytes: u64,
}

impl PlanModel {
    pub fn of(model: &crate::model::Model) -> PlanModel {
        let g: &Graph = model.forward().graph();
        PlanModel {
            kv: g.kv.clone(),
            act_width_sum: g.bufs.iter().map(|b| b.1).sum(),
            act_widest: g.bufs.iter().map(|b| b.1).max().unwrap_or(0),
            rope_bytes_per_pos: g.ropes.iter().map(|t| t.params.n_rot * 4).sum(),
            n_embd: g.width(g.hidden),
            n_vocab: g.n_vocab,
            n_ctx_train: model.info().n_ctx_train,
            weight_bytes: model.info().weight_bytes,
        }
    }
}

/// The choices a plan is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRequest {
    pub backend: PlanBackend,
    pub n_ctx: usize,
    pub kv_types: (KvType, KvType),
    /// Sessions alive at once (the server's `--parallel`), each with its KV cache.
    pub sessions: usize,
}

/// The bytes an engine will hold, by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    pub request: PlanRequest,
    pub weights: u64,
    /// KV bytes per token of context in the request's types (one session).
    pub kv_per_token: u64,
    /// Every session's KV cache at the request's context.
    pub kv: u64,
    /// Activations of one forward pass (a prompt batch), logits, RoPE tables,
    /// quantized activations; per session.
    pub scratch: u64,
    /// The tokenizer's tables (an estimate from the vocabulary's size).
    pub tokenizer: u64,
}

impl MemoryPlan {
    /// The plan of `model` for `req`; `None` when a KV type does not divide a
    /// layer's rows (checked elsewhere with a clear error).
    pub fn new(model: &PlanModel, req: PlanRequest) -> Option<MemoryPlan> {
        let kv_per_token = kv_cache::bytes_per_token(&model.kv, req.kv_types.0, req.kv_types.1)? as u64;
        let sessions = req.sessions.max(1) as u64;
        let scratch = scratch_bytes(model, req.backend, req.n_ctx).saturating_mul(sessions);
        Some(MemoryPlan {
            request: req,
            weights: model.weight_bytes,
            kv_per_token,
            // Saturating: a context from the caller can be absurd (then it does not fit).
            kv: kv_per_token.saturating_mul(req.n_ctx as u64).saturating_mul(sessions),
            scratch,
            // Token strings, the id map and the merge/score tables: ~100 bytes a token.
            tokenizer: model.n_vocab as u64 * 100,
        })
    }

    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.kv).saturating_add(self.scratch).saturating_add(self.tokenizer)
    }

    /// Whether the plan fits `budget` (always, without one).
    pub fn fits(&self, budget: Option<Budget>) -> bool {
        budget.is_none_or(|b| self.total() <= b.bytes)
    }

    /// One line: `total on cpu (weights … + … of KV cache for ctx N f16/f16 + scratch … + tokenizer …)`.
    pub fn summary(&self) -> String {
        let r = &self.request;
        let sessions = if r.sessions > 1 { format!(" × {} sessions", r.sessions) } else { String::new() };
        format!(
            "{} on {} (weights {} + {} of KV cache for ctx {} {}/{}{sessions} + scratch {} + tokenizer {})",
            mib(self.total()),
            r.backend,
            mib(self.weights),
            mib(self.kv),
            r.n_ctx,
            r.kv_types.0,
            r.kv_types.1,
            mib(self.scratch),
            mib(self.tokenizer)
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.request;
        serde_json::json!({
            "backend": r.backend.to_string(),
            "n_ctx": r.n_ctx,
            "cache_type_k": r.kv_types.0.as_str(),
            "cache_type_v": r.kv_types.1.as_str(),
            "sessions": r.sessions,
            "weights_bytes": self.weights,
            "kv_bytes_per_token": self.kv_per_token,
            "kv_bytes": self.kv,
            "scratch_bytes": self.scratch,
            "tokenizer_bytes": self.tokenizer,
            "total_bytes": self.total(),
        })
    }
}

/// Scratch of one session: the graph's activation buffers for a prompt batch
/// (the CPU's `PROMPT_BATCH`, the GPU's micro-batch), the head's logits, the
/// RoPE tables, and the quantized copy of a product's input.
fn scratch_bytes(m: &PlanModel, backend: PlanBackend, n_ctx: usize) -> u64 {
    let f = |n: usize| n as u64 * 4;
    match backend {
        PlanBackend::Cpu => {
            let n = PROMPT_BATCH;
            // Activations + the q8 copy of the widest input (~1.1 bytes a value) +
            // one logits row + cos/sin of the batch's positions.
            f(n * m.act_width_sum) + (n * m.act_widest * 9 / 8) as u64 + f(m.n_vocab) + (n * m.rope_bytes_per_pos) as u64
        }
        PlanBackend::Gpu { software } => {
            let n = if software { SOFTWARE_UBATCH } else { PROMPT_BATCH };
            // `SessionBufs`: activations, xq, head norm, logits for the micro-batch,
            // cos/sin of every position; plus the host readback of the logits.
            let ropes = (n_ctx as u64).saturating_mul(m.rope_bytes_per_pos as u64);
            f(n * (m.act_width_sum + m.act_widest + m.n_embd + m.n_vocab)).saturating_add(ropes) + f(n * m.n_vocab)
        }
    }
}

/// What `--fit` may change: the KV types stay when the caller named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitOptions {
    pub kv_fixed: bool,
}

/// The plan `--fit` settles on for `req` under `budget`: `req` itself when it
/// fits; else, keeping the KV types while they still allow
/// `min(asked, FIT_PREFERRED_MIN_CTX)` tokens, the largest context that fits
/// (a multiple of 256, never above the one asked); else the same with a q8_0
/// then a q4_0 cache (not when the types are fixed); else the largest context
/// of any of those of at least `FIT_MIN_CTX`. `Err` with the refusal when
/// nothing fits.
pub fn fit(model: &PlanModel, req: PlanRequest, budget: Budget, opts: FitOptions) -> Result<MemoryPlan, String> {
    let asked = MemoryPlan::new(model, req).ok_or_else(|| "the KV cache types do not divide the model's rows".to_string())?;
    if asked.fits(Some(budget)) {
        return Ok(asked);
    }
    let types: Vec<(KvType, KvType)> = if opts.kv_fixed {
        vec![req.kv_types]
    } else {
        let mut t = vec![req.kv_types];
        t.extend([KvType::Q8_0, KvType::Q4_0].into_iter().filter(|&q| smaller(q, req.kv_types)).map(|q| (q, q)));
        t
    };
    let mut best: Option<MemoryPlan> = None;
    for &kv_types in &types {
        let Some(plan) = largest_fitting(model, PlanRequest { kv_types, ..req }, budget) else { continue };
        if plan.request.n_ctx >= req.n_ctx.min(FIT_PREFERRED_MIN_CTX) {
            return Ok(plan);
        }
        if best.as_ref().is_none_or(|b| plan.request.n_ctx > b.request.n_ctx) {
            best = Some(plan);
        }
    }
    best.filter(|p| p.request.n_ctx >= req.n_ctx.min(FIT_MIN_CTX)).ok_or_else(|| refusal(model, &asked, budget, opts))
}

/// What an engine does with `req` under `budget`: the plan itself when it
/// fits (or there is no budget); the [`fit`] one when `fit`; else the
/// [`refusal`]. `kv_fixed`: the KV types must stay (chosen by the caller).
pub fn settle(model: &PlanModel, req: PlanRequest, budget: Option<Budget>, fit_it: bool, kv_fixed: bool) -> Result<MemoryPlan, String> {
    let plan = MemoryPlan::new(model, req).ok_or_else(|| "the KV cache types do not divide the model's rows".to_string())?;
    let Some(budget) = budget else { return Ok(plan) };
    if plan.fits(Some(budget)) {
        return Ok(plan);
    }
    if fit_it {
        fit(model, req, budget, FitOptions { kv_fixed })
    } else {
        // The refusal names every way out, smaller KV types included.
        Err(refusal(model, &plan, budget, FitOptions { kv_fixed: false }))
    }
}

/// The largest context (a multiple of `FIT_STEP` when above it, at most
/// `req.n_ctx`) whose plan fits `budget`.
fn largest_fitting(model: &PlanModel, req: PlanRequest, budget: Budget) -> Option<MemoryPlan> {
    let at = |n_ctx: usize| MemoryPlan::new(model, PlanRequest { n_ctx, ..req });
    // The plan grows with the context (KV, the GPU's RoPE tables): bisect.
    let fits = |n: usize| at(n).is_some_and(|p| p.fits(Some(budget)));
    if !fits(1) {
        return None;
    }
    let (mut lo, mut hi) = (1usize, req.n_ctx);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let n = if lo >= FIT_STEP && lo < req.n_ctx { lo / FIT_STEP * FIT_STEP } else { lo };
    at(n)
}

/// The error for a plan over budget: what it needs, and what would fit.
pub fn refusal(model: &PlanModel, plan: &MemoryPlan, budget: Budget, opts: FitOptions) -> String {
    let req = plan.request;
    let mut would = Vec::new();
    if let Some(p) = largest_fitting(model, req, budget) {
        if p.request.n_ctx >= FIT_MIN_CTX.min(req.n_ctx) {
            would.push(format!("--ctx {}", p.request.n_ctx));
        }
    }
    if !opts.kv_fixed {
        for q in [KvType::Q8_0, KvType::Q4_0] {
            if !smaller(q, req.kv_types) {
                continue;
            }
            if MemoryPlan::new(model, PlanRequest { kv_types: (q, q), ..req }).is_some_and(|p| p.fits(Some(budget))) {
                would.push(format!("--cache-type-k {q} --cache-type-v {q} (ctx {})", req.n_ctx));
                break;
            }
        }
    }
    let fixed = plan.weights + plan.tokenizer;
    let what = if fixed > budget.bytes {
        format!("the weights alone ({}) exceed it: a smaller model or a smaller quantization is needed", mib(plan.weights))
    } else if would.is_empty() {
        format!("not even a {FIT_MIN_CTX}-token context fits")
    } else {
        format!("would fit: {}, or --fit to choose", would.join(", or "))
    };
    format!("needs {}, over {budget}; {what}", plan.summary())
}

/// Whether `q` for both K and V stores fewer bytes than `types` (per 32 values).
fn smaller(q: KvType, types: (KvType, KvType)) -> bool {
    let per32 = |t: KvType| t.block_bytes() * 32 / t.block_len();
    2 * per32(q) < per32(types.0) + per32(types.1)
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Parses a size: bytes, or with a suffix K/M/G/T (powers of 1024; `KiB`,
/// `MB`, `GiB`… read the same), fractions allowed: `1.5G`, `800M`, `2048MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("'{s}' is not a size (examples: 1.5G, 800M, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit '{other}' in '{s}' (use K, M, G or T)")),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("'{s}' is not a usable memory size"));
    }
    Ok(bytes as u64)
}

/// MemAvailable of /proc/meminfo in bytes (Linux and Android; None elsewhere).
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 layers with 64-wide K and V rows, two 128-wide buffers, a vocabulary of 1000.
    fn model() -> PlanModel {
        PlanModel {
            kv: vec![(64, 64); 4],
            act_width_sum: 256,
            act_widest: 128,
            rope_bytes_per_pos: 64 * 4,
            n_embd: 128,
            n_vocab: 1000,
            n_ctx_train: 8192,
            weight_bytes: 10 << 20,
        }
    }

    fn req(n_ctx: usize) -> PlanRequest {
        PlanRequest { backend: PlanBackend::Cpu, n_ctx, kv_types: (KvType::F16, KvType::F16), sessions: 1 }
    }

    fn budget(bytes: u64) -> Budget {
        Budget { bytes, source: BudgetSource::Configured }
    }

    #[test]
    fn the_plan_adds_its_parts() {
        let m = model();
        let p = MemoryPlan::new(&m, req(4096)).unwrap();
        // 4 layers × (64 + 64) values × 2 bytes.
        assert_eq!(p.kv_per_token, 1024);
        assert_eq!(p.kv, 1024 * 4096);
        assert_eq!(p.total(), p.weights + p.kv + p.scratch + p.tokenizer);
        // Two sessions: twice the KV and scratch, the weights once.
        let two = MemoryPlan::new(&m, PlanRequest { sessions: 2, ..req(4096) }).unwrap();
        // An absurd context saturates (and never fits) instead of wrapping around.
        let huge = MemoryPlan::new(&m, req(usize::MAX)).unwrap();
        assert_eq!(huge.total(), u64::MAX);
        assert_eq!(two.kv, 2 * p.kv);
        assert_eq!(two.weights, p.weights);
        // q8_0: 34 bytes per 32 values.
        let q8 = MemoryPlan::new(&m, PlanRequest { kv_types: (KvType::Q8_0, KvType::Q8_0), ..req(4096) }).unwrap();
        assert_eq!(q8.kv_per_token, 4 * 2 * 2 * 34);
    }

    #[test]
    fn a_budget_just_above_fits_and_just_below_refuses() {
        let m = model();
        let p = MemoryPlan::new(&m, req(4096)).unwrap();
        assert!(p.fits(Some(budget(p.total()))));
        assert!(!p.fits(Some(budget(p.total() - 1))));
        let err = refusal(&m, &p, budget(p.total() - 1), FitOptions { kv_fixed: false });
        assert!(err.contains("would fit: --ctx"), "{err}");
        assert!(err.contains("--cache-type-k q8_0"), "{err}");
    }

    #[test]
    fn fit_keeps_the_kv_type_while_the_context_stays_large() {
        let m = model();
        let full = MemoryPlan::new(&m, req(4096)).unwrap();
        // Room for 3000 f16 tokens: the context shrinks to a multiple of 256, f16 stays.
        let b = budget(full.total() - 1096 * 1024);
        let p = fit(&m, req(4096), b, FitOptions { kv_fixed: false }).unwrap();
        assert_eq!(p.request.kv_types, (KvType::F16, KvType::F16));
        assert_eq!(p.request.n_ctx, 2816);
        assert!(p.fits(Some(b)));
    }

    #[test]
    fn fit_quantizes_the_cache_before_the_context_gets_small() {
        let m = model();
        let full = MemoryPlan::new(&m, req(4096)).unwrap();
        // Room for ~600 f16 tokens: q8_0 (544 bytes a token) keeps ~1100.
        let b = budget(full.total() - full.kv + 600 * 1024);
        let p = fit(&m, req(4096), b, FitOptions { kv_fixed: false }).unwrap();
        assert_eq!(p.request.kv_types, (KvType::Q8_0, KvType::Q8_0));
        assert!(p.request.n_ctx >= FIT_PREFERRED_MIN_CTX, "{}", p.request.n_ctx);
        // The types fixed: the context shrinks instead.
        let p = fit(&m, req(4096), b, FitOptions { kv_fixed: true }).unwrap();
        assert_eq!(p.request.kv_types, (KvType::F16, KvType::F16));
        assert_eq!(p.request.n_ctx, 512);
    }

    #[test]
    fn fit_refuses_when_the_weights_alone_are_too_big() {
        let m = model();
        let err = fit(&m, req(4096), budget(1 << 20), FitOptions { kv_fixed: false }).unwrap_err();
        assert!(err.contains("weights alone"), "{err}");
    }

    #[test]
    fn sizes_parse_like_llama_cpp_flags() {
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("800M").unwrap(), 800 << 20);
        assert_eq!(parse_size("800MiB").unwrap(), 800 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        for bad in ["", "G", "1.5X", "-1G", "0", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
