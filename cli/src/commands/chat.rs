//! `ember chat`: an interactive conversation. The session keeps the whole
//! conversation in its KV cache; each turn evaluates only what is new.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use ember::chat::fit::{answer_reserve, fit_chat};
use ember::chat::{ChatMessage, ChatTemplate};
use ember::session::GenerateParams;

use super::run::SamplingArgs;
use super::saved_session::{load_chat, save_chat};
use super::{load_engine_routed, route_note, RemoteArgs};
use crate::EvalOpts;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// A system message to start the conversation with.
    #[arg(short = 's', long = "system")]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    n_predict: usize,
    /// Session context size (default: the model's, capped at 4096).
    #[arg(long = "ctx")]
    ctx: Option<usize>,
    /// Chat template: the model's own (default) or a built-in one (chatml, gemma).
    #[arg(long = "chat-template")]
    chat_template: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Prints each turn's rendered prompt to stderr (for tests: what the
    /// context holds after a context shift).
    #[arg(long = "show-prompt", hide = true)]
    show_prompt: bool,
    #[command(flatten)]
    speculation: super::speculation::SpecArgs,
}

const HELP: &str =
    "commands: /reset (forget the conversation), /system TEXT (new system message, resets), /save FILE, /load FILE (a saved conversation), /exit";

pub fn run(a: ChatArgs) -> Result<()> {
    let engine = load_engine_routed(&a.opts, a.ctx, &a.remote, 1)?;
    let template = if engine.is_remote_only() {
        // Never rendered: the remote server renders its own model's template.
        ChatTemplate::builtin("chatml", "", "")?
    } else {
        ChatTemplate::for_tokenizer(engine.tokenizer()?, a.chat_template.as_deref())?
    };
    let mut session = engine.new_session();
    session.set_speculation(a.speculation.load(&a.opts, a.ctx)?.as_ref())?;
    let params = GenerateParams { sampling: a.sampling.to_params(), max_tokens: a.n_predict, stop: vec![], constraint: None };

    // Ctrl-C stops the answer being generated; at the prompt it ends the program.
    let generating = Arc::new(AtomicBool::new(false));
    {
        let (generating, cancel) = (generating.clone(), session.cancel_handle());
        ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                cancel.store(true, Ordering::SeqCst);
            } else {
                eprintln!();
                std::process::exit(130);
            }
        })
        .context("cannot install the Ctrl-C handler")?;
    }

    let interactive = std::io::stdin().is_terminal();
    let mut messages: Vec<ChatMessage> = a.system.iter().map(ChatMessage::system).collect();
    if interactive {
        eprintln!("ember chat ({}); {HELP}; Ctrl-C stops an answer", engine.info().name.as_deref().unwrap_or("model"));
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        if let Some(cmd) = input.strip_prefix('/') {
            let (name, rest) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
            match name {
                "exit" | "quit" => break,
                "reset" => {
                    messages.retain(|m| m.role == "system");
                    session.reset();
                    eprintln!("[conversation reset]");
                }
                "system" => {
                    messages.clear();
                    if !rest.trim().is_empty() {
                        messages.push(ChatMessage::system(rest.trim()));
                    }
                    session.reset();
                    eprintln!("[system message set; conversation reset]");
                }
                "save" | "load" if rest.trim().is_empty() => eprintln!("[/{name} needs a file name]"),
                "save" => match save_chat(&mut session, &messages, std::path::Path::new(rest.trim())) {
                    Ok(()) => eprintln!("[saved {} tokens to {}]", session.tokens().len(), rest.trim()),
                    Err(e) => eprintln!("[error: {e:#}]"),
                },
                "load" => match load_chat(&mut session, std::path::Path::new(rest.trim())) {
                    Ok(m) => {
                        messages = m;
                        eprintln!("[restored {} messages, {} tokens from {}]", messages.len(), session.tokens().len(), rest.trim());
                    }
                    Err(e) => eprintln!("[error: {e:#}]"),
                },
                _ => eprintln!("{HELP}"),
            }
            continue;
        }
        messages.push(ChatMessage::user(input));
        if engine.config().route_policy() == ember::remote::RoutePolicy::Local {
            // Context shift: the system message and the newest turns are kept,
            // the oldest turns forgotten (see `ember::chat::fit`).
            let n_ctx = session.n_ctx();
            match fit_chat(&template, engine.tokenizer()?, &messages, n_ctx, answer_reserve(n_ctx, a.n_predict)) {
                Ok(f) if f.dropped() > 0 => {
                    eprintln!(
                        "[context shift: the {} oldest messages dropped to fit the context ({n_ctx} tokens); the system message is kept]",
                        f.dropped()
                    );
                    messages = f.kept(&messages);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("[{e}: the message is too long for the context; /reset to start over]");
                    messages.pop();
                    continue;
                }
            }
            if a.show_prompt {
                eprintln!("[prompt text]\n{}\n[end of prompt text]", template.render(&messages, true)?);
            }
        }
        let mut answer = String::new();
        generating.store(true, Ordering::SeqCst);
        let result = session.chat(&template, &messages, &params, &mut |text| {
            answer.push_str(text);
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            true
        });
        generating.store(false, Ordering::SeqCst);
        let _ = writeln!(out);
        match result {
            Ok(st) => {
                let total = st.route.as_ref().map_or(st.prompt_tokens, |r| r.prompt_tokens);
                eprintln!(
                    "[prompt {} tokens ({} new, {} reused), {:.1} tok/s | answer {} tokens, {:.1} tok/s | stop: {}{}]",
                    total,
                    st.prompt_tokens,
                    total.saturating_sub(st.prompt_tokens),
                    st.prompt_tps(),
                    st.generated_tokens,
                    st.generation_tps(),
                    st.stop_reason.as_str(),
                    route_note(&st)
                );
                messages.push(ChatMessage::assistant(answer));
            }
            Err(e) => {
                eprintln!("[error: {e}]");
                messages.pop();
                session.reset();
            }
        }
    }
    Ok(())
}

/// `ember chat-template` (hidden): prints the prompt a conversation renders to,
/// exactly as `chat` and `serve` build it (no newline added).
#[derive(Args)]
pub struct ChatTemplateArgs {
    #[command(flatten)]
    opts: EvalOpts,
    /// The messages as a JSON array of {"role", "content"}.
    #[arg(long = "messages")]
    messages: String,
    /// Leave out the assistant's turn opening.
    #[arg(long = "no-generation-prompt")]
    no_generation_prompt: bool,
    /// A built-in template instead of the model's.
    #[arg(long = "chat-template")]
    chat_template: Option<String>,
}

pub fn run_template(a: ChatTemplateArgs) -> Result<()> {
    let path = crate::catalog::resolve(a.opts.model.as_deref())?;
    let file = ember::gguf::GgufFile::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let tok = ember::tokenizer::Tokenizer::from_gguf(&file)?;
    let template = ChatTemplate::for_tokenizer(&tok, a.chat_template.as_deref())?;
    let v: serde_json::Value = serde_json::from_str(&a.messages).context("--messages is not JSON")?;
    let arr = v.as_array().context("--messages must be a JSON array")?;
    let mut messages = Vec::new();
    for m in arr {
        let role = m["role"].as_str().context("each message needs a string role")?;
        let content = m["content"].as_str().context("each message needs a string content")?;
        messages.push(ChatMessage::new(role, content));
    }
    let text = template.render(&messages, !a.no_generation_prompt)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
