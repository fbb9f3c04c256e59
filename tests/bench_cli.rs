//! `ember bench` contract on the tiny llama fixture: the JSON object has the
//! promised fields, with positive values. Never asserts a speed.

mod common;

use common::{ember, fixtures};

#[test]
fn bench_json_has_positive_fields() {
    let model = fixtures().join("arch/llama.gguf");
    let out = ember()
        .args(["bench", "-m", model.to_str().unwrap(), "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for key in ["pp_tps", "tg_tps", "load_ms", "peak_rss_mb"] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {v}"));
        assert!(x > 0.0, "{key} = {x}");
    }
    assert_eq!(v["n_prompt"], 16);
    assert_eq!(v["n_gen"], 4);
    assert_eq!(v["reps"], 1);
    assert_eq!(v["threads"], 1);
    // `auto` on a machine without a real GPU: the CPU (lavapipe is never picked by auto).
    assert!(v["backend"] == "cpu" || v["backend"] == "wgpu", "{v}");
    assert!(v["kernels"].is_string());
}

/// `ember bench --backend wgpu` runs the forward pass on the GPU and says so.
#[test]
fn bench_on_wgpu_reports_the_gpu_backend() {
    if !common::wgpu_available() {
        return;
    }
    let model = fixtures().join("arch/qwen3.gguf");
    let out = ember()
        .args(["bench", "-m", model.to_str().unwrap(), "-p", "16", "-n", "4", "-r", "1", "--backend", "wgpu", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["backend"], "wgpu", "{v}");
    for key in ["pp_tps", "tg_tps", "load_ms", "peak_rss_mb"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
}

#[test]
fn bench_table_and_scalar_knob() {
    let model = fixtures().join("arch/llama.gguf");
    let out = ember()
        .args(["bench", "-m", model.to_str().unwrap(), "-p", "8", "-n", "2", "-r", "1", "--scalar"])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("pp8") && s.contains("tg2") && s.contains("scalar"), "{s}");
}
