//! The blocking HTTP client of the remote engine (ureq over rustls with the
//! ring provider; webpki roots). One request = one thread that reads the SSE
//! stream and hands its events over a channel, so the caller can stop
//! waiting at once when the session is cancelled: dropping the channel ends
//! the reader at its next read and closes the connection.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sse::{error_body_message, parse_chunk, SseParser, StreamEvent};
use super::{base_url, ApiKey, RemoteConfig};
use crate::{Error, Result};

/// Which OpenAI route a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions` (`messages`; the server renders its chat template).
    Chat,
    /// `/v1/completions` (`prompt`: text or token ids).
    Completions,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
        }
    }
}

/// What a finished (or cancelled) remote request reported.
#[derive(Debug, Clone, Default)]
pub struct RemoteResult {
    /// `usage` when the server sent it.
    pub prompt_tokens: Option<usize>,
    pub completion_tokens: Option<usize>,
    /// Text pieces received (a lower bound on tokens when there is no usage).
    pub pieces: usize,
    /// The server's `finish_reason` (`stop`, `length` …).
    pub finish_reason: Option<String>,
    /// The caller stopped it (cancel flag, or `on_text` returned false).
    pub cancelled: bool,
    /// From the request's start to the first text (or the end).
    pub first_text_ms: f64,
    pub total_ms: f64,
    /// Attempts made (1 + retries).
    pub attempts: u32,
}

/// An OpenAI-compatible server, ready to be streamed from.
pub struct RemoteClient {
    agent: ureq::Agent,
    base: String,
    key: Option<ApiKey>,
    model: Option<String>,
    max_retries: u32,
    backoff: Duration,
    read_timeout: Duration,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient").field("base", &self.base).field("model", &self.model).finish_non_exhaustive()
    }
}

/// One attempt's messages from its reader thread.
enum Msg {
    Event(StreamEvent),
    /// The attempt failed; `retry`: before any text and of a kind worth retrying.
    Failed {
        error: Error,
        retry: bool,
    },
    /// The body ended.
    Eof,
}

impl RemoteClient {
    pub fn new(cfg: &RemoteConfig) -> Result<RemoteClient> {
        let base = base_url(&cfg.url, cfg.allow_http)?;
        let host_is_loopback =
            base.split_once("://").and_then(|(_, r)| r.split('/').next()).and_then(super::host_of).is_some_and(|h| super::is_loopback(&h));
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_recv_response(Some(cfg.read_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .user_agent(concat!("ember/", env!("CARGO_PKG_VERSION")));
        if host_is_loopback {
            // This machine: never through a proxy from the environment.
            builder = builder.proxy(None);
        }
        let agent = ureq::Agent::new_with_config(builder.build());
        Ok(RemoteClient {
            agent,
            base,
            key: cfg.api_key.clone(),
            model: cfg.model.clone(),
            max_retries: cfg.max_retries,
            backoff: cfg.backoff,
            read_timeout: cfg.read_timeout,
        })
    }

    /// The API's base URL (`…/v1`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The model requests name, if any.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Streams one request: `body` gets `stream`, `stream_options` and
    /// `model`; `on_text` receives each piece of text (false stops). Retries
    /// with backoff while no text has arrived; stops within ~20 ms once
    /// `cancel` is set (the result is then `cancelled`; the flag is left set).
    pub fn stream(
        &self,
        endpoint: Endpoint,
        mut body: Value,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<RemoteResult> {
        if let Value::Object(o) = &mut body {
            o.insert("stream".into(), Value::Bool(true));
            o.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
            if let Some(m) = &self.model {
                o.insert("model".into(), Value::String(m.clone()));
            }
        }
        let body = body.to_string();
        let url = format!("{}{}", self.base, endpoint.path());
        let t0 = Instant::now();
        let mut res = RemoteResult::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            res.attempts = attempt;
            match self.attempt(&url, &body, cancel, on_text, &mut res, t0) {
                Ok(()) => break,
                Err(Failure { error, retry }) => {
                    if !retry || attempt > self.max_retries || res.pieces > 0 {
                        return Err(self.scrub(error));
                    }
                    let wait = self.backoff.saturating_mul(1 << (attempt - 1).min(10));
                    log::info!("remote: {} (attempt {attempt}); retrying in {} ms", self.scrub_text(&error.to_string()), wait.as_millis());
                    if sleep_unless_cancelled(wait, cancel) {
                        res.cancelled = true;
                        break;
                    }
                }
            }
        }
        res.total_ms = ms(t0);
        if res.pieces == 0 {
            res.first_text_ms = res.total_ms;
        }
        Ok(res)
    }

    fn attempt(
        &self,
        url: &str,
        body: &str,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str) -> bool,
        res: &mut RemoteResult,
        t0: Instant,
    ) -> std::result::Result<(), Failure> {
        let (tx, rx) = mpsc::sync_channel::<Msg>(64);
        let mut req = self.agent.post(url).header("Content-Type", "application/json").header("Accept", "text/event-stream");
        if let Some(k) = &self.key {
            req = req.header("Authorization", format!("Bearer {}", k.expose()));
        }
        let body = body.to_string();
        let key = self.key.clone();
        std::thread::Builder::new()
            .name("ember-remote".into())
            .spawn(move || read_stream(req, body, key, tx))
            .map_err(|e| Failure { error: Error::RemoteUnavailable(format!("cannot start the request's thread: {e}")), retry: false })?;
        let mut finished = false;
        let mut last = Instant::now();
        loop {
            if cancel.load(Ordering::Relaxed) {
                res.cancelled = true;
                return Ok(());
            }
            let msg = match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // The reader has its own read timeout; this one is the backstop.
                    if last.elapsed() > self.read_timeout + Duration::from_secs(5) {
                        return Err(Failure {
                            error: Error::RemoteUnavailable(format!("no answer for {} s", last.elapsed().as_secs())),
                            retry: res.pieces == 0,
                        });
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Msg::Eof,
            };
            last = Instant::now();
            match msg {
                Msg::Event(StreamEvent::Text(t)) => {
                    if res.pieces == 0 {
                        res.first_text_ms = ms(t0);
                    }
                    res.pieces += 1;
                    if !on_text(&t) {
                        res.cancelled = true;
                        return Ok(());
                    }
                }
                Msg::Event(StreamEvent::Finish(r)) => {
                    res.finish_reason = Some(r);
                    finished = true;
                }
                Msg::Event(StreamEvent::Usage { prompt_tokens, completion_tokens }) => {
                    res.prompt_tokens = Some(prompt_tokens);
                    res.completion_tokens = Some(completion_tokens);
                }
                Msg::Event(StreamEvent::Done) => return Ok(()),
                Msg::Failed { error, retry } => return Err(Failure { error, retry: retry && res.pieces == 0 }),
                Msg::Eof if finished => return Ok(()),
                Msg::Eof => {
                    return Err(Failure {
                        error: Error::RemoteUnavailable(format!(
                            "the stream ended before the answer was finished ({} pieces of text received)",
                            res.pieces
                        )),
                        retry: res.pieces == 0,
                    })
                }
            }
        }
    }

    fn scrub(&self, e: Error) -> Error {
        match e {
            Error::Remote { status, message } => Error::Remote { status, message: self.scrub_text(&message) },
            Error::RemoteUnavailable(m) => Error::RemoteUnavailable(self.scrub_text(&m)),
            other => other,
        }
    }

    fn scrub_text(&self, text: &str) -> String {
        match &self.key {
            Some(k) => k.redact(text),
            None => text.to_string(),
        }
    }
}

struct Failure {
    error: Error,
    retry: bool,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Sleeps `d`, waking every 20 ms to look at `cancel`; true when cancelled.
fn sleep_unless_cancelled(d: Duration, cancel: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if cancel.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
    }
    cancel.load(Ordering::Relaxed)
}

/// Whether an HTTP status is worth retrying (the server is busy or restarting).
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 502 | 503 | 504)
}

/// A transport error as the runtime's error (`retry`: worth another attempt).
fn transport_error(e: ureq::Error, key: &Option<ApiKey>) -> (Error, bool) {
    let retry = matches!(&e, ureq::Error::ConnectionFailed | ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::HostNotFound);
    let text = match &e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    };
    let text = key.as_ref().map_or(text.clone(), |k| k.redact(&text));
    (Error::RemoteUnavailable(text), retry)
}

/// The reader thread: sends the request, then the stream's events, until
/// the end, an error, or the receiver is gone (cancelled).
fn read_stream(req: ureq::RequestBuilder<ureq::typestate::WithBody>, body: String, key: Option<ApiKey>, tx: mpsc::SyncSender<Msg>) {
    let fail = |tx: &mpsc::SyncSender<Msg>, error: Error, retry: bool| {
        let _ = tx.send(Msg::Failed { error, retry });
    };
    let mut resp = match req.send(body.as_str()) {
        Ok(r) => r,
        Err(e) => {
            let (error, retry) = transport_error(e, &key);
            return fail(&tx, error, retry);
        }
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
        let message = error_body_message(&text);
        return fail(&tx, Error::Remote { status: Some(status), message }, retryable_status(status));
    }
    let mut reader = resp.into_body().into_reader();
    let mut parser = SseParser::new();
    let mut buf = vec![0u8; 8192];
    let mut datas = Vec::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                if parser.finish(&mut datas).is_err() {
                    datas.clear();
                }
                0
            }
            Ok(n) => n,
            Err(e) => {
                let text = e.to_string();
                let text = key.as_ref().map_or(text.clone(), |k| k.redact(&text));
                return fail(&tx, Error::RemoteUnavailable(format!("the stream broke: {text}")), true);
            }
        };
        if n > 0 {
            if let Err(e) = parser.push(&buf[..n], &mut datas) {
                return fail(&tx, e, false);
            }
        }
        for data in datas.drain(..) {
            match parse_chunk(&data) {
                Ok(evs) => {
                    for ev in evs {
                        if tx.send(Msg::Event(ev)).is_err() {
                            return; // cancelled: the response drops, the connection closes
                        }
                    }
                }
                Err(e) => return fail(&tx, e, false),
            }
        }
        if n == 0 {
            let _ = tx.send(Msg::Eof);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server on loopback answering each connection with
    /// `responses[i]` (raw bytes); returns its URL.
    fn serve(responses: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut rd = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if rd.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                rd.read_exact(&mut body).unwrap();
                heads.push(head + &String::from_utf8_lossy(&body));
                let _ = s.write_all(&r);
            }
            heads
        });
        (url, h)
    }

    fn sse(events: &[&str]) -> Vec<u8> {
        let mut b = String::new();
        for e in events {
            b.push_str("data: ");
            b.push_str(e);
            b.push_str("\n\n");
        }
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
            .into_bytes()
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            .into_bytes()
    }

    fn client(url: &str, key: Option<&str>) -> RemoteClient {
        let mut c = RemoteConfig::new(url);
        c.api_key = key.map(ApiKey::new);
        c.model = Some("m".into());
        c.backoff = Duration::from_millis(10);
        c.read_timeout = Duration::from_secs(5);
        RemoteClient::new(&c).unwrap()
    }

    fn collect(c: &RemoteClient) -> (Result<RemoteResult>, String) {
        let mut text = String::new();
        let r = c.stream(Endpoint::Completions, serde_json::json!({"prompt": "hi"}), &AtomicBool::new(false), &mut |t| {
            text.push_str(t);
            true
        });
        (r, text)
    }

    #[test]
    fn streams_text_usage_and_finish() {
        let (url, h) = serve(vec![sse(&[
            r#"{"choices":[{"text":"Hel","index":0}]}"#,
            r#"{"choices":[{"text":"lo","index":0,"finish_reason":"length"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2}}"#,
            "[DONE]",
        ])]);
        let (r, text) = collect(&client(&url, Some("sk-secret")));
        let r = r.unwrap();
        assert_eq!(text, "Hello");
        assert_eq!((r.pieces, r.finish_reason.as_deref(), r.prompt_tokens, r.attempts), (2, Some("length"), Some(2), 1));
        let head = h.join().unwrap().remove(0);
        assert!(head.starts_with("POST /v1/completions "), "{head}");
        assert!(head.contains("authorization: Bearer sk-secret") || head.contains("Authorization: Bearer sk-secret"), "{head}");
        assert!(head.contains(r#""stream":true"#) && head.contains(r#""model":"m""#), "{head}");
    }

    #[test]
    fn busy_servers_are_retried_before_any_text() {
        let (url, h) = serve(vec![
            http("503 Service Unavailable", r#"{"error":{"message":"busy"}}"#),
            sse(&[r#"{"choices":[{"text":"ok","finish_reason":"stop"}]}"#, "[DONE]"]),
        ]);
        let (r, text) = collect(&client(&url, None));
        assert_eq!((text.as_str(), r.unwrap().attempts), ("ok", 2));
        h.join().unwrap();
    }

    #[test]
    fn client_errors_are_typed_not_retried_and_never_show_the_key() {
        let (url, h) = serve(vec![http("401 Unauthorized", r#"{"error":{"message":"invalid api key sk-secret"}}"#)]);
        let e = collect(&client(&url, Some("sk-secret"))).0.unwrap_err();
        assert!(matches!(&e, Error::Remote { status: Some(401), .. }), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(text.contains("invalid api key <redacted>") && !text.contains("sk-secret"), "{text}");
        h.join().unwrap();
    }

    #[test]
    fn a_stream_cut_after_text_is_an_error_and_not_retried() {
        let mut cut = sse(&[r#"{"choices":[{"text":"par","index":0}]}"#]);
        // Claim more body than is sent: the connection closes mid-stream.
        let s = String::from_utf8(cut.clone()).unwrap().replace("Content-Length: ", "Content-Length: 9");
        cut = s.into_bytes();
        let (url, h) = serve(vec![cut]);
        let (r, text) = collect(&client(&url, None));
        assert_eq!(text, "par");
        assert!(matches!(r, Err(Error::RemoteUnavailable(_))), "{r:?}");
        h.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_unavailable_after_the_retries() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (r, _) = collect(&client(&format!("http://127.0.0.1:{port}"), None));
        match r {
            Err(Error::RemoteUnavailable(m)) => assert!(!m.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
