//! Request bodies of the OpenAI API (the fields Ember honours; others are
//! ignored) and their validation into generation parameters.

use ember::chat::ChatMessage;
use ember::sampling::SamplingParams;
use ember::session::GenerateParams;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Sampling fields shared by chat and text completions.
#[derive(Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Value>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<i64>,
    // Extensions, named as llama.cpp's server names them.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<MessageIn>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Value,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// Limits the server enforces on every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most prompt tokens.
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens`; also the default when a request gives none.
    pub max_tokens: usize,
    /// Each session's context size.
    pub n_ctx: usize,
}

/// Parses a JSON body into `T`, with OpenAI-style errors.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")).with_code("invalid_json"))?;
    if !v.is_object() {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    }
    // A field of the wrong type is malformed JSON for this API (docs/SERVER.md).
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid request: {e}")).with_code("invalid_json"))
}

/// The roles a chat message may have.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// A message's text: a string, or the `text` parts of a content array.
pub fn message_text(i: usize, m: &MessageIn) -> Result<ChatMessage, ApiError> {
    let param = format!("messages[{i}].content");
    let content = match &m.content {
        Value::String(s) => s.clone(),
        // OpenAI allows a null content only on assistant turns (that call tools).
        Value::Null if m.role == "assistant" => String::new(),
        Value::Null => return Err(ApiError::param(&param, "content must not be null")),
        Value::Array(parts) => {
            let mut s = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => s.push_str(t),
                    _ => return Err(ApiError::param(&param, "only text content parts are supported")),
                }
            }
            s
        }
        _ => return Err(ApiError::param(&param, "content must be a string or an array of text parts")),
    };
    if !ROLES.contains(&m.role.as_str()) {
        return Err(ApiError::param(&format!("messages[{i}].role"), format!("role must be one of {}, got {:?}", ROLES.join(", "), m.role)));
    }
    Ok(ChatMessage::new(m.role.clone(), content))
}

pub fn chat_messages(req: &ChatRequest) -> Result<Vec<ChatMessage>, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::param("messages", "messages must not be empty"));
    }
    req.messages.iter().enumerate().map(|(i, m)| message_text(i, m)).collect()
}

/// The prompt of a text completion: a string, a one-string array or token ids.
pub enum PromptIn {
    Text(String),
    Ids(Vec<u32>),
}

pub fn completion_prompt(v: &Value) -> Result<PromptIn, ApiError> {
    let bad = || ApiError::param("prompt", "prompt must be a string, an array of one string, or an array of token ids");
    match v {
        Value::String(s) => Ok(PromptIn::Text(s.clone())),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => Ok(PromptIn::Text(a[0].as_str().unwrap_or("").to_owned())),
        Value::Array(a) if !a.is_empty() && a.iter().all(|x| x.is_u64()) => {
            Ok(PromptIn::Ids(a.iter().map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)).collect::<Result<_, _>>()?))
        }
        Value::Array(a) if a.len() > 1 => Err(ApiError::param("prompt", "only one prompt per request is supported")),
        _ => Err(bad()),
    }
}

fn stop_list(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| ApiError::param("stop", "stop must be a string or an array of strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::param("stop", "stop must be a string or an array of strings")),
    };
    if list.len() > 4 {
        return Err(ApiError::param("stop", "at most 4 stop sequences"));
    }
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15
}

/// Validates the sampling fields for a prompt of `prompt_tokens` tokens. OpenAI's
/// defaults: temperature 1, top_p 1, no penalties; `max_tokens` defaults to what
/// the context has left, capped by the server's limit.
pub fn generate_params(f: &SamplingFields, prompt_tokens: usize, limits: &Limits) -> Result<GenerateParams, ApiError> {
    if let Some(n) = f.n {
        if n != 1 {
            return Err(ApiError::param("n", "only n = 1 is supported"));
        }
    }
    let temperature = f.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::param("temperature", "temperature must be between 0 and 2"));
    }
    let top_p = f.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::param("top_p", "top_p must be in (0, 1]"));
    }
    for (name, v) in [("presence_penalty", f.presence_penalty), ("frequency_penalty", f.frequency_penalty)] {
        if let Some(v) = v {
            if !(-2.0..=2.0).contains(&v) {
                return Err(ApiError::param(name, format!("{name} must be between -2 and 2")));
            }
        }
    }
    let top_k = match f.top_k {
        Some(k) if k < 0 => return Err(ApiError::param("top_k", "top_k must be >= 0")),
        Some(k) => k as usize,
        None => 0,
    };
    let min_p = f.min_p.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(ApiError::param("min_p", "min_p must be in [0, 1]"));
    }
    let repeat_penalty = f.repeat_penalty.unwrap_or(1.0);
    if !(repeat_penalty > 0.0 && repeat_penalty.is_finite()) {
        return Err(ApiError::param("repeat_penalty", "repeat_penalty must be > 0"));
    }
    let seed = match f.seed {
        Some(s) if s < 0 => return Err(ApiError::param("seed", "seed must be ≥ 0")),
        Some(s) => s as u64,
        None => random_seed(),
    };

    if prompt_tokens == 0 {
        return Err(ApiError::param("prompt", "the prompt is empty"));
    }
    if prompt_tokens > limits.max_prompt_tokens || prompt_tokens >= limits.n_ctx {
        return Err(ApiError::invalid(format!(
            "the prompt has {prompt_tokens} tokens; this server accepts at most {} (context size {})",
            limits.max_prompt_tokens.min(limits.n_ctx - 1),
            limits.n_ctx
        ))
        .with_code("context_length_exceeded"));
    }
    let room = limits.n_ctx - prompt_tokens;
    let (name, asked) = match (f.max_completion_tokens, f.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    let max_tokens = match asked {
        Some(m) if m < 1 => return Err(ApiError::param(name, format!("{name} must be at least 1"))),
        Some(m) if m as u64 > limits.max_tokens as u64 => {
            return Err(ApiError::param(name, format!("{name} is {m}; this server allows at most {}", limits.max_tokens)))
        }
        Some(m) if m as usize > room => {
            return Err(ApiError::invalid(format!(
                "the prompt ({prompt_tokens} tokens) plus {name} ({m}) exceeds the context size {}",
                limits.n_ctx
            ))
            .with_param(name)
            .with_code("context_length_exceeded"))
        }
        Some(m) => m as usize,
        None => limits.max_tokens.min(room),
    };
    let sampling = SamplingParams {
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        // OpenAI has no such field: the runtime's window.
        repeat_last_n: ember::sampling::DEFAULT_REPEAT_LAST_N,
        frequency_penalty: f.frequency_penalty.unwrap_or(0.0),
        presence_penalty: f.presence_penalty.unwrap_or(0.0),
        seed,
    };
    sampling.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(GenerateParams { sampling, max_tokens, stop: stop_list(&f.stop)?, constraint: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_body_bytes: 1 << 20, max_prompt_tokens: 100, max_tokens: 50, n_ctx: 128 }
    }

    fn fields(json: &str) -> SamplingFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_openai_defaults() {
        let p = generate_params(&fields("{}"), 10, &limits()).unwrap();
        assert_eq!(p.sampling.temperature, 1.0);
        assert_eq!(p.sampling.top_p, 1.0);
        assert_eq!(p.sampling.top_k, 0);
        assert_eq!(p.max_tokens, 50, "the server's cap");
        let p = generate_params(&fields("{}"), 100, &limits()).unwrap();
        assert_eq!(p.max_tokens, 28, "what the context has left");
    }

    #[test]
    fn fields_are_mapped() {
        let f = fields(
            r#"{"temperature":0,"top_p":0.5,"max_tokens":7,"stop":["a","b"],"seed":3,"presence_penalty":0.5,"frequency_penalty":-1}"#,
        );
        let p = generate_params(&f, 10, &limits()).unwrap();
        assert_eq!(p.sampling.temperature, 0.0);
        assert_eq!(p.sampling.top_p, 0.5);
        assert_eq!(p.max_tokens, 7);
        assert_eq!(p.stop, vec!["a", "b"]);
        assert_eq!(p.sampling.seed, 3);
        assert_eq!(p.sampling.presence_penalty, 0.5);
        assert_eq!(p.sampling.frequency_penalty, -1.0);
        assert_eq!(generate_params(&fields(r#"{"stop":"x"}"#), 1, &limits()).unwrap().stop, vec!["x"]);
    }

    #[test]
    fn bad_values_name_their_param() {
        let cases = [
            (r#"{"temperature":3}"#, "temperature"),
            (r#"{"top_p":0}"#, "top_p"),
            (r#"{"max_tokens":0}"#, "max_tokens"),
            (r#"{"max_tokens":51}"#, "max_tokens"),
            (r#"{"presence_penalty":2.5}"#, "presence_penalty"),
            (r#"{"frequency_penalty":-3}"#, "frequency_penalty"),
            (r#"{"stop":5}"#, "stop"),
            (r#"{"stop":["a","b","c","d","e"]}"#, "stop"),
            (r#"{"n":2}"#, "n"),
        ];
        for (json, param) in cases {
            let e = generate_params(&fields(json), 10, &limits()).unwrap_err();
            assert_eq!(e.status, 400, "{json}");
            assert_eq!(e.param.as_deref(), Some(param), "{json}");
            assert_eq!(e.body()["error"]["type"], "invalid_request_error");
        }
    }

    #[test]
    fn prompt_and_context_limits() {
        let e = generate_params(&fields("{}"), 101, &limits()).unwrap_err();
        assert_eq!(e.code, Some("context_length_exceeded"));
        let e = generate_params(&fields(r#"{"max_tokens":40}"#), 100, &limits()).unwrap_err();
        assert_eq!(e.code, Some("context_length_exceeded"));
        assert!(generate_params(&fields("{}"), 0, &limits()).is_err());
    }

    #[test]
    fn bodies_and_prompts() {
        let e = parse_body::<ChatRequest>(b"{not json").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, Some("invalid_json")));
        assert!(parse_body::<ChatRequest>(b"[1]").is_err());
        let e = parse_body::<ChatRequest>(br#"{"model":"m"}"#).unwrap_err();
        assert!(e.message.contains("messages"), "{}", e.message);
        let r: ChatRequest =
            parse_body(br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#).unwrap();
        assert_eq!(chat_messages(&r).unwrap()[0].content, "ab");
        let r: ChatRequest = parse_body(br#"{"messages":[]}"#).unwrap();
        assert_eq!(chat_messages(&r).unwrap_err().param.as_deref(), Some("messages"));
        assert!(matches!(completion_prompt(&serde_json::json!("hi")).unwrap(), PromptIn::Text(t) if t == "hi"));
        assert!(matches!(completion_prompt(&serde_json::json!([1, 2])).unwrap(), PromptIn::Ids(v) if v == [1, 2]));
        assert!(completion_prompt(&serde_json::json!(["a", "b"])).is_err());
        assert!(completion_prompt(&serde_json::json!(3)).is_err());
    }
}
