//! The tiny per-architecture fixtures (llama.cpp-made: llama in F32 and every
//! quant format; minicpm, minicpm3 (MLA), qwen2, qwen3, gemma3, phi3, olmo2 in F32)
//! reproduced through a real forward pass, against the logits llama.cpp
//! computed on them (see tests/fixtures/arch and the README of shared/reference/arch).

use std::path::PathBuf;
use std::sync::Arc;

use ember::backend::cpu::{CpuBackend, CpuRunner};
use ember::gguf::GgufFile;
use ember::graph::{Runner, Want};
use ember::model::Model;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch")
}

struct Comparison {
    max_abs: f32,
    mean_abs: f32,
    /// Positions where llama.cpp's top-1/top-2 margin is ≥ 0.3, and how many of them agree.
    confident: usize,
    agree: usize,
}

fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().fold(0, |b, (i, &v)| if v > r[b] { i } else { b })
}

fn run_fixture(name: &str, reference: &str) -> Comparison {
    run_fixture_ctx(name, reference, 256, 1.0)
}

/// Our logits over the fixture's 40 ids with a session of `n_ctx`.
fn our_logits(name: &str, n_ctx: usize) -> Vec<f32> {
    let dir = fixture_dir();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let ids: Vec<u32> = meta["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let file = Arc::new(GgufFile::open(dir.join(format!("{name}.gguf"))).unwrap());
    let model = Model::from_gguf(file).unwrap();
    let be = Arc::new(CpuBackend::new(2).unwrap());
    let mut runner = CpuRunner::new(be, model.forward().clone(), n_ctx);
    let mut logits = Vec::new();
    runner.forward(&ids, 0, Want::All, &mut logits).unwrap();
    logits
}

/// Compares our logits (session of `n_ctx`) with `NAME.reference`, whose
/// values are multiplied by `ref_mul` first.
fn run_fixture_ctx(name: &str, reference: &str, n_ctx: usize, ref_mul: f32) -> Comparison {
    let dir = fixture_dir();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let ids: Vec<u32> = meta["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let n_vocab = meta["n_vocab"].as_u64().unwrap() as usize;
    let want = std::fs::read(dir.join(format!("{name}.{reference}"))).unwrap();
    let want: Vec<f32> = want.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) * ref_mul).collect();
    assert_eq!(want.len(), ids.len() * n_vocab);
    let logits = our_logits(name, n_ctx);
    assert_eq!(logits.len(), want.len());

    let mut c = Comparison { max_abs: 0.0, mean_abs: 0.0, confident: 0, agree: 0 };
    let mut sum = 0f64;
    for (got, exp) in logits.chunks(n_vocab).zip(want.chunks(n_vocab)) {
        for (a, b) in got.iter().zip(exp) {
            let d = (a - b).abs();
            c.max_abs = c.max_abs.max(d);
            sum += d as f64;
        }
        let top = argmax(exp);
        let second = exp.iter().enumerate().filter(|&(i, _)| i != top).map(|(_, &v)| v).fold(f32::MIN, f32::max);
        if exp[top] - second >= 0.3 {
            c.confident += 1;
            c.agree += (argmax(got) == top) as usize;
        }
    }
    c.mean_abs = (sum / want.len() as f64) as f32;
    eprintln!(
        "{name} (n_ctx {n_ctx}) vs {reference}: max|Δ| {:.2e}, mean|Δ| {:.2e}, top-1 {}/{} confident positions",
        c.max_abs, c.mean_abs, c.agree, c.confident
    );
    c
}

/// Float fixtures: our f16 KV cache rounds like llama.cpp's default, so we are
/// held to its default-run logits at the README's ~2e-2.
#[test]
fn llama_f32_fixtures_match_llama_cpp() {
    for name in ["llama", "llama_e256"] {
        let c = run_fixture(name, "logits.f32");
        assert!(c.max_abs <= 2e-2, "{name}: max |Δlogit| {} > 2e-2", c.max_abs);
        assert_eq!(c.agree, c.confident, "{name}: top-1 disagreement");
    }
}

/// Quantized fixtures: top-1 equal at ≥ 95% of confident positions, mean
/// |Δlogit| ≤ 0.1, max ≤ 0.3 (the fixtures README: llama.cpp's own noise reaches 0.15).
#[test]
fn llama_quantized_fixtures_match_llama_cpp() {
    let mut failures = Vec::new();
    for q in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"] {
        let name = format!("llama_e256_{q}");
        let c = run_fixture(&name, "logits.f32");
        let ok = c.agree as f64 >= 0.95 * c.confident as f64 && c.mean_abs <= 0.1 && c.max_abs <= 0.3;
        if !ok {
            failures.push(format!("{name}: max {:.3} mean {:.4} top-1 {}/{}", c.max_abs, c.mean_abs, c.agree, c.confident));
        }
    }
    assert!(failures.is_empty(), "fixtures off: {failures:#?}");
}

/// The float fixtures of the other architectures, run at session n_ctx 256 and
/// 512. 512 > context_length 256 switches the LongRoPE fixtures to their long
/// factors, so at 512 those are held to their `nctx512` logits instead.
const FLOAT_FIXTURES: &[&str] =
    &["minicpm", "minicpm_longrope", "minicpm3", "minicpm3_longrope", "qwen2", "qwen3", "gemma3", "gemma3_pattern3", "phi3", "olmo2"];

fn is_longrope(name: &str) -> bool {
    name.ends_with("_longrope")
}

/// The criterion: every logit within 0.05 of llama.cpp's f32-KV run
/// (`kvf32`). Also reported, and held at 2e-2: the default f16-KV run, whose
/// rounding our f16 cache follows.
fn check_float(n_ctx: usize) {
    let mut failures = Vec::new();
    for &name in FLOAT_FIXTURES {
        // At n_ctx 512 the LongRoPE fixtures switch to their long factors: held to the nctx512 logits.
        if n_ctx == 512 && is_longrope(name) {
            continue;
        }
        let a = run_fixture_ctx(name, "kvf32.logits.f32", n_ctx, 1.0);
        let b = run_fixture_ctx(name, "logits.f32", n_ctx, 1.0);
        eprintln!("{name} n_ctx {n_ctx}: max|Δ| vs kvf32 {:.2e}, vs f16-KV {:.2e}", a.max_abs, b.max_abs);
        if a.max_abs > 0.05 || b.max_abs > 2e-2 || a.agree != a.confident {
            failures.push(format!("{name}: vs kvf32 {:.3e}, vs f16-KV {:.3e}, top-1 {}/{}", a.max_abs, b.max_abs, a.agree, a.confident));
        }
    }
    assert!(failures.is_empty(), "fixtures off at n_ctx {n_ctx}: {failures:#?}");
}

#[test]
fn arch_float_fixtures_match_llama_cpp_ctx256() {
    check_float(256);
}

#[test]
fn arch_float_fixtures_match_llama_cpp_ctx512() {
    check_float(512);
}

/// LongRoPE: a session of 512 > context_length 256 uses `rope_factors_long`
/// (llama.cpp's `nctx512` logits, f16 KV); 256 uses the short ones, which
/// must differ by far more than the noise (README: 7.1 and 3.6).
#[test]
fn longrope_factors_follow_session_n_ctx() {
    for name in ["minicpm_longrope", "minicpm3_longrope"] {
        let long = run_fixture_ctx(name, "nctx512.logits.f32", 512, 1.0);
        assert!(long.max_abs <= 0.05, "{name} at n_ctx 512: max |Δ| {} vs nctx512", long.max_abs);
        let wrong = run_fixture_ctx(name, "nctx512.logits.f32", 256, 1.0);
        assert!(wrong.max_abs > 1.0, "{name}: n_ctx 256 should use the short factors");
    }
}

/// minicpm_nokeys has none of the scale keys. We use MiniCPM's own default
/// (final hidden ÷ (n_embd/256) = ×4 for n_embd 64); llama.cpp divides the
/// logits by 256/n_embd = 4 instead. So ours = llama.cpp's × 16, exactly up
/// to noise — and not llama.cpp's logits themselves.
#[test]
fn minicpm_nokeys_follows_minicpm_not_llama_cpp() {
    let c = run_fixture_ctx("minicpm_nokeys", "kvf32.logits.f32", 256, 16.0);
    assert!(c.max_abs <= 0.05 && c.mean_abs <= 0.01, "nokeys vs 16 × llama.cpp: {} / {}", c.max_abs, c.mean_abs);
    assert_eq!(c.agree, c.confident);
    let plain = run_fixture_ctx("minicpm_nokeys", "kvf32.logits.f32", 256, 1.0);
    assert!(plain.max_abs > 1.0, "nokeys must not reproduce llama.cpp's inverted scale");
}

#[test]
fn unknown_architecture_missing_tensor_and_missing_key_are_named() {
    use ember::gguf::GgufFile;
    let dir = fixture_dir();
    // Rewrite general.architecture's value in place: "qwen2" → "qwenX" (same length).
    let mut bytes = std::fs::read(dir.join("qwen2.gguf")).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let val = at + bytes[at..].windows(5).position(|w| w == b"qwen2").unwrap();
    bytes[val + 4] = b'X';
    let err = Model::from_gguf(Arc::new(GgufFile::from_bytes(bytes).unwrap())).err().expect("unknown arch must fail");
    let msg = err.to_string();
    assert!(msg.contains("qwenX") && msg.contains("minicpm3") && msg.contains("gemma3"), "{msg}");

    // Rename a tensor: "blk.1.attn_q.bias" → "blk.1.attn_q.biaX".
    let mut bytes = std::fs::read(dir.join("qwen2.gguf")).unwrap();
    let name = b"blk.1.attn_q.bias";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    bytes[at + name.len() - 1] = b'X';
    let err = Model::from_gguf(Arc::new(GgufFile::from_bytes(bytes).unwrap())).err().expect("missing tensor must fail");
    assert!(err.to_string().contains("blk.1.attn_q.bias"), "{err}");

    // Rename a required key: "gemma3.attention.sliding_window" → "…sliding_windoX".
    let mut bytes = std::fs::read(dir.join("gemma3.gguf")).unwrap();
    let key = b"gemma3.attention.sliding_window";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes[at + key.len() - 1] = b'X';
    let err = Model::from_gguf(Arc::new(GgufFile::from_bytes(bytes).unwrap())).err().expect("missing key must fail");
    assert!(err.to_string().contains("gemma3.attention.sliding_window"), "{err}");
}

/// KV bytes per token as each cache stores it (f16): standard K+V rows, and
/// MLA's latent + rope key (far less than the expanded K/V).
#[test]
fn kv_bytes_per_token_reported() {
    let kv = |name: &str| {
        let file = Arc::new(GgufFile::open(fixture_dir().join(format!("{name}.gguf"))).unwrap());
        let m = Model::from_gguf(file).unwrap();
        let be = Arc::new(CpuBackend::new(1).unwrap());
        (m.info().kv_bytes_per_token, (CpuRunner::new(be, m.forward().clone(), 16).kv_bytes() / 16) as u64)
    };
    // minicpm3: 2 layers × (kv_lora 32 + rope 8) × 2 bytes; expanded would be 2 × 4 × (24 + 32) × 2.
    assert_eq!(kv("minicpm3"), (160, 160));
    // qwen3: 2 layers × 2 kv heads × (32 + 32) × 2 bytes.
    assert_eq!(kv("qwen3"), (512, 512));
    assert_eq!(kv("gemma3"), (7 * 2 * 64 * 2, 7 * 2 * 64 * 2));
}
