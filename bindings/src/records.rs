//! Plain records crossing the boundary (options in, info and stats out).
//! Every option field has a default, so `EngineConfig()` / `GenerateParams()`
//! work as-is in Kotlin, Swift and Python.

use ember::sampling;

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
    /// Upper bound on weights + one session's KV cache, in MiB; 0 = no bound.
    /// Loading fails with `InvalidParams` when the weights alone exceed it.
    #[uniffi(default = 0)]
    pub memory_budget_mb: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { backend: "auto".into(), threads: 0, context_size: 0, memory_budget_mb: 0 }
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
    /// KV-cache bytes per token of context (per session).
    pub kv_bytes_per_token: u64,
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
        }
    }
}

impl GenerateParams {
    pub(crate) fn to_runtime(&self) -> ember::GenerateParams {
        let d = ember::sampling::SamplingParams::default();
        ember::GenerateParams {
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
            constraint: None,
        }
    }
}

/// One chat turn. `role` is "system", "user" or "assistant".
#[derive(Debug, Clone, uniffi::Record)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
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
    /// string), "cancelled" (cancel() or on_token returned false), "context_full".
    pub stop_reason: String,
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
        }
    }
}
