//! The `ember` CLI's contracts: output formats, flags, defaults and errors.
//! Most cases use the tiny llama fixture (SPM vocab, adds BOS) so they are fast.

mod common;

use common::*;

fn tiny() -> String {
    fixtures().join("arch/llama.gguf").to_string_lossy().into_owned()
}

fn stderr_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "ember {args:?} should fail");
    assert!(out.stdout.is_empty(), "errors go to stderr only, got stdout {:?}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tokenize_prints_one_json_array() {
    let out = run_ok(&["tokenize", "-m", &tiny(), "hello world"]);
    assert_eq!(out.lines().count(), 1);
    let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids[0], 1, "the GGUF says add BOS");
    let bare: Vec<u32> = serde_json::from_str(run_ok(&["tokenize", "-m", &tiny(), "--no-add-special", "hello world"]).trim()).unwrap();
    assert_eq!(bare, ids[1..].to_vec());
}

#[test]
fn tokenize_empty_and_dash_texts() {
    let empty: Vec<u32> = serde_json::from_str(run_ok(&["tokenize", "-m", &tiny(), ""]).trim()).unwrap();
    assert_eq!(empty, vec![1], "empty text is just BOS");
    let smol = smollm2();
    let empty: Vec<u32> = serde_json::from_str(run_ok(&["tokenize", "-m", smol.to_str().unwrap(), ""]).trim()).unwrap();
    assert!(empty.is_empty(), "SmolLM2 adds no BOS");
    let dash: Vec<u32> = serde_json::from_str(run_ok(&["tokenize", "-m", smol.to_str().unwrap(), "--", "-n 5"]).trim()).unwrap();
    assert!(!dash.is_empty());
}

#[test]
fn tokenize_parse_special_only_when_asked() {
    let smol = smollm2();
    let m = smol.to_str().unwrap();
    let plain: Vec<u32> = serde_json::from_str(run_ok(&["tokenize", "-m", m, "<|im_start|>"]).trim()).unwrap();
    let special: Vec<u32> = serde_json::from_str(run_ok(&["tokenize", "-m", m, "--parse-special", "<|im_start|>"]).trim()).unwrap();
    assert_eq!(special.len(), 1, "one special token");
    assert!(plain.len() > 1, "by default special text is plain text");
}

#[test]
fn logits_top_k_lines_sorted() {
    let out = run_ok(&["logits", "-m", &tiny(), "--ids", "1,20,30,40", "--top", "5", "--ctx", "64"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["pos"].as_u64(), Some(i as u64));
        let top = l["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        let vals: Vec<f64> = top.iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert!(vals.windows(2).all(|w| w[0] >= w[1]), "best first: {vals:?}");
    }
    let all = run_ok(&["logits", "-m", &tiny(), "--ids", "1,20"]);
    let last: serde_json::Value = serde_json::from_str(all.lines().last().unwrap()).unwrap();
    assert_eq!(last["logits"].as_array().unwrap().len(), 512, "all logits in id order");
    // The top entry of --top agrees with the full row.
    let row: Vec<f64> = last["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let best = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
    let top1 = run_ok(&["logits", "-m", &tiny(), "--ids", "1,20", "--top", "1"]);
    let top1: serde_json::Value = serde_json::from_str(top1.lines().last().unwrap()).unwrap();
    assert_eq!(top1["top"][0][0].as_u64(), Some(best as u64));
}

#[test]
fn perplexity_prints_json_last() {
    let dir = std::env::temp_dir().join(format!("ember-ppl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("text.txt");
    std::fs::write(&f, "the cat sat on the mat and the dog sat on the log. ".repeat(8)).unwrap();
    let out = run_ok(&["perplexity", "-m", &tiny(), "-f", f.to_str().unwrap(), "--ctx", "16"]);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let tokens = v["tokens"].as_u64().unwrap();
    let windows = tokens.div_ceil(16);
    assert_eq!(v["scored"].as_u64().unwrap(), tokens - windows, "every token after the first of each window");
    let ppl = v["perplexity"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{ppl}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_streams_only_generated_text_to_stdout() {
    let smol = smollm2();
    let out = run(&["run", "-m", smol.to_str().unwrap(), "-p", "The capital of France is", "-n", "4", "--temp", "0"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("The capital"), "the prompt is not echoed: {stdout:?}");
    assert!(stdout.contains("Paris"), "{stdout:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tok/s"), "stats go to stderr");
}

#[test]
fn run_without_model_uses_the_cached_default() {
    let home = models_dir().parent().unwrap().to_path_buf();
    let out = ember().env("EMBER_HOME", &home).args(["run", "The capital of France is", "-n", "3", "--temp", "0"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Paris"));
}

#[test]
fn same_seed_same_text() {
    let smol = smollm2();
    let args = ["run", "-m", smol.to_str().unwrap(), "-p", "Once upon a time", "-n", "12", "--temp", "1.0", "--seed", "42"];
    assert_eq!(run_ok(&args), run_ok(&args));
}

#[test]
fn inspect_shows_model_facts() {
    let out = run_ok(&["inspect", &tiny()]);
    for needle in ["architecture:  llama", "parameters", "bytes read per token", "KV-cache bytes/token", "blk.0.attn_q.weight"] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn errors_are_clear_and_nonzero() {
    let e = stderr_of(&["tokenize", "-m", "/nonexistent/model.gguf", "hi"]);
    assert!(e.contains("neither a file nor a known model"), "{e}");

    let dir = std::env::temp_dir().join(format!("ember-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"not a gguf file at all").unwrap();
    let e = stderr_of(&["run", "-m", bad.to_str().unwrap(), "-p", "hi"]);
    assert!(e.contains("bad magic"), "{e}");
    let trunc = dir.join("trunc.gguf");
    let full = std::fs::read(fixtures().join("arch/llama.gguf")).unwrap();
    std::fs::write(&trunc, &full[..full.len() / 2]).unwrap();
    let e = stderr_of(&["logits", "-m", trunc.to_str().unwrap(), "--ids", "1"]);
    assert!(e.contains("outside the tensor data section") || e.contains("truncated"), "{e}");
    std::fs::remove_dir_all(&dir).ok();

    let e = stderr_of(&["logits", "-m", &tiny(), "--ids", "1,99999"]);
    assert!(e.contains("99999") && e.contains("vocabulary"), "{e}");
    let e = stderr_of(&["logits", "-m", &tiny(), "--ids", "1,x"]);
    assert!(e.contains("not a token id"), "{e}");
    let e = stderr_of(&["run", "-m", &tiny(), "-p", "hi", "--backend", "tpu"]);
    assert!(e.contains("unknown backend"), "{e}");
    let e = stderr_of(&["logits", "-m", &tiny(), "--ids", "1,2,3,4,5", "--ctx", "3"]);
    assert!(e.contains("context"), "{e}");
    let e = stderr_of(&["pull", "no-such-model"]);
    assert!(e.contains("unknown model"), "{e}");
    let e = stderr_of(&["run", "-m", &tiny(), "-p", "hi", "--top-p", "7"]);
    assert!(e.contains("top_p") || e.contains("top-p"), "{e}");
}

/// `--weights`: the file mapping, a copy in memory and the default give
/// the same logits; an unknown mode is a clear error.
#[test]
fn weight_memory_modes_agree() {
    let smol = smollm2();
    let args = |w: &'static str| {
        vec!["logits", "-m", smol.to_str().unwrap(), "--ids", "1,504,3458,282", "--top", "5", "--backend", "cpu", "--weights", w]
    };
    let mapped = run_ok(&args("mmap"));
    assert_eq!(run_ok(&args("copy")), mapped);
    assert_eq!(run_ok(&args("auto")), mapped);
    let e = stderr_of(&["run", "-m", &tiny(), "-p", "hi", "--weights", "disk"]);
    assert!(e.contains("unknown weight memory"), "{e}");
}

#[test]
fn logits_last_prints_only_the_last_row() {
    let all = run_ok(&["logits", "-m", &tiny(), "--ids", "1,20,30,40", "-t", "1"]);
    let last = run_ok(&["logits", "-m", &tiny(), "--ids", "1,20,30,40", "--last", "-t", "1"]);
    assert_eq!(last.lines().count(), 1);
    let a: serde_json::Value = serde_json::from_str(all.lines().last().unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(last.trim()).unwrap();
    assert_eq!(b["pos"], 3);
    assert_eq!(a, b, "--last is the last row of the full output");
}
