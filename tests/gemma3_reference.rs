//! Gemma-3-270M Q4_K_M end to end through the `ember` binary, held to
//! what llama.cpp produced on the same file (tests/fixtures/gemma3). The checks
//! live in tests/common (`Reference`), shared with the other reference models.

mod common;

use common::*;

fn reference() -> Reference {
    Reference { dir: "gemma3", model: gemma3(), centred_tol: 0.25, backend: "cpu" }
}

#[test]
fn perplexity_within_one_percent_of_llama_cpp() {
    reference().perplexity_within_one_percent();
}

#[test]
fn prompts_tokenize_like_llama_cpp() {
    reference().prompts_tokenize();
}

/// Along prompt + greedy continuation fed as one batch, our top-1 equals
/// llama.cpp's at ≥ 99% of the positions where its top-1/top-2 margin ≥ 0.3.
#[test]
fn top1_agrees_with_llama_cpp_along_every_sequence() {
    reference().top1_agrees();
}

/// The full logits row at the last prompt position: same argmax, small KL.
#[test]
fn last_prompt_logits_close_to_llama_cpp() {
    reference().last_prompt_logits_close();
}

/// `ember run --temp 0 -n 16` reproduces llama.cpp's greedy text on ≥ 5 of 6 prompts.
#[test]
fn greedy_run_reproduces_llama_cpp() {
    reference().greedy_run();
}
