//! The fused tier (`DeviceProfile.tiers.fused`) on real models: the same
//! logits, bit for bit, with fusion on and off (every fused kernel is
//! bit-exact with the unfused kernels it replaces; each is parity-tested on
//! its own in wgpu_kernels.rs), and the dispatches a decode token records
//! with each. The unfused counts are derived by hand from the layer's op list
//! (docs/GPU.md), so a change to either path shows here.
//!
//! Needs the reference models (`scripts/fetch-models.sh`; a missing model is
//! a failure) and a wgpu adapter (lavapipe in CI; without one the tests fail
//! when `CI` or `EMBER_REQUIRE_GPU=1` is set and print a skip otherwise).

use std::path::PathBuf;
use std::sync::Arc;

use ember::backend::wgpu::{AdapterPolicy, DispatchCounts, GpuContext, WgpuBackend};
use ember::gguf::GgufFile;
use ember::graph::{Runner, Want};
use ember::model::Model;

fn model_path(file: &str) -> PathBuf {
    let dir = match std::env::var_os("EMBER_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h).join("models"),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ember/models"),
    };
    let path = dir.join(file);
    assert!(path.exists(), "model file {} is missing: run scripts/fetch-models.sh first", path.display());
    path
}

/// The model's graph on wgpu with the fused tier on or off.
fn backend(file: &str, fused: bool) -> Option<Arc<WgpuBackend>> {
    let Some(mut ctx) = GpuContext::new(AdapterPolicy::AllowSoftware).expect("wgpu device") else {
        let required = std::env::var_os("CI").is_some() || std::env::var("EMBER_REQUIRE_GPU").as_deref() == Ok("1");
        assert!(!required, "no wgpu adapter found, and CI / EMBER_REQUIRE_GPU=1 requires one (install mesa-vulkan-drivers)");
        eprintln!("SKIPPED: no wgpu adapter found (install mesa-vulkan-drivers for lavapipe)");
        return None;
    };
    ctx.profile.tiers.fused = fused;
    let file = Arc::new(GgufFile::open(model_path(file)).expect("open model"));
    let model = Model::from_gguf(file).expect("load model");
    Some(Arc::new(WgpuBackend::new(ctx, model.forward().clone()).expect("wgpu backend")))
}

/// Logits of a 7-token prompt (every row) and of 3 decode steps after it.
fn logits(be: &Arc<WgpuBackend>) -> Vec<Vec<f32>> {
    let mut r = be.new_runner(32).expect("runner");
    let prompt = [1u32, 504, 3575, 282, 4649, 314, 17];
    let mut out = Vec::new();
    let mut l = Vec::new();
    r.forward(&prompt, 0, Want::All, &mut l).expect("prompt");
    out.push(l.clone());
    for (i, id) in [1345u32, 30, 812].into_iter().enumerate() {
        r.forward(&[id], prompt.len() + i, Want::Last, &mut l).expect("decode");
        out.push(l.clone());
    }
    out
}

fn same_logits(name: &str, on: &Arc<WgpuBackend>, off: &Arc<WgpuBackend>) {
    let (a, b) = (logits(on), logits(off));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.len(), y.len(), "{name}: pass {i} length");
        let max = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(x.iter().all(|v| v.is_finite()), "{name}: pass {i} non-finite logits");
        let differ = x.iter().zip(y).filter(|(p, q)| p.to_bits() != q.to_bits()).count();
        eprintln!("  {name} pass {i}: {} logits, {differ} differ, max |Δ| {max:e}", x.len());
        assert_eq!(differ, 0, "{name}: pass {i}: fused and unfused logits differ (max |Δ| {max})");
    }
}

fn report(name: &str, c: &DispatchCounts) {
    eprintln!("  {name}: {} dispatches per decode token ({} layers, {} per layer, head {})", c.per_token, c.n_layer, c.per_layer, c.head);
}

#[test]
fn smollm2_fused_logits_equal_unfused_and_layers_take_fewer_dispatches() {
    let file = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let (Some(on), Some(off)) = (backend(file, true), backend(file, false)) else { return };
    let (c_on, c_off) = (on.decode_dispatches().unwrap(), off.decode_dispatches().unwrap());
    report("SmolLM2 fused", &c_on);
    report("SmolLM2 unfused", &c_off);
    // Unfused, per layer: norm; act_quant + product for q, k, v (6); rope q,
    // rope k; kv_store k, v; attention; act_quant + o; add; norm; act_quant +
    // product for gate, up (4); glu; act_quant + down; add = 24. Head: norm,
    // act_quant, product. Token: embedding + 30 layers + head.
    assert_eq!(c_off.n_layer, 30);
    assert_eq!((c_off.per_layer, c_off.head, c_off.per_token), (24, 3, 1 + 30 * 24 + 3));
    // Fused: norm+round; q, k, v in one group; rope_kv; attention; o
    // rounding x + add; norm+round; gate, up and the GLU in one group; down
    // rounding x + add = 8. Head: norm+round, product.
    assert_eq!((c_on.per_layer, c_on.head, c_on.per_token), (8, 2, 1 + 30 * 8 + 2));
    same_logits("SmolLM2", &on, &off);
}

#[test]
fn gemma3_fused_logits_equal_unfused() {
    // Mixed types (Q5_0/Q8_0 attention, Q4_K/Q6_K FFN rounded in 256-blocks
    // over n_embd 640): only the fusions whose conditions hold apply.
    let file = "gemma-3-270m-q4_k_m.gguf";
    let (Some(on), Some(off)) = (backend(file, true), backend(file, false)) else { return };
    let (c_on, c_off) = (on.decode_dispatches().unwrap(), off.decode_dispatches().unwrap());
    report("Gemma-3 fused", &c_on);
    report("Gemma-3 unfused", &c_off);
    assert!(c_on.per_layer < c_off.per_layer, "the fused tier should merge something in every Gemma-3 layer");
    // Unfused: 29 per layer, head 4 (its logit soft-cap). Fused: gate/up and
    // the GELU in one group everywhere (the Q6_K/Q4_K down product still
    // rounds x in act_quant, 256-blocks); q/k/v in one group in the 9 layers
    // whose v is Q5_0 like q and k (the Q8_0 ones keep three products). The
    // most per layer: 18, from a layer with three q/k/v products.
    assert_eq!((c_off.per_layer, c_off.head, c_off.per_token), (29, 4, 529));
    assert_eq!((c_on.per_layer, c_on.head, c_on.per_token), (18, 3, 312));
    same_logits("Gemma-3", &on, &off);
}
