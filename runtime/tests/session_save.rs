//! Saved sessions (`Session::save`/`load`, runtime/src/session_file.rs): a
//! session restored into a new engine continues exactly as the original, and
//! a damaged or mismatched file is a typed error that leaves the session as
//! it was. On the tiny llama fixture (the real models and the GPU are
//! covered through the CLI, tests/session_cli.rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ember::model::LogitsWanted;
use ember::sampling::SamplingParams;
use ember::session::GenerateParams;
use ember::session_file::SessionFileError;
use ember::{Engine, EngineConfig, Error};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch").join(name)
}

fn engine(name: &str, n_ctx: usize) -> Arc<Engine> {
    Engine::load(fixture(name), EngineConfig { n_threads: 2, n_ctx: Some(n_ctx), ..Default::default() }).unwrap()
}

/// Greedy continuation of `prompt` (the whole context wanted): the text and
/// the tokens evaluated.
fn continue_from(s: &mut ember::Session, prompt: &[u32], n: usize) -> (String, Vec<u32>, usize) {
    let params = GenerateParams { sampling: SamplingParams::greedy(), max_tokens: n, stop: vec![], constraint: None };
    let mut out = String::new();
    let st = s
        .generate_from(prompt, &params, &mut |t| {
            out.push_str(t);
            true
        })
        .unwrap();
    (out, s.tokens().to_vec(), st.prompt_tokens)
}

fn file_error(r: ember::Result<()>) -> SessionFileError {
    match r {
        Err(Error::SessionFile { source, .. }) => source,
        other => panic!("expected a session file error, got {other:?}"),
    }
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ember-session-save-{}-{name}", std::process::id()))
}

fn damaged(src: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(src).unwrap();
    f(&mut b);
    let p = tmp(name);
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn restored_session_continues_like_the_original_and_damage_is_a_typed_error() {
    let prompt: Vec<u32> = vec![1, 20, 30, 40, 50, 60, 70];
    let file = tmp("ok.session");

    // The original: the prompt evaluated, saved, then continued.
    let e1 = engine("llama.gguf", 128);
    let mut s1 = e1.new_session();
    s1.eval(&prompt, LogitsWanted::Last).unwrap();
    s1.save(&file).unwrap();
    let (want_text, want_tokens, _) = continue_from(&mut s1, &prompt, 8);

    // Restored into a new engine (nothing shared with the original).
    let e2 = engine("llama.gguf", 128);
    let mut s2 = e2.new_session();
    s2.load(&file).unwrap();
    assert_eq!(s2.tokens(), &prompt[..]);
    // The restored rows are the saved ones: saving again gives the same file.
    let again = tmp("again.session");
    s2.save(&again).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&file).unwrap());
    let (text, tokens, evaluated) = continue_from(&mut s2, &prompt, 8);
    assert_eq!(evaluated, 1, "only the last prompt token is evaluated again");
    assert_eq!((text, tokens), (want_text, want_tokens.clone()));

    // Damaged or mismatched files: typed errors, the session unchanged.
    let flipped = damaged(&file, "flipped", |b| {
        let n = b.len();
        b[n - 100] ^= 1
    });
    let truncated = damaged(&file, "truncated", |b| b.truncate(b.len() - 1000));
    let not_one = damaged(&file, "garbage", |b| b[..8].copy_from_slice(b"GGUF\0\0\0\0"));
    assert_eq!(file_error(s2.load(&flipped)), SessionFileError::Checksum);
    assert!(matches!(file_error(s2.load(&truncated)), SessionFileError::Truncated { .. }));
    assert_eq!(file_error(s2.load(&not_one)), SessionFileError::NotASessionFile);
    assert_eq!(s2.tokens(), &want_tokens[..], "a failed load leaves the session as it was");

    let mut other_ctx = engine("llama.gguf", 64).new_session();
    assert_eq!(file_error(other_ctx.load(&file)), SessionFileError::ContextMismatch { saved: 128, this: 64 });
    let mut other_model = engine("llama_e256.gguf", 128).new_session();
    assert_eq!(file_error(other_model.load(&file)), SessionFileError::ModelMismatch);
    assert!(matches!(s2.load(tmp("missing")), Err(Error::Io { .. })));

    for p in [file, again, flipped, truncated, not_one] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn an_empty_session_saves_and_restores() {
    let e = engine("llama.gguf", 64);
    let file = tmp("empty.session");
    e.new_session().save(&file).unwrap();
    let mut s = e.new_session();
    s.eval(&[1, 2, 3], LogitsWanted::Last).unwrap();
    s.load(&file).unwrap();
    assert!(s.tokens().is_empty());
    let _ = std::fs::remove_file(file);
}
