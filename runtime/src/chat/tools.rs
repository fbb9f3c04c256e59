//! Tool (function) calling: OpenAI-style function tools rendered into the
//! prompt, the model's output parsed back into calls, and a grammar that
//! forces a call.
//!
//! The wire format is Hermes/Qwen's: a call is
//! `<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>`.
//! Templates that handle tools themselves (their source mentions `tools`,
//! e.g. Qwen2.5's) get the tool list as `tools` and assistant/tool turns as
//! Hugging Face passes them (`message.tool_calls[i].function.{name,arguments}`
//! with `arguments` an object; `tool_call_id` and `name` on tool turns). For
//! the others, [`tools_system_prompt`] is merged into the system message,
//! assistant calls become `<tool_call>` text and tool results become user
//! turns wrapped in `<tool_response>`.

use std::sync::atomic::{AtomicU64, Ordering};

use minijinja::value::{Kwargs, Value};
use minijinja::{Error as JinjaError, ErrorKind};
use serde_json::{json, Map, Value as Json};

use super::{ChatMessage, ChatTemplate};
use crate::constrain::Constraint;
use crate::Result;

/// Opens a call in the model's output.
pub const TOOL_CALL_OPEN: &str = "<tool_call>";
/// Closes a call.
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON schema of the arguments (an object schema); `None`: no arguments.
    pub parameters: Option<Json>,
}

impl Tool {
    pub fn new(name: impl Into<String>, description: Option<String>, parameters: Option<Json>) -> Tool {
        Tool { name: name.into(), description, parameters }
    }

    /// The OpenAI shape templates expect:
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    pub fn to_json(&self) -> Json {
        let mut f = Map::new();
        f.insert("name".into(), json!(self.name));
        if let Some(d) = &self.description {
            f.insert("description".into(), json!(d));
        }
        if let Some(p) = &self.parameters {
            f.insert("parameters".into(), p.clone());
        }
        json!({"type": "function", "function": f})
    }
}

/// A call the model made (or that an earlier assistant turn holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_…`, unique per call ([`new_call_id`]).
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (compact, as OpenAI sends them).
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as JSON (templates `tojson` them); a string when they are not JSON.
    pub fn arguments_json(&self) -> Json {
        serde_json::from_str(&self.arguments).unwrap_or_else(|_| Json::String(self.arguments.clone()))
    }

    /// The call as the model writes it (Hermes/Qwen).
    pub fn to_text(&self) -> String {
        let body = json!({"name": self.name, "arguments": self.arguments_json()});
        format!("{TOOL_CALL_OPEN}\n{}\n{TOOL_CALL_CLOSE}", py_json(&body, None, false))
    }
}

/// Whether and which tool the model must call (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides: unconstrained generation, then calls are parsed.
    Auto,
    /// No call: tools are not offered.
    None,
    /// Exactly one call to one of the tools, forced by a grammar.
    Required,
    /// Exactly one call to this tool, forced by a grammar.
    Function(String),
}

/// A fresh call id: `call_` and 24 alphanumerics.
pub fn new_call_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = crate::time::SystemTime::now().duration_since(crate::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = t ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::from("call_");
    for _ in 0..24 {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        id.push(ALPHABET[(z % ALPHABET.len() as u64) as usize] as char);
    }
    id
}

/// The built-in tool instructions for templates that do not handle tools
/// (Hermes style, worded as Qwen2.5's template words them): the functions as
/// JSON inside `<tools>`, and the `<tool_call>` format to answer in.
pub fn tools_system_prompt(tools: &[Tool]) -> String {
    let mut s = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in tools {
        s.push('\n');
        s.push_str(&py_json(&t.to_json(), None, false));
    }
    s.push_str(
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments \
         within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
    );
    s
}

/// The arguments schema a forced call must match: the tool's `parameters`
/// (an object with no properties when it has none); an object schema that
/// does not say `additionalProperties` gets `false`, so a small model cannot
/// wander off into keys nobody declared.
fn arguments_schema(t: &Tool) -> Json {
    let mut p = t.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    if let Json::Object(m) = &mut p {
        if m.contains_key("properties") && !m.contains_key("additionalProperties") {
            m.insert("additionalProperties".into(), json!(false));
        }
    }
    p
}

/// The constraint that forces one call for `choice`: `Required` (any of
/// `tools`) and `Function` (that one) give a Lark grammar
/// `"<tool_call>\n" %json{…} "\n</tool_call>"` whose JSON is
/// `{"name": <const>, "arguments": <the tool's parameters>}`; `Auto` and
/// `None` give no constraint. Errors when a named function is not among `tools`.
pub fn tool_call_constraint(tools: &[Tool], choice: &ToolChoice) -> Result<Option<Constraint>> {
    let chosen: Vec<&Tool> = match choice {
        ToolChoice::Auto | ToolChoice::None => return Ok(None),
        ToolChoice::Required => tools.iter().collect(),
        ToolChoice::Function(name) => tools.iter().filter(|t| &t.name == name).take(1).collect(),
    };
    if chosen.is_empty() {
        return Err(crate::Error::InvalidParam(match choice {
            ToolChoice::Function(name) => format!("tool_choice names the function '{name}', which is not among the tools"),
            _ => "tool_choice requires a call, but no tools were given".into(),
        }));
    }
    let call = |t: &Tool| {
        json!({
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": arguments_schema(t)},
            "required": ["name", "arguments"],
            "additionalProperties": false
        })
    };
    let mut schema = if chosen.len() == 1 { call(chosen[0]) } else { json!({"anyOf": chosen.iter().map(|t| call(t)).collect::<Vec<_>>()}) };
    schema["x-guidance"] = json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
    let lit = |s: &str| Json::String(s.to_owned()).to_string();
    Ok(Some(Constraint::Grammar(format!(
        "start: {} call {}\ncall: %json {}\n",
        lit(&format!("{TOOL_CALL_OPEN}\n")),
        lit(&format!("\n{TOOL_CALL_CLOSE}")),
        schema
    ))))
}

/// Model output split into text and calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedOutput {
    /// The text outside the calls (trimmed when there are calls); `None` when empty.
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// One call's JSON (`{"name": …, "arguments": {…}}`; `parameters` is taken
/// for `arguments`, and arguments given as a JSON string are kept as that string).
fn parse_call(text: &str) -> Option<ToolCall> {
    let v: Json = serde_json::from_str(text.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let arguments = match v.get("arguments").or_else(|| v.get("parameters")) {
        None | Some(Json::Null) => "{}".to_owned(),
        Some(Json::String(s)) => s.clone(),
        Some(a @ Json::Object(_)) => a.to_string(),
        Some(_) => return None,
    };
    Some(ToolCall { id: new_call_id(), name, arguments })
}

/// A whole output that is one bare call object, `{"name": …, "arguments": …}`
/// (optionally in a ```json fence), naming one of `tools` (any name when
/// `tools` is empty).
fn parse_bare_call(text: &str, tools: &[Tool]) -> Option<ToolCall> {
    let t = text.trim();
    let t = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")).and_then(|s| s.trim_end().strip_suffix("```")).unwrap_or(t);
    if !t.trim_start().starts_with('{') {
        return None;
    }
    let v: Json = serde_json::from_str(t.trim()).ok()?;
    if !(v.get("arguments").is_some() || v.get("parameters").is_some()) {
        return None;
    }
    let call = parse_call(t)?;
    (tools.is_empty() || tools.iter().any(|x| x.name == call.name)).then_some(call)
}

/// Splits model output into text and calls: every
/// `<tool_call>{…}</tool_call>` block whose JSON has a `name` is a call (an
/// unclosed last block too, when its JSON is whole); a block that does not
/// parse stays text. With no block, an output that is one bare call object
/// naming one of `tools` is a call. Text is kept verbatim when there are no calls.
pub fn parse_tool_calls(text: &str, tools: &[Tool]) -> ParsedOutput {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    let mut saw_tag = false;
    while let Some(i) = rest.find(TOOL_CALL_OPEN) {
        saw_tag = true;
        content.push_str(&rest[..i]);
        let after = &rest[i + TOOL_CALL_OPEN.len()..];
        match after.find(TOOL_CALL_CLOSE) {
            Some(j) => {
                match parse_call(&after[..j]) {
                    Some(c) => calls.push(c),
                    None => content.push_str(&rest[i..i + TOOL_CALL_OPEN.len() + j + TOOL_CALL_CLOSE.len()]),
                }
                rest = &after[j + TOOL_CALL_CLOSE.len()..];
            }
            None => {
                match parse_call(after) {
                    Some(c) => calls.push(c),
                    None => content.push_str(&rest[i..]),
                }
                rest = "";
            }
        }
    }
    content.push_str(rest);
    if !saw_tag {
        if let Some(c) = parse_bare_call(text, tools) {
            return ParsedOutput { content: None, tool_calls: vec![c] };
        }
    }
    if !calls.is_empty() {
        content = content.trim().to_owned();
    }
    ParsedOutput { content: (!content.is_empty()).then_some(content), tool_calls: calls }
}

/// What [`ToolCallStream`] lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    Text(String),
    Call(ToolCall),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    /// Nothing but whitespace yet: an output opening with `{` may be a bare call.
    Start,
    Text,
    /// Inside `<tool_call>` … (waiting for the close).
    InCall,
    /// The output opened with `{`: held whole until the end, then parsed.
    Bare,
}

/// [`parse_tool_calls`] over streamed text: text streams through as it
/// comes, except a tail that may be the start of `<tool_call>` (held until it
/// is or is not) and whitespace-only pieces (held until more text follows;
/// dropped at the end when there were calls). A call is let out whole when
/// its closing tag arrives. An output that opens with `{` (or a code fence
/// whose first line does) is held to the end: it may be a bare call object.
#[derive(Debug)]
pub struct ToolCallStream {
    tools: Vec<Tool>,
    buf: String,
    ws: String,
    state: StreamState,
    calls: usize,
}

impl ToolCallStream {
    pub fn new(tools: &[Tool]) -> ToolCallStream {
        ToolCallStream { tools: tools.to_vec(), buf: String::new(), ws: String::new(), state: StreamState::Start, calls: 0 }
    }

    /// Calls let out so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    fn text(&mut self, t: &str, out: &mut Vec<StreamItem>) {
        if t.is_empty() {
            return;
        }
        if t.trim().is_empty() {
            self.ws.push_str(t);
            return;
        }
        let mut s = std::mem::take(&mut self.ws);
        s.push_str(t);
        out.push(StreamItem::Text(s));
    }

    fn call(&mut self, c: ToolCall, out: &mut Vec<StreamItem>) {
        // Whitespace between or around calls is not content.
        self.ws.clear();
        self.calls += 1;
        out.push(StreamItem::Call(c));
    }

    /// Feeds one piece of output.
    pub fn push(&mut self, piece: &str) -> Vec<StreamItem> {
        let mut out = Vec::new();
        self.buf.push_str(piece);
        loop {
            match self.state {
                StreamState::Start => match bare_start(&self.buf) {
                    None => return out,
                    Some(true) => self.state = StreamState::Bare,
                    Some(false) => self.state = StreamState::Text,
                },
                StreamState::Bare => return out,
                StreamState::Text => match self.buf.find(TOOL_CALL_OPEN) {
                    Some(i) => {
                        let before = self.buf[..i].to_owned();
                        self.text(&before, &mut out);
                        self.buf.drain(..i + TOOL_CALL_OPEN.len());
                        self.state = StreamState::InCall;
                    }
                    None => {
                        let keep = partial_tag_len(&self.buf, TOOL_CALL_OPEN);
                        let emit: String = self.buf.drain(..self.buf.len() - keep).collect();
                        self.text(&emit, &mut out);
                        return out;
                    }
                },
                StreamState::InCall => match self.buf.find(TOOL_CALL_CLOSE) {
                    Some(j) => {
                        let inner: String = self.buf.drain(..j + TOOL_CALL_CLOSE.len()).collect();
                        let inner = &inner[..j];
                        match parse_call(inner) {
                            Some(c) => self.call(c, &mut out),
                            None => self.text(&format!("{TOOL_CALL_OPEN}{inner}{TOOL_CALL_CLOSE}"), &mut out),
                        }
                        self.state = StreamState::Text;
                    }
                    None => return out,
                },
            }
        }
    }

    /// The end of the output: whatever was held.
    pub fn finish(&mut self) -> Vec<StreamItem> {
        let mut out = Vec::new();
        let buf = std::mem::take(&mut self.buf);
        match self.state {
            StreamState::Start | StreamState::Text => self.text(&buf, &mut out),
            StreamState::InCall => match parse_call(&buf) {
                Some(c) => self.call(c, &mut out),
                None => self.text(&format!("{TOOL_CALL_OPEN}{buf}"), &mut out),
            },
            StreamState::Bare => {
                let p = parse_tool_calls(&buf, &self.tools);
                if p.tool_calls.is_empty() {
                    self.text(&buf, &mut out);
                } else {
                    if let Some(c) = p.content {
                        self.text(&c, &mut out);
                    }
                    for c in p.tool_calls {
                        self.call(c, &mut out);
                    }
                }
            }
        }
        self.state = StreamState::Text;
        if self.calls == 0 && !self.ws.is_empty() {
            out.push(StreamItem::Text(std::mem::take(&mut self.ws)));
        }
        self.ws.clear();
        out
    }
}

/// Whether an output starting with `s` may be a bare call object: `{`, or a
/// code fence (```` ``` ```` or ```` ```json ````) whose next line starts with `{`;
/// `None` while `s` cannot tell yet.
fn bare_start(s: &str) -> Option<bool> {
    let t = s.trim_start();
    if t.is_empty() || "```".starts_with(t) {
        return None;
    }
    if t.starts_with('{') {
        return Some(true);
    }
    let Some(fenced) = t.strip_prefix("```") else { return Some(false) };
    let Some(nl) = fenced.find('\n') else {
        // The fence's language tag; a long one is not a call's.
        return if fenced.len() > 8 { Some(false) } else { None };
    };
    let rest = fenced[nl..].trim_start();
    if rest.is_empty() {
        None
    } else {
        Some(rest.starts_with('{') && ["", "json"].contains(&fenced[..nl].trim()))
    }
}

/// Length of the longest tail of `s` that is a proper prefix of `tag`.
fn partial_tag_len(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1)).rev().find(|&n| s.is_char_boundary(s.len() - n) && s.ends_with(&tag[..n])).unwrap_or(0)
}

/// A message as templates see it: `role`, `content`, and when set
/// `tool_calls` (`[{id, type: "function", function: {name, arguments}}]`,
/// arguments as JSON), `tool_call_id`, `name`.
pub(super) fn message_value(m: &ChatMessage) -> Value {
    let mut v = Map::new();
    v.insert("role".into(), json!(m.role));
    v.insert("content".into(), json!(m.content));
    if !m.tool_calls.is_empty() {
        let calls: Vec<Json> = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}))
            .collect();
        v.insert("tool_calls".into(), Json::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        v.insert("tool_call_id".into(), json!(id));
    }
    if let Some(n) = &m.name {
        v.insert("name".into(), json!(n));
    }
    Value::from_serialize(Json::Object(v))
}

/// For templates that do not handle tools: the tool block merged into the
/// system message (one is added first when there is none), assistant calls
/// as `<tool_call>` text, and each run of tool results as one user turn of
/// `<tool_response>` blocks.
fn without_tool_support(messages: &[ChatMessage], tools: &[Tool]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    let mut rest = messages;
    if !tools.is_empty() {
        let block = tools_system_prompt(tools);
        match messages.first() {
            Some(m) if m.role == "system" => {
                let content = if m.content.trim().is_empty() { block } else { format!("{}\n\n{block}", m.content) };
                out.push(ChatMessage::system(content));
                rest = &messages[1..];
            }
            _ => out.push(ChatMessage::system(block)),
        }
    }
    let mut prev_tool = false;
    for m in rest {
        if m.role == "tool" {
            let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
            match out.last_mut() {
                Some(last) if prev_tool => {
                    last.content.push('\n');
                    last.content.push_str(&block);
                }
                _ => out.push(ChatMessage::user(block)),
            }
            prev_tool = true;
            continue;
        }
        prev_tool = false;
        if m.tool_calls.is_empty() {
            out.push(ChatMessage::new(m.role.clone(), m.content.clone()));
        } else {
            let mut content = m.content.clone();
            for c in &m.tool_calls {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&c.to_text());
            }
            out.push(ChatMessage::new(m.role.clone(), content));
        }
    }
    out
}

impl ChatTemplate {
    /// Whether the template renders tools itself (its source mentions `tools`).
    pub fn supports_tools(&self) -> bool {
        self.env.get_template("chat").is_ok_and(|t| t.source().contains("tools"))
    }

    /// Renders `messages` with `tools` offered: a template that handles tools
    /// gets them as `tools` (and the messages' calls and results as they
    /// are); for any other, see the module doc. With no tools and no tool
    /// turns this is [`ChatTemplate::render`].
    pub fn render_with_tools(&self, messages: &[ChatMessage], tools: &[Tool], add_generation_prompt: bool) -> Result<String> {
        if self.supports_tools() {
            let list = (!tools.is_empty()).then(|| Value::from_serialize(tools.iter().map(Tool::to_json).collect::<Vec<_>>()));
            self.render_with(messages, list, add_generation_prompt)
        } else if tools.is_empty() && messages.iter().all(|m| m.role != "tool" && m.tool_calls.is_empty()) {
            self.render(messages, add_generation_prompt)
        } else {
            self.render_with(&without_tool_support(messages, tools), None, add_generation_prompt)
        }
    }
}

/// `tojson` as Hugging Face's templates get it (Python's `json.dumps` with
/// `ensure_ascii=False`): `", "` and `": "` separators, `indent` for pretty
/// output, `sort_keys`; no HTML escaping (minijinja's own escapes `<>&'`).
pub(super) fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    // Accepted and ignored: what Python's json.dumps takes that changes nothing here.
    let _ = kwargs.get::<Option<Value>>("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v).map_err(|_| JinjaError::new(ErrorKind::InvalidOperation, "tojson: indent must be an integer"))?),
    };
    let json = serde_json::to_value(value).map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(py_json(&json, indent, sort_keys)))
}

/// JSON text as Python's `json.dumps(v, ensure_ascii=False, indent=…, sort_keys=…)` writes it.
pub fn py_json(v: &Json, indent: Option<usize>, sort_keys: bool) -> String {
    let mut s = String::new();
    write_py_json(&mut s, v, indent, sort_keys, 0);
    s
}

fn write_py_json(s: &mut String, v: &Json, indent: Option<usize>, sort_keys: bool, depth: usize) {
    let newline = |s: &mut String, depth: usize| {
        if let Some(n) = indent {
            s.push('\n');
            s.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Array(a) if !a.is_empty() => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push_str(item_sep);
                }
                newline(s, depth + 1);
                write_py_json(s, x, indent, sort_keys, depth + 1);
            }
            newline(s, depth);
            s.push(']');
        }
        Json::Object(m) if !m.is_empty() => {
            let mut entries: Vec<(&String, &Json)> = m.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            s.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    s.push_str(item_sep);
                }
                newline(s, depth + 1);
                s.push_str(&Json::String(k.clone()).to_string());
                s.push_str(": ");
                write_py_json(s, x, indent, sort_keys, depth + 1);
            }
            newline(s, depth);
            s.push('}');
        }
        other => s.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
