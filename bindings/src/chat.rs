//! Chat prompt rendering for `Session.chat`.
//!
//! Interim: the runtime gets its own chat-template module (`ember::chat`, with
//! multi-turn KV reuse) on another branch. Until it lands, this file renders the
//! GGUF's `tokenizer.chat_template` with minijinja the way Hugging Face does
//! (trim_blocks, lstrip_blocks, `raise_exception`, Python string methods), or
//! ChatML when the file has no template. [`render`] is the one function to
//! swap for the runtime's when it exists.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};

use crate::error::EmberError;
use crate::records::ChatMessage;

/// The prompt text for `messages`, ending with the assistant's turn opened.
pub(crate) fn render(tok: &ember::tokenizer::Tokenizer, messages: &[ChatMessage]) -> Result<String, EmberError> {
    if messages.is_empty() {
        return Err(EmberError::InvalidParams("chat needs at least one message".into()));
    }
    let Some(template) = tok.chat_template() else {
        return Ok(chatml(messages));
    };
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| EmberError::InvalidModel(format!("the model's chat template does not parse: {e}")))?;
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
    let msgs: Vec<_> = messages.iter().map(|m| context! { role => m.role, content => m.content }).collect();
    tmpl.render(context! {
        messages => msgs,
        add_generation_prompt => true,
        bos_token => text(tok.bos()),
        eos_token => text(tok.eos()),
    })
    .map_err(|e| EmberError::InvalidParams(format!("chat template: {e}")))
}

/// ChatML, the fallback for models without a template.
fn chatml(messages: &[ChatMessage]) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback() {
        let m = [ChatMessage { role: "user".into(), content: "Hi".into() }];
        assert_eq!(chatml(&m), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }
}
