//! The CPU kernel microbenchmarks: `cargo bench -p ember --bench kernels [-- NAME...]`
//! runs the named ones (all without a name); what each measures and the
//! `EMBER_BENCH_*` variables they read: `runtime/src/backend/cpu/simd/bench.rs`.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` (or
    // `--all-targets`) runs this binary without it, where the benchmarks
    // (minutes, gigabytes over the DRAM ones) have no place: nothing runs.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("kernels: benchmarks run under `cargo bench -p ember --bench kernels [-- NAME...]` only");
        return ExitCode::SUCCESS;
    }
    let names: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    match ember::backend::cpu::simd::bench::run(&names) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kernels: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The benchmarks time with Linux's thread CPU clock.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("kernels: the kernel benchmarks run on Linux only");
    ExitCode::FAILURE
}
