//! Speculative decoding end to end (`--lookup`, `--draft-model`): the text is
//! the one generated without speculation (greedy, and sampling with a seed),
//! drafts are really accepted, and a draft model of another vocabulary is
//! refused. SmolLM2, 32 tokens: cheap.

mod common;

use common::*;

/// A prompt whose continuation repeats it: prompt lookup finds drafts.
const PROMPT: &str = "Roses are red, violets are blue, sugar is sweet, and so are you. Roses are red, violets are blue, sugar is sweet, and so are you. Roses are red,";

/// (stdout, stderr) of `ember run` on SmolLM2 with `extra` flags (`-n 32` unless given).
fn run_smol(backend: &str, extra: &[&str]) -> (String, String) {
    let smol = smollm2();
    let mut args = vec!["run", "-m", smol.to_str().unwrap(), "-p", PROMPT];
    if !extra.contains(&"-n") {
        args.extend_from_slice(&["-n", "32"]);
    }
    args.extend_from_slice(extra);
    let out = run_on(backend, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ember {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// The accepted count of the `speculation: A of D drafted tokens` line.
fn accepted(stderr: &str) -> usize {
    let line = stderr.lines().find(|l| l.contains("speculation:")).unwrap_or_else(|| panic!("no speculation line: {stderr}"));
    line.split("speculation: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap()
}

#[test]
fn lookup_and_self_draft_give_the_same_text_on_the_cpu() {
    let smol = smollm2();
    let greedy = ["--temp", "0"];
    let (plain, _) = run_smol("cpu", &greedy);
    let (lookup, err) = run_smol("cpu", &[&greedy[..], &["--lookup", "8"]].concat());
    assert_eq!(lookup, plain, "--lookup changed the greedy text");
    assert!(accepted(&err) > 0, "no draft accepted: {err}");
    // The model drafting for itself: every draft it is confident of (p >= 0.75) is accepted.
    let (draft, err) = run_smol("cpu", &[&greedy[..], &["--draft-model", smol.to_str().unwrap(), "--draft-max", "6"]].concat());
    assert_eq!(draft, plain, "--draft-model changed the greedy text");
    assert!(accepted(&err) >= 8, "too few drafts accepted: {err}");
    assert!(err.contains("accepted (100%)"), "the model rejected its own greedy drafts: {err}");
    // Sampling: the same seed gives the same tokens (one draw per emitted token).
    let sampled = ["--temp", "0.8", "--seed", "11"];
    let (plain, _) = run_smol("cpu", &sampled);
    let (lookup, _) = run_smol("cpu", &[&sampled[..], &["--lookup", "8"]].concat());
    assert_eq!(lookup, plain, "--lookup changed the seeded sampled text");
}

#[test]
fn lookup_gives_the_same_text_on_wgpu() {
    let (plain, _) = run_smol("wgpu", &["--temp", "0", "-n", "16"]);
    let (lookup, err) = run_smol("wgpu", &["--temp", "0", "-n", "16", "--lookup", "8"]);
    assert_eq!(lookup, plain, "--lookup changed the greedy text on wgpu");
    assert!(accepted(&err) > 0, "no draft accepted: {err}");
}

#[test]
fn a_draft_model_of_another_vocabulary_is_refused() {
    let (smol, gemma) = (smollm2(), gemma3());
    let out =
        run(&["run", "-m", smol.to_str().unwrap(), "--draft-model", gemma.to_str().unwrap(), "-p", "Hi", "-n", "4", "--backend", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the draft model cannot draft for this model") && stderr.contains("vocabulary"), "{stderr}");
}
