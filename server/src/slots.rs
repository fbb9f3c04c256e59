//! llama-server's slot actions over the session pool's numbered slots
//! ([`crate::pool::SessionPool::with_slot`]):
//!
//! - `GET /slots`: every slot made so far, whether a request has it, and the
//!   tokens an idle one caches.
//! - `POST /slots/{id}?action=save` with `{"filename": "name.bin"}`: the slot's
//!   context (tokens + KV rows, `Session::save`, docs/SESSIONS.md) written to
//!   `--slot-save-path`/name.bin.
//! - `POST /slots/{id}?action=restore` with `{"filename": …}`: that file loaded
//!   into the slot (checked: same model, context and KV types); a request whose
//!   prompt starts with its tokens then takes this slot and skips evaluating them.
//! - `POST /slots/{id}?action=erase`: the slot's context cleared.
//!
//! Files are plain names inside `--slot-save-path` (no directories, no `..`);
//! without `--slot-save-path`, save and restore answer 501.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::pool::SlotError;
use crate::AppState;

pub(crate) async fn list(State(st): State<Arc<AppState>>) -> Json<Value> {
    let slots: Vec<Value> = st
        .pool
        .slots()
        .into_iter()
        .map(|(id, busy, n_tokens)| json!({ "id": id, "is_processing": busy, "n_ctx": st.config.limits.n_ctx, "n_tokens": n_tokens }))
        .collect();
    Json(Value::Array(slots))
}

pub(crate) async fn action(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id: usize = id.parse().map_err(|_| ApiError::invalid(format!("slot id '{id}' is not a number")).with_code("invalid_value"))?;
    let action = q.get("action").map(String::as_str).unwrap_or("");
    let t = Instant::now();
    match action {
        "save" | "restore" => {
            let (name, path) = file_of(&st, &body)?;
            if action == "save" {
                let p = path.clone();
                let n = run(&st, id, move |s| s.save(&p).map(|_| s.tokens().len())).await?;
                let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                Ok(Json(json!({ "id_slot": id, "filename": name, "n_saved": n, "n_written": bytes, "timings": { "save_ms": ms(t) } })))
            } else {
                if !path.is_file() {
                    return Err(ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("no saved slot file '{name}'"))
                        .with_param("filename"));
                }
                let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let n = run(&st, id, move |s| s.load(&path).map(|_| s.tokens().len())).await?;
                Ok(Json(json!({ "id_slot": id, "filename": name, "n_restored": n, "n_read": bytes, "timings": { "restore_ms": ms(t) } })))
            }
        }
        "erase" => {
            let n = run(&st, id, |s| {
                let n = s.tokens().len();
                s.reset();
                Ok(n)
            })
            .await?;
            Ok(Json(json!({ "id_slot": id, "n_erased": n })))
        }
        other => Err(ApiError::invalid(format!("unknown slot action '{other}' (save, restore or erase)")).with_param("action")),
    }
}

/// The slot file a save/restore names: `{"filename": "x.bin"}`, a plain name
/// inside `--slot-save-path`.
fn file_of(st: &AppState, body: &Bytes) -> Result<(String, PathBuf), ApiError> {
    let Some(dir) = &st.config.slot_save_path else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported_error",
            "slot save/restore needs ember serve --slot-save-path DIR",
        ));
    };
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")).with_code("invalid_json"))?;
    let name = v.get("filename").and_then(Value::as_str).ok_or_else(|| ApiError::param("filename", "filename (a string) is required"))?;
    let plain = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && std::path::Path::new(name).components().count() == 1;
    if !plain {
        return Err(ApiError::param("filename", format!("'{name}' is not a plain file name (no directories)")));
    }
    Ok((name.to_owned(), dir.join(name)))
}

async fn run<T: Send + 'static>(
    st: &Arc<AppState>,
    id: usize,
    f: impl FnOnce(&mut ember::session::Session) -> ember::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    st.pool.with_slot(id, f).await.map_err(|e| match e {
        SlotError::NoSuchSlot { .. } => ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", e.to_string()).with_param("id_slot"),
        SlotError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "invalid_request_error", e.to_string()).with_code("slot_busy"),
        SlotError::Failed(ember::Error::SessionFile { source, .. }) => {
            // A file saved with another model, context or cache type, or damaged: the caller's to fix.
            ApiError::invalid(format!("cannot restore the slot: {source}")).with_param("filename")
        }
        SlotError::Failed(e) => ApiError::from(e),
    })
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
