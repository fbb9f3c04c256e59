//! SmolLM2-135M-Instruct Q4_1 end to end through the `ember` binary, held to
//! what llama.cpp produced on the same file (tests/fixtures/smollm2). The checks
//! live in tests/common (`Reference`), shared with the other reference models.
//!
//! Every criterion runs on each backend: `cpu`, and `wgpu` (lavapipe in CI;
//! without an adapter the wgpu cases fail when `CI` or `EMBER_REQUIRE_GPU=1`
//! is set and say they skipped otherwise).

mod common;

use common::*;

fn reference(backend: &'static str) -> Reference {
    Reference { dir: "smollm2", model: smollm2(), centred_tol: 0.15, backend }
}

on_every_backend!(perplexity_within_one_percent: perplexity_within_one_percent_of_llama_cpp, wgpu_perplexity_within_one_percent_of_llama_cpp);
// With a quantized KV cache (`--ctk/--ctv`), against llama.cpp's default
// (flash attention, Hadamard rotation of the quantized cache) with the same
// cache type (on the CPU; wgpu against the CPU below).
#[test]
fn kv_q8_0_perplexity_within_one_percent_of_llama_cpp() {
    reference("cpu").perplexity_within("q8_0", 0.01);
}
#[test]
fn kv_q4_0_perplexity_within_three_percent_of_llama_cpp() {
    reference("cpu").perplexity_within("q4_0", 0.03);
}
// wgpu with a q8_0 cache agrees with the CPU with the same cache: logits
// along 3 of the sequences, and the greedy text of `def fibonacci(n):` (the
// prompt whose 16 greedy tokens all have a margin ≥ 0.3). The kernels against
// the CPU's: runtime/tests/wgpu_kernels.rs.
#[test]
fn wgpu_kv_q8_0_agrees_with_the_cpu() {
    if wgpu_available() {
        reference("wgpu").cache_agrees_with_cpu("q8_0", 3, 3);
    }
}
// Along prompt + greedy continuation fed as one batch, our top-1 equals
// llama.cpp's at ≥ 99% of the positions where its top-1/top-2 margin ≥ 0.3.
on_every_backend!(top1_agrees: top1_agrees_with_llama_cpp_along_every_sequence, wgpu_top1_agrees_with_llama_cpp_along_every_sequence);
// The full logits row at the last prompt position: same argmax, small KL.
on_every_backend!(last_prompt_logits_close: last_prompt_logits_close_to_llama_cpp, wgpu_last_prompt_logits_close_to_llama_cpp);
// `ember run --temp 0 -n 16` reproduces llama.cpp's greedy text on ≥ 5 of 6 prompts.
on_every_backend!(greedy_run: greedy_run_reproduces_llama_cpp, wgpu_greedy_run_reproduces_llama_cpp);
// The wgpu cases above run the tiers lavapipe offers (f16, fused); the short
// ones run again with every optional tier off. (Fused and unfused logits are
// equal bit for bit: runtime/tests/wgpu_fusion.rs; perplexity on one tier.)
on_the_baseline_tier!(last_prompt_logits_close: wgpu_baseline_last_prompt_logits_close_to_llama_cpp);
on_the_baseline_tier!(greedy_run: wgpu_baseline_greedy_run_reproduces_llama_cpp);

#[test]
fn prompts_tokenize_like_llama_cpp() {
    reference("cpu").prompts_tokenize();
}
