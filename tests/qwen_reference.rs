//! Qwen2.5-Coder-0.5B and -1.5B Instruct, Q4_K_M as distributed (qwen2 arch,
//! BPE; the 0.5B mixes Q5_0/Q8_0/Q6_K/Q4_K, the 1.5B Q4_K/Q6_K) end to end
//! through the `ember` binary, held to what llama.cpp produced on the same
//! files (tests/fixtures/qwen2.5-coder-*). The checks live in tests/common.
//!
//! Every criterion runs on the CPU. On wgpu (lavapipe in CI, a software GPU)
//! the 0.5B's greedy text and top-1 agreement run; its perplexity and the
//! 1.5B would take lavapipe far too long for CI.

mod common;

use common::*;

// Mean centred |Δlogit| at the last prompt position, measured on the CPU:
// 0.047–0.067 (0.5B) and 0.053–0.076 (1.5B), KL ≤ 0.003 nats; the bound is
// twice the worst.
fn qwen05(backend: &'static str) -> Reference {
    Reference { dir: "qwen2.5-coder-0.5b", model: qwen25_coder_05b(), centred_tol: 0.15, backend }
}

fn qwen15(backend: &'static str) -> Reference {
    Reference { dir: "qwen2.5-coder-1.5b", model: qwen25_coder_15b(), centred_tol: 0.15, backend }
}

#[test]
fn qwen05_perplexity_within_one_percent_of_llama_cpp() {
    qwen05("cpu").perplexity_within_one_percent();
}

#[test]
fn qwen05_top1_agrees_with_llama_cpp() {
    qwen05("cpu").top1_agrees();
}

#[test]
fn qwen05_last_prompt_logits_close_to_llama_cpp() {
    qwen05("cpu").last_prompt_logits_close();
}

#[test]
fn qwen05_greedy_run_reproduces_llama_cpp() {
    qwen05("cpu").greedy_run();
}

#[test]
fn qwen05_prompts_tokenize_like_llama_cpp() {
    qwen05("cpu").prompts_tokenize();
}

#[test]
fn qwen05_wgpu_top1_agrees_with_llama_cpp() {
    if wgpu_available() {
        qwen05("wgpu").top1_agrees();
    }
}

#[test]
fn qwen05_wgpu_greedy_run_reproduces_llama_cpp() {
    if wgpu_available() {
        qwen05("wgpu").greedy_run();
    }
}

#[test]
fn qwen15_perplexity_within_one_percent_of_llama_cpp() {
    qwen15("cpu").perplexity_within_one_percent();
}

#[test]
fn qwen15_top1_agrees_with_llama_cpp() {
    qwen15("cpu").top1_agrees();
}

#[test]
fn qwen15_last_prompt_logits_close_to_llama_cpp() {
    qwen15("cpu").last_prompt_logits_close();
}

#[test]
fn qwen15_greedy_run_reproduces_llama_cpp() {
    qwen15("cpu").greedy_run();
}
