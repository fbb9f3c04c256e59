//! Helpers shared by the end-to-end tests: where fixtures and models are, and
//! running the `ember` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The model cache as `ember` computes it (EMBER_HOME, XDG_CACHE_HOME, ~/.cache).
pub fn models_dir() -> PathBuf {
    let home = match std::env::var_os("EMBER_HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x).join("ember"),
            None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ember"),
        },
    };
    home.join("models")
}

/// A reference model's path; fails (never skips) when it has not been fetched.
pub fn model(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh (or `ember pull`) first",
        p.display()
    );
    p
}

pub fn smollm2() -> PathBuf {
    model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn gemma3() -> PathBuf {
    model("gemma-3-270m-q4_k_m.gguf")
}

pub fn ember() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    c.env_remove("EMBER_LOG");
    c
}

/// Runs ember with args; returns the output (whatever the status).
pub fn run(args: &[&str]) -> Output {
    ember().args(args).output().expect("cannot start ember")
}

/// Runs ember and requires success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "ember {:?} failed ({}): {}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Whether `ember --backend wgpu` finds an adapter. Without one, fails when
/// `CI` is set or `EMBER_REQUIRE_GPU=1` (a GPU test must not pass silently
/// there) and prints a skip message otherwise.
pub fn wgpu_available() -> bool {
    let out = run(&["run", "-m", smollm2().to_str().unwrap(), "-p", "a", "-n", "1", "--backend", "wgpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return true;
    }
    let required = std::env::var_os("CI").is_some() || std::env::var("EMBER_REQUIRE_GPU").as_deref() == Ok("1");
    assert!(!required, "wgpu backend unavailable and CI / EMBER_REQUIRE_GPU=1 requires it: {err}");
    assert!(err.contains("no wgpu adapter"), "ember --backend wgpu failed: {err}");
    eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers for lavapipe; EMBER_REQUIRE_GPU=1 makes this fail)");
    false
}
