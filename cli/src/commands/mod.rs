//! One module per subcommand, plus the loading they share.

pub mod bench;
pub mod chat;
pub mod dumps;
pub mod gpu_check;
pub mod inspect;
pub mod logits;
pub mod perplexity;
pub mod pull;
pub mod run;
pub mod serve;
pub mod tokenize;

use std::sync::Arc;

use anyhow::{Context, Result};
use ember::config::{BackendKind, EngineConfig, WeightMemory};
use ember::engine::Engine;

use crate::catalog;
use crate::EvalOpts;

/// Loads the engine the options name, with a session context of `n_ctx`.
pub fn load_engine(opts: &EvalOpts, n_ctx: Option<usize>) -> Result<Arc<Engine>> {
    let backend: BackendKind = opts.backend.parse()?;
    let weights: WeightMemory = opts.weights.parse()?;
    let path = catalog::resolve(opts.model.as_deref())?;
    let config = EngineConfig { backend, n_threads: opts.threads, n_ctx, force_scalar: opts.scalar, weights, ..Default::default() };
    Engine::load(&path, config).with_context(|| format!("cannot load {}", path.display()))
}
