//! Structured output and tool calling in-process over the tiny llama fixture
//! (random weights, the built-in chatml template): validation errors are
//! OpenAI 400s naming their field, and a forced tool call comes back as
//! `message.tool_calls` (and as `delta.tool_calls` when streamed) whatever
//! the weights say.

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

fn app() -> Router {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    let engine = Engine::load(p, EngineConfig { n_threads: 1, n_ctx: Some(1024), ..Default::default() }).unwrap();
    let tmpl = ChatTemplate::for_tokenizer(engine.tokenizer().unwrap(), Some("chatml"));
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: None,
        parallel: 1,
        model_id: "tiny".into(),
        model_aliases: vec![],
        limits: Limits { max_body_bytes: 1 << 16, max_prompt_tokens: 900, max_tokens: 120, n_ctx: 1024 },
        idle_timeout: ServerConfig::DEFAULT_IDLE_TIMEOUT,
        max_connections: ServerConfig::DEFAULT_MAX_CONNECTIONS,
        slot_save_path: None,
    };
    router(AppState::new(engine, tmpl, config))
}

async fn post(app: &Router, uri: &str, body: &Value) -> (StatusCode, Vec<u8>) {
    let req = Request::builder().method("POST").uri(uri).header("content-type", "application/json");
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    (status, to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec())
}

async fn post_json(app: &Router, uri: &str, body: &Value) -> (StatusCode, Value) {
    let (s, b) = post(app, uri, body).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]}}})
}

#[tokio::test]
async fn bad_constraints_and_tools_are_400s_naming_their_field() {
    let app = app();
    let nonsense = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v1/chat/completions", json!({"messages": user("hi"), "response_format": nonsense}), "response_format"),
        ("/v1/completions", json!({"prompt": "hi", "response_format": nonsense}), "response_format"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "response_format": {"type": "yaml"}}), "response_format"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "response_format": "json"}), "response_format"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "response_format": {"type": "json_schema"}}), "response_format"),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}),
            "response_format.json_schema.schema",
        ),
        ("/v1/chat/completions", json!({"messages": user("hi"), "grammar": "root ::= ("}), "grammar"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "grammar": 5}), "grammar"),
        ("/v1/completions", json!({"prompt": "hi", "json_schema": {"type": "object", "required": 7}}), "json_schema"),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "grammar": "root ::= \"a\"", "json_schema": {"type": "object"}}),
            "json_schema",
        ),
        ("/v1/chat/completions", json!({"messages": user("hi"), "tools": [weather()], "tool_choice": "sometimes"}), "tool_choice"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "tools": [weather()], "tool_choice": 3}), "tool_choice"),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        ("/v1/chat/completions", json!({"messages": user("hi"), "tool_choice": "required"}), "tool_choice"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "tools": {"a": 1}}), "tools"),
        ("/v1/chat/completions", json!({"messages": user("hi"), "tools": [{"type": "retrieval"}]}), "tools[0]"),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "tools": [{"type": "function", "function": {"description": "x"}}]}),
            "tools[0].function.name",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "tools": [{"type": "function", "function": {"name": "has space"}}]}),
            "tools[0].function.name",
        ),
        ("/v1/chat/completions", json!({"messages": user("hi"), "tools": [weather(), weather()]}), "tools[1].function.name"),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
            "tools[0].function.parameters",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user("hi"), "tool_choice": "required",
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}]}),
            "tools",
        ),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}), "messages[0].tool_calls"),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "function": {}}]}]}),
            "messages[0].tool_calls",
        ),
    ];
    for (uri, body, param) in cases {
        let (s, v) = post_json(&app, uri, &body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let e = &v["error"];
        assert_eq!(e["type"], "invalid_request_error", "{v}");
        assert_eq!(e["param"], param, "{body}: {v}");
        assert_eq!(e["code"], "invalid_value", "{body}: {v}");
        assert!(!e["message"].as_str().unwrap_or("").is_empty(), "{v}");
    }
}

#[tokio::test]
async fn constraints_shape_the_output() {
    let app = app();
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2]}},
                        "required": ["ok", "n"], "additionalProperties": false});
    let bodies = [
        json!({"messages": user("hi"), "max_tokens": 100, "response_format":
              {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": true}}}),
        json!({"messages": user("hi"), "max_tokens": 100, "json_schema": schema}),
    ];
    for body in &bodies {
        let (s, v) = post_json(&app, "/v1/chat/completions", body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        let out: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(out["ok"].is_boolean() && (out["n"] == 1 || out["n"] == 2), "{out}");
    }
    let (s, v) =
        post_json(&app, "/v1/completions", &json!({"prompt": "x", "max_tokens": 10, "grammar": "root ::= \"yes\" | \"no\""})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(["yes", "no"].contains(&v["choices"][0]["text"].as_str().unwrap()), "{v}");
    // A constraint that cannot finish in max_tokens ends with "length".
    let long = json!({"type": "array", "items": {"type": "integer"}, "minItems": 100});
    let (s, v) = post_json(&app, "/v1/chat/completions", &json!({"messages": user("hi"), "max_tokens": 4, "json_schema": long})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    // {"type": "text"} is no constraint.
    let (s, v) =
        post_json(&app, "/v1/chat/completions", &json!({"messages": user("hi"), "max_tokens": 3, "response_format": {"type": "text"}}))
            .await;
    assert_eq!((s, v["object"].as_str()), (StatusCode::OK, Some("chat.completion")), "{v}");
}

#[tokio::test]
async fn forced_tool_calls_stream_and_not() {
    let app = app();
    let now = json!({"type": "function", "function": {"name": "now"}});
    for choice in [json!("required"), json!({"type": "function", "function": {"name": "get_weather"}})] {
        let body = json!({"messages": user("weather?"), "tools": [weather(), now], "tool_choice": choice, "max_tokens": 100, "seed": 1});
        let (s, v) = post_json(&app, "/v1/chat/completions", &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let ch = &v["choices"][0];
        assert_eq!(ch["finish_reason"], "tool_calls", "{v}");
        assert_eq!(ch["message"]["content"], Value::Null, "{v}");
        let call = &ch["message"]["tool_calls"][0];
        assert!(call["id"].as_str().unwrap().starts_with("call_"), "{v}");
        assert_eq!(call["type"], "function");
        let name = call["function"]["name"].as_str().unwrap();
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        match name {
            "get_weather" => assert!(args["unit"] == "c" || args["unit"] == "f", "{args}"),
            "now" => assert_eq!(args, json!({})),
            _ => panic!("{v}"),
        }

        let mut stream_body = body.clone();
        stream_body["stream"] = json!(true);
        let (s, bytes) = post(&app, "/v1/chat/completions", &stream_body).await;
        assert_eq!(s, StatusCode::OK);
        let text = String::from_utf8(bytes).unwrap();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let (mut sname, mut sargs, mut finish) = (String::new(), String::new(), Value::Null);
        for e in &events {
            let ch = &e["choices"][0];
            assert!(ch["delta"]["content"].as_str().unwrap_or("").is_empty(), "{e}");
            if let Some(tc) = ch["delta"]["tool_calls"].as_array() {
                assert_eq!(tc[0]["index"], 0, "{e}");
                sname.push_str(tc[0]["function"]["name"].as_str().unwrap_or(""));
                sargs.push_str(tc[0]["function"]["arguments"].as_str().unwrap_or(""));
            }
            if !ch["finish_reason"].is_null() {
                finish = ch["finish_reason"].clone();
            }
        }
        assert_eq!(finish, "tool_calls", "{text}");
        assert_eq!(sname, name, "{text}");
        assert_eq!(serde_json::from_str::<Value>(&sargs).unwrap(), args, "same seed, same call: {text}");
    }
    // A follow-up turn with the result, and tool_choice "none": plain answers.
    let history = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"unit\":\"c\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"}
    ]);
    for choice in ["auto", "none"] {
        let body = json!({"messages": history, "tools": [weather()], "tool_choice": choice, "max_tokens": 5});
        let (s, v) = post_json(&app, "/v1/chat/completions", &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(["stop", "length", "tool_calls"].contains(&v["choices"][0]["finish_reason"].as_str().unwrap()), "{v}");
    }
}
