//! What a remote-only engine (`Engine::remote_only`: no local model file)
//! shows in place of the local model's metadata.

use crate::model::ModelInfo;

/// The stand-in [`ModelInfo`] of a remote-only engine: arch `remote`, the
/// remote model's name when the config gives one, and every count zero
/// (the vocabulary, context and sizes are the server's, not known here).
pub fn model_info(remote_model: Option<&str>) -> ModelInfo {
    ModelInfo {
        arch: "remote".into(),
        name: remote_model.map(str::to_string),
        n_vocab: 0,
        n_ctx_train: 0,
        n_embd: 0,
        n_layer: 0,
        n_head: 0,
        n_head_kv: 0,
        n_ff: 0,
        n_params: 0,
        weight_bytes: 0,
        bytes_per_token: 0,
        kv_bytes_per_token: 0,
        quant: "remote".into(),
    }
}
