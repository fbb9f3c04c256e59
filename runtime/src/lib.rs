//! Ember: an on-device LLM runtime.
//!
//! Data flow: [`gguf`] maps a model file, [`quant`] knows its block formats,
//! [`tokenizer`] turns text into ids, [`model`] runs the forward pass on a
//! backend, [`sampling`] picks the next id. See `docs/ARCHITECTURE.md`.

pub mod error;
pub mod gguf;
pub mod quant;
pub mod tokenizer;

pub use error::{Error, Result};
