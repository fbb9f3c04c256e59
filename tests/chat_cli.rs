//! `ember chat` end to end: piped stdin, two turns, `/reset`; the KV cache is
//! reused between turns (turn 2 evaluates fewer tokens than the conversation holds).
//! Also the hidden `ember chat-template` helper.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

/// (total, new, reused) of each `[prompt …]` stats line.
fn prompt_stats(stderr: &str) -> Vec<(usize, usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[prompt "))
        .filter(|l| !l.starts_with("text]"))
        .map(|l| {
            let nums: Vec<usize> =
                l.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).take(3).map(|s| s.parse().unwrap()).collect();
            (nums[0], nums[1], nums[2])
        })
        .collect()
}

#[test]
fn chat_two_turns_reuse_the_cache_and_reset_forgets() {
    let smol = smollm2();
    let mut child = ember()
        .args(["chat", "-m", smol.to_str().unwrap(), "--temp", "0", "-n", "12"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is 2+2?\nAnd 3+3?\n/reset\nWhat is 2+2?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), 3, "one line per answer: {stdout:?}");
    assert_eq!(answers[0], answers[2], "after /reset the same question gets the same greedy answer");
    let stats = prompt_stats(&stderr);
    assert_eq!(stats.len(), 3, "{stderr}");
    let (t1, n1, r1) = stats[0];
    assert_eq!((n1, r1), (t1, 0), "turn 1 evaluates everything");
    let (t2, n2, r2) = stats[1];
    assert!(t2 > t1, "turn 2 holds the whole conversation");
    assert!(n2 < t2 && r2 > t1 - 1, "turn 2 reuses the cached conversation: {stats:?}");
    assert_eq!(stats[2], stats[0], "after /reset nothing is reused");
    assert!(stderr.contains("tok/s"));
    assert!(stderr.contains("[conversation reset]"));
}

#[test]
fn chat_template_helper_prints_the_rendered_prompt() {
    let smol = smollm2();
    let out = run_ok(&[
        "chat-template",
        "-m",
        smol.to_str().unwrap(),
        "--messages",
        r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]"#,
    ]);
    assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    let tiny = fixtures().join("arch/llama.gguf");
    let err = run(&["chat-template", "-m", tiny.to_str().unwrap(), "--messages", "[]"]);
    if !err.status.success() {
        assert!(String::from_utf8_lossy(&err.stderr).contains("chat template"));
    }
    let chatml = run_ok(&[
        "chat-template",
        "-m",
        tiny.to_str().unwrap(),
        "--chat-template",
        "chatml",
        "--messages",
        r#"[{"role":"user","content":"x"}]"#,
    ]);
    assert_eq!(chatml, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
}

/// Ctrl-C (SIGINT) during an answer stops that answer, not the program.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_answer_not_the_program() {
    use std::io::Read;
    let smol = smollm2();
    let mut child = ember()
        .args(["chat", "-m", smol.to_str().unwrap(), "--temp", "0", "-n", "2000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Write a very long story about a dragon and a knight.\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    assert!(stdout.read(&mut buf).unwrap() > 0, "the answer starts streaming");
    let st = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    // The program goes on: a second question is answered.
    stdin.write_all(b"/reset\nHi\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stop: cancelled"), "{stderr}");
    assert_eq!(prompt_stats(&stderr).len(), 2, "{stderr}");
}

/// The Gemma-3 GGUF as distributed carries no `tokenizer.chat_template`: the
/// built-in template its turn tokens name is used, and stderr says so once.
/// (The Qwen2.5-Coder files do carry theirs.)
#[test]
fn models_without_a_template_get_the_builtin_their_turn_tokens_name() {
    let msgs = r#"[{"role":"user","content":"x"}]"#;
    let out = run(&["chat-template", "-m", gemma3().to_str().unwrap(), "--messages", msgs]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<bos><start_of_turn>user\nx<end_of_turn>\n<start_of_turn>model\n");
    assert_eq!(err.matches("using the built-in 'gemma'").count(), 1, "said once: {err}");
}

/// A conversation three times longer than the context runs to the end: each
/// time it outgrows `--ctx`, the oldest turns are dropped (context shift),
/// the system message kept, and the answers go on. `--show-prompt` (hidden)
/// shows what the context holds.
#[test]
fn a_chat_three_times_the_context_keeps_the_system_message() {
    let (n_ctx, n_predict) = (256, 8);
    let system = "You are a helpful assistant named Bob.";
    let mut child = ember()
        .args(["chat", "-m", smollm2().to_str().unwrap(), "--temp", "0", "-n", &n_predict.to_string()])
        .args(["--ctx", &n_ctx.to_string(), "-s", system, "--show-prompt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let turns = 22;
    let input: String =
        (1..=turns).map(|i| format!("Question {i}: name one animal that lives in the sea and one that lives in the desert.\n")).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("[error") && !stderr.contains("too long"), "{stderr}");
    let stats = prompt_stats(&stderr);
    assert_eq!(stats.len(), turns, "every turn answered: {stderr}");

    // The conversation's length: each answer, plus each user turn: what a
    // turn without a shift evaluated (the cache held everything before it);
    // on a shift turn, the smallest user turn seen (they differ only in the number).
    let mut total = 0;
    let mut user_turn = usize::MAX;
    let mut shifted = false;
    let mut shifts = 0;
    let mut turn = 0;
    for line in stderr.lines() {
        if line.starts_with("[context shift") {
            shifted = true;
            shifts += 1;
        } else if line.starts_with("[prompt ") && !line.starts_with("[prompt text]") {
            let (_, new, reused) = stats[turn];
            if !shifted {
                total += new;
                if turn > 0 {
                    user_turn = user_turn.min(new);
                }
            } else {
                assert!(user_turn < usize::MAX, "a turn without a shift came first");
                total += user_turn;
                assert!(reused > 0, "after a shift the system message's KV is reused: {line}");
            }
            let answer: usize = line.split("answer ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            total += answer;
            shifted = false;
            turn += 1;
        }
    }
    assert!(total >= 3 * n_ctx, "the conversation ({total} tokens or more) is 3× the context");
    assert!(shifts >= 2, "{stderr}");
    for &(t, _, _) in &stats {
        assert!(t + n_predict <= n_ctx, "every prompt leaves room for the answer: {stats:?}");
    }
    // What the context held at the last turn: the system message, then the newest turns.
    let last = stderr.rsplit("[prompt text]\n").next().unwrap();
    assert!(last.starts_with(&format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nQuestion ")), "{last}");
    assert!(!last.contains("Question 1:") && last.contains(&format!("Question {turns}:")), "{last}");
}
