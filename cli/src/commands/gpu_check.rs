//! `ember gpu-check`: the adapters wgpu sees, the chosen one's device
//! profile, the quirks applied, the self-test per tier (run now, with
//! timings, and stored as the adapter's verdict), the pipeline cache's state
//! and the names `EMBER_GPU_FAULT` accepts. `--json` for machines.

use anyhow::{bail, Result};
use clap::Args;
use ember::backend::wgpu::device::{device_type_name, list_adapters};
use ember::backend::wgpu::trust::fault::FAULT_NAMES;
use ember::backend::wgpu::trust::selftest::MAX_NMSE;
use ember::backend::wgpu::trust::{self, GpuReport, TrustOptions};
use ember::backend::wgpu::{AdapterPolicy, GpuContext};
use ember::config::EngineConfig;
use serde_json::json;

#[derive(Args)]
pub struct GpuCheckArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only real GPUs, as `--backend auto` picks without EMBER_GPU_ALLOW_SOFTWARE.
    #[arg(long)]
    pub hardware_only: bool,
}

pub fn run(a: GpuCheckArgs) -> Result<()> {
    let adapters = list_adapters();
    let mut opts = TrustOptions::from_config(&EngineConfig::default())?;
    opts.retest = true;
    let policy = if a.hardware_only { AdapterPolicy::HardwareOnly } else { AdapterPolicy::AllowSoftware };
    let t = std::time::Instant::now();
    let ctx = GpuContext::new(policy)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let profile = ctx.as_ref().map(|c| (c.profile.clone(), c.pipeline_cache_supported));
    let outcome = ctx.map(|c| trust::establish(c, &opts));
    let (report, error): (Option<GpuReport>, Option<String>) = match outcome {
        None => (None, None),
        Some(Ok(t)) => (Some(t.report), None),
        Some(Err((e, r))) => (Some(*r), Some(e.to_string())),
    };
    if a.json {
        let j = json!({
            "adapters": adapters.iter().map(|i| json!({
                "name": i.name, "backend": format!("{:?}", i.backend), "type": device_type_name(i.device_type),
                "vendor": i.vendor, "device": i.device, "driver": i.driver, "driver_info": i.driver_info,
            })).collect::<Vec<_>>(),
            "profile": profile.as_ref().map(|(p, pc)| json!({
                "adapter": p.adapter_name, "backend": p.backend, "type": p.device_type, "software": p.software,
                "shader_f16": p.f16, "subgroups": p.subgroups, "pipeline_cache": pc,
                "max_storage_buffer_binding_size": p.max_storage_buffer_binding_size, "max_buffer_size": p.max_buffer_size,
                "max_compute_workgroups_per_dimension": p.max_compute_workgroups_per_dimension,
            })),
            "device_open_ms": open_ms,
            "max_nmse": MAX_NMSE,
            "trust": report.as_ref().map(GpuReport::to_json),
            "trusted": report.is_some() && error.is_none(),
            "error": error,
            "fault_names": FAULT_NAMES,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!("adapters:");
        if adapters.is_empty() {
            println!("  none (for software Vulkan install mesa-vulkan-drivers)");
        }
        for i in &adapters {
            println!(
                "  {} ({:?}, {}; vendor {:#06x} device {:#06x}; driver {} {})",
                i.name,
                i.backend,
                device_type_name(i.device_type),
                i.vendor,
                i.device,
                i.driver,
                i.driver_info
            );
        }
        match &profile {
            None => println!("device: none under this policy{}", if a.hardware_only { " (--hardware-only)" } else { "" }),
            Some((p, pc)) => {
                println!("device: {} ({}, {}), opened in {open_ms:.0} ms", p.adapter_name, p.backend, p.device_type);
                println!(
                    "  max binding {} MiB, max buffer {} MiB, workgroups/dim {}",
                    p.max_storage_buffer_binding_size >> 20,
                    p.max_buffer_size >> 20,
                    p.max_compute_workgroups_per_dimension
                );
                println!("  SHADER_F16 {}, SUBGROUP {}, PIPELINE_CACHE {}", yes(p.f16), yes(p.subgroups), yes(*pc));
            }
        }
        if let Some(r) = &report {
            println!("tiers the device allows: {}", r.available.describe());
            println!("quirks applied: {}", if r.quirks.is_empty() { "none".to_string() } else { r.quirks.join("; ") });
            let disabled: Vec<&str> = r.disabled.iter().map(|t| t.name()).collect();
            println!("turned off (EMBER_GPU_DISABLE / config): {}", if disabled.is_empty() { "none".into() } else { disabled.join(",") });
            if let Some(f) = r.fault {
                println!("fault injected (EMBER_GPU_FAULT): {f}");
            }
            println!("self-test (golden model vs the CPU, pass: NMSE ≤ {MAX_NMSE:.0e}):");
            let line = |name: &str, o: &ember::backend::wgpu::trust::verdict::Outcome| {
                println!("  {name:<9} {}  NMSE {:.2e}  {:>7.1} ms  {}", if o.pass { "pass" } else { "FAIL" }, o.nmse, o.ms, o.detail)
            };
            if let Some(b) = &r.baseline {
                line("baseline", b);
            }
            for (t, o) in &r.tier_tests {
                line(&format!("+{}", t.name()), o);
            }
            match &error {
                None => println!("tiers in use: {}", r.tiers.describe()),
                Some(e) => println!("not trusted: {e} (backend auto uses the CPU)"),
            }
            println!("pipeline cache: {}", r.pipeline_cache.describe());
            if let Some(d) = &r.dir {
                println!("verdict and cache: {}", d.display());
            }
        }
        println!("EMBER_GPU_FAULT names: {}", FAULT_NAMES.join(", "));
    }
    if let Some(e) = error {
        bail!("{e}");
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
