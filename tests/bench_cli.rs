//! `ember bench` contract on the tiny llama fixture: the JSON object has the
//! promised fields, with positive values. Never asserts a speed.

mod common;

use common::{ember, fixtures};

#[test]
fn bench_json_has_positive_fields() {
    let model = fixtures().join("arch/llama.gguf");
    let out =
        ember().args(["bench", "-m", model.to_str().unwrap(), "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json"]).output().unwrap();
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

/// KV cache bytes per token in `ember bench --json` and `ember inspect`, per
/// cache type, against ggml's block sizes applied to the fixture's hparams
/// (llama_e256: 2 layers, 2 KV heads of 64 for K and V): f16 2 bytes a
/// value, q8_0 34 bytes per 32, q4_0 18 per 32.
#[test]
fn kv_bytes_per_token_follow_the_cache_types() {
    let model = fixtures().join("arch/llama_e256.gguf");
    let m = model.to_str().unwrap();
    let row = 2 * 64; // values per K (and per V) row
    let (f16, q8_0, q4_0) = (row * 2, row / 32 * 34, row / 32 * 18);
    let out = ember()
        .args([
            "bench",
            "-m",
            m,
            "-p",
            "8",
            "-n",
            "2",
            "-r",
            "1",
            "-t",
            "1",
            "--backend",
            "cpu",
            "--ctk",
            "q8_0",
            "--ctv",
            "q4_0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["cache_type_k"], "q8_0", "{v}");
    assert_eq!(v["cache_type_v"], "q4_0", "{v}");
    assert_eq!(v["kv_bytes_per_token"].as_u64(), Some(2 * (q8_0 + q4_0) as u64), "{v}");
    assert!(v["tg_tps"].as_f64().is_some_and(|x| x > 0.0), "{v}");

    let out = ember().args(["inspect", m]).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().find(|l| l.contains("KV-cache bytes/token")).unwrap_or_else(|| panic!("{s}"));
    for (bytes, ty) in [(f16, "f16"), (q8_0, "q8_0"), (q4_0, "q4_0")] {
        assert!(line.contains(&format!("{} (", 2 * 2 * bytes)) && line.contains(ty), "{ty}: {line}");
    }
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
    for key in ["pp_tps", "tg_tps", "load_ms", "peak_rss_mb", "dispatches_per_token", "dispatches_per_layer", "dispatches_head"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    // Decode: one submit per token, and a token records more than one layer.
    assert_eq!(v["submits_per_token"].as_f64(), Some(1.0), "{v}");
    assert!(v["dispatches_per_token"].as_f64() > v["dispatches_per_layer"].as_f64(), "{v}");
    // Weights on the device in their file size (tests/gpu_weight_bytes.rs has the bound).
    let (gpu, gguf) =
        (v["gpu_weight_bytes"].as_u64().expect("gpu_weight_bytes"), v["gguf_weight_bytes"].as_u64().expect("gguf_weight_bytes"));
    assert!(gguf > 0 && gpu >= gguf && (gpu as f64) < gguf as f64 * 1.02 + 256.0 * 64.0, "{v}");
    // Which backend ran, on which adapter and tiers, and why (issue 16).
    let r = &v["backend_report"];
    assert_eq!(r["backend"], "wgpu", "{r}");
    assert_eq!(r["requested"], "wgpu", "{r}");
    assert!(r["adapter"].as_str().is_some_and(|a| !a.is_empty()), "{r}");
    assert!(r["tiers"].is_string() && r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    assert!(r["gpu"].is_object(), "the GPU's judgement (self-test or stored verdict): {r}");
}

#[test]
fn bench_table_and_scalar_knob() {
    let model = fixtures().join("arch/llama.gguf");
    let out = ember().args(["bench", "-m", model.to_str().unwrap(), "-p", "8", "-n", "2", "-r", "1", "--scalar"]).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("pp8") && s.contains("tg2") && s.contains("scalar"), "{s}");
}

/// `--per-type`: one profiled pp and tg run, each op row with its calls and
/// time; the tiny llama fixture's products are all F32, and the shares of a
/// phase (ops + the untimed rest) add up to the whole phase.
#[test]
fn bench_per_type_times_products_by_weight_type() {
    let model = fixtures().join("arch/llama.gguf");
    let out = ember()
        .args([
            "bench",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "1",
            "-t",
            "1",
            "--backend",
            "cpu",
            "--per-type",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for phase in ["pp16", "tg4"] {
        let rows = v["per_type"][phase].as_array().unwrap_or_else(|| panic!("per_type.{phase} missing: {v}"));
        let op = |name: &str| rows.iter().find(|r| r["op"] == name).unwrap_or_else(|| panic!("{phase}: no {name} row: {rows:?}"));
        // 2 layers × (q, k, v, o, gate, up, down) + the output head, per token in generation.
        let mm = op("matmul F32");
        let per_pass = 2 * 7 + 1;
        let passes = if phase == "tg4" { 4 } else { 1 };
        assert_eq!(mm["calls"].as_u64(), Some(per_pass * passes), "{mm}");
        assert!(mm["ms"].as_f64().unwrap() > 0.0, "{mm}");
        assert_eq!(op("attention")["calls"].as_u64(), Some(2 * passes), "one attention per layer and pass");
        let share: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
        assert!((share - 1.0).abs() < 1e-6, "{phase}: shares sum to {share}");
    }
}
