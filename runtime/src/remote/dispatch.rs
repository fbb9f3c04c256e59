//! `Session::complete` and `Session::chat`: the text-level requests that the
//! route policy sends to the local engine or the remote one. Tokenization
//! stays local either way when there is a local model: the prompt's length
//! decides the route and is reported with the result. A remote-only engine
//! (no model file) sends the text as it is; the server counts the tokens.

use serde_json::{json, Map, Value};

use super::route::{decide, falls_back, RouteChoice, RoutePolicy, RouteReason, Target};
use crate::chat::fit::{answer_reserve, fit_chat};
use crate::chat::{encode_prompt, ChatMessage, ChatTemplate};
use crate::constrain::Constraint;
use crate::session::{GenerateParams, GenerationStats, Session};
use crate::{Error, Result};

/// A request as the remote engine takes it: a text prompt for
/// `/v1/completions`, or the conversation for `/v1/chat/completions` (the
/// server renders its own model's template).
#[derive(Debug, Clone)]
pub enum RemotePrompt {
    Text(String),
    Chat(Vec<ChatMessage>),
    /// The local token ids as the prompt (meaningful to a server with the same vocabulary).
    Ids,
}

/// A request in both forms: the local ids, and the remote route and body.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
struct Request<'a> {
    /// `None` on a remote-only engine (no local tokenizer).
    ids: Option<Vec<u32>>,
    chat: Option<&'a [ChatMessage]>,
    text: Option<&'a str>,
}

impl Session {
    /// Generates a continuation of `prompt`, the whole text of the context
    /// (BOS added when the model wants it, special tokens parsed): locally
    /// with `generate_from` (the cached prefix is reused), or remotely on
    /// `/v1/completions`, as the engine's route policy decides. The stats say
    /// which, and why ([`GenerationStats::route`]).
    pub fn complete(&mut self, prompt: &str, params: &GenerateParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<GenerationStats> {
        let ids = if self.engine().is_remote_only() { None } else { Some(self.engine().tokenizer()?.encode(prompt, true, true)?) };
        self.routed(Request { ids, chat: None, text: Some(prompt) }, params, on_text)
    }

    /// The assistant's reply to `messages` (the whole conversation): locally,
    /// rendered with `template` (the cached prefix of earlier turns is
    /// reused), or remotely on `/v1/chat/completions`, where the server
    /// renders its own model's template. Tools are not sent (see the SDK).
    /// Under the route policy "local", a conversation that outgrows the
    /// context loses its oldest turns, the system message kept (`chat::fit`).
    pub fn chat(
        &mut self,
        template: &ChatTemplate,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let ids = if self.engine().is_remote_only() {
            None
        } else if self.engine().config().route_policy() == RoutePolicy::Local {
            // A conversation longer than the context keeps its system message
            // and newest turns (context shift, `chat::fit`); local-first sends
            // such a conversation whole to the remote engine instead.
            let (n_ctx, reserve) = (self.n_ctx(), answer_reserve(self.n_ctx(), params.max_tokens));
            Some(fit_chat(template, self.engine().tokenizer()?, messages, n_ctx, reserve)?.ids)
        } else {
            Some(encode_prompt(self.engine().tokenizer()?, &template.render(messages, true)?)?)
        };
        self.routed(Request { ids, chat: Some(messages), text: None }, params, on_text)
    }

    /// A request already tokenized by the caller (the server): `ids` run
    /// locally (the cached prefix reused), `remote` is the same request in
    /// the form the remote engine takes; routed like [`Session::complete`].
    pub fn generate_routed(
        &mut self,
        ids: &[u32],
        remote: &RemotePrompt,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let (chat, text) = match remote {
            RemotePrompt::Text(t) => (None, Some(t.as_str())),
            RemotePrompt::Chat(m) => (Some(m.as_slice()), None),
            RemotePrompt::Ids => (None, None),
        };
        self.routed(Request { ids: Some(ids.to_vec()), chat, text }, params, on_text)
    }

    fn routed(&mut self, req: Request<'_>, params: &GenerateParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<GenerationStats> {
        let config = self.engine().config();
        let policy = config.route_policy();
        let has_remote = config.remote.is_some();
        let mut choice = decide(policy, req.ids.as_ref().map_or(0, Vec::len), self.n_ctx(), self.engine().memory_limit());
        // A remote-only engine's policy is `remote` (checked when it was made).
        if let (Target::Local, Some(ids)) = (choice.target, &req.ids) {
            let mut emitted = false;
            let r = self.generate_from(ids, params, &mut |t| {
                emitted = true;
                on_text(t)
            });
            match r {
                Ok(mut st) => {
                    log::debug!("route: {choice}");
                    st.route = Some(choice);
                    return Ok(st);
                }
                Err(e) if policy == RoutePolicy::LocalFirst && has_remote && !emitted && falls_back(&e) => {
                    log::warn!("local engine failed ({e}); sending the request to the remote engine");
                    // Whatever the failed pass left in the cache is not trusted.
                    self.reset();
                    choice = RouteChoice { target: Target::Remote, reason: RouteReason::LocalFailed(e.to_string()), ..choice };
                }
                Err(e) => return Err(e),
            }
        }
        log::debug!("route: {choice}");
        self.remote_request(&req, params, choice, on_text)
    }

    #[cfg(not(feature = "remote"))]
    fn remote_request(
        &mut self,
        _req: &Request<'_>,
        _params: &GenerateParams,
        _choice: RouteChoice,
        _on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        Err(Error::InvalidParam("a remote engine needs ember built with the `remote` feature".into()))
    }

    #[cfg(feature = "remote")]
    fn remote_request(
        &mut self,
        req: &Request<'_>,
        params: &GenerateParams,
        choice: RouteChoice,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        use super::client::Endpoint;
        use crate::session::StopReason;
        use std::sync::atomic::Ordering;

        let client = self.engine().remote().cloned().ok_or_else(|| Error::InvalidParam("no remote engine is configured".into()))?;
        let (endpoint, mut body) = match (req.chat, req.text) {
            (Some(msgs), _) => (Endpoint::Chat, json!({ "messages": messages_json(msgs) })),
            (None, Some(text)) => (Endpoint::Completions, json!({ "prompt": text })),
            (None, None) => (Endpoint::Completions, json!({ "prompt": req.ids })),
        };
        request_fields(&mut body, params)?;
        let cancel = self.cancel_handle();
        let r = client.stream(endpoint, body, &cancel, on_text);
        // As `generate`: a cancel is for this request, consumed when it ends.
        cancel.store(false, Ordering::Relaxed);
        let r = r?;
        let mut choice = choice;
        if req.ids.is_none() {
            // Remote-only: the server's count is the only one there is.
            choice.prompt_tokens = r.prompt_tokens.unwrap_or(0);
        }
        let stop_reason = if r.cancelled {
            StopReason::Cancelled
        } else {
            match r.finish_reason.as_deref() {
                Some("length") => StopReason::Length,
                _ => StopReason::Eog,
            }
        };
        Ok(GenerationStats {
            prompt_tokens: r.prompt_tokens.unwrap_or(choice.prompt_tokens),
            generated_tokens: r.completion_tokens.unwrap_or(r.pieces),
            prompt_ms: r.first_text_ms,
            generation_ms: (r.total_ms - r.first_text_ms).max(0.0),
            stop_reason,
            route: Some(choice),
        })
    }
}

/// The conversation as OpenAI messages.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
fn messages_json(msgs: &[ChatMessage]) -> Value {
    Value::Array(
        msgs.iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("role".into(), Value::String(m.role.clone()));
                o.insert("content".into(), Value::String(m.content.clone()));
                if let Some(id) = &m.tool_call_id {
                    o.insert("tool_call_id".into(), Value::String(id.clone()));
                }
                if let Some(n) = &m.name {
                    o.insert("name".into(), Value::String(n.clone()));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// Sampling, limits, stops and the constraint as request fields (OpenAI's,
/// plus llama.cpp's `top_k`, `min_p`, `repeat_penalty`, `grammar`, which
/// `ember serve` and llama.cpp's server honour and others ignore).
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) fn request_fields(body: &mut Value, p: &GenerateParams) -> Result<()> {
    let Value::Object(o) = body else { return Ok(()) };
    let s = &p.sampling;
    o.insert("max_tokens".into(), json!(p.max_tokens));
    o.insert("temperature".into(), json!(s.temperature.max(0.0)));
    o.insert("top_p".into(), json!(s.top_p));
    o.insert("top_k".into(), json!(s.top_k));
    o.insert("min_p".into(), json!(s.min_p));
    o.insert("repeat_penalty".into(), json!(s.repeat_penalty));
    o.insert("frequency_penalty".into(), json!(s.frequency_penalty));
    o.insert("presence_penalty".into(), json!(s.presence_penalty));
    // 31 bits: every server takes it (some keep seeds in a C int).
    o.insert("seed".into(), json!(s.seed & 0x7fff_ffff));
    if !p.stop.is_empty() {
        o.insert("stop".into(), json!(p.stop));
    }
    match &p.constraint {
        None => {}
        Some(Constraint::JsonSchema(text)) => {
            let schema: Value = serde_json::from_str(text).map_err(|e| Error::InvalidConstraint(format!("invalid json_schema: {e}")))?;
            o.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": schema}}),
            );
        }
        Some(Constraint::JsonObject) => {
            o.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(Constraint::Grammar(g)) => {
            o.insert("grammar".into(), json!(g));
        }
        Some(Constraint::Regex(_)) => {
            return Err(Error::InvalidParam("a regex constraint cannot be sent to a remote engine (no OpenAI field for it)".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;

    #[test]
    fn request_fields_carry_sampling_stops_and_constraints() {
        let mut p = GenerateParams {
            sampling: SamplingParams { temperature: 0.0, seed: u64::MAX, ..Default::default() },
            max_tokens: 7,
            stop: vec!["\n\n".into()],
            constraint: Some(Constraint::JsonSchema(r#"{"type":"integer"}"#.into())),
        };
        let mut b = json!({"prompt": "x"});
        request_fields(&mut b, &p).unwrap();
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["temperature"], 0.0);
        assert_eq!(b["seed"], 0x7fff_ffffu64);
        assert_eq!(b["stop"], json!(["\n\n"]));
        assert_eq!(b["response_format"]["json_schema"]["schema"], json!({"type": "integer"}));
        p.constraint = Some(Constraint::Regex("a+".into()));
        assert!(matches!(request_fields(&mut b, &p), Err(Error::InvalidParam(_))));
        p.constraint = Some(Constraint::JsonSchema("{".into()));
        assert!(matches!(request_fields(&mut b, &p), Err(Error::InvalidConstraint(_))));
    }
}
