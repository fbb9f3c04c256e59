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
    assert_eq!(v["backend"], "cpu");
    assert!(v["kernels"].is_string());
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
