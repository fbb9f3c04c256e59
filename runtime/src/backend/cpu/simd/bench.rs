//! Kernel throughput on this CPU, for tuning (ignored by default):
//! `cargo test --release -p ember --lib simd::bench -- --ignored --nocapture`.
//!
//! The machine is shared, so each figure is the thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time, over a weight matrix that
//! stays in L2: it measures the kernels' compute, not memory bandwidth.

use std::time::Instant;

use super::tests::{act_row, weight_row, Rng};
use super::CpuKernels;
use crate::backend::cpu::{matmul, MatmulScratch};
use crate::quant::GgmlType;

/// CPU time of this thread in ns (`CLOCK_THREAD_CPUTIME_ID`; exact, unlike
/// /proc's schedstat, which only moves at scheduler ticks).
fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clk: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: libc's clock_gettime writes one timespec (two i64 on x86-64/aarch64 Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0);
    t.sec as u64 * 1_000_000_000 + t.nsec as u64
}

/// Runs `f` `reps` times; (CPU ns, wall ns) per run.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (c0, t0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..reps {
        f();
    }
    let cpu = (thread_cpu_ns() - c0) as f64 / reps as f64;
    (cpu, t0.elapsed().as_nanos() as f64 / reps as f64)
}

const TYPES: [GgmlType; 6] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K];

#[test]
#[ignore]
fn bench_vec_dot() {
    // 2B-shaped rows (n_embd 2304), 64 of them: ~80 KiB of Q4 weights.
    let (n, rows) = (2304, 64);
    let mut rng = Rng(1);
    for k in CpuKernels::available() {
        for ty in TYPES {
            let w = weight_row(&mut rng, ty, n * rows, false);
            let a = act_row(&mut rng, ty, n, false);
            let rs = w.len() / rows;
            let mut s = 0f32;
            let (cpu, wall) = time(2000, || {
                for r in 0..rows {
                    s += k.vec_dot(ty, n, &w[r * rs..(r + 1) * rs], &a);
                }
            });
            std::hint::black_box(s);
            let gbs = (w.len() as f64) / cpu;
            eprintln!("{:>14} {ty:>5} 1 tok: {:7.1} ns/row  {gbs:5.1} GB/s of weights (cpu)  wall/cpu {:.2}", k.isa, cpu / rows as f64, wall / cpu);
        }
    }
}

#[test]
#[ignore]
fn bench_matmul() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (n_in, n_out) = (2304, 256);
    let mut rng = Rng(2);
    for k in CpuKernels::available() {
        for ty in TYPES {
            let w = weight_row(&mut rng, ty, n_in * n_out, false);
            for n_tok in [1, 64] {
                let x: Vec<f32> = (0..n_tok * n_in).map(|_| rng.f()).collect();
                let mut y = vec![0f32; n_tok * n_out];
                let mut mm = MatmulScratch::default();
                mm.kernels = k;
                let (cpu, _) = pool.install(|| time(10, || matmul(ty, &w, n_in, n_out, &x, &mut y, &mut mm)));
                let gmacs = (n_tok * n_in * n_out) as f64 / cpu;
                eprintln!("{:>14} {ty:>5} n_tok {n_tok:>2}: {:9.0} µs  {gmacs:6.2} GMAC/s (cpu)", k.isa, cpu / 1e3);
            }
        }
    }
}
