//! The one error type apps see (an exception per variant, each with a message).

use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum EmberError {
    /// The file could not be opened, mapped or read.
    #[error("{0}")]
    Io(String),
    /// The file is not a valid GGUF model (corrupt, truncated, missing tensors or keys).
    #[error("{0}")]
    InvalidModel(String),
    /// A valid GGUF of an architecture or tensor type Ember cannot run.
    #[error("{0}")]
    UnsupportedModel(String),
    /// A parameter or config field is out of range.
    #[error("{0}")]
    InvalidParams(String),
    /// A JSON schema, regex or grammar in `GenerateParams` that cannot be
    /// compiled (raised before the prompt is evaluated).
    #[error("{0}")]
    InvalidConstraint(String),
    /// The prompt does not fit in the session's context.
    #[error("{0}")]
    ContextFull(String),
    /// A saved session that cannot be restored: damaged (truncated, corrupt),
    /// or saved with another model, context size or KV cache type.
    #[error("{0}")]
    InvalidSession(String),
    /// The operation was cancelled.
    #[error("{0}")]
    Cancelled(String),
    /// The compute backend asked for is unavailable or failed (no GPU adapter,
    /// an architecture not yet on the GPU, a device error).
    #[error("{0}")]
    Backend(String),
    /// The session is in use on this very thread: a call from inside its own
    /// callback (`on_token`/`on_done`), which would otherwise wait for itself.
    #[error("{0}")]
    Busy(String),
    /// The app's `TokenSink` threw; the message carries what it threw.
    #[error("{0}")]
    Callback(String),
    /// The remote engine answered with an error (an HTTP status, or an error
    /// in its stream); the message never holds the API key.
    #[error("{0}")]
    Remote(String),
    /// The remote engine could not be reached, timed out, or its stream
    /// broke before the answer finished (the session stays usable).
    #[error("{0}")]
    RemoteUnavailable(String),
    /// A bug in Ember (a caught panic); the message says where.
    #[error("{0}")]
    Internal(String),
}

impl From<ember::Error> for EmberError {
    fn from(e: ember::Error) -> Self {
        use ember::Error as E;
        let msg = e.to_string();
        match e {
            E::Io { .. } => EmberError::Io(msg),
            E::Gguf(_) | E::MissingTensor(_) | E::TensorShape { .. } | E::Model(_) | E::Tokenizer(_) => EmberError::InvalidModel(msg),
            E::UnsupportedType { .. } | E::UnknownArchitecture { .. } => EmberError::UnsupportedModel(msg),
            E::TokenOutOfVocab { .. } | E::InvalidParam(_) | E::MemoryPlan(_) | E::ChatTemplate(_) => EmberError::InvalidParams(msg),
            E::InvalidConstraint(_) => EmberError::InvalidConstraint(msg),
            E::ContextFull { .. } => EmberError::ContextFull(msg),
            E::Cancelled => EmberError::Cancelled(msg),
            E::SessionFile { .. } => EmberError::InvalidSession(msg),
            E::Backend(_) | E::DeviceLost(_) | E::GpuUntrusted(_) => EmberError::Backend(msg),
            E::Remote { .. } => EmberError::Remote(msg),
            E::RemoteUnavailable(_) => EmberError::RemoteUnavailable(msg),
            E::NoLocalModel(_) => EmberError::InvalidParams(msg),
        }
    }
}

/// What a foreign callback threw that is not an `EmberError` (uniffi hands
/// it over as this instead of panicking, because the callbacks return `Result`).
impl From<uniffi::UnexpectedUniFFICallbackError> for EmberError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        EmberError::Callback(format!("the TokenSink callback threw: {}", e.reason))
    }
}

/// Runs `f`, turning a panic into `EmberError::Internal` so that none crosses
/// the FFI boundary.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, EmberError>) -> Result<T, EmberError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(EmberError::Internal(format!("internal error in {what}: {detail}")))
        }
    }
}
