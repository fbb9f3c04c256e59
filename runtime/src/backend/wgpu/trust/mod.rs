//! Trusting a GPU we have never seen (docs/GPU.md, "Trust"): before the
//! first use of an adapter (keyed by vendor, device, driver and Ember
//! version), the golden model runs on it with every tier the profile would
//! use and is compared with the CPU; the verdict is stored under the cache
//! directory so later starts skip it. A failing tier is turned off; a failing
//! baseline means the CPU (`backend auto`) or an error (`backend wgpu`).
//! Known driver problems ([`quirks`]) and `EMBER_GPU_DISABLE` turn tiers off
//! before the test; `EMBER_GPU_FAULT` ([`fault`]) breaks a kernel on purpose
//! (tests). The pipeline cache ([`pipeline_cache`]) lives next to the verdict.

pub mod fault;
pub mod golden;
pub mod pipeline_cache;
pub mod quirks;
pub mod selftest;
pub mod verdict;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::device::{GpuContext, Tier, Tiers};
use super::kernels::Kernels;
use crate::config::EngineConfig;
use crate::{Error, Result};
use fault::Fault;
use pipeline_cache::{CacheState, PipelineStore};
use verdict::{Outcome, Verdict};

/// What verdicts and caches are keyed by: a new driver or Ember version
/// tests again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterKey {
    pub vendor: u32,
    pub device: u32,
    pub name: String,
    pub driver: String,
    pub driver_info: String,
    pub backend: String,
    pub ember: String,
}

impl AdapterKey {
    pub fn of(info: &wgpu::AdapterInfo) -> AdapterKey {
        AdapterKey {
            vendor: info.vendor,
            device: info.device,
            name: info.name.clone(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            backend: format!("{:?}", info.backend),
            ember: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "vendor": self.vendor, "device": self.device, "name": self.name, "driver": self.driver,
            "driver_info": self.driver_info, "backend": self.backend, "ember": self.ember,
        })
    }

    /// A directory name: readable ids and a hash of every field.
    pub fn dir_name(&self) -> String {
        let text = self.to_json().to_string();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{:04x}-{:04x}-{h:016x}", self.vendor, self.device)
    }
}

/// `$EMBER_HOME`, else `$XDG_CACHE_HOME/ember`, else `~/.cache/ember` (the
/// CLI's cache root); `None` when none is set.
pub fn ember_home() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("EMBER_HOME").or_else(|| var("XDG_CACHE_HOME").map(|x| x.join("ember"))).or_else(|| var("HOME").map(|h| h.join(".cache/ember")))
}

/// Everything that decides how far a GPU is trusted: the engine's config and
/// the documented environment variables.
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    /// `EMBER_GPU_ALLOW_SOFTWARE=1`: `auto` considers software adapters.
    pub allow_software: bool,
    /// Tiers turned off by the caller (config and `EMBER_GPU_DISABLE`).
    pub disable: Vec<Tier>,
    /// `EMBER_GPU_FAULT`.
    pub fault: Option<Fault>,
    /// Verdicts and pipeline caches (`<dir>/<adapter key>/`); `None`: nothing stored.
    pub cache_dir: Option<PathBuf>,
    /// Overrides the device's watchdog.
    pub watchdog: Option<Duration>,
    /// Run the self-test even when a stored verdict covers it (`ember gpu-check`).
    pub retest: bool,
}

impl TrustOptions {
    /// From `config` and the environment (`EMBER_GPU_DISABLE`,
    /// `EMBER_GPU_FAULT`, `EMBER_GPU_ALLOW_SOFTWARE`, `$EMBER_HOME`). An
    /// unknown tier or fault name is an error, not silently ignored.
    pub fn from_config(config: &EngineConfig) -> Result<TrustOptions> {
        let mut disable = config.gpu_disable.clone();
        for t in Tier::parse_list(&std::env::var("EMBER_GPU_DISABLE").unwrap_or_default())? {
            if !disable.contains(&t) {
                disable.push(t);
            }
        }
        let allow = std::env::var("EMBER_GPU_ALLOW_SOFTWARE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        Ok(TrustOptions {
            allow_software: config.gpu_allow_software || allow,
            disable,
            fault: match Fault::from_env()? {
                Some(f) => Some(f),
                None => Fault::parse(config.gpu_fault.as_deref().unwrap_or_default())?,
            },
            cache_dir: config.gpu_cache_dir.clone().or_else(|| ember_home().map(|h| h.join("gpu"))),
            watchdog: config.gpu_watchdog,
            retest: false,
        })
    }
}

/// How the GPU was judged: in the log, `Engine::backend_report`, `ember
/// bench --json`, `ember gpu-check` and the SDKs.
#[derive(Debug, Clone)]
pub struct GpuReport {
    pub adapter: String,
    /// Where the verdict and the pipeline cache are stored, if anywhere.
    pub dir: Option<PathBuf>,
    pub key: AdapterKey,
    /// What the device's features allow.
    pub available: Tiers,
    /// Quirks that matched (their reasons).
    pub quirks: Vec<String>,
    /// Tiers turned off by the caller.
    pub disabled: Vec<Tier>,
    /// The self-test's outcomes; `fresh`: run now (else from the stored verdict).
    pub baseline: Option<Outcome>,
    pub tier_tests: Vec<(Tier, Outcome)>,
    pub fresh: bool,
    /// The tiers in use.
    pub tiers: Tiers,
    pub pipeline_cache: CacheState,
    pub fault: Option<&'static str>,
}

impl GpuReport {
    pub fn to_json(&self) -> Value {
        let o = |o: &Outcome| json!({ "pass": o.pass, "nmse": o.nmse, "ms": o.ms, "detail": o.detail });
        json!({
            "adapter": self.adapter,
            "cache_dir": self.dir.as_ref().map(|d| d.display().to_string()),
            "key": self.key.to_json(),
            "available_tiers": self.available.describe(),
            "tiers": self.tiers.describe(),
            "quirks": self.quirks,
            "disabled": self.disabled.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "self_test": {
                "fresh": self.fresh,
                "baseline": self.baseline.as_ref().map(o),
                "tiers": self.tier_tests.iter().map(|(t, x)| (t.name().to_string(), o(x))).collect::<serde_json::Map<_, _>>(),
            },
            "pipeline_cache": self.pipeline_cache.describe(),
            "fault": self.fault,
        })
    }
}

/// A device that passed: its context (tiers set), the pipelines compiled
/// by the self-test (reused by the model), and the report.
pub struct Trusted {
    pub ctx: GpuContext,
    pub kernels: Arc<Kernels>,
    pub report: GpuReport,
}

/// Decides which tiers of `ctx` to trust (see the module doc). On a failing
/// baseline: [`Error::GpuUntrusted`], with the report.
pub fn establish(mut ctx: GpuContext, opts: &TrustOptions) -> std::result::Result<Trusted, (Error, Box<GpuReport>)> {
    let key = AdapterKey::of(&ctx.info);
    let dir = opts.cache_dir.as_ref().map(|d| d.join(key.dir_name()));
    ctx.fault = opts.fault;
    if let Some(w) = opts.watchdog {
        ctx.watchdog = w;
    }
    let mut cache_state = CacheState::Unsupported;
    if let Some(dir) = &dir {
        if let Some(store) = PipelineStore::open(&ctx.device, ctx.pipeline_cache_supported, dir.join("pipelines.bin")) {
            cache_state = store.state;
            ctx.pipelines = Some(Arc::new(store));
        }
    }
    let available = ctx.profile.tiers;
    let quirks = quirks::matching(key.vendor, &key.name, &key.driver, &key.driver_info);
    let mut wanted = available.without(&opts.disable);
    for q in &quirks {
        wanted = wanted.without(q.disable);
        log::info!("gpu quirk: {} → {} off", q.why, q.disable.iter().map(|t| t.name()).collect::<Vec<_>>().join(","));
    }
    // Under a fault the verdict is neither read nor stored: the test always runs.
    let verdict_path = dir.as_ref().filter(|_| opts.fault.is_none()).map(|d| d.join("verdict.json"));
    let mut verdict = verdict_path.as_ref().filter(|_| !opts.retest).and_then(|p| Verdict::load(p, &key)).unwrap_or_default();
    let missing: Vec<Tier> = wanted.on().into_iter().filter(|&t| verdict.tier(t).is_none()).collect();
    let fresh = verdict.baseline.is_none() || !missing.is_empty();
    let kernels = Arc::new(Kernels::default());
    if fresh {
        let golden = match selftest::Golden::new() {
            Ok(g) => g,
            Err(e) => {
                return Err((
                    e,
                    Box::new(report(&ctx, dir.as_ref(), key, available, &quirks, opts, &verdict, false, Tiers::BASELINE, cache_state)),
                ))
            }
        };
        if verdict.baseline.is_none() {
            verdict.baseline = Some(golden.run(&ctx, &kernels, Tiers::BASELINE));
        }
        if verdict.baseline.as_ref().is_some_and(|b| b.pass) {
            for t in missing {
                let mut tiers = Tiers::BASELINE;
                tiers.set(t, true);
                verdict.tiers.insert(t.name(), golden.run(&ctx, &kernels, tiers));
            }
        }
        if let Some(p) = &verdict_path {
            verdict.save(p, &key);
        }
    }
    let mut tiers = wanted;
    for t in wanted.on() {
        if verdict.tier(t).is_some_and(|o| !o.pass) {
            tiers.set(t, false);
        }
    }
    let r = report(&ctx, dir.as_ref(), key, available, &quirks, opts, &verdict, fresh, tiers, cache_state);
    let baseline = verdict.baseline.as_ref().filter(|b| b.pass);
    if baseline.is_none() {
        let why = verdict.baseline.as_ref().map_or("not run".to_string(), |b| b.detail.clone());
        let fault = opts.fault.map_or(String::new(), |f| format!(" (EMBER_GPU_FAULT={} is set)", f.name()));
        return Err((Error::GpuUntrusted(format!("{}: baseline: {why}{fault}", r.adapter)), Box::new(r)));
    }
    for (t, o) in &r.tier_tests {
        if !o.pass {
            log::warn!("gpu self-test: tier {} off on {}: {}", t.name(), r.adapter, o.detail);
        }
    }
    ctx.profile.tiers = tiers;
    if let Some(p) = &ctx.pipelines {
        p.save_if_grown(kernels.created());
    }
    Ok(Trusted { ctx, kernels, report: r })
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &GpuContext,
    dir: Option<&PathBuf>,
    key: AdapterKey,
    available: Tiers,
    quirks: &[&quirks::Quirk],
    opts: &TrustOptions,
    verdict: &Verdict,
    fresh: bool,
    tiers: Tiers,
    pipeline_cache: CacheState,
) -> GpuReport {
    GpuReport {
        adapter: ctx.profile.adapter_name.clone(),
        dir: dir.cloned(),
        key,
        available,
        quirks: quirks.iter().map(|q| q.why.to_string()).collect(),
        disabled: opts.disable.clone(),
        baseline: verdict.baseline.clone(),
        tier_tests: Tier::ALL.into_iter().filter_map(|t| verdict.tier(t).map(|o| (t, o.clone()))).collect(),
        fresh,
        tiers,
        pipeline_cache,
        fault: opts.fault.map(|f| f.name()),
    }
}
