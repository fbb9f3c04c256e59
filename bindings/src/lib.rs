//! `ember-ffi`: Ember's app SDK. Thin uniffi bindings (proc-macros only) over
//! the runtime crate `ember`: an [`Engine`] per model file, a [`Session`] per
//! conversation, a foreign [`TokenSink`] callback for streaming, records for
//! options and stats, and one flat error enum. Kotlin, Swift and Python are
//! generated from the built library by `tools/uniffi-bindgen`.
//!
//! Rules kept here: nothing panics across the boundary (every call into the
//! engine runs under `catch_unwind`, a panic becomes `EmberError::Internal`),
//! and a session's cancel flag is reachable without its generation lock.

mod chat;
mod engine;
mod error;
mod oneshot;
mod records;
mod session;

pub use engine::Engine;
pub use error::EmberError;
pub use records::{ChatMessage, EngineConfig, GenerateParams, GenerationStats, ModelInfo};
pub use session::{Session, TokenSink};

uniffi::setup_scaffolding!();

/// The version of the Ember runtime inside this library.
#[uniffi::export]
pub fn ember_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
