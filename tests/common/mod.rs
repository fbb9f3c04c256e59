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
    assert!(p.exists(), "{} is missing: run scripts/fetch-models.sh (or `ember pull`) first", p.display());
    p
}

pub fn smollm2() -> PathBuf {
    model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn gemma3() -> PathBuf {
    model("gemma-3-270m-q4_k_m.gguf")
}

pub fn qwen25_coder_05b() -> PathBuf {
    model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}

pub fn qwen25_coder_15b() -> PathBuf {
    model("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
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

/// The wgpu backend on its baseline tier: every optional kernel tier
/// (f16, subgroup, fused, tiled) turned off through `EMBER_GPU_DISABLE`. The
/// reference checks run on it as well as on the tiers lavapipe offers.
pub const WGPU_BASELINE: &str = "wgpu-baseline";

/// Runs ember with args and `--backend` (`cpu`, `wgpu` or [`WGPU_BASELINE`]);
/// returns the output (whatever the status).
pub fn run_on(backend: &str, args: &[&str]) -> Output {
    let mut c = ember();
    let name = if backend == WGPU_BASELINE {
        c.env("EMBER_GPU_DISABLE", "f16,subgroup,fused,tiled");
        "wgpu"
    } else {
        c.env_remove("EMBER_GPU_DISABLE");
        backend
    };
    c.args(args).args(["--backend", name]).output().expect("cannot start ember")
}

/// [`run_on`], requiring success; returns stdout.
pub fn run_ok_on(backend: &str, args: &[&str]) -> String {
    let out = run_on(backend, args);
    assert!(out.status.success(), "ember {:?} on {backend} failed ({}): {}", args, out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs ember and requires success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "ember {:?} failed ({}): {}", args, out.status, String::from_utf8_lossy(&out.stderr));
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

/// A real model's reference data, produced by llama.cpp on the same GGUF
/// (`tests/fixtures/<dir>`: perplexity.json, logits.jsonl, last_logits_*.f32).
/// The checks of the `*_reference.rs` tests, shared by every model.
pub struct Reference {
    /// The fixtures folder under tests/fixtures ("smollm2", "gemma3").
    pub dir: &'static str,
    pub model: PathBuf,
    /// Bound on the mean centred |Δlogit| of the last-prompt rows. It scales
    /// with the model's logit spread and quantization: 0.15 for SmolLM2 (logit
    /// std ~7.6, measured 0.08–0.12); 0.25 for Gemma-3-270M (std ~5, measured 0.12–0.19
    /// with KL < 0.01 nats and top-1 equal on all 228 confident positions).
    pub centred_tol: f64,
    /// The `--backend` every command runs with ("cpu", "wgpu", [`WGPU_BASELINE`]).
    pub backend: &'static str,
}

impl Reference {
    fn reference_rows(&self) -> Vec<serde_json::Value> {
        read_jsonl(&fixtures().join(self.dir).join("logits.jsonl"))
    }

    fn model_arg(&self) -> String {
        self.model.to_string_lossy().into_owned()
    }

    /// Perplexity on `ppl_public.txt` in 512-token windows, within 1% of
    /// llama.cpp's (f16 KV cache).
    pub fn perplexity_within_one_percent(&self) {
        self.perplexity_within("f16", 0.01);
    }

    /// Our perplexity on `ppl_public.txt` (ctx 512) with the KV cache stored as
    /// `cache` (`--ctk/--ctv`, both sides) within `tol` (relative) of
    /// llama.cpp's with the same cache type: `perplexity.json` for f16,
    /// `perplexity_kv_<cache>.json` (shared/reference/tools/kv_ppl.py) else.
    /// The CPU scores the whole text; a GPU backend the first window only
    /// (`--chunks 1`, against llama.cpp's first-window figure, `first_chunk`):
    /// lavapipe evaluates prompts ~40× slower than the CPU, and the other
    /// windows add no kernel the first one lacks.
    pub fn perplexity_within(&self, cache: &str, tol: f64) {
        let file = if cache == "f16" { "perplexity.json".to_string() } else { format!("perplexity_kv_{cache}.json") };
        let all: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join(self.dir).join(&file)).unwrap()).unwrap();
        let text = fixtures().join("ppl_public.txt");
        let model = self.model_arg();
        let mut args =
            vec!["perplexity", "-m", &model, "-f", text.to_str().unwrap(), "--ctx", "512", "-t", "2", "--ctk", cache, "--ctv", cache];
        let want = if self.backend == "cpu" {
            all.clone()
        } else {
            args.extend(["--chunks", "1"]);
            all["first_chunk"].clone()
        };
        assert!(want.is_object(), "no llama.cpp figure for the {} backend in {}/{file}", self.backend, self.dir);
        let out = run_ok_on(self.backend, &args);
        let last = out.lines().last().expect("perplexity prints a JSON line");
        let got: serde_json::Value = serde_json::from_str(last).unwrap();
        if let Some(n) = want.get("n_tokens") {
            assert_eq!(&got["tokens"], n, "token count differs from llama.cpp");
        }
        assert_eq!(got["scored"], want["scored"], "scored count differs from llama.cpp");
        let (p, q) = (got["perplexity"].as_f64().unwrap(), want["perplexity"].as_f64().unwrap());
        eprintln!("perplexity (KV {cache}): ember {p:.4}, llama.cpp {q:.4} ({:+.3}%)", (p / q - 1.0) * 100.0);
        assert!((p / q - 1.0).abs() <= tol, "perplexity (KV {cache}) {p} vs llama.cpp {q}");
    }

    pub fn prompts_tokenize(&self) {
        for row in self.reference_rows() {
            let prompt = row["prompt"].as_str().unwrap();
            let out = run_ok(&["tokenize", "-m", &self.model_arg(), "--parse-special", "--", prompt]);
            let got: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(got, ids_of(&row["ids"]), "prompt {prompt:?}");
        }
    }

    /// `ember logits` over every sequence in one process (`--ids-file`: the
    /// model loaded and, on wgpu, its pipelines compiled once), with `extra`
    /// flags; the output lines grouped by sequence.
    fn logits_of(&self, seqs: &[Vec<u32>], extra: &[&str]) -> Vec<Vec<serde_json::Value>> {
        // One file per call: a binary's tests run in parallel in one process.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("ember-ids-{}-{n}.txt", std::process::id()));
        let text: Vec<String> = seqs.iter().map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(",")).collect();
        std::fs::write(&file, text.join("\n")).unwrap();
        let model = self.model_arg();
        let mut args = vec!["logits", "-m", &model, "--ids-file", file.to_str().unwrap(), "-t", "2"];
        args.extend_from_slice(extra);
        let out = run_ok_on(self.backend, &args);
        let _ = std::fs::remove_file(&file);
        let mut per_seq = vec![Vec::new(); seqs.len()];
        for l in out.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = v["seq"].as_u64().expect("a seq field") as usize;
            per_seq[s].push(v);
        }
        per_seq
    }

    /// Along prompt + greedy continuation fed as one batch, our top-1 equals
    /// llama.cpp's at ≥ 99% of the positions where its top-1/top-2 margin ≥ 0.3.
    pub fn top1_agrees(&self) {
        let (mut confident, mut agree, mut sum_abs, mut n_abs) = (0usize, 0usize, 0f64, 0usize);
        let mut misses = Vec::new();
        let rows = self.reference_rows();
        let seqs: Vec<Vec<u32>> = rows.iter().map(|row| [ids_of(&row["ids"]), ids_of(&row["greedy"])].concat()).collect();
        let per_seq = self.logits_of(&seqs, &["--top", "10"]);
        for (r, (row, lines)) in rows.iter().zip(&per_seq).enumerate() {
            let want = row["top"].as_array().unwrap();
            assert_eq!(lines.len(), want.len(), "one line per position");
            for (pos, (got, exp)) in lines.iter().zip(want).enumerate() {
                assert_eq!(got["pos"].as_u64(), Some(pos as u64));
                let exp = exp.as_array().unwrap();
                let got = got["top"].as_array().unwrap();
                let (e0, e1) = (exp[0][1].as_f64().unwrap(), exp[1][1].as_f64().unwrap());
                // Logit differences on the tokens both lists share.
                for g in got {
                    if let Some(e) = exp.iter().find(|e| e[0] == g[0]) {
                        sum_abs += (g[1].as_f64().unwrap() - e[1].as_f64().unwrap()).abs();
                        n_abs += 1;
                    }
                }
                if e0 - e1 >= 0.3 {
                    confident += 1;
                    if got[0][0] == exp[0][0] {
                        agree += 1;
                    } else {
                        misses.push(format!("row {r} pos {pos}: ours {} llama.cpp {} (margin {:.2})", got[0][0], exp[0][0], e0 - e1));
                    }
                }
            }
        }
        eprintln!("top-1 agreement {agree}/{confident} confident positions; mean |Δlogit| on shared top-10 {:.4}", sum_abs / n_abs as f64);
        assert!(agree as f64 >= 0.99 * confident as f64, "top-1 agreement {agree}/{confident}: {misses:#?}");
    }

    /// With the KV cache stored as `cache` (`--ctk/--ctv`) on this backend and
    /// on the CPU, the logits along the first `n` sequences (prompt +
    /// llama.cpp's greedy continuation, one batch each) agree: the same top-1
    /// wherever the CPU's top-1/top-2 margin is ≥ 0.3, and the mean |Δlogit|
    /// on the tokens both top-10s share ≤ 0.3 (SmolLM2, q8_0: measured 0.19 on
    /// lavapipe; the f16 caches' CPU/GPU gap is 0.17: the products round alike
    /// but sum in other orders). A cache written or read wrong flips top-1s.
    /// Then `run --temp 0 -n 16` of row `greedy_row`'s prompt (token by token
    /// after the prompt: the cache written one row at a time) prints the
    /// CPU's text; pick a row whose 16 greedy tokens all have a margin ≥ 0.3.
    pub fn cache_agrees_with_cpu(&self, cache: &str, n: usize, greedy_row: usize) {
        let rows = self.reference_rows();
        let seqs: Vec<Vec<u32>> = rows.iter().take(n).map(|row| [ids_of(&row["ids"]), ids_of(&row["greedy"])].concat()).collect();
        let args = ["--top", "10", "--ctk", cache, "--ctv", cache];
        let cpu = Reference { backend: "cpu", model: self.model.clone(), ..*self }.logits_of(&seqs, &args);
        let ours = self.logits_of(&seqs, &args);
        let (mut confident, mut sum_abs, mut n_abs) = (0usize, 0f64, 0usize);
        let top = |v: &serde_json::Value| v["top"].as_array().unwrap().clone();
        for (s, (want, got)) in cpu.iter().zip(&ours).enumerate() {
            assert_eq!(want.len(), got.len(), "seq {s}: one line per position");
            for (pos, (w, g)) in want.iter().zip(got).enumerate() {
                let (w, g) = (top(w), top(g));
                for gi in &g {
                    if let Some(wi) = w.iter().find(|wi| wi[0] == gi[0]) {
                        sum_abs += (gi[1].as_f64().unwrap() - wi[1].as_f64().unwrap()).abs();
                        n_abs += 1;
                    }
                }
                if w[0][1].as_f64().unwrap() - w[1][1].as_f64().unwrap() >= 0.3 {
                    confident += 1;
                    assert_eq!(g[0][0], w[0][0], "KV {cache}, seq {s} pos {pos}: top-1 on {} vs the CPU's", self.backend);
                }
            }
        }
        let mean = sum_abs / n_abs as f64;
        eprintln!(
            "KV {cache}: {} vs cpu, top-1 equal on {confident} confident positions, mean |Δlogit| on shared top-10 {mean:.4}",
            self.backend
        );
        assert!(confident >= 50, "too few confident positions ({confident})");
        assert!(mean <= 0.3, "KV {cache}: mean |Δlogit| {mean} between {} and the CPU", self.backend);
        let prompt = rows[greedy_row]["prompt"].as_str().unwrap();
        let model = self.model_arg();
        let args = ["run", "-m", &model, "-p", prompt, "--temp", "0", "-n", "16", "-t", "2", "--ctk", cache, "--ctv", cache];
        let (want, got) = (run_ok_on("cpu", &args), run_ok_on(self.backend, &args));
        eprintln!("KV {cache}: {prompt:?} -> {got:?} on {} ({want:?} on cpu)", self.backend);
        assert_eq!(got, want, "KV {cache}: greedy text of {prompt:?} on {} vs the CPU", self.backend);
    }

    /// The full logits row at the last prompt position, against llama.cpp's.
    /// Logits are only defined up to a constant (softmax ignores a shift, and a
    /// shift is what small noise along the mean embedding direction produces), so
    /// we compare the distributions: same argmax, KL(llama.cpp ‖ ember) small, and
    /// the mean-centred logit differences small.
    pub fn last_prompt_logits_close(&self) {
        let rows = self.reference_rows();
        let seqs: Vec<Vec<u32>> = rows.iter().map(|row| ids_of(&row["ids"])).collect();
        // Only the last position's row (--last): a full row per position is huge for big vocabularies.
        let per_seq = self.logits_of(&seqs, &["--last"]);
        for (i, lines) in per_seq.iter().enumerate() {
            let want = read_f32(&fixtures().join(self.dir).join(format!("last_logits_{i}.f32")));
            assert_eq!(lines.len(), 1, "--last prints one line per sequence");
            let last = &lines[0];
            let got: Vec<f64> = last["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            assert_eq!(got.len(), want.len(), "n_vocab logits");
            let n = got.len() as f64;
            let shift = got.iter().zip(&want).map(|(a, b)| a - b).sum::<f64>() / n;
            let centred = got.iter().zip(&want).map(|(a, b)| (a - b - shift).abs()).sum::<f64>() / n;
            let log_softmax = |v: &[f64]| {
                let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
                v.iter().map(|x| x - lse).collect::<Vec<f64>>()
            };
            let (lp, lq) = (log_softmax(&want), log_softmax(&got));
            let kl: f64 = lp.iter().zip(&lq).map(|(p, q)| p.exp() * (p - q)).sum();
            let am = |v: &[f64]| v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
            eprintln!("prompt {i}: shift {shift:+.3}, mean |Δ - shift| {centred:.4}, KL {kl:.5} nats");
            assert_eq!(am(&got), am(&want), "prompt {i}: argmax differs");
            assert!(kl <= 0.02, "prompt {i}: KL divergence {kl} nats from llama.cpp's distribution");
            assert!(centred <= self.centred_tol, "prompt {i}: mean centred |Δlogit| {centred} > {}", self.centred_tol);
        }
    }

    /// `ember run --temp 0 -n 16` reproduces llama.cpp's greedy text up to the
    /// first position where llama.cpp's own margin is below 0.3, on ≥ 5 of 6 prompts.
    pub fn greedy_run(&self) {
        let mut ok = 0;
        let mut report = Vec::new();
        let rows = self.reference_rows();
        for row in &rows {
            let prompt = row["prompt"].as_str().unwrap();
            let stable_text = row["stable_text"].as_str().unwrap();
            let n_stable = row["stable"].as_array().unwrap().len();
            let out = run_ok_on(self.backend, &["run", "-m", &self.model_arg(), "-p", prompt, "--temp", "0", "-n", "16", "-t", "2"]);
            // `run` ends its output with one newline of its own.
            let text = out.strip_suffix('\n').unwrap_or(&out);
            let pass = if n_stable <= 16 { text.starts_with(stable_text) } else { stable_text.starts_with(text) && !text.is_empty() };
            ok += pass as usize;
            report.push(format!("{}: {prompt:?} -> {text:?} (stable {stable_text:?})", if pass { "ok" } else { "MISS" }));
        }
        eprintln!("{}", report.join("\n"));
        assert!(ok >= 5, "greedy matched on {ok}/{} prompts:\n{}", rows.len(), report.join("\n"));
    }
}

/// Whether `ember --backend wgpu` finds an adapter. Without one, fails when
/// `CI` is set or `EMBER_REQUIRE_GPU=1` (a GPU test must not pass silently
/// there) and prints a skip message otherwise.
pub fn wgpu_available() -> bool {
    // Asked once per test binary: each probe is a process that compiles the
    // GPU pipelines (seconds on lavapipe), and a binary's wgpu tests all ask.
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
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
    })
}

/// One test per backend for a `Reference` check: `$cpu` runs
/// `reference("cpu").$check()`, `$wgpu` the same on `wgpu` when an adapter
/// exists (see [`wgpu_available`]). The test file defines `fn reference(backend)`.
#[macro_export]
macro_rules! on_the_baseline_tier {
    ($check:ident: $test:ident) => {
        /// The same check on wgpu's baseline tier (every optional tier off).
        #[test]
        fn $test() {
            if wgpu_available() {
                reference(WGPU_BASELINE).$check();
            }
        }
    };
}

/// One test per backend for a `Reference` check (see [`on_every_backend`]).
#[macro_export]
macro_rules! on_every_backend {
    ($check:ident: $cpu:ident, $wgpu:ident) => {
        #[test]
        fn $cpu() {
            reference("cpu").$check();
        }
        #[test]
        fn $wgpu() {
            if wgpu_available() {
                reference("wgpu").$check();
            }
        }
    };
}
