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
fn logits_ids_file_evaluates_each_line_on_its_own() {
    let file = std::env::temp_dir().join(format!("ember-ids-contract-{}.txt", std::process::id()));
    std::fs::write(&file, "1,20,30\n\n1,40\n").unwrap();
    let out = run_ok(&["logits", "-m", &tiny(), "--ids-file", file.to_str().unwrap(), "--top", "3", "--ctx", "64"]);
    let _ = std::fs::remove_file(&file);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 0, 0, 1, 1], "one line per position, the blank line skipped");
    // Each sequence as if alone: the same rows as its own `--ids` run (a fresh session each).
    for (seq, ids) in [(0, "1,20,30"), (1, "1,40")] {
        let alone = run_ok(&["logits", "-m", &tiny(), "--ids", ids, "--top", "3", "--ctx", "64"]);
        let alone: Vec<serde_json::Value> = alone.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let ours: Vec<serde_json::Value> =
            lines.iter().filter(|l| l["seq"] == seq).map(|l| serde_json::json!({"pos": l["pos"], "top": l["top"]})).collect();
        assert_eq!(ours, alone, "sequence {seq}");
    }
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
    assert!(e.contains("not a GGUF file") && e.contains("\"not \""), "the start shown as text: {e}");
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
    // Sizes from the caller are checked before anything is allocated.
    let e = stderr_of(&["run", "-m", &tiny(), "-p", "hi", "-t", "100000"]);
    assert!(e.contains("100000 threads"), "{e}");
    let e = stderr_of(&["logits", "-m", &tiny(), "--ids", "1", "--ctx", "1000000000000"]);
    assert!(e.contains("MiB of KV cache"), "{e}");
    // Odd paths: named, with what is wrong, at once (a FIFO must not block).
    let dir = std::env::temp_dir().join(format!("ember-odd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = stderr_of(&["inspect", dir.to_str().unwrap()]);
    assert!(e.contains("a directory") && e.contains(dir.to_str().unwrap()), "{e}");
    #[cfg(unix)]
    {
        let e = stderr_of(&["inspect", "/dev/null"]);
        assert!(e.contains("not a regular file") && e.contains("/dev/null"), "{e}");
        let fifo = dir.join("fifo.gguf");
        if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
            let e = stderr_of(&["inspect", fifo.to_str().unwrap()]);
            assert!(e.contains("not a regular file"), "{e}");
        }
        let empty = dir.join("empty.gguf");
        std::fs::write(&empty, b"").unwrap();
        let e = stderr_of(&["inspect", empty.to_str().unwrap()]);
        assert!(e.contains("empty"), "{e}");
    }
    std::fs::remove_dir_all(&dir).ok();
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

/// A run on the default backend (`auto`, which probes for a GPU) prints only
/// its summary line on stderr: no wgpu warnings, nothing a Vulkan driver or
/// its window-system library prints while adapters are enumerated (lavapipe
/// in CI: "XDG_RUNTIME_DIR is invalid…"). With -v the probing is shown.
#[test]
fn gpu_probing_is_quiet_unless_verbose() {
    let out =
        ember().env_remove("XDG_RUNTIME_DIR").env_remove("EMBER_LOG").args(["run", "-m", &tiny(), "-p", "hi", "-n", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr should be the one summary line, got:\n{err}");
    assert!(lines[0].starts_with("ember: prompt"), "{err}");
}

/// A killed `ember pull` takes its pip child with it, and the next pull
/// removes the work folder it left (`models/.pull-NAME-PID`). Python is a
/// stand-in script (`EMBER_PYTHON`): the first hangs, the second fails.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_pull_leaves_no_child_and_its_folder_is_swept() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let home = std::env::temp_dir().join(format!("ember-pull-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let script = |name: &str, body: &str| {
        let p = home.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let hang = script("hang.sh", &format!("echo $$ > {}/child.pid\nexec sleep 60", home.display()));
    let fail = script("fail.sh", "exit 1");
    let models = home.join("models");
    let pulls = || -> Vec<String> {
        std::fs::read_dir(&models)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".pull-")).collect())
            .unwrap_or_default()
    };

    let mut pull = ember().env("EMBER_HOME", &home).env("EMBER_PYTHON", &hang).args(["pull", "smollm2-135m"]).spawn().unwrap();
    let pid_file = home.join("child.pid");
    let t = Instant::now();
    while !pid_file.exists() || std::fs::read_to_string(&pid_file).unwrap().trim().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20), "the stand-in pip never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let child_pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    assert_eq!(pulls().len(), 1, "{:?}", pulls());
    pull.kill().unwrap();
    pull.wait().unwrap();
    let t = Instant::now();
    // Gone, or a zombie nobody has reaped yet (PID 1 of a container may not).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{child_pid}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
    };
    while alive() {
        assert!(t.elapsed() < Duration::from_secs(5), "pip's stand-in outlived the killed pull");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pulls().len(), 1, "the killed pull's folder is still there: {:?}", pulls());

    let out = ember().env("EMBER_HOME", &home).env("EMBER_PYTHON", &fail).args(["pull", "smollm2-135m"]).output().unwrap();
    assert!(!out.status.success());
    assert!(pulls().is_empty(), "left behind: {:?}", pulls());
    std::fs::remove_dir_all(&home).ok();
}

/// The CPU plan of SmolLM2 at `ctx` tokens, as `ember inspect --plan --json` shows it.
fn smollm2_plan(ctx: usize) -> serde_json::Value {
    let smol = smollm2();
    let out = run_ok(&["inspect", smol.to_str().unwrap(), "--plan", "--ctx", &ctx.to_string(), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let cpu = j["backends"].as_array().unwrap().iter().find(|b| b["plan"]["backend"] == "cpu").expect("a cpu plan").clone();
    cpu["plan"].clone()
}

#[test]
fn inspect_plan_adds_weights_kv_and_scratch() {
    let p = smollm2_plan(2048);
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {p}"));
    // SmolLM2-135M: 30 layers × K and V × 3 KV heads × 64 × 2 bytes (f16), as llama.cpp sizes it.
    assert_eq!(n("kv_bytes_per_token"), 30 * 2 * 3 * 64 * 2);
    assert_eq!(n("kv_bytes"), n("kv_bytes_per_token") * 2048);
    assert_eq!(n("total_bytes"), n("weights_bytes") + n("kv_bytes") + n("scratch_bytes") + n("tokenizer_bytes"));
    // The weights are the file's tensors: a little under the file's size.
    let file = std::fs::metadata(smollm2()).unwrap().len();
    assert!(n("weights_bytes") < file && n("weights_bytes") > file * 9 / 10, "{p} vs file {file}");
    let text = run_ok(&["inspect", smollm2().to_str().unwrap(), "--plan", "--ctx", "2048", "--memory-budget", "140M"]);
    for needle in ["cpu plan: ctx 2048", "wgpu plan", "KV cache", "refused: needs", "--fit: ctx"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn memory_budget_refuses_just_below_the_plan_and_runs_just_above() {
    let smol = smollm2();
    let m = smol.to_str().unwrap();
    let total = smollm2_plan(2048)["total_bytes"].as_u64().unwrap();
    let args = |budget: u64, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["run", "-m", m, "--backend", "cpu", "--ctx", "2048", "-n", "8", "--temp", "0", "-p", "The capital of France is"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        v.extend(["--memory-budget".to_string(), budget.to_string()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let call = |a: Vec<String>| run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let above = call(args(total, &[]));
    assert!(above.status.success(), "a budget equal to the plan runs: {}", String::from_utf8_lossy(&above.stderr));
    let text = String::from_utf8_lossy(&above.stdout).into_owned();
    assert!(!text.is_empty());

    let below = call(args(total - 1, &[]));
    assert!(!below.status.success(), "one byte under the plan is refused");
    let err = String::from_utf8_lossy(&below.stderr);
    assert!(err.contains("memory plan") && err.contains("would fit: --ctx"), "{err}");
    assert!(err.contains("--cache-type-k q8_0"), "a quantized cache fits the same context: {err}");

    // --fit: a little less context, the same greedy text for a short prompt.
    let fitted = call(args(total - 1, &["--fit"]));
    assert!(fitted.status.success(), "--fit runs: {}", String::from_utf8_lossy(&fitted.stderr));
    let note = String::from_utf8_lossy(&fitted.stderr);
    assert!(note.contains("[memory plan: ctx 1792 with a f16/f16 KV cache"), "{note}");
    assert_eq!(String::from_utf8_lossy(&fitted.stdout), text);

    // A budget of a third of the KV: --fit quantizes the cache rather than cut the context below 1024.
    let kv = smollm2_plan(2048)["kv_bytes"].as_u64().unwrap();
    let tight = call(args(total - kv * 2 / 3, &["--fit"]));
    let note = String::from_utf8_lossy(&tight.stderr);
    assert!(tight.status.success(), "{note}");
    assert!(note.contains("q8_0/q8_0 KV cache") || note.contains("q4_0/q4_0 KV cache"), "{note}");

    // Under the weights, nothing fits.
    let e = stderr_of(&args(20 << 20, &["--fit"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("weights alone"), "{e}");
    let e = stderr_of(&["run", "-m", m, "--memory-budget", "1.5X", "-p", "hi"]);
    assert!(e.contains("--memory-budget") && e.contains("unknown size unit"), "{e}");
}
