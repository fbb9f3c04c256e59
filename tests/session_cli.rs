//! Saved sessions end to end (runtime/src/session_file.rs): `ember run
//! --session FILE` restored in a new process continues exactly as a run
//! without it, on the CPU and on wgpu (there with a q8_0 cache too); a
//! damaged file is an error; `ember chat`'s `/save` and `/load` restore a
//! conversation.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use common::*;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ember-session-cli-{}-{name}", std::process::id()))
}

/// Three runs of one prompt: without a session, then twice with `--session`
/// (the first saves, the second restores and evaluates one prompt token):
/// the same greedy text each time. With `cache` (`--ctk/--ctv`, the rows
/// saved and restored as q8_0/q4_0 bytes) the plain run is left out: the
/// first run with `--session` is one.
fn run_twice_with_a_session(backend: &str, cache: Option<&str>) {
    let (smol, file) = (smollm2(), tmp(&format!("{backend}-{}.session", cache.unwrap_or("f16"))));
    let _ = std::fs::remove_file(&file);
    let mut base = vec!["run", "-m", smol.to_str().unwrap(), "-p", "The capital of France is", "-n", "8", "--temp", "0", "--ctx", "128"];
    if let Some(c) = cache {
        base.extend(["--ctk", c, "--ctv", c]);
    }
    let args = [&base[..], &["--session", file.to_str().unwrap()][..]].concat();
    let first = run_on(backend, &args);
    let second = run_on(backend, &args);
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(first.status.success() && second.status.success(), "{}\n{}", err(&first), err(&second));
    assert!(!err(&first).contains("restored"), "{}", err(&first));
    assert!(err(&second).contains("5 of the prompt's 5 tokens restored"), "{}", err(&second));
    assert!(err(&second).contains("ember: prompt 1 tokens"), "only the last prompt token is evaluated again: {}", err(&second));
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let plain = if cache.is_some() { text(&first) } else { run_ok_on(backend, &base) };
    assert_eq!(text(&first), plain);
    assert_eq!(text(&second), plain, "the restored session continues as the uninterrupted run");

    if backend != "cpu" || cache.is_some() {
        // The file checks do not depend on the backend: once is enough.
        let _ = std::fs::remove_file(&file);
        return;
    }
    // A damaged file is an error that says so, and is left alone.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let damaged = run_on(backend, &args);
    assert!(!damaged.status.success());
    assert!(err(&damaged).contains("corrupt"), "{}", err(&damaged));
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "a file that cannot be restored is not overwritten");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn run_session_restores_on_the_cpu() {
    run_twice_with_a_session("cpu", None);
}

#[test]
fn run_session_restores_on_wgpu() {
    if wgpu_available() {
        run_twice_with_a_session("wgpu", None);
    }
}

#[test]
fn run_session_with_a_q8_0_cache_restores_on_wgpu() {
    if wgpu_available() {
        run_twice_with_a_session("wgpu", Some("q8_0"));
    }
}

fn chat(input: &str) -> (String, String) {
    let smol = smollm2();
    let mut child = ember()
        .args(["chat", "-m", smol.to_str().unwrap(), "--temp", "0", "-n", "8", "--ctx", "256", "--backend", "cpu"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

#[test]
fn chat_save_and_load_restore_the_conversation() {
    let file = tmp("chat.session");
    let f = file.to_str().unwrap();
    let (want, _) = chat("What is 2+2?\nAnd 3+3?\n");
    let (got, stderr) = chat(&format!("What is 2+2?\n/save {f}\n/reset\n/load {f}\nAnd 3+3?\n"));
    assert!(stderr.contains("[restored 2 messages"), "{stderr}");
    assert_eq!(got, want, "the restored conversation answers as the uninterrupted one");
    let (_, stderr) = chat(&format!("/load {f}.missing\n"));
    assert!(stderr.contains("[error: cannot read"), "{stderr}");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(format!("{f}.messages.json"));
}
