//! The HTTP layer in-process (tower `oneshot`, no sockets) over the tiny llama
//! fixture: routes, auth, limits and OpenAI-style errors.

use std::path::PathBuf;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use ember::chat::ChatTemplate;
use ember::{Engine, EngineConfig};
use ember_server::api::Limits;
use ember_server::{router, AppState, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

fn app(api_key: Option<&str>, template: Option<&str>) -> Router {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    let engine = Engine::load(p, EngineConfig { n_threads: 1, n_ctx: Some(128), ..Default::default() }).unwrap();
    let tmpl = match template {
        Some(name) => ChatTemplate::for_tokenizer(engine.tokenizer().unwrap(), Some(name)),
        None => ChatTemplate::from_tokenizer(engine.tokenizer().unwrap()),
    };
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: api_key.map(str::to_owned),
        parallel: 1,
        model_id: "tiny".into(),
        model_aliases: vec![],
        limits: Limits { max_body_bytes: 1024, max_prompt_tokens: 100, max_tokens: 16, n_ctx: 128 },
        idle_timeout: ServerConfig::DEFAULT_IDLE_TIMEOUT,
        max_connections: ServerConfig::DEFAULT_MAX_CONNECTIONS,
        slot_save_path: None,
    };
    router(AppState::new(engine, tmpl, config))
}

async fn call(app: &Router, method: &str, uri: &str, body: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn assert_error(v: &Value) {
    let e = &v["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "{k} missing in {v}");
    }
}

#[tokio::test]
async fn completions_models_health_and_errors() {
    let app = app(None, None);
    let (s, v) = call(&app, "GET", "/health", "", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = call(&app, "GET", "/v1/models", "", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"][0]["id"], "tiny");

    let (s, v) = call(&app, "POST", "/v1/completions", r#"{"model":"tiny","prompt":[1,20,30],"max_tokens":4,"temperature":0}"#, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 4);

    let cases: &[(&str, &str, StatusCode, Option<&str>)] = &[
        ("/v1/completions", "{not json", StatusCode::BAD_REQUEST, Some("invalid_json")),
        ("/v1/completions", r#"{"model":"gpt-9","prompt":"x"}"#, StatusCode::NOT_FOUND, Some("model_not_found")),
        ("/v1/completions", r#"{"prompt":"x","max_tokens":17}"#, StatusCode::BAD_REQUEST, Some("invalid_value")),
        ("/v1/completions", r#"{"prompt":[1,2,3],"max_tokens":16,"temperature":9}"#, StatusCode::BAD_REQUEST, Some("invalid_value")),
        ("/v1/completions", &format!(r#"{{"prompt":{:?}}}"#, vec![5u32; 101]), StatusCode::BAD_REQUEST, Some("context_length_exceeded")),
        ("/v1/completions", &format!(r#"{{"prompt":"{}"}}"#, "a".repeat(2000)), StatusCode::PAYLOAD_TOO_LARGE, Some("request_too_large")),
        ("/v1/completions", r#"{"prompt":[999999]}"#, StatusCode::BAD_REQUEST, Some("invalid_value")),
        // the fixture has no chat template
        ("/v1/chat/completions", r#"{"messages":[{"role":"user","content":"hi"}]}"#, StatusCode::BAD_REQUEST, Some("no_chat_template")),
        // checked before the template: wrong types, unknown roles, null content, negative seeds
        ("/v1/completions", r#"{"prompt":"x","max_tokens":"four"}"#, StatusCode::BAD_REQUEST, Some("invalid_json")),
        ("/v1/chat/completions", r#"{"messages":[{"role":"wizard","content":"hi"}]}"#, StatusCode::BAD_REQUEST, Some("invalid_value")),
        ("/v1/chat/completions", r#"{"messages":[{"role":"user","content":null}]}"#, StatusCode::BAD_REQUEST, Some("invalid_value")),
        ("/v1/completions", r#"{"prompt":[1,2],"seed":-5}"#, StatusCode::BAD_REQUEST, Some("invalid_value")),
        ("/v1/nope", "{}", StatusCode::NOT_FOUND, None),
    ];
    for (uri, body, status, code) in cases {
        let (s, v) = call(&app, "POST", uri, body, None).await;
        assert_eq!(s, *status, "{uri} {}: {v}", &body[..body.len().min(60)]);
        assert_error(&v);
        assert_eq!(v["error"]["code"].as_str(), *code, "{v}");
    }
    let (s, v) = call(&app, "GET", "/v1/completions", "", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v);
}

#[tokio::test]
async fn api_key_guards_everything_but_health() {
    let app = app(Some("k"), Some("chatml"));
    assert_eq!(call(&app, "GET", "/health", "", None).await.0, StatusCode::OK);
    for key in [None, Some("wrong")] {
        let (s, v) = call(&app, "GET", "/v1/models", "", key).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["type"], "authentication_error");
    }
    let body = json!({"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0}).to_string();
    let (s, v) = call(&app, "POST", "/v1/chat/completions", &body, Some("k")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
}
