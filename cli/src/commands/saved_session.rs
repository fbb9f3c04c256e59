//! `ember run --session FILE`: a saved session used as a prompt cache, like
//! llama.cpp's `--prompt-cache` (the file format: runtime/src/session_file.rs).

use std::path::Path;

use anyhow::{bail, Context, Result};
use ember::chat::ChatMessage;
use ember::remote::RoutePolicy;
use ember::session::{common_prefix_len, GenerateParams};
use ember::{GenerationStats, Session};

/// Restores `file` when it exists, generates for `prompt` evaluating only
/// what the restored tokens do not already hold, then saves the session
/// (prompt and generated tokens) to `file`.
///
/// As in llama.cpp, the longest common prefix of the saved tokens and the
/// prompt is reused — all of it when the saved tokens are a prefix of the
/// prompt, none (with a note) when they share nothing — and a file that
/// cannot be restored (damaged, another model, --ctx or cache type) is an
/// error, not silently overwritten.
pub fn run_with_session(
    session: &mut Session,
    file: &Path,
    prompt: &str,
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<GenerationStats> {
    if session.engine().config().route_policy() != RoutePolicy::Local {
        bail!("--session keeps the local KV cache: it needs --route local");
    }
    let ids = session.engine().tokenizer()?.encode(prompt, true, true)?;
    if file.exists() {
        session.load(file).with_context(|| format!("cannot restore the session (delete {} to start afresh)", file.display()))?;
        let n = common_prefix_len(session.tokens(), &ids);
        if n == 0 {
            eprintln!("ember: note: the session in {} shares no tokens with this prompt; it is evaluated in full", file.display());
        } else {
            eprintln!("ember: session {}: {n} of the prompt's {} tokens restored", file.display(), ids.len());
        }
    }
    let stats = session.complete(prompt, params, on_text)?;
    session.save(file)?;
    Ok(stats)
}

/// The conversation saved next to a chat's session file (`FILE.messages.json`):
/// `ember chat` renders its prompt from the messages, so restoring the KV
/// rows alone would not restore the conversation.
fn messages_path(file: &Path) -> std::path::PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".messages.json");
    p.into()
}

/// `/save FILE` in `ember chat`: the session (KV rows and tokens) and its messages.
pub fn save_chat(session: &mut Session, messages: &[ChatMessage], file: &Path) -> Result<()> {
    if messages.iter().any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some()) {
        bail!("a conversation with tool calls cannot be saved");
    }
    let list: Vec<serde_json::Value> = messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect();
    session.save(file)?;
    let p = messages_path(file);
    std::fs::write(&p, serde_json::to_vec(&list)?).with_context(|| format!("cannot write {}", p.display()))
}

/// `/load FILE` in `ember chat`: the messages saved with [`save_chat`], and
/// the session restored (unchanged when either cannot be read).
pub fn load_chat(session: &mut Session, file: &Path) -> Result<Vec<ChatMessage>> {
    let p = messages_path(file);
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
    let mut messages = Vec::new();
    for m in v.as_array().context("the saved messages are not a JSON array")? {
        match (m["role"].as_str(), m["content"].as_str()) {
            (Some(role), Some(content)) => messages.push(ChatMessage::new(role, content)),
            _ => bail!("a saved message lacks its role or content"),
        }
    }
    session.load(file)?;
    Ok(messages)
}
