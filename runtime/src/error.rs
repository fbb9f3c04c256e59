//! The runtime's one error type. Every failure that input data can cause
//! (files, prompts, parameters) is a variant here, never a panic.

use std::path::PathBuf;

use crate::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid GGUF file: {0}")]
    Gguf(#[from] GgufError),
    #[error("unsupported tensor type {ty} for {what}")]
    UnsupportedType { ty: String, what: String },
    #[error("unknown architecture '{arch}' (supported: {supported})")]
    UnknownArchitecture { arch: String, supported: String },
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {got:?}, expected {expected:?}")]
    TensorShape { name: String, got: Vec<u64>, expected: Vec<u64> },
    #[error("model: {0}")]
    Model(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("token id {id} is out of the vocabulary (size {n_vocab})")]
    TokenOutOfVocab { id: u32, n_vocab: usize },
    #[error("context is full: {needed} tokens needed, context size is {n_ctx}")]
    ContextFull { needed: usize, n_ctx: usize },
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The memory plan (weights + KV cache + scratch) is over the budget; the
    /// message says what would fit (see [`crate::memory_plan`]).
    #[error("memory plan: {0}")]
    MemoryPlan(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("gpu backend: {0}")]
    Backend(String),
    /// The GPU stopped answering: device lost, or a submit past the watchdog
    /// time. With `backend auto` the engine continues on the CPU.
    #[error("gpu device lost: {0}")]
    DeviceLost(String),
    /// The GPU's answers differ from the CPU's (the self-test, see docs/GPU.md).
    #[error("gpu self-test failed: {0}")]
    GpuUntrusted(String),
    #[error("{0}")]
    InvalidConstraint(String),
    #[error("cancelled")]
    Cancelled,
    /// A saved session that cannot be restored here: damaged, or saved
    /// with another model, context size or KV cache type.
    #[error("session file {path}: {source}")]
    SessionFile {
        path: PathBuf,
        #[source]
        source: crate::session_file::SessionFileError,
    },
    /// The remote engine answered with an error (an HTTP status, or an
    /// error event in its stream). Never holds the API key.
    #[error("remote engine{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Remote { status: Option<u16>, message: String },
    /// The remote engine could not be reached, timed out, or its stream
    /// broke before the answer was finished. Never holds the API key.
    #[error("remote engine unavailable: {0}")]
    RemoteUnavailable(String),
    /// A local-only call (eval, tokenize, a local constraint) on a
    /// remote-only engine (`Engine::remote_only`).
    #[error("no local model: {0}")]
    NoLocalModel(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
