//! Chat prompts for `Session.chat`: the runtime's chat templates
//! (`ember::chat`, the GGUF's `tokenizer.chat_template` rendered with
//! minijinja; for models that carry none, the built-in one their turn tokens
//! name, else ChatML), so mobile apps
//! always get a usable conversation format. Tools are offered as the
//! server offers them (`ember::chat::tools`).

use ember::chat::tools::{Tool as RtTool, ToolChoice};
use ember::chat::{encode_prompt, ChatMessage as RtMessage, ChatTemplate};

use crate::error::EmberError;
use crate::records::{ChatMessage, GenerateParams};

/// The template chats render with (the model's, a built-in one its
/// turn tokens name, else ChatML).
pub(crate) fn template(tok: &ember::tokenizer::Tokenizer) -> Result<ChatTemplate, EmberError> {
    let name = if tok.chat_template().is_some() || ember::chat::builtin_for(tok).is_some() { None } else { Some("chatml") };
    Ok(ChatTemplate::for_tokenizer(tok, name)?)
}

/// The messages for the runtime, checked as `encode` checks them.
pub(crate) fn runtime_messages(messages: &[ChatMessage]) -> Result<Vec<RtMessage>, EmberError> {
    if messages.is_empty() {
        return Err(EmberError::InvalidParams("chat needs at least one message".into()));
    }
    messages.iter().enumerate().map(|(i, m)| message(i, m)).collect()
}

/// The token ids of `messages` with `tools` offered, ending with the
/// assistant's turn opened, fitted to `n_ctx` with `reserve` tokens left for
/// the answer: a conversation that outgrew the context keeps its system
/// message and newest turns (`ember::chat::fit`). Also returns how many of
/// the oldest messages were left out.
pub(crate) fn encode_fitted(
    tok: &ember::tokenizer::Tokenizer,
    messages: &[ChatMessage],
    tools: &[RtTool],
    n_ctx: usize,
    reserve: usize,
) -> Result<(Vec<u32>, usize), EmberError> {
    let template = template(tok)?;
    let msgs = runtime_messages(messages)?;
    let fitted =
        ember::chat::fit::fit_conversation(&msgs, n_ctx, reserve, |m| encode_prompt(tok, &template.render_with_tools(m, tools, true)?))?;
    let dropped = fitted.dropped();
    Ok((fitted.ids, dropped))
}

/// One message for the runtime (only assistant turns carry calls).
fn message(i: usize, m: &ChatMessage) -> Result<RtMessage, EmberError> {
    if !m.tool_calls.is_empty() && m.role != "assistant" {
        return Err(EmberError::InvalidParams(format!("messages[{i}]: only assistant messages carry tool_calls")));
    }
    Ok(RtMessage {
        tool_calls: m.tool_calls.iter().map(Into::into).collect(),
        tool_call_id: m.tool_call_id.clone(),
        name: m.name.clone(),
        ..RtMessage::new(m.role.clone(), m.content.clone())
    })
}

/// A function name as OpenAI allows it: 1 to 64 of `a-z A-Z 0-9 _ -`.
fn valid_function_name(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The tools `params` offers and how they may be called, checked as the
/// server checks them (`InvalidParams`). `tool_choice` defaults to "auto"
/// with tools, else "none"; with "none" no tools are offered.
pub(crate) fn tools(params: &GenerateParams) -> Result<(Vec<RtTool>, ToolChoice), EmberError> {
    let bad = |m: String| EmberError::InvalidParams(m);
    let mut tools: Vec<RtTool> = Vec::with_capacity(params.tools.len());
    for (i, t) in params.tools.iter().enumerate() {
        if !valid_function_name(&t.name) {
            return Err(bad(format!("tools[{i}].name: invalid function name {:?}: 1 to 64 letters, digits, '_' or '-'", t.name)));
        }
        if tools.iter().any(|x| x.name == t.name) {
            return Err(bad(format!("tools[{i}].name: the function name '{}' is given twice", t.name)));
        }
        let parameters = match &t.parameters_json {
            None => None,
            Some(p) => match serde_json::from_str::<serde_json::Value>(p) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v),
                Ok(_) => return Err(bad(format!("tools[{i}].parameters_json: must be a JSON schema object"))),
                Err(e) => return Err(bad(format!("tools[{i}].parameters_json: not JSON: {e}"))),
            },
        };
        tools.push(RtTool::new(t.name.clone(), t.description.clone(), parameters));
    }
    let choice = match params.tool_choice.as_deref() {
        None | Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("required") => ToolChoice::Required,
        Some(n) => ToolChoice::Function(n.to_owned()),
    };
    match &choice {
        ToolChoice::Function(n) if !tools.iter().any(|t| &t.name == n) => {
            return Err(bad(format!("tool_choice must be \"auto\", \"none\", \"required\" or the name of one of the tools (got '{n}')")))
        }
        ToolChoice::Required if tools.is_empty() => return Err(bad("tool_choice \"required\" needs tools".into())),
        ToolChoice::None => tools.clear(),
        ToolChoice::Auto if tools.is_empty() => return Ok((tools, ToolChoice::None)),
        _ => {}
    }
    Ok((tools, choice))
}
