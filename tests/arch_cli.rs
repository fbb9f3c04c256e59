//! The architecture fixtures through the real `ember` binary, as issue 5
//! demands: `ember logits -m FIXTURE --ids … --ctx 256` (and `--ctx 512` for
//! the LongRoPE fixtures' `nctx512` logits) with every logit within 0.05 of
//! llama.cpp's f32-KV-cache logits; and `ember inspect` reporting the sizes.

mod common;

use common::*;

fn arch(name: &str) -> std::path::PathBuf {
    fixtures().join("arch").join(name)
}

/// Max |Δ| between `ember logits` (full rows) and `NAME.REFERENCE`.
fn max_abs_diff(name: &str, reference: &str, ctx: usize) -> f32 {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(arch(&format!("{name}.json"))).unwrap()).unwrap();
    let ids: Vec<String> = ids_of(&meta["ids"]).iter().map(u32::to_string).collect();
    let n_vocab = meta["n_vocab"].as_u64().unwrap() as usize;
    let want = read_f32(&arch(&format!("{name}.{reference}")));
    let model = arch(&format!("{name}.gguf"));
    let out = run_ok(&["logits", "-m", model.to_str().unwrap(), "--ids", &ids.join(","), "--ctx", &ctx.to_string(), "-t", "2"]);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), ids.len(), "{name}: one line per position");
    let mut max = 0f32;
    for (pos, (row, exp)) in rows.iter().zip(want.chunks(n_vocab)).enumerate() {
        assert_eq!(row["pos"].as_u64(), Some(pos as u64));
        let got = row["logits"].as_array().unwrap();
        assert_eq!(got.len(), n_vocab);
        for (g, e) in got.iter().zip(exp) {
            max = max.max((g.as_f64().unwrap() as f32 - e).abs());
        }
    }
    eprintln!("{name} --ctx {ctx} vs {reference}: max |Δ| {max:.2e}");
    max
}

#[test]
fn logits_of_every_arch_fixture_match_llama_cpp_kvf32() {
    let mut bad = Vec::new();
    for name in [
        "minicpm",
        "minicpm_longrope",
        "minicpm3",
        "minicpm3_longrope",
        "qwen2",
        "qwen3",
        "gemma3",
        "gemma3_pattern3",
        "phi3",
    ] {
        let d = max_abs_diff(name, "kvf32.logits.f32", 256);
        if d > 0.05 {
            bad.push(format!("{name}: {d}"));
        }
    }
    assert!(bad.is_empty(), "logits off by more than 0.05: {bad:?}");
}

/// `--ctx 512` exceeds the fixtures' context_length 256: LongRoPE's long factors.
#[test]
fn longrope_fixtures_at_ctx_512_use_the_long_factors() {
    for name in ["minicpm_longrope", "minicpm3_longrope"] {
        let d = max_abs_diff(name, "nctx512.logits.f32", 512);
        assert!(d <= 0.05, "{name} --ctx 512: max |Δ| {d}");
    }
}

fn inspect_value(out: &str, label: &str) -> u64 {
    let line = out.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no '{label}' in:\n{out}"));
    line[line.find(':').unwrap() + 1..].split_whitespace().next().unwrap().parse().unwrap()
}

/// `ember inspect` shows parameters, weight bytes, bytes read per token and
/// KV bytes per token for each architecture; MLA's is its latent cache.
#[test]
fn inspect_reports_sizes_for_every_arch() {
    // (fixture, KV bytes/token = n_layer × cached f16 values per position × 2)
    for (name, kv) in [
        ("minicpm", 3 * (64 + 64) * 2),
        ("minicpm3", 2 * (32 + 8) * 2), // latent 32 + rope key 8, not 4 heads × (24 + 32)
        ("qwen2", 2 * (32 + 32) * 2),
        ("qwen3", 2 * (64 + 64) * 2),
        ("gemma3", 7 * (64 + 64) * 2),
        ("phi3", 2 * (32 + 32) * 2),
    ] {
        let model = arch(&format!("{name}.gguf"));
        let out = run_ok(&["inspect", model.to_str().unwrap()]);
        let model_part = &out[out.find("\nmodel:").expect("model section")..];
        let params = inspect_value(model_part, "parameters:");
        let weights = inspect_value(model_part, "weight bytes:");
        let per_tok = inspect_value(model_part, "bytes read per token:");
        assert_eq!(inspect_value(model_part, "KV-cache bytes/token:"), kv as u64, "{name}");
        // F32 fixtures: 4 bytes per parameter; untied heads skip the embedding table per token.
        assert_eq!(weights, 4 * params, "{name}");
        assert!(per_tok <= weights && per_tok >= weights - 4 * 512 * 128, "{name}: {per_tok} of {weights}");
    }
}
