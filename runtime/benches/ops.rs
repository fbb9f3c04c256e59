//! Per-op timings on every executor this machine has (scalar CPU, each SIMD
//! table, wgpu): the op table of tests/op_cases.rs in its `--perf` mode
//! (2048×2048 products of every weight type at 1 and 64 tokens, norms, RoPE,
//! activations, attention over 512 positions; median of 7 passes, µs).
//!
//! `cargo bench -p ember --bench ops [-- --filter SUBSTR]`

// The table's checking half is the op_cases test's; only `run` is used here.
#[allow(dead_code)]
#[path = "../tests/op_cases.rs"]
mod op_cases;

fn main() {
    // `cargo test --benches` / `--all-targets` run bench targets without
    // `--bench`: time nothing then (as benches/kernels.rs).
    if std::env::args().any(|a| a == "--bench") {
        op_cases::run(true);
    }
}
