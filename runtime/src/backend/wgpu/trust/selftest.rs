//! The golden test: the tiny model of [`super::golden`] run on the GPU with a
//! given set of tiers, its logits (every position of the prompt, then each
//! decode step) compared with the CPU backend's on the same model.

use crate::time::Instant;
use std::sync::Arc;

use super::golden;
use super::verdict::Outcome;
use crate::backend::cpu::{CpuBackend, CpuRunner};
use crate::backend::wgpu::device::{GpuContext, Tiers};
use crate::backend::wgpu::exec::WgpuBackend;
use crate::backend::wgpu::kernels::Kernels;
use crate::graph::{Runner, Want};
use crate::model::Model;
use crate::{Error, Result};

/// Largest normalized mean squared error of the GPU's logits against the
/// CPU's that passes. The kernels' parity tests hold ≤ 2e-13 per product and
/// the whole model agrees to ~1e-10 on lavapipe; an f16 tier may round more.
/// A kernel writing wrong values (`EMBER_GPU_FAULT`, ×4) gives NMSE ≳ 1e-2.
pub const MAX_NMSE: f64 = 1e-4;

/// The golden model and its CPU answers, made once per self-test.
pub struct Golden {
    model: Model,
    reference: Vec<f32>,
}

/// Logits of the golden sequence: all prompt rows, then each decode step's row.
fn logits_of(r: &mut dyn Runner) -> Result<Vec<f32>> {
    let mut all = Vec::new();
    let mut l = Vec::new();
    r.forward(&golden::PROMPT, 0, Want::All, &mut l)?;
    all.extend_from_slice(&l);
    for (i, &t) in golden::DECODE.iter().enumerate() {
        r.forward(&[t], golden::PROMPT.len() + i, Want::All, &mut l)?;
        all.extend_from_slice(&l);
    }
    Ok(all)
}

/// `Σ(a−b)² / Σb²`; infinite when anything is not finite or lengths differ.
pub fn nmse(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    num / den.max(f64::MIN_POSITIVE)
}

impl Golden {
    pub fn new() -> Result<Golden> {
        let model = golden::model()?;
        let cpu = Arc::new(CpuBackend::new(1)?);
        let mut r = CpuRunner::new(cpu, model.forward().clone(), golden::N_CTX);
        let reference = logits_of(&mut r)?;
        Ok(Golden { model, reference })
    }

    /// Runs the golden model on `ctx`'s device with `tiers` (pipelines from
    /// `kernels`). Never fails: an error or a panic is a failed outcome.
    pub fn run(&self, ctx: &GpuContext, kernels: &Arc<Kernels>, tiers: Tiers) -> Outcome {
        let t = Instant::now();
        let mut ctx = ctx.clone();
        ctx.profile.tiers = tiers;
        // device_lost is a fault of sessions, not of answers.
        ctx.fault = ctx.fault.filter(|f| !f.is_device_lost());
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<f32>> {
            let be = Arc::new(WgpuBackend::with_kernels(ctx, self.model.forward().clone(), kernels.clone())?);
            let mut r = be.new_runner(golden::N_CTX)?;
            logits_of(&mut r)
        }));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let res = run.unwrap_or_else(|p| {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(Error::Backend(format!("panic: {}", msg.unwrap_or_default())))
        });
        match res {
            Ok(gpu) => {
                let e = nmse(&gpu, &self.reference);
                let pass = e <= MAX_NMSE;
                let detail = if pass {
                    "logits match the CPU".to_string()
                } else {
                    format!("logits differ from the CPU: NMSE {e:.3e} > {MAX_NMSE:.0e}")
                };
                Outcome { pass, nmse: if e.is_finite() { e } else { f64::MAX }, ms, detail }
            }
            Err(e) => Outcome { pass: false, nmse: f64::MAX, ms, detail: e.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmse_is_zero_for_equal_and_infinite_for_nan() {
        assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((nmse(&[2.0, 4.0], &[1.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!(nmse(&[f32::NAN, 2.0], &[1.0, 2.0]).is_infinite());
        assert!(nmse(&[1.0], &[1.0, 2.0]).is_infinite());
    }

    /// The golden model loads and the CPU reference is finite and not flat
    /// (a fault must be able to move it).
    #[test]
    fn golden_model_runs_on_the_cpu() {
        let g = Golden::new().unwrap();
        let rows = golden::PROMPT.len() + golden::DECODE.len();
        assert_eq!(g.reference.len(), rows * golden::N_VOCAB);
        assert!(g.reference.iter().all(|v| v.is_finite()));
        let first = &g.reference[..golden::N_VOCAB];
        let spread = first.iter().cloned().fold(f32::MIN, f32::max) - first.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 0.5, "logits spread {spread}");
    }
}
