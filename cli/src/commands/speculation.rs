//! The speculative-decoding flags `run`, `chat`, `serve` and `bench` share.

use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use ember::engine::Engine;
use ember::speculative::{Speculation, DEFAULT_DRAFT_MAX};

use super::load_engine;
use crate::EvalOpts;

#[derive(Args, Clone, Debug, Default)]
pub struct SpecArgs {
    /// Prompt lookup: draft up to N tokens by finding the latest earlier occurrence of the
    /// context's last n-gram and proposing what followed it; the model verifies them in one pass.
    #[arg(long = "lookup", value_name = "N", conflicts_with = "draft_model")]
    pub lookup: Option<usize>,
    /// A draft model (a GGUF path or a known name) of the same vocabulary that proposes the
    /// next tokens for the model to verify in one pass; same backend and threads.
    #[arg(long = "draft-model", visible_alias = "md", value_name = "MODEL")]
    pub draft_model: Option<String>,
    /// Most tokens the draft model proposes per pass.
    #[arg(long = "draft-max", value_name = "N", default_value_t = DEFAULT_DRAFT_MAX, requires = "draft_model")]
    pub draft_max: usize,
}

impl SpecArgs {
    /// The speculation asked for (the draft model loaded like the model, with
    /// the context `n_ctx`); `None` without one.
    pub fn load(&self, opts: &EvalOpts, n_ctx: Option<usize>) -> Result<Option<Speculation>> {
        if let Some(max) = self.lookup {
            if max == 0 {
                bail!("--lookup needs at least 1 token to draft");
            }
            return Ok(Some(Speculation::Lookup { max }));
        }
        let Some(model) = &self.draft_model else {
            return Ok(None);
        };
        if self.draft_max == 0 {
            bail!("--draft-max must be at least 1");
        }
        let draft_opts = EvalOpts { model: Some(model.clone()), ..opts.clone() };
        let engine: Arc<Engine> = load_engine(&draft_opts, n_ctx)?;
        Ok(Some(Speculation::DraftModel { engine, max: self.draft_max }))
    }
}
