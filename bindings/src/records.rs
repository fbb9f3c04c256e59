//! Plain records crossing the boundary (options in, info and stats out).
//! Every option field has a default, so `EngineConfig()` / `GenerateParams()`
//! work as-is in Kotlin, Swift and Python.

use ember::constrain::Constraint;
use ember::sampling;

use crate::error::EmberError;

/// How to load a model. All fields have defaults.
#[derive(Debug, Clone, uniffi::Record)]
pub struct EngineConfig {
    /// "auto" (best available) or "cpu".
    #[uniffi(default = "auto")]
    pub backend: String,
    /// CPU threads; 0 = one per available core.
    #[uniffi(default = 0)]
    pub threads: u32,
    /// Context size (tokens) of each session; 0 = the model's training
    /// context, capped at 4096, and lowered to fit `memory_budget_mb`.
    #[uniffi(default = 0)]
    pub context_size: u32,
    /// The memory plan's bound — weights + a session's KV cache + scratch —
    /// in MiB; 0 = the memory the device has available. A plan over it fails
    /// with `InvalidParams` saying what would fit (a smaller context, a KV
    /// type), unless `fit` (or `context_size` is 0) lets the engine choose.
    #[uniffi(default = 0)]
    pub memory_budget_mb: u64,
    /// Fit the memory budget: a smaller context and, when the KV types are
    /// f16, a q8_0 or q4_0 cache (like `ember --fit`).
    #[uniffi(default = false)]
    pub fit: bool,
    /// KV cache type of keys: "f16", "q8_0" (half the bytes) or "q4_0" (a
    /// quarter), on the CPU and the GPU alike.
    #[uniffi(default = "f16")]
    pub cache_type_k: String,
    /// KV cache type of values: "f16", "q8_0" or "q4_0".
    #[uniffi(default = "f16")]
    pub cache_type_v: String,
    /// An OpenAI-compatible server (`ember serve`, llama.cpp's server, vLLM):
    /// `https://host[:port]`, or `http://` on loopback (see docs/REMOTE.md).
    /// With `Engine.load`, the local model is loaded too: it tokenizes and answers
    /// what the route keeps local; `Engine.remote_only(config)` loads no model.
    #[uniffi(default = None)]
    pub remote_url: Option<String>,
    /// Its API key (sent as a bearer token, never logged or in errors).
    #[uniffi(default = None)]
    pub remote_api_key: Option<String>,
    /// The `model` field of remote requests (None: the server's own).
    #[uniffi(default = None)]
    pub remote_model: Option<String>,
    /// "local", "remote" or "local-first"; None: "remote" with `remote_url`, else "local".
    #[uniffi(default = None)]
    pub route: Option<String>,
    /// Allow plain http:// to a host other than loopback.
    #[uniffi(default = false)]
    pub remote_allow_http: bool,
    /// Speculative decoding with a draft model: the path of a smaller GGUF of
    /// the same vocabulary, loaded with this config; it proposes tokens that
    /// the model verifies several at a time (same output under greedy).
    #[uniffi(default = None)]
    pub draft_model: Option<String>,
    /// Most tokens the draft model proposes per pass.
    #[uniffi(default = 16)]
    pub draft_max: u32,
    /// Prompt lookup (without a draft model): up to this many tokens that
    /// followed the context's last n-gram earlier are verified at once; 0 = off.
    #[uniffi(default = 0)]
    pub lookup: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            backend: "auto".into(),
            threads: 0,
            context_size: 0,
            memory_budget_mb: 0,
            fit: false,
            cache_type_k: "f16".into(),
            cache_type_v: "f16".into(),
            remote_url: None,
            remote_api_key: None,
            remote_model: None,
            route: None,
            remote_allow_http: false,
            draft_model: None,
            draft_max: ember::speculative::DEFAULT_DRAFT_MAX as u32,
            lookup: 0,
        }
    }
}

/// What the loaded model is.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ModelInfo {
    /// Architecture ("llama" …).
    pub arch: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// Number of parameters.
    pub params: u64,
    /// The most common weight type ("Q4_1" …).
    pub quant: String,
    /// The model's training context (tokens).
    pub context: u32,
    /// The context each new session gets (tokens).
    pub session_context: u32,
    /// Whether the GGUF carries `tokenizer.chat_template`.
    pub has_chat_template: bool,
    pub vocab_size: u32,
    pub layers: u32,
    pub embedding_size: u32,
    /// Bytes of weight data (memory-mapped, shared by all sessions).
    pub weight_bytes: u64,
    /// KV-cache bytes per token of context (per session, in `kv_cache_type`).
    pub kv_bytes_per_token: u64,
    /// The KV cache's types, keys/values ("f16/f16", "q8_0/q8_0" …).
    pub kv_cache_type: String,
    /// What the engine holds by its memory plan: weights, a session's KV
    /// cache, scratch (0 on a remote-only engine).
    pub memory_plan_bytes: u64,
    /// Where the forward pass runs: "cpu" or "wgpu" (after any fallback).
    pub backend: String,
    /// The GPU kernel tiers in use ("f16,subgroup", "none" = baseline); absent on the CPU.
    pub gpu_tiers: Option<String>,
    /// Why this backend: the GPU self-test's outcome, or why the CPU runs.
    pub backend_reason: String,
}

/// Sampling and stopping, one record. Defaults follow llama.cpp's.
///
/// uniffi's `default = ...` takes only literals, so the foreign-side defaults
/// below repeat `ember::sampling::DEFAULT_*` (keep them equal); Rust callers
/// get the constants themselves through `Default`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerateParams {
    /// Most tokens to generate.
    #[uniffi(default = 256)]
    pub max_tokens: u32,
    /// 0 = greedy (deterministic).
    #[uniffi(default = 0.8)]
    pub temperature: f32,
    /// 0 = off.
    #[uniffi(default = 40)]
    pub top_k: u32,
    /// 1.0 = off.
    #[uniffi(default = 0.95)]
    pub top_p: f32,
    /// 0.0 = off.
    #[uniffi(default = 0.05)]
    pub min_p: f32,
    /// 1.0 = off.
    #[uniffi(default = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed; null = a fixed default (runs are reproducible).
    #[uniffi(default = None)]
    pub seed: Option<u64>,
    /// Generation stops when the text contains one of these (not emitted).
    #[uniffi(default = [])]
    pub stop: Vec<String>,
    /// Structured output: the text must match this JSON schema (its JSON
    /// text). Output is compact JSON unless the schema's `x-guidance` says
    /// otherwise. At most one of `json_schema`, `json_object`, `regex`,
    /// `grammar` may be set; a constrained generation ends ("eog") when the
    /// constraint is complete, or "length" when `max_tokens` runs out first.
    #[uniffi(default = None)]
    pub json_schema: Option<String>,
    /// Structured output: any JSON object.
    #[uniffi(default = false)]
    pub json_object: bool,
    /// Structured output: a regular expression (Rust `regex` syntax) the
    /// whole text matches.
    #[uniffi(default = None)]
    pub regex: Option<String>,
    /// Structured output: a grammar, llama.cpp GBNF (`root ::= …`) or
    /// llguidance Lark (`start: …`), told apart by `::=`.
    #[uniffi(default = None)]
    pub grammar: Option<String>,
    /// Tool calling (`chat` only): the functions the model may call. Calls
    /// it makes come back in `GenerationStats.tool_calls`.
    #[uniffi(default = [])]
    pub tools: Vec<Tool>,
    /// "auto" (the default with tools: the model decides), "none" (tools
    /// not offered), "required" (exactly one call, forced by a grammar), or
    /// a function name (exactly one call to it). A forced call takes the
    /// place of any `json_schema`/`json_object`/`regex`/`grammar`.
    #[uniffi(default = None)]
    pub tool_choice: Option<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            temperature: sampling::DEFAULT_TEMPERATURE,
            top_k: sampling::DEFAULT_TOP_K as u32,
            top_p: sampling::DEFAULT_TOP_P,
            min_p: sampling::DEFAULT_MIN_P,
            repeat_penalty: sampling::DEFAULT_REPEAT_PENALTY,
            seed: None,
            stop: Vec::new(),
            json_schema: None,
            json_object: false,
            regex: None,
            grammar: None,
            tools: Vec::new(),
            tool_choice: None,
        }
    }
}

impl GenerateParams {
    /// The one constraint set, if any; `InvalidParams` naming them when
    /// several are. (Whether it compiles is checked by the runtime, before
    /// the prompt is evaluated: `InvalidConstraint`.)
    pub(crate) fn constraint(&self) -> Result<Option<Constraint>, EmberError> {
        let mut set: Vec<(&str, Constraint)> = Vec::new();
        if let Some(s) = &self.json_schema {
            set.push(("json_schema", Constraint::JsonSchema(s.clone())));
        }
        if self.json_object {
            set.push(("json_object", Constraint::JsonObject));
        }
        if let Some(r) = &self.regex {
            set.push(("regex", Constraint::Regex(r.clone())));
        }
        if let Some(g) = &self.grammar {
            set.push(("grammar", Constraint::Grammar(g.clone())));
        }
        if set.len() > 1 {
            let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
            return Err(EmberError::InvalidParams(format!(
                "set at most one of json_schema, json_object, regex, grammar (got {})",
                names.join(", ")
            )));
        }
        Ok(set.pop().map(|(_, c)| c))
    }

    /// The runtime's parameters (`InvalidParams` for conflicting constraints).
    pub(crate) fn to_runtime(&self) -> Result<ember::GenerateParams, EmberError> {
        let d = ember::sampling::SamplingParams::default();
        Ok(ember::GenerateParams {
            sampling: ember::sampling::SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k as usize,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                seed: self.seed.unwrap_or(ember::sampling::DEFAULT_SEED),
                ..d
            },
            max_tokens: self.max_tokens as usize,
            stop: self.stop.clone(),
            constraint: self.constraint()?,
        })
    }
}

/// One chat turn. `role` is "system", "user", "assistant" or "tool".
#[derive(Debug, Clone, uniffi::Record)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant turn's calls (as `GenerationStats.tool_calls` returned them).
    #[uniffi(default = [])]
    pub tool_calls: Vec<ToolCall>,
    /// A "tool" turn: the id of the call whose result `content` is.
    #[uniffi(default = None)]
    pub tool_call_id: Option<String>,
    /// A "tool" turn: the function's name (optional).
    #[uniffi(default = None)]
    pub name: Option<String>,
}

/// A function the model may call (`GenerateParams.tools`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct Tool {
    /// 1 to 64 of `a-z A-Z 0-9 _ -`, unique among the tools.
    pub name: String,
    #[uniffi(default = None)]
    pub description: Option<String>,
    /// JSON schema (an object schema, as JSON text) of the arguments; null = none.
    #[uniffi(default = None)]
    pub parameters_json: Option<String>,
}

/// A call the model made, or one an earlier assistant turn holds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ToolCall {
    /// `call_…`, unique per call.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (an object).
    pub arguments_json: String,
}

impl From<ember::chat::tools::ToolCall> for ToolCall {
    fn from(c: ember::chat::tools::ToolCall) -> Self {
        ToolCall { id: c.id, name: c.name, arguments_json: c.arguments }
    }
}

impl From<&ToolCall> for ember::chat::tools::ToolCall {
    fn from(c: &ToolCall) -> Self {
        ember::chat::tools::ToolCall { id: c.id.clone(), name: c.name.clone(), arguments: c.arguments_json.clone() }
    }
}

/// What one generation did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerationStats {
    /// Prompt tokens evaluated by this call (a chat turn reuses the cached prefix).
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// Generation speed (tokens/s).
    pub tokens_per_second: f64,
    /// Prompt-processing speed (tokens/s).
    pub prompt_tokens_per_second: f64,
    pub prompt_ms: f64,
    pub generation_ms: f64,
    /// "eog" (end of generation token), "length" (max_tokens), "stop" (a stop
    /// string), "cancelled" (cancel() or on_token returned false), "context_full",
    /// "tool_calls" (`chat` with tools: the reply holds calls, in `tool_calls`).
    pub stop_reason: String,
    /// `chat` with tools: the calls parsed from the reply (the streamed text
    /// holds them raw, as `<tool_call>…</tool_call>`); empty otherwise.
    pub tool_calls: Vec<ToolCall>,
    /// Where it ran: "local" or "remote".
    pub route: String,
    /// Why: "policy" (the route asked), "fits", "exceeds_context", "local_failed".
    pub route_reason: String,
    /// `chat`: how many of the oldest messages were left out because the
    /// conversation outgrew the context (the system message and the newest
    /// turns are kept; 0 when it fit).
    pub dropped_messages: u32,
}

impl From<&ember::GenerationStats> for GenerationStats {
    fn from(s: &ember::GenerationStats) -> Self {
        GenerationStats {
            prompt_tokens: s.prompt_tokens as u32,
            generated_tokens: s.generated_tokens as u32,
            tokens_per_second: s.generation_tps(),
            prompt_tokens_per_second: s.prompt_tps(),
            prompt_ms: s.prompt_ms,
            generation_ms: s.generation_ms,
            stop_reason: s.stop_reason.as_str().to_string(),
            tool_calls: Vec::new(),
            route: s.route.as_ref().map_or("local", |r| r.target.as_str()).to_string(),
            route_reason: s.route.as_ref().map_or("policy", |r| r.reason.code()).to_string(),
            dropped_messages: 0,
        }
    }
}
