//! Issue 16 on the real CLI and SmolLM2 (lavapipe in CI): a kernel broken on
//! purpose (`EMBER_GPU_FAULT`) is caught by the self-test, `--backend auto`
//! then answers exactly like the CPU and says why on stderr, `--backend wgpu`
//! fails with a clear error and nothing on stdout; a device lost mid-session
//! moves the session to the CPU; corrupt verdict and pipeline-cache files are
//! survived and rewritten. Each GPU directory is a fresh temporary
//! `$EMBER_HOME/gpu` (the models are passed by path).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

const PROMPT: &str = "The capital of France is";

fn gpu_home(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-gpu-trust-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ember_in(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = ember();
    c.env("EMBER_HOME", home).env_remove("EMBER_GPU_FAULT").env_remove("EMBER_GPU_DISABLE").env_remove("EMBER_GPU_ALLOW_SOFTWARE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().expect("cannot start ember")
}

fn greedy(home: &Path, backend: &str, env: &[(&str, &str)]) -> Output {
    let m = smollm2();
    ember_in(home, env, &["run", "-m", m.to_str().unwrap(), "-p", PROMPT, "-n", "8", "--temp", "0", "--backend", backend])
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether any adapter exists (`ember gpu-check --json`); like
/// `wgpu_available`, a missing one fails under CI / EMBER_REQUIRE_GPU=1.
fn adapter(home: &Path) -> bool {
    let out = ember_in(home, &[], &["gpu-check", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("gpu-check --json prints JSON");
    if !j["profile"].is_null() {
        return true;
    }
    let required = std::env::var_os("CI").is_some() || std::env::var("EMBER_REQUIRE_GPU").as_deref() == Ok("1");
    assert!(!required, "no wgpu adapter and CI / EMBER_REQUIRE_GPU=1 requires one: {}", err(&out));
    eprintln!("SKIPPED: no wgpu adapter");
    false
}

#[test]
fn a_broken_kernel_means_the_cpu_with_auto_and_an_error_with_wgpu() {
    let home = gpu_home("fault");
    if !adapter(&home) {
        return;
    }
    let cpu = greedy(&home, "cpu", &[]);
    assert!(cpu.status.success(), "{}", err(&cpu));
    let want = text(&cpu);
    assert!(want.contains("Paris"), "{want}");
    for fault in ["matmul", "rms_norm", "rope", "attention"] {
        let auto = greedy(&home, "auto", &[("EMBER_GPU_FAULT", fault), ("EMBER_GPU_ALLOW_SOFTWARE", "1")]);
        assert!(auto.status.success(), "{fault}: {}", err(&auto));
        assert_eq!(text(&auto), want, "{fault}: auto must give the CPU's greedy text");
        let why = err(&auto);
        assert!(
            why.contains("self-test failed") && why.contains(&format!("EMBER_GPU_FAULT={fault}")) && why.contains("using the CPU"),
            "{fault}: {why}"
        );

        let wgpu = greedy(&home, "wgpu", &[("EMBER_GPU_FAULT", fault)]);
        assert!(!wgpu.status.success(), "{fault}: --backend wgpu must fail");
        assert_eq!(text(&wgpu), "", "{fault}: nothing on stdout");
        assert!(err(&wgpu).contains("gpu self-test failed"), "{fault}: {}", err(&wgpu));
    }
    // Lost mid-session (after the prompt): the session re-evaluates its tokens on the CPU.
    let lost = greedy(&home, "auto", &[("EMBER_GPU_FAULT", "device_lost"), ("EMBER_GPU_ALLOW_SOFTWARE", "1")]);
    assert!(lost.status.success(), "{}", err(&lost));
    assert_eq!(text(&lost), want, "device lost: the CPU's text");
    assert!(err(&lost).contains("continuing on the CPU"), "{}", err(&lost));
    // An unknown fault name is an error, not ignored.
    let bad = greedy(&home, "wgpu", &[("EMBER_GPU_FAULT", "softmax")]);
    assert!(!bad.status.success() && err(&bad).contains("unknown kernel 'softmax'"), "{}", err(&bad));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn corrupt_verdict_and_pipeline_cache_are_survived() {
    let home = gpu_home("corrupt");
    if !adapter(&home) {
        return;
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(home.join("gpu")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "one adapter directory: {dirs:?}");
    let (verdict, cache) = (dirs[0].join("verdict.json"), dirs[0].join("pipelines.bin"));
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&verdict).unwrap()).unwrap();
    assert_eq!(good["baseline"]["pass"], true, "{good}");
    let has_cache = cache.exists();
    std::fs::write(&verdict, b"{\"key\": {\"vendor\": tr").unwrap();
    if has_cache {
        let mut bytes = std::fs::read(&cache).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&cache, &bytes).unwrap();
    }
    // The model runs, the verdict is rewritten (the self-test ran again).
    let out = greedy(&home, "wgpu", &[]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(text(&out).contains("Paris"), "{}", text(&out));
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&verdict).unwrap()).expect("verdict rewritten as JSON");
    assert_eq!(again["baseline"]["pass"], true, "{again}");
    if has_cache {
        assert!(err(&out).contains("not a valid cache file"), "{}", err(&out));
        assert!(std::fs::read(&cache).unwrap().starts_with(b"EMBERPC1"), "cache rewritten");
        let check = ember_in(&home, &[], &["gpu-check", "--json"]);
        let j: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
        assert!(j["trust"]["pipeline_cache"].as_str().unwrap().starts_with("warm"), "{j}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
