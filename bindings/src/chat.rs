//! Chat prompts for `Session.chat`: the runtime's chat templates
//! (`ember::chat`, the GGUF's `tokenizer.chat_template` rendered with
//! minijinja; for models that carry none, the built-in one their turn tokens
//! name, else ChatML), so mobile apps
//! always get a usable conversation format.

use ember::chat::{encode_prompt, ChatMessage as RtMessage, ChatTemplate};

use crate::error::EmberError;
use crate::records::ChatMessage;

/// The token ids of `messages`, ending with the assistant's turn opened.
pub(crate) fn encode(tok: &ember::tokenizer::Tokenizer, messages: &[ChatMessage]) -> Result<Vec<u32>, EmberError> {
    if messages.is_empty() {
        return Err(EmberError::InvalidParams("chat needs at least one message".into()));
    }
    // No template and no turn tokens that name a built-in one: ChatML.
    let name = if tok.chat_template().is_some() || ember::chat::builtin_for(tok).is_some() { None } else { Some("chatml") };
    let template = ChatTemplate::for_tokenizer(tok, name)?;
    let msgs: Vec<RtMessage> = messages.iter().map(|m| RtMessage::new(m.role.clone(), m.content.clone())).collect();
    let text = template.render(&msgs, true)?;
    Ok(encode_prompt(tok, &text)?)
}
