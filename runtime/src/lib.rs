//! Ember: an on-device LLM runtime.
//!
//! Data flow: [`gguf`] maps a model file, [`quant`] knows its block formats,
//! [`tokenizer`] turns text into ids, [`model`] runs the forward pass on a
//! backend, [`sampling`] picks the next id; [`engine::Engine`] and
//! [`session::Session`] tie them together. See `docs/ARCHITECTURE.md`.

pub mod backend;
pub mod chat;
pub mod config;
pub mod constrain;
pub mod engine;
pub mod error;
#[cfg(feature = "test-util")]
pub mod fuzzing;
pub mod gguf;
pub mod graph;
pub mod kv_cache;
pub mod kv_rotation;
pub mod kv_state;
pub mod memory_plan;
pub mod model;
pub mod ops;
pub mod quant;
pub mod remote;
pub mod sampling;
pub mod session;
pub mod session_file;
pub mod speculative;
pub mod stop;
pub mod time;
pub mod tokenizer;

pub use config::{BackendKind, EngineConfig, WeightMemory};
pub use engine::{BackendReport, Engine};
pub use error::{Error, Result};
pub use session::{GenerateParams, GenerationStats, Session, StopReason};
