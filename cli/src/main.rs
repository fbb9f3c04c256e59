//! `ember`: run, inspect and measure GGUF models from the command line.
//! Results go to stdout, everything else (progress, stats, errors) to stderr.

mod catalog;
mod commands;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ember", version, about = "Ember: run small GGUF language models on any device, offline")]
struct Cli {
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

/// Options shared by every command that evaluates a model.
#[derive(Args, Clone, Debug)]
pub struct EvalOpts {
    /// Model: a GGUF path or a known name (see `ember pull --list`); default smollm2-135m.
    #[arg(short = 'm', long = "model")]
    pub model: Option<String>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Backend: auto (a real GPU that passes its self-test, else the CPU; it also takes over
    /// when the GPU fails mid-way), cpu, wgpu (any adapter, software included; errors are errors).
    /// Environment: EMBER_GPU_DISABLE=f16,subgroup,fused,tiled turns kernel tiers off;
    /// EMBER_GPU_ALLOW_SOFTWARE=1 lets auto use software adapters (lavapipe); EMBER_GPU_FAULT=<kernel>
    /// (tests only) makes that kernel write wrong values (names: `ember gpu-check --json`).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Use the portable scalar CPU kernels instead of the SIMD ones chosen at run time.
    #[arg(long)]
    pub scalar: bool,
    /// CPU weights: auto (a huge-page copy where Linux offers transparent huge pages, else
    /// the file mapping), mmap (zero-copy), copy.
    #[arg(long, default_value = "auto")]
    pub weights: String,
    /// KV cache type of keys: f16 (default), q8_0 (half the bytes), q4_0 (a quarter), like
    /// llama.cpp's -ctk.
    #[arg(long = "cache-type-k", visible_alias = "ctk", default_value = "f16")]
    pub cache_type_k: String,
    /// KV cache type of values: f16 (default), q8_0, q4_0, like llama.cpp's -ctv.
    #[arg(long = "cache-type-v", visible_alias = "ctv", default_value = "f16")]
    pub cache_type_v: String,
    /// Memory the engine may hold — weights + KV cache + scratch, see `ember inspect --plan`:
    /// 1.5G, 800M, or bytes. A plan over it is refused with what would fit (default: the
    /// memory available).
    #[arg(long = "memory-budget", value_name = "SIZE")]
    pub memory_budget: Option<String>,
    /// Fit the memory budget instead of refusing: a smaller context and, when the KV types
    /// were left f16, a q8_0 or q4_0 cache.
    #[arg(long)]
    pub fit: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt (only the generated text goes to stdout).
    Run(commands::run::RunArgs),
    /// Chat interactively (streaming; the conversation stays in the KV cache).
    Chat(commands::chat::ChatArgs),
    /// Serve an OpenAI-compatible HTTP API (see docs/SERVER.md).
    Serve(commands::serve::ServeArgs),
    /// Print the prompt a conversation renders to with the model's chat template.
    #[command(hide = true)]
    ChatTemplate(commands::chat::ChatTemplateArgs),
    /// Print the token ids of a text as a JSON array.
    Tokenize(commands::tokenize::TokenizeArgs),
    /// Perplexity of a text file, in consecutive windows of --ctx tokens.
    Perplexity(commands::perplexity::PerplexityArgs),
    /// Logits at every position of a prompt, one JSON line per position.
    Logits(commands::logits::LogitsArgs),
    /// Compare two `ember logits --dump-layers` directories: where do two backends part?
    CompareDumps(commands::dumps::CompareArgs),
    /// Architecture, hyper-parameters, tokenizer and tensors of a GGUF file.
    Inspect(commands::inspect::InspectArgs),
    /// Fetch a known model into the cache.
    Pull(commands::pull::PullArgs),
    /// Prompt processing and generation speed (llama-bench style), peak RSS, load time.
    Bench(commands::bench::BenchArgs),
    /// GPU adapters, the device profile, quirks applied, the self-test per kernel tier (with
    /// timings) and the pipeline cache's state. Honours EMBER_GPU_DISABLE, EMBER_GPU_FAULT,
    /// $EMBER_HOME (verdicts and caches under $EMBER_HOME/gpu). See docs/GPU.md.
    GpuCheck(commands::gpu_check::GpuCheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    let mut logger = env_logger::Builder::new();
    logger.filter_level(level);
    if cli.verbose == 0 {
        // wgpu's warnings while probing adapters (missing Vulkan extensions) are
        // not the user's business on a run that may not even use the GPU.
        for m in ["wgpu_hal", "wgpu_core", "naga"] {
            logger.filter_module(m, log::LevelFilter::Error);
        }
    }
    logger.parse_env("EMBER_LOG").init();
    let result = match cli.command {
        Cmd::Run(a) => commands::run::run(a),
        Cmd::Chat(a) => commands::chat::run(a),
        Cmd::Serve(a) => commands::serve::run(a),
        Cmd::ChatTemplate(a) => commands::chat::run_template(a),
        Cmd::Tokenize(a) => commands::tokenize::run(a),
        Cmd::Perplexity(a) => commands::perplexity::run(a),
        Cmd::Logits(a) => commands::logits::run(a),
        Cmd::CompareDumps(a) => commands::dumps::compare(a),
        Cmd::Inspect(a) => commands::inspect::run(a),
        Cmd::Pull(a) => commands::pull::run(a),
        Cmd::Bench(a) => commands::bench::run(a),
        Cmd::GpuCheck(a) => commands::gpu_check::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ember: error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: a cause whose text the message
/// already shows (the runtime's errors include their sources) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}
