//! Request bodies of the OpenAI API (the fields Ember honours; others are
//! ignored) and their validation into generation parameters.

use ember::chat::tools::{new_call_id, Tool, ToolCall, ToolChoice};
use ember::chat::ChatMessage;
use ember::constrain::Constraint;
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

/// What the output must match: OpenAI's `response_format`, and llama.cpp's
/// `grammar` (GBNF or Lark) and `json_schema` extensions.
#[derive(Debug, Default, Deserialize)]
pub struct ConstraintFields {
    pub response_format: Option<Value>,
    pub grammar: Option<Value>,
    pub json_schema: Option<Value>,
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
    /// OpenAI function tools: `[{"type": "function", "function": {name, description, parameters}}]`.
    pub tools: Option<Value>,
    /// `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name": …}}`.
    pub tool_choice: Option<Value>,
    /// Accepted; a forced call is always one call.
    pub parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub constraint: ConstraintFields,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Value,
    /// An assistant turn's calls: `[{"id", "type": "function", "function": {name, arguments}}]`.
    pub tool_calls: Option<Value>,
    /// A tool turn: the call it answers.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Value,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub constraint: ConstraintFields,
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
    let tool_calls = match &m.tool_calls {
        None | Some(Value::Null) => Vec::new(),
        Some(v) if m.role == "assistant" => message_tool_calls(i, v)?,
        Some(_) => return Err(ApiError::param(&format!("messages[{i}].tool_calls"), "only assistant messages carry tool_calls")),
    };
    Ok(ChatMessage { tool_calls, tool_call_id: m.tool_call_id.clone(), name: m.name.clone(), ..ChatMessage::new(m.role.clone(), content) })
}

/// An assistant message's `tool_calls`.
fn message_tool_calls(i: usize, v: &Value) -> Result<Vec<ToolCall>, ApiError> {
    let param = format!("messages[{i}].tool_calls");
    let bad = |what: &str| ApiError::param(&param, format!("{param}: {what}"));
    let Value::Array(list) = v else {
        return Err(bad("must be an array of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}"));
    };
    list.iter()
        .map(|c| {
            if c.get("type").is_some_and(|t| t != "function") {
                return Err(bad("only function calls are supported (type \"function\")"));
            }
            let f = c.get("function").ok_or_else(|| bad("a call needs a function"))?;
            let name =
                f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| bad("a call needs a function name"))?;
            let arguments = match f.get("arguments") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(Value::String(s)) => s.clone(),
                Some(o @ Value::Object(_)) => o.to_string(),
                Some(_) => return Err(bad("arguments must be a JSON string")),
            };
            let id = match c.get("id") {
                None | Some(Value::Null) => new_call_id(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(bad("a call's id must be a string")),
            };
            Ok(ToolCall { id, name: name.to_owned(), arguments })
        })
        .collect()
}

/// A function name as OpenAI allows it: 1 to 64 of `a-z A-Z 0-9 _ -`.
fn valid_function_name(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The request's tools and how they may be called. `tool_choice` defaults to
/// `auto` when there are tools, else `none`.
pub fn tools(req: &ChatRequest) -> Result<(Vec<Tool>, ToolChoice), ApiError> {
    let tools = match &req.tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            let mut tools: Vec<Tool> = Vec::with_capacity(list.len());
            for (i, t) in list.iter().enumerate() {
                let param = format!("tools[{i}]");
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(ApiError::param(&param, format!("{param}: only tools of type \"function\" are supported")));
                }
                let Some(f) = t.get("function").filter(|f| f.is_object()) else {
                    return Err(ApiError::param(&param, format!("{param}: a function tool needs a \"function\" object")));
                };
                let name = match f.get("name") {
                    Some(Value::String(n)) if valid_function_name(n) => n.clone(),
                    Some(Value::String(n)) => {
                        return Err(ApiError::param(
                            &format!("{param}.function.name"),
                            format!("invalid function name {n:?}: 1 to 64 letters, digits, '_' or '-'"),
                        ))
                    }
                    _ => return Err(ApiError::param(&format!("{param}.function.name"), format!("{param}: a function needs a name"))),
                };
                if tools.iter().any(|x| x.name == name) {
                    return Err(ApiError::param(&format!("{param}.function.name"), format!("the function name '{name}' is given twice")));
                }
                let description = match f.get("description") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(d)) => Some(d.clone()),
                    Some(_) => return Err(ApiError::param(&format!("{param}.function.description"), "description must be a string")),
                };
                let parameters = match f.get("parameters") {
                    None | Some(Value::Null) => None,
                    Some(p @ Value::Object(_)) => Some(p.clone()),
                    Some(_) => {
                        return Err(ApiError::param(&format!("{param}.function.parameters"), "parameters must be a JSON schema object"))
                    }
                };
                tools.push(Tool { name, description, parameters });
            }
            tools
        }
        Some(_) => return Err(ApiError::param("tools", "tools must be an array of function tools")),
    };
    let bad_choice = || {
        ApiError::param(
            "tool_choice",
            "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": …}}",
        )
    };
    let choice = match &req.tool_choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad_choice()),
        },
        Some(o @ Value::Object(_)) => {
            if o.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad_choice());
            }
            match o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
                Some(n) => ToolChoice::Function(n.to_owned()),
                None => return Err(bad_choice()),
            }
        }
        Some(_) => return Err(bad_choice()),
    };
    match &choice {
        ToolChoice::Function(n) if !tools.iter().any(|t| &t.name == n) => {
            return Err(ApiError::param("tool_choice", format!("tool_choice names the function '{n}', which is not among the tools")))
        }
        ToolChoice::Required | ToolChoice::Function(_) if tools.is_empty() => {
            return Err(ApiError::param("tool_choice", "tool_choice requires a tool call, but no tools were given"))
        }
        ToolChoice::Auto if tools.is_empty() => return Ok((tools, ToolChoice::None)),
        _ => {}
    }
    Ok((tools, choice))
}

/// The request's output constraint and the field it came from (for errors):
/// `response_format` (`text`; `json_object`, with llama.cpp's optional
/// `schema`; `json_schema` with `json_schema.schema`), `grammar` or
/// `json_schema`; at most one of them.
pub fn constraint(f: &ConstraintFields) -> Result<Option<(Constraint, &'static str)>, ApiError> {
    let mut found: Vec<(Constraint, &'static str)> = Vec::new();
    let schema_text = |v: &Value, param: &str| -> Result<Constraint, ApiError> {
        match v {
            Value::Object(_) | Value::Bool(_) => Ok(Constraint::JsonSchema(v.to_string())),
            _ => Err(ApiError::param(param, format!("{param} must be a JSON schema (an object)"))),
        }
    };
    match &f.response_format {
        None | Some(Value::Null) => {}
        Some(Value::Object(rf)) => match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => found.push((
                match rf.get("schema") {
                    None | Some(Value::Null) => Constraint::JsonObject,
                    Some(s) => schema_text(s, "response_format.schema")?,
                },
                "response_format",
            )),
            Some("json_schema") => {
                let js = match rf.get("json_schema") {
                    Some(Value::Object(js)) => js,
                    _ => {
                        return Err(ApiError::param(
                            "response_format",
                            "response_format of type json_schema needs a json_schema object: {\"name\", \"schema\", \"strict\"}",
                        ))
                    }
                };
                let c = match js.get("schema") {
                    None | Some(Value::Null) => Constraint::JsonObject,
                    Some(s) => schema_text(s, "response_format.json_schema.schema")?,
                };
                found.push((c, "response_format"));
            }
            _ => return Err(ApiError::param("response_format", "response_format.type must be text, json_object or json_schema")),
        },
        Some(_) => return Err(ApiError::param("response_format", "response_format must be an object with a type")),
    }
    match &f.grammar {
        None | Some(Value::Null) => {}
        Some(Value::String(g)) if g.trim().is_empty() => {}
        Some(Value::String(g)) => found.push((Constraint::Grammar(g.clone()), "grammar")),
        Some(_) => return Err(ApiError::param("grammar", "grammar must be a string (GBNF or Lark)")),
    }
    match &f.json_schema {
        None | Some(Value::Null) => {}
        Some(v) => found.push((schema_text(v, "json_schema")?, "json_schema")),
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|(_, p)| *p).collect();
        return Err(ApiError::param(
            found[1].1,
            format!("give one of response_format, grammar and json_schema, not {}", names.join(" and ")),
        ));
    }
    Ok(found.pop())
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

/// The room a chat request's answer needs, for fitting its conversation into
/// the context (`ember::chat::fit`): an explicit `max_tokens` /
/// `max_completion_tokens` must fit whole (as OpenAI's API promises), else the
/// runtime's share (the server's cap, up to a quarter of the context).
pub fn chat_reserve(f: &SamplingFields, limits: &Limits) -> usize {
    match f.max_completion_tokens.or(f.max_tokens) {
        Some(m) if m >= 1 => (m as u64).min(limits.n_ctx as u64) as usize,
        _ => ember::chat::fit::answer_reserve(limits.n_ctx, limits.max_tokens),
    }
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
    fn response_formats_and_tool_choices() {
        let c = |json: &str| constraint(&serde_json::from_str::<ConstraintFields>(json).unwrap());
        assert_eq!(c(r#"{}"#).unwrap(), None);
        assert_eq!(c(r#"{"response_format":{"type":"text"}}"#).unwrap(), None);
        assert_eq!(c(r#"{"response_format":{"type":"json_object"}}"#).unwrap(), Some((Constraint::JsonObject, "response_format")));
        // The schema's text keeps the client's property order (the output follows it).
        let got = c(
            r#"{"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"z":{},"a":{}}}}}}"#,
        );
        assert_eq!(
            got.unwrap(),
            Some((Constraint::JsonSchema(r#"{"type":"object","properties":{"z":{},"a":{}}}"#.into()), "response_format"))
        );
        let got = c(r#"{"response_format":{"type":"json_object","schema":{"type":"array"}}}"#).unwrap();
        assert_eq!(
            got,
            Some((Constraint::JsonSchema(r#"{"type":"array"}"#.into()), "response_format")),
            "llama.cpp's json_object + schema"
        );
        assert_eq!(c(r#"{"grammar":"root ::= \"a\""}"#).unwrap(), Some((Constraint::Grammar("root ::= \"a\"".into()), "grammar")));
        assert_eq!(
            c(r#"{"json_schema":{"type":"string"}}"#).unwrap(),
            Some((Constraint::JsonSchema(r#"{"type":"string"}"#.into()), "json_schema"))
        );
        assert_eq!(c(r#"{"response_format":{"type":"json_object"},"grammar":"x"}"#).unwrap_err().param.as_deref(), Some("grammar"));

        let t = |json: &str| tools(&parse_body::<ChatRequest>(json.as_bytes()).unwrap());
        let f = r#"[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]"#;
        assert_eq!(t(r#"{"messages":[]}"#).unwrap(), (vec![], ToolChoice::None));
        assert_eq!(t(r#"{"messages":[],"tool_choice":"auto"}"#).unwrap().1, ToolChoice::None, "auto without tools");
        let (list, choice) = t(&format!(r#"{{"messages":[],"tools":{f}}}"#)).unwrap();
        assert_eq!((list[0].name.as_str(), choice), ("f", ToolChoice::Auto));
        assert_eq!(t(&format!(r#"{{"messages":[],"tools":{f},"tool_choice":"required"}}"#)).unwrap().1, ToolChoice::Required);
        assert_eq!(t(&format!(r#"{{"messages":[],"tools":{f},"tool_choice":"none"}}"#)).unwrap().1, ToolChoice::None);
        let named = format!(r#"{{"messages":[],"tools":{f},"tool_choice":{{"type":"function","function":{{"name":"f"}}}}}}"#);
        assert_eq!(t(&named).unwrap().1, ToolChoice::Function("f".into()));
        assert_eq!(t(&named.replace(r#""name":"f"}}}"#, r#""name":"g"}}}"#)).unwrap_err().param.as_deref(), Some("tool_choice"));

        // Assistant calls and tool results in the history.
        let r: ChatRequest = parse_body(
            br#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
                             {"role":"tool","tool_call_id":"call_1","name":"f","content":"ok"}]}"#,
        )
        .unwrap();
        let m = chat_messages(&r).unwrap();
        assert_eq!(m[0].tool_calls, vec![ToolCall { id: "call_1".into(), name: "f".into(), arguments: r#"{"a":1}"#.into() }]);
        assert_eq!((m[1].tool_call_id.as_deref(), m[1].name.as_deref(), m[1].content.as_str()), (Some("call_1"), Some("f"), "ok"));
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
