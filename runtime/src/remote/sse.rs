//! Server-sent events as OpenAI-compatible servers stream them, and what
//! their chunks and error bodies mean. Pure functions over bytes and text:
//! tested here without a server.

use serde_json::Value;

use crate::{Error, Result};

/// The largest event accepted (a chunk carries a few tokens; a server that
/// sends more without a blank line is not speaking SSE).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Splits a byte stream into events and returns each event's `data` (its
/// `data:` lines joined by `\n`). Lines end in `\n`, `\r\n` or `\r`;
/// comments (`:`), `event:`, `id:` and `retry:` lines are skipped.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    /// The last byte was a `\r` (a following `\n` belongs to it).
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds `bytes`; the data of every event they complete is appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<()> {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(out)?;
                }
                _ => {
                    if self.line.len() + self.data.len() >= MAX_EVENT_BYTES {
                        return Err(Error::Remote {
                            status: None,
                            message: format!("a server-sent event longer than {MAX_EVENT_BYTES} bytes"),
                        });
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// The end of the stream: an event not closed by a blank line is dispatched.
    pub fn finish(&mut self, out: &mut Vec<String>) -> Result<()> {
        if !self.line.is_empty() {
            self.end_line(out)?;
        }
        self.end_line(out)
    }

    fn end_line(&mut self, out: &mut Vec<String>) -> Result<()> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return Ok(());
        }
        let text =
            String::from_utf8(line).map_err(|_| Error::Remote { status: None, message: "a server-sent event is not UTF-8".into() })?;
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_str(), ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        Ok(())
    }
}

/// What one event of a completion stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Generated text (`delta.content` of a chat chunk, `text` of a completion chunk).
    Text(String),
    /// The choice ended: `stop`, `length`, `tool_calls` …
    Finish(String),
    /// Token counts (`usage`, with `stream_options.include_usage`).
    Usage { prompt_tokens: usize, completion_tokens: usize },
    /// `[DONE]`: the stream is complete.
    Done,
}

/// The events in one event's `data`: `[DONE]`, or a chunk's JSON. An
/// `{"error": …}` event (a failure after the stream started) is an error.
pub fn parse_chunk(data: &str) -> Result<Vec<StreamEvent>> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(vec![StreamEvent::Done]);
    }
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(data)
        .map_err(|e| Error::Remote { status: None, message: format!("the server sent an event that is not JSON ({e}): {}", clip(data)) })?;
    if let Some(err) = v.get("error") {
        return Err(Error::Remote { status: error_status(err), message: error_text(err).unwrap_or_else(|| clip(data)) });
    }
    let mut out = Vec::new();
    if let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) {
        let text = choice.pointer("/delta/content").or_else(|| choice.get("text")).and_then(Value::as_str);
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::Text(t.to_string()));
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            out.push(StreamEvent::Finish(r.to_string()));
        }
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        out.push(StreamEvent::Usage { prompt_tokens: n("prompt_tokens"), completion_tokens: n("completion_tokens") });
    }
    Ok(out)
}

/// The message of an error response body: OpenAI's and llama.cpp's
/// `{"error": {"message"}}`, `{"error": "…"}`, FastAPI's `{"detail": …}`, or
/// the start of the body.
pub fn error_body_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body.trim()).ok();
    let msg = parsed.as_ref().and_then(|v| {
        v.get("error").and_then(error_text).or_else(|| {
            v.get("detail").map(|d| match d.as_str() {
                Some(s) => s.to_string(),
                None => clip(&d.to_string()),
            })
        })
    });
    match msg {
        Some(m) => m,
        None if body.trim().is_empty() => "(no message)".into(),
        None => clip(body.trim()),
    }
}

fn error_text(err: &Value) -> Option<String> {
    match err {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn error_status(err: &Value) -> Option<u16> {
    err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).filter(|c| (400..600).contains(c))
}

/// At most 300 characters of `s`.
fn clip(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).unwrap();
        }
        p.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn events_split_anywhere() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\ndata: one\ndata:two\n\ndata: [DONE]\n\n";
        let want = vec!["{\"a\":1}".to_string(), "one\ntwo".into(), "[DONE]".into()];
        assert_eq!(events(&[stream]), want);
        // Every split point, byte by byte included, gives the same events.
        for cut in 0..stream.len() {
            assert_eq!(events(&[&stream[..cut], &stream[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&bytes), want);
    }

    #[test]
    fn line_endings_and_unterminated_events() {
        assert_eq!(events(&[b"data: a\r\n\r\ndata: b\r\rdata: c"]), vec!["a", "b", "c"]);
        assert_eq!(events(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"]), vec!["a", "b"]);
        assert_eq!(events(&[b"data\n\n"]), vec![""]);
        assert!(events(&[b": only a comment\n\n"]).is_empty());
    }

    #[test]
    fn oversized_and_non_utf8_events_are_errors() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(matches!(p.push(&big, &mut out), Err(Error::Remote { .. })));
        let mut p = SseParser::new();
        assert!(p.push(b"data: \xff\xfe\n\n", &mut out).is_err());
    }

    #[test]
    fn chat_and_completion_chunks() {
        let chat = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#;
        assert_eq!(parse_chunk(chat).unwrap(), vec![StreamEvent::Text("Hel".into())]);
        let done = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#;
        assert_eq!(parse_chunk(done).unwrap(), vec![StreamEvent::Finish("length".into())]);
        let comp = r#"{"choices":[{"text":" Paris","index":0,"finish_reason":"stop"}]}"#;
        assert_eq!(parse_chunk(comp).unwrap(), vec![StreamEvent::Text(" Paris".into()), StreamEvent::Finish("stop".into())]);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#;
        assert_eq!(parse_chunk(usage).unwrap(), vec![StreamEvent::Usage { prompt_tokens: 7, completion_tokens: 3 }]);
        assert_eq!(parse_chunk(" [DONE] ").unwrap(), vec![StreamEvent::Done]);
        // A role-only first chunk and a null usage say nothing.
        assert!(parse_chunk(r#"{"choices":[{"delta":{"role":"assistant"}}],"usage":null}"#).unwrap().is_empty());
    }

    #[test]
    fn error_events_and_bodies() {
        let e = parse_chunk(r#"{"error":{"message":"engine failed","type":"server_error","code":500}}"#).unwrap_err();
        assert!(matches!(&e, Error::Remote { status: Some(500), message } if message == "engine failed"), "{e:?}");
        let e = parse_chunk("not json").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        assert_eq!(error_body_message(r#"{"error":{"message":"invalid api key","type":"authentication_error"}}"#), "invalid api key");
        assert_eq!(error_body_message(r#"{"error":"bad"}"#), "bad");
        assert_eq!(error_body_message(r#"{"detail":[{"loc":["body"],"msg":"x"}]}"#), r#"[{"loc":["body"],"msg":"x"}]"#);
        assert_eq!(error_body_message("Bad Gateway"), "Bad Gateway");
        assert_eq!(error_body_message(""), "(no message)");
        assert_eq!(error_body_message(&"é".repeat(500)).chars().count(), 301);
    }
}
