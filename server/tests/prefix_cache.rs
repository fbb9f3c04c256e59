//! The pool's shared prefix cache (server/src/prefix_cache.rs) over the tiny
//! llama fixture: a session that never saw a prompt's prefix copies its rows
//! from another session's and answers as a fresh session would; over HTTP,
//! the second request with the same start reports cached prompt tokens; a
//! slot saved to a file and restored in a new server answers from its rows.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::Request;
use ember::chat::ChatTemplate;
use ember::sampling::SamplingParams;
use ember::session::GenerateParams;
use ember::{Engine, EngineConfig};
use ember_server::api::Limits;
use ember_server::prefix_cache::{PrefixCache, MIN_TOKENS};
use ember_server::{router, AppState, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

fn tiny() -> Arc<Engine> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    Engine::load(p, EngineConfig { n_threads: 1, n_ctx: Some(128), ..Default::default() }).unwrap()
}

fn greedy_from(s: &mut ember::Session, prompt: &[u32]) -> (String, usize) {
    let params = GenerateParams { sampling: SamplingParams::greedy(), max_tokens: 6, stop: vec![], constraint: None };
    let mut out = String::new();
    let st = s
        .generate_from(prompt, &params, &mut |t| {
            out.push_str(t);
            true
        })
        .unwrap();
    (out, st.prompt_tokens)
}

#[test]
fn another_session_starts_from_the_cached_prefix_and_answers_the_same() {
    let engine = tiny();
    let dims = engine.model().unwrap().forward().graph().kv.clone();
    let system: Vec<u32> = (1..=24).map(|i| i * 7 % 200 + 2).collect();
    let (a, b) = ([&system[..], &[40, 41, 42]].concat(), [&system[..], &[50, 51]].concat());
    let cache = PrefixCache::default();

    let mut s1 = engine.new_session();
    greedy_from(&mut s1, &a);
    cache.remember(&mut s1, &a);

    let mut s2 = engine.new_session();
    assert_eq!(cache.apply(&mut s2, &b, &dims), system.len(), "the shared prefix is copied");
    let (text, evaluated) = greedy_from(&mut s2, &b);
    assert_eq!(evaluated, b.len() - system.len(), "only the request's own tail is evaluated");
    let (want, _) = greedy_from(&mut engine.new_session(), &b);
    assert_eq!(text, want, "the copied rows answer as evaluated ones");

    // Nothing is copied for a prompt that shares less than MIN_TOKENS, or
    // into a session that already holds as much.
    let short: Vec<u32> = [&system[..MIN_TOKENS - 1], &[9]].concat();
    assert_eq!(cache.apply(&mut engine.new_session(), &short, &dims), 0);
    assert_eq!(cache.apply(&mut s1, &b, &dims), 0);
}

fn config(parallel: usize, slot_save_path: Option<PathBuf>) -> ServerConfig {
    ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: None,
        parallel,
        model_id: "tiny".into(),
        model_aliases: vec![],
        limits: Limits { max_body_bytes: 4096, max_prompt_tokens: 100, max_tokens: 16, n_ctx: 128 },
        idle_timeout: ServerConfig::DEFAULT_IDLE_TIMEOUT,
        max_connections: ServerConfig::DEFAULT_MAX_CONNECTIONS,
        slot_save_path,
    }
}

fn app(config: ServerConfig) -> axum::Router {
    let engine = tiny();
    router(AppState::new(engine.clone(), ChatTemplate::from_tokenizer(engine.tokenizer().unwrap()), config))
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_saved_slot_restored_in_a_new_server_answers_from_its_rows() {
    let dir = std::env::temp_dir().join(format!("ember-slots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompt = serde_json::json!({ "prompt": "a b c d e f g h i j k l m n o p", "max_tokens": 4, "temperature": 0 });
    let first = app(config(2, Some(dir.clone())));
    let (s, v) = call(&first, "POST", "/v1/completions", prompt.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (text, n_prompt) = (v["choices"][0]["text"].clone(), v["usage"]["prompt_tokens"].as_u64().unwrap());
    let (_, slots) = call(&first, "GET", "/slots", Value::Null).await;
    assert_eq!(slots[0]["id"], 0);
    assert_eq!(slots[0]["is_processing"], false);
    assert!(slots[0]["n_tokens"].as_u64().unwrap() >= n_prompt, "{slots}");
    let (s, v) = call(&first, "POST", "/slots/0?action=save", serde_json::json!({ "filename": "s0.bin" })).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["n_saved"].as_u64().unwrap() >= n_prompt && v["n_written"].as_u64().unwrap() > 0, "{v}");
    assert!(dir.join("s0.bin").is_file());

    // A new server (a restart): slot 1 restored from the file; the same prompt takes it,
    // reuses all but the last prompt token and answers the same greedy text.
    let second = app(config(2, Some(dir.clone())));
    let (s, v) = call(&second, "POST", "/slots/1?action=restore", serde_json::json!({ "filename": "s0.bin" })).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["n_restored"].as_u64().unwrap() >= n_prompt, "{v}");
    let (s, v) = call(&second, "POST", "/v1/completions", prompt.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], text, "restored rows answer as evaluated ones");
    assert!(v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() + 1 >= n_prompt, "{v}");

    // Errors: each named, nothing changed.
    let cases = [
        ("/slots/1?action=restore", serde_json::json!({ "filename": "missing.bin" }), 404),
        ("/slots/1?action=save", serde_json::json!({ "filename": "../escape.bin" }), 400),
        ("/slots/1?action=save", serde_json::json!({ "filename": "a/b.bin" }), 400),
        ("/slots/1?action=save", serde_json::json!({}), 400),
        ("/slots/9?action=save", serde_json::json!({ "filename": "x.bin" }), 404),
        ("/slots/x?action=save", serde_json::json!({ "filename": "x.bin" }), 400),
        ("/slots/1?action=shred", serde_json::json!({}), 400),
    ];
    for (uri, body, want) in cases {
        let (s, v) = call(&second, "POST", uri, body).await;
        assert_eq!(s, want, "{uri}: {v}");
        assert!(v["error"]["message"].is_string(), "{uri}: {v}");
    }
    // A damaged file is refused and the slot keeps what it had.
    std::fs::write(dir.join("bad.bin"), b"not a session").unwrap();
    let (s, v) = call(&second, "POST", "/slots/1?action=restore", serde_json::json!({ "filename": "bad.bin" })).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(&second, "POST", "/slots/1?action=erase", Value::Null).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["n_erased"].as_u64().unwrap() >= n_prompt, "{v}");
    // Without --slot-save-path: 501.
    let (s, v) = call(&app(config(1, None)), "POST", "/slots/0?action=save", serde_json::json!({ "filename": "s.bin" })).await;
    assert_eq!(s, 501, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_second_request_with_the_same_start_reports_cached_tokens() {
    let app = app(config(2, None));
    let system = "a b c d e f g h i j k l m n o p q r s t u v w x y z ";
    let mut cached = Vec::new();
    for q in ["one two", "three four"] {
        let body = serde_json::json!({ "prompt": format!("{system}{q}"), "max_tokens": 2, "temperature": 0 }).to_string();
        let req = Request::builder().method("POST").uri("/v1/completions").header("content-type", "application/json");
        let resp = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let v: Value = serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
        let usage = &v["usage"];
        assert!(usage["prompt_tokens"].as_u64().unwrap() > MIN_TOKENS as u64, "{v}");
        cached.push(usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap());
    }
    assert_eq!(cached[0], 0, "the first request evaluates everything");
    assert!(cached[1] >= MIN_TOKENS as u64, "the second skips the shared start: {cached:?}");
}
