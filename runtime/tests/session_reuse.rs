//! Multi-turn reuse of a session's KV cache: `generate_from` evaluates only the
//! part of the prompt not already in the cache, and answers as a fresh session would.

use std::path::PathBuf;

use ember::sampling::SamplingParams;
use ember::session::{common_prefix_len, GenerateParams};
use ember::{Engine, EngineConfig};

fn tiny() -> std::sync::Arc<Engine> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    Engine::load(p, EngineConfig { n_threads: 2, n_ctx: Some(128), ..Default::default() }).unwrap()
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams { sampling: SamplingParams::greedy(), max_tokens: n, stop: vec![], constraint: None }
}

fn gen(s: &mut ember::Session, prompt: &[u32], n: usize, from: bool) -> (String, ember::GenerationStats) {
    let mut out = String::new();
    let mut cb = |t: &str| {
        out.push_str(t);
        true
    };
    let st = if from { s.generate_from(prompt, &greedy(n), &mut cb) } else { s.generate(prompt, &greedy(n), &mut cb) };
    (out, st.unwrap())
}

#[test]
fn common_prefix() {
    assert_eq!(common_prefix_len(&[1, 2, 3], &[1, 2, 4]), 2);
    assert_eq!(common_prefix_len(&[], &[1]), 0);
    assert_eq!(common_prefix_len(&[1, 2], &[1, 2, 3]), 2);
}

#[test]
fn second_turn_evaluates_only_the_new_suffix_and_matches_a_fresh_session() {
    let engine = tiny();
    let turn1: Vec<u32> = vec![1, 20, 30, 40, 50, 60];
    let mut s = engine.new_session();
    let (_, st1) = gen(&mut s, &turn1, 6, true);
    assert_eq!(st1.prompt_tokens, turn1.len());
    let in_cache = s.tokens().to_vec();
    assert!(in_cache.starts_with(&turn1));

    // The next turn: everything so far plus new tokens.
    let mut turn2 = in_cache.clone();
    turn2.extend_from_slice(&[70, 80, 90]);
    let (text2, st2) = gen(&mut s, &turn2, 6, true);
    assert_eq!(st2.prompt_tokens, turn2.len() - in_cache.len(), "only the new tokens are evaluated");

    let mut fresh = engine.new_session();
    let (want, st) = gen(&mut fresh, &turn2, 6, false);
    assert_eq!(st.prompt_tokens, turn2.len());
    assert_eq!(text2, want);
}

#[test]
fn diverging_prompt_rewinds_to_the_common_prefix() {
    let engine = tiny();
    let mut s = engine.new_session();
    gen(&mut s, &[1, 20, 30, 40, 50], 4, true);
    let other = vec![1, 20, 30, 99, 98, 97];
    let (text, st) = gen(&mut s, &other, 5, true);
    assert_eq!(st.prompt_tokens, 3, "tokens after the common prefix [1, 20, 30]");
    let (want, _) = gen(&mut engine.new_session(), &other, 5, false);
    assert_eq!(text, want);
}

#[test]
fn same_prompt_again_reevaluates_one_token() {
    let engine = tiny();
    let mut s = engine.new_session();
    let p = vec![1, 20, 30, 40];
    let (a, _) = gen(&mut s, &p, 5, true);
    let (b, st) = gen(&mut s, &p, 5, true);
    assert_eq!(st.prompt_tokens, 1, "the last prompt token is evaluated again for fresh logits");
    assert_eq!(a, b);
    assert!(s.generate_from(&[], &greedy(1), &mut |_| true).is_err());
}

#[test]
fn encode_prompt_adds_bos_once() {
    let engine = tiny();
    let tok = engine.tokenizer().unwrap();
    let bos = tok.bos().unwrap();
    assert!(tok.add_bos());
    let plain = ember::chat::encode_prompt(tok, "hello world").unwrap();
    assert_eq!(plain[0], bos);
    let bos_text = tok.token_text(bos).unwrap().to_owned();
    let with = ember::chat::encode_prompt(tok, &format!("{bos_text}hello world")).unwrap();
    assert_eq!(with, plain, "a template that writes BOS does not get a second one");
}

/// Sessions of one engine generating at once from several threads (each
/// token a forward pass on the engine's spinning CPU team) all finish, with
/// what each would produce alone.
#[test]
fn concurrent_sessions_share_the_cpu_team() {
    let engine = tiny();
    let prompts: Vec<Vec<u32>> = (0..4u32).map(|i| vec![1, 20 + i, 30 + 2 * i]).collect();
    let alone: Vec<String> = prompts.iter().map(|p| gen(&mut engine.new_session(), p, 24, false).0).collect();
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts.iter().map(|p| sc.spawn(|| gen(&mut engine.new_session(), p, 24, false).0)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
}

/// A cancel is never lost: set before `generate` starts, the generation stops
/// at once (nothing of the prompt evaluated) and the flag is consumed, so the
/// next one runs; set while a prompt is evaluated, the pass stops at its next
/// product (the runner sees the session's flag); `eval` with it set fails.
#[test]
fn cancel_before_and_during_the_prompt() {
    use std::sync::atomic::Ordering;
    let engine = tiny();
    let mut s = engine.new_session();
    let prompt: Vec<u32> = (1..100).collect();
    s.cancel_handle().store(true, Ordering::Relaxed);
    let (text, st) = gen(&mut s, &prompt, 8, false);
    assert_eq!((st.stop_reason, st.generated_tokens, text.as_str()), (ember::StopReason::Cancelled, 0, ""));
    assert!(s.tokens().is_empty(), "nothing evaluated after a cancel that came first");
    assert!(!s.cancel_handle().load(Ordering::Relaxed), "the cancel was consumed");
    let (_, st) = gen(&mut s, &prompt, 4, false);
    assert_ne!(st.stop_reason, ember::StopReason::Cancelled);
    assert!(s.tokens().len() > prompt.len(), "the next generation ran");

    // The flag as the runner sees it: a pass started with it set stops with Cancelled.
    s.reset();
    s.cancel_handle().store(true, Ordering::Relaxed);
    let e = s.eval(&prompt, ember::model::LogitsWanted::Last).expect_err("eval with the flag set");
    assert!(matches!(e, ember::Error::Cancelled), "{e}");
    assert!(s.tokens().is_empty());
    s.cancel_handle().store(false, Ordering::Relaxed);
    s.eval(&prompt, ember::model::LogitsWanted::Last).unwrap();

    // A server gives each request its own flag.
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    s.set_cancel_handle(flag.clone());
    let (_, st) = gen(&mut s, &[7, 8, 9], 4, false);
    assert_eq!(st.stop_reason, ember::StopReason::Cancelled);
    assert!(!flag.load(Ordering::Relaxed));
}
