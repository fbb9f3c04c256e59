//! Weights resident on the GPU in their own GGUF size (issue 15): every weight
//! buffer on the device holds at most 1.02× the same tensors' bytes in the
//! file, plus 256 bytes of alignment padding per tensor.
//!
//! On SmolLM2-135M Q4_1 and Gemma-3-270M Q4_K_M the weights are uploaded
//! (lavapipe) and the device buffers counted; the same count from the planner
//! (`GpuWeights::plan_bytes`, what `GpuMatrix::upload` allocates) must equal
//! it, so the synthetic 2B models (`scripts/gen-bench-models.sh`) are checked
//! through the planner alone, without uploading 1.5 GB to a software GPU.

mod common;

use std::sync::Arc;

use common::*;
use ember::backend::wgpu::{GpuWeights, WeightBytes};
use ember::gguf::GgufFile;
use ember::model::Model;
use ember::{BackendKind, Engine, EngineConfig};

/// The bound of issue 15.
fn assert_within_bound(name: &str, b: WeightBytes) {
    let bound = b.gguf as f64 * 1.02 + 256.0 * b.tensors as f64;
    eprintln!(
        "{name}: {} tensors, GPU {} bytes, file {} bytes: {:.5}× (bound {:.0})",
        b.tensors,
        b.gpu,
        b.gguf,
        b.gpu as f64 / b.gguf as f64,
        bound
    );
    assert!(b.gguf > 0 && b.tensors > 0, "{name}: nothing counted: {b:?}");
    assert!(b.gpu as f64 <= bound, "{name}: {} bytes on the GPU > 1.02 × {} + 256 × {}", b.gpu, b.gguf, b.tensors);
    assert!(b.gpu >= b.gguf, "{name}: fewer bytes on the GPU than in the file: {b:?}");
}

/// Uploads `path` to the wgpu adapter and checks the measured bytes against
/// the bound and against the planner.
fn uploaded(path: &std::path::Path) {
    if !wgpu_available() {
        return;
    }
    let config = EngineConfig { backend: BackendKind::Wgpu, n_ctx: Some(64), ..Default::default() };
    let engine = Engine::load(path, config).unwrap();
    let gpu = engine.gpu().expect("the wgpu backend");
    let measured = gpu.weight_bytes();
    let planned = GpuWeights::plan_bytes(&engine.model().unwrap().forward().graph().weights, gpu.ctx.profile.max_binding()).unwrap();
    assert_eq!(measured, planned, "the planner counts what the upload allocates");
    assert_within_bound(&path.file_name().unwrap().to_string_lossy(), measured);
}

#[test]
fn smollm2_q4_1_weights_on_the_gpu_in_their_file_size() {
    uploaded(&smollm2());
}

#[test]
fn gemma3_q4_k_m_weights_on_the_gpu_in_their_file_size() {
    uploaded(&gemma3());
}

/// The synthetic MiniCPM-2B models (2.7 B parameters, Q4_0 and the Q4_K_M
/// mix of Q4_K/Q6_K/Q8_0/Q5_0) through the planner, at lavapipe's and many
/// phones' 128 MiB binding limit and at 2 GiB.
#[test]
fn synthetic_2b_weights_planned_in_their_file_size() {
    let dir = std::env::var_os("EMBER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ember/bench"));
    let mut seen = 0;
    for name in ["minicpm2b-q4_k.gguf", "minicpm2b-q4_k_m.gguf", "minicpm2b-q4_0.gguf"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        seen += 1;
        let model = Model::from_gguf(Arc::new(GgufFile::open(&path).unwrap())).unwrap();
        for limit in [128u64 << 20, 2 << 30] {
            let b = GpuWeights::plan_bytes(&model.forward().graph().weights, limit).unwrap();
            assert_within_bound(&format!("{name} (binding limit {} MiB)", limit >> 20), b);
        }
    }
    if seen == 0 {
        let required = std::env::var_os("CI").is_some() || std::env::var("EMBER_REQUIRE_BENCH_MODELS").as_deref() == Ok("1");
        assert!(!required, "no synthetic 2B model in {}: run scripts/gen-bench-models.sh", dir.display());
        eprintln!("SKIPPED: no synthetic 2B model in {} (scripts/gen-bench-models.sh writes them)", dir.display());
    }
}
