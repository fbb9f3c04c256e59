//! The remote engine: the same [`crate::Session`] text API (`complete`, `chat`)
//! answered by an OpenAI-compatible server (`ember serve`, llama.cpp's server,
//! vLLM) over `/v1/completions` and `/v1/chat/completions` with SSE streaming,
//! and the routing policy that picks local or remote per request.
//!
//! - [`RemoteConfig`]: where and how (URL, API key, model, timeouts, retries);
//!   validated by [`base_url`] (`http://` only for loopback unless opted in).
//! - [`route`]: [`RoutePolicy`] and the per-request [`RouteChoice`] with its reason.
//! - [`remote_only`]: what an engine without a local model file shows
//!   (`Engine::remote_only`).
//! - [`sse`]: the server-sent-events parser and the chunk / error-body
//!   interpretation (pure, unit-tested without a server).
//! - `client` (feature `remote`): [`RemoteClient`], the blocking HTTP client
//!   (ureq + rustls/ring), retries with backoff before the first token, cancel.
//!
//! See `docs/REMOTE.md`.

mod dispatch;
pub mod remote_only;
pub mod route;
pub mod sse;

#[cfg(feature = "remote")]
mod client;
#[cfg(feature = "remote")]
pub use client::{Endpoint, RemoteClient, RemoteResult};

pub use dispatch::RemotePrompt;
pub use route::{RouteChoice, RoutePolicy, RouteReason, Target};

use std::fmt;
use std::time::Duration;

use crate::{Error, Result};

/// An API key: never printed (`Debug` shows `ApiKey(<redacted>)`) and
/// scrubbed from every error message the client makes.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "<redacted>")
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read timeout: the longest wait for the response's head and between
/// two reads of the stream (a long prompt on a slow server needs more).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Default number of retries (after the first attempt) before any token came.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The first retry waits this long; each next one twice as long.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);

/// An OpenAI-compatible server to send requests to.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `https://host[:port][/prefix]`, with or without the trailing `/v1`;
    /// `http://` only for a loopback host unless `allow_http`.
    pub url: String,
    /// Sent as `Authorization: Bearer KEY`.
    pub api_key: Option<ApiKey>,
    /// The `model` field of requests (`None`: left out, the server's default;
    /// `ember serve` and llama.cpp's server serve one model).
    pub model: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Retries of a request that failed before its first token (connection
    /// refused or reset, 429, 502, 503, 504), with exponential backoff; a
    /// request that streamed a token is never retried.
    pub max_retries: u32,
    pub backoff: Duration,
    /// Allow plain `http://` to a host other than loopback (the key and the
    /// text then cross the network unencrypted).
    pub allow_http: bool,
}

impl RemoteConfig {
    pub fn new(url: impl Into<String>) -> RemoteConfig {
        RemoteConfig {
            url: url.into(),
            api_key: None,
            model: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: DEFAULT_BACKOFF,
            allow_http: false,
        }
    }
}

/// The API's base URL (ending in `/v1`, no trailing slash) for `url`:
/// the scheme must be `https`, or `http` with a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`) or `allow_http`; no user:password.
pub fn base_url(url: &str, allow_http: bool) -> Result<String> {
    let bad = |why: &str| Error::InvalidParam(format!("remote URL '{url}': {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected http(s)://host[:port]"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be https (or http for loopback)"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not accepted; use the API key"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("no query or fragment expected"));
    }
    let host = host_of(authority).ok_or_else(|| bad("no host"))?;
    if scheme == "http" && !allow_http && !is_loopback(&host) {
        return Err(bad("plain http is allowed only for a loopback host (localhost, 127.0.0.1, [::1]); use https, or opt in to http"));
    }
    let mut base = format!("{scheme}://{}", rest.trim_end_matches('/'));
    if !base.ends_with("/v1") {
        base.push_str("/v1");
    }
    Ok(base)
}

/// The host of `host[:port]` / `[v6]:port`, lowercased.
fn host_of(authority: &str) -> Option<String> {
    let host = if let Some(v6) = authority.strip_prefix('[') { v6.split(']').next()? } else { authority.split(':').next()? };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether `host` names this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized_and_checked() {
        assert_eq!(base_url("http://127.0.0.1:8080", false).unwrap(), "http://127.0.0.1:8080/v1");
        assert_eq!(base_url("http://localhost:8080/v1/", false).unwrap(), "http://localhost:8080/v1");
        assert_eq!(base_url("http://[::1]:9/", false).unwrap(), "http://[::1]:9/v1");
        assert_eq!(base_url("https://api.example.com/openai", false).unwrap(), "https://api.example.com/openai/v1");
        assert_eq!(base_url("HTTPS://h.example/v1", false).unwrap(), "https://h.example/v1");
        let e = base_url("http://10.0.0.2:8080", false).unwrap_err().to_string();
        assert!(e.contains("only for a loopback host"), "{e}");
        assert_eq!(base_url("http://10.0.0.2:8080", true).unwrap(), "http://10.0.0.2:8080/v1");
        assert!(base_url("http://127.0.0.1.evil.com", false).is_err());
        assert!(base_url("ftp://127.0.0.1", false).is_err());
        assert!(base_url("127.0.0.1:8080", false).is_err());
        assert!(base_url("https://user:secret@h.example", false).unwrap_err().to_string().contains("credentials"));
        assert!(base_url("https://", false).is_err());
        assert!(base_url("https://h.example/v1?x=1", false).is_err());
    }

    #[test]
    fn api_keys_do_not_print() {
        let k = ApiKey::new("sk-top-secret");
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
        let mut c = RemoteConfig::new("https://h.example");
        c.api_key = Some(k.clone());
        assert!(!format!("{c:?}").contains("top-secret"));
        assert_eq!(k.redact("bad key sk-top-secret!"), "bad key <redacted>!");
    }
}
