//! Kernel throughput on this CPU, for tuning:
//! `cargo bench -p ember --bench kernels [-- NAME...]` runs the named
//! benchmarks (`vec_dot`, `matmul_dram`, …: the `bench_*` functions here,
//! with or without the prefix; all of them without a name), one after
//! another; an unknown name fails with the list (see [`run`]).
//!
//! The machine is shared, so each figure is the thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time, over a weight matrix that
//! stays in L2: it measures the kernels' compute, not memory bandwidth.
//! The `*_dram` / `*_regions` / `*_mix` ones time wall clock over weights far
//! larger than the caches (run them on an idle machine; they alternate the
//! variants they compare rep by rep and report the median ratio, which
//! drifts of a shared machine move less than the best times).
//! `EMBER_BENCH_TY` (types, e.g. `Q4_0,Q6_K`) and `EMBER_BENCH_NIN` (row
//! width) select what `bench_vec_dot` and `bench_matmul_dram` run;
//! `bench_matmul_dram` also takes `EMBER_BENCH_SRC` (`anon,mmap,huge`),
//! `EMBER_BENCH_THREADS` (`1,2`) and `EMBER_BENCH_REPS` (7).

use std::time::Instant;

use super::sample::{act_row, aux_rows, weight_row, Rng, QUANT_TYPES as TYPES};
use super::CpuKernels;
use crate::backend::cpu::{matmul, MatmulScratch};
use crate::quant::{GgmlType, QK_K};

/// Every benchmark, by the name [`run`] takes (the function's without `bench_`).
pub const BENCHES: &[(&str, fn())] = &[
    ("vec_dot", bench_vec_dot),
    ("matmul", bench_matmul),
    ("prompt_matmul", bench_prompt_matmul),
    ("prompt_shapes", bench_prompt_shapes),
    ("tile", bench_tile),
    ("matmul_dram", bench_matmul_dram),
    ("matmul_overhead", bench_matmul_overhead),
    ("generation_regions", bench_generation_regions),
    ("model_layers", bench_model_layers),
    ("generation_mix", bench_generation_mix),
    ("quantize_act", bench_quantize_act),
];

/// Runs the benchmarks `names` (each with or without the `bench_` prefix)
/// in order, all of [`BENCHES`] when `names` is empty. Any unknown name:
/// prints the known ones and runs nothing.
pub fn run(names: &[String]) -> Result<(), String> {
    let find = |name: &str| BENCHES.iter().find(|(n, _)| *n == name.strip_prefix("bench_").unwrap_or(name));
    let unknown: Vec<&str> = names.iter().map(|n| n.as_str()).filter(|n| find(n).is_none()).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
        eprintln!("the benchmarks: {}", known.join(" "));
        return Err(format!("unknown benchmark {}", unknown.join(", ")));
    }
    let todo: Vec<&(&str, fn())> = if names.is_empty() { BENCHES.iter().collect() } else { names.iter().filter_map(|n| find(n)).collect() };
    for (name, bench) in todo {
        eprintln!("== {name}");
        bench();
    }
    Ok(())
}

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

/// The least CPU ns per run of `f` over `trials` [`time`]s of `reps` runs:
/// on a shared machine, the run least disturbed by the others.
fn best_time(trials: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    (0..trials).map(|_| time(reps, &mut f).0).fold(f64::MAX, f64::min)
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

/// The types `EMBER_BENCH_TY` names (comma-separated), else `all`.
fn types_from_env(all: &[GgmlType]) -> Vec<GgmlType> {
    match std::env::var("EMBER_BENCH_TY") {
        Ok(t) => all.iter().copied().filter(|ty| t.split(',').any(|t| t == ty.to_string())).collect(),
        Err(_) => all.to_vec(),
    }
}

/// `k` without any 8-row kernel: generation one row at a time.
fn without_rows(k: &CpuKernels) -> &'static CpuKernels {
    let mut k = *k;
    for f in &mut k.formats {
        f.rows = None;
    }
    Box::leak(Box::new(k))
}

pub fn bench_vec_dot() {
    // 2B-shaped rows (n_embd 2304, or `EMBER_BENCH_NIN`), 64 of them: ~80 KiB of Q4 weights.
    let n: usize = std::env::var("EMBER_BENCH_NIN").map_or(2304, |v| v.parse().unwrap());
    let rows = 64;
    let mut rng = Rng(1);
    for k in CpuKernels::available() {
        for ty in types_from_env(&TYPES) {
            if ty.row_size(n).is_none() {
                continue;
            }
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
            eprintln!(
                "{:>14} {ty:>5} 1 tok: {:7.1} ns/row  {gbs:5.1} GB/s of weights (cpu)  wall/cpu {:.2}",
                k.isa,
                cpu / rows as f64,
                wall / cpu
            );
            if let Some((fmt, f)) = k.rows(ty) {
                let mut aux = vec![0u32; (fmt.aux_size)(n) / 4];
                (fmt.aux)(n, &a, bytemuck::cast_slice_mut(&mut aux));
                let aux: &[u8] = bytemuck::cast_slice(&aux);
                let (cpu, _) = time(2000, || {
                    for g in 0..rows / 8 {
                        s += f(n, &w[g * 8 * rs..(g + 1) * 8 * rs], &a, aux)[0];
                    }
                });
                std::hint::black_box(s);
                let gbs = (w.len() as f64) / cpu;
                eprintln!("{:>14} {ty:>5} 8 rows: {:6.1} ns/row  {gbs:5.1} GB/s of weights (cpu)", k.isa, cpu / rows as f64);
            }
        }
    }
}

pub fn bench_matmul() {
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

/// Prompt-shaped matmuls (2304 × 1024 weights, 4, 8, 16 and 512 tokens, 1
/// thread; best of 3): CPU ns per weight row·token with the table's strip
/// kernels and with its row kernels (strips off), activation quantization
/// and packing included. `EMBER_BENCH_TY` picks one format.
pub fn bench_prompt_matmul() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (n_in, n_out) = (2304, 1024);
    let mut rng = Rng(6);
    for ty in TYPES {
        if std::env::var("EMBER_BENCH_TY").is_ok_and(|t| t != ty.to_string()) {
            continue;
        }
        let w = weight_row(&mut rng, ty, n_in * n_out, false);
        for k in CpuKernels::available() {
            let mut rows = *k;
            for f in &mut rows.formats {
                f.tile = None;
            }
            let rows: &'static CpuKernels = Box::leak(Box::new(rows));
            let mut line = format!("{:>14} {ty:>5}", k.isa);
            for n_tok in [4, 8, 16, 512] {
                let x: Vec<f32> = (0..n_tok * n_in).map(|_| rng.f()).collect();
                let mut y = vec![0f32; n_tok * n_out];
                let mut ns = [0f64; 2];
                for (i, kk) in [k, rows].into_iter().enumerate() {
                    if kk.tile(ty).is_none() && i == 0 {
                        continue;
                    }
                    let mut mm = MatmulScratch::default();
                    mm.kernels = kk;
                    let reps = (2048 / n_tok).max(1);
                    ns[i] =
                        pool.install(|| best_time(3, reps, || matmul(ty, &w, n_in, n_out, &x, &mut y, &mut mm))) / (n_out * n_tok) as f64;
                }
                line += &format!(" | {n_tok:>3} tok: strip {:5.1} row {:6.1}", ns[0], ns[1]);
            }
            eprintln!("{line}  (ns per row·token, cpu)");
        }
    }
}

/// Q4_0 prompt products of MiniCPM-2B's shapes (2304 → 5760, 2304 → 2304,
/// 5760 → 2304; 512 tokens, 1 thread, best of 3): CPU ns per weight
/// row·token per table, activation quantization and packing included.
/// `EMBER_BENCH_TY` picks another format.
pub fn bench_prompt_shapes() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let ty = std::env::var("EMBER_BENCH_TY").map_or(GgmlType::Q4_0, |t| *TYPES.iter().find(|ty| ty.to_string() == t).unwrap());
    let n_tok = 512;
    let mut rng = Rng(8);
    for (n_in, n_out) in [(2304, 5760), (2304, 2304), (5760, 2304)] {
        let w = weight_row(&mut rng, ty, n_in * n_out, false);
        let x: Vec<f32> = (0..n_tok * n_in).map(|_| rng.f()).collect();
        let mut y = vec![0f32; n_tok * n_out];
        // Each table, and where it has wide strips, the same without them (8-row strips only).
        // Also the wide kernel at 4 tokens per call (two calls per 8).
        let mut tables: Vec<(&CpuKernels, &str)> = Vec::new();
        for k in CpuKernels::available().into_iter().filter(|k| k.isa != "scalar") {
            if let Some((_, f)) = k.wide(ty) {
                let (mut narrow, mut by4) = (*k, *k);
                for (n, b) in narrow.formats.iter_mut().zip(&mut by4.formats) {
                    if n.wide.is_some() {
                        n.wide = None;
                        b.wide = Some(wide_by4);
                    }
                }
                tables.push((Box::leak(Box::new(narrow)), "8-row"));
                WIDE.get_or_init(|| f);
                tables.push((Box::leak(Box::new(by4)), "16x4"));
            }
            tables.push((k, if k.wide(ty).is_some() { "16x8" } else { "8-row" }));
        }
        for rep in 0..2 {
            for &(k, strips) in &tables {
                let mut mm = MatmulScratch::default();
                mm.kernels = k;
                let ns = pool.install(|| best_time(3, 1, || matmul(ty, &w, n_in, n_out, &x, &mut y, &mut mm))) / (n_out * n_tok) as f64;
                eprintln!("{rep} {:>14} {strips:>6} {ty:>5} {n_in:>4} -> {n_out:>4}: {ns:6.3} ns per row·token (cpu)", k.isa);
            }
        }
    }
}

/// The wide kernel [`wide_by4`] calls (the AVX-512 table's: one table has them).
static WIDE: std::sync::OnceLock<super::tile::WideDotFn> = std::sync::OnceLock::new();

/// The [`WIDE`] kernel on at most 4 tokens per call.
fn wide_by4(n: usize, x: &[u8], y: &[&[u8]], a: &[&[u8]]) -> [[f32; super::tile::WIDE_ROWS]; super::tile::WIDE_TOKS] {
    let f = *WIDE.get().unwrap();
    let mut out = f(n, x, &y[..y.len().min(4)], &a[..a.len().min(4)]);
    if y.len() > 4 {
        out[4..].copy_from_slice(&f(n, x, &y[4..], &a[4..])[..4]);
    }
    out
}

/// The strip kernels alone (2304-wide rows, 32 strips, 64 tokens, in L2):
/// CPU ns per strip packed and per weight row·token dotted, against the row
/// kernel (`vec_dot`) on the same rows and tokens; best of 5 trials each.
/// `EMBER_BENCH_TY` picks one format.
pub fn bench_tile() {
    use super::tile::{ROWS, TOKS};
    let (n, strips, n_tok) = (2304, 32, 64);
    let mut rng = Rng(7);
    for ty in TYPES {
        if std::env::var("EMBER_BENCH_TY").is_ok_and(|t| t != ty.to_string()) {
            continue;
        }
        let w = weight_row(&mut rng, ty, n * ROWS * strips, false);
        let rs = w.len() / (ROWS * strips);
        let act: Vec<Vec<u8>> = (0..n_tok).map(|_| act_row(&mut rng, ty, n, false)).collect();
        for k in CpuKernels::available() {
            let mut s = 0f32;
            let row = best_time(5, 1, || {
                for r in 0..ROWS * strips {
                    for a in &act {
                        s += k.vec_dot(ty, n, &w[r * rs..(r + 1) * rs], a);
                    }
                }
            });
            let row = row / (ROWS * strips * n_tok) as f64;
            let Some((fmt, f)) = k.tile(ty) else {
                eprintln!("{:>14} {ty:>5}: row {row:6.1} ns per row·token (cpu)", k.isa);
                continue;
            };
            let size = (fmt.packed_size)(n);
            let mut packed = vec![0u32; strips * size / 4];
            let pack = best_time(5, 4, || {
                for (p, wc) in bytemuck::cast_slice_mut::<u32, u8>(&mut packed).chunks_mut(size).zip(w.chunks(ROWS * rs)) {
                    (fmt.pack)(n, wc, p);
                }
            });
            let aux = aux_rows(fmt, n, &act);
            let act: Vec<&[u8]> = act.iter().map(|a| &a[..]).collect();
            let aux: Vec<&[u8]> = aux.iter().map(|a| bytemuck::cast_slice(a)).collect();
            let dot = best_time(5, 2, || {
                for p in bytemuck::cast_slice::<u32, u8>(&packed).chunks(size) {
                    for t in (0..n_tok).step_by(TOKS) {
                        s += f(n, p, &act[t..t + TOKS], &aux[t..t + TOKS])[0][0];
                    }
                }
            });
            std::hint::black_box(s);
            let dot = dot / (ROWS * strips * n_tok) as f64;
            let pack = pack / strips as f64;
            eprintln!(
                "{:>14} {ty:>5}: row {row:6.1}, strip {dot:5.1} ns per row·token ({:4.1}× faster); pack {:5.0} ns per strip ({:4.1} ns per row·token at 64 tokens)",
                k.isa,
                row / dot,
                pack,
                pack / (ROWS * n_tok) as f64
            );
        }
    }
}

/// Generation-shaped matmuls over weights far larger than the caches
/// (wall time, 1 and 2 threads): what the kernels reach from DRAM, with and
/// without the 8-row kernels.
pub fn bench_matmul_dram() {
    use crate::backend::cpu::team;
    let n_in: usize = std::env::var("EMBER_BENCH_NIN").map_or(2304, |v| v.parse().unwrap());
    let n_out = 2304 * (48 * 2304 / n_in);
    let reps: usize = std::env::var("EMBER_BENCH_REPS").map_or(7, |v| v.parse().unwrap());
    let mut rng = Rng(3);
    let k = CpuKernels::detect(false);
    let plain = without_rows(k);
    let threads_list: Vec<usize> =
        std::env::var("EMBER_BENCH_THREADS").map_or(vec![1, 2], |v| v.split(',').map(|t| t.parse().unwrap()).collect());
    for ty in types_from_env(&TYPES) {
        if ty.row_size(n_in).is_none() || k.rows(ty).is_none() {
            continue;
        }
        let w = weight_row(&mut rng, ty, n_in * n_out, false);
        let map = mapped_copy(&w);
        let huge = huge_copy(&w);
        let srcs = std::env::var("EMBER_BENCH_SRC").unwrap_or("anon,mmap,huge".into());
        for (src, w) in [("anon", &w[..]), ("mmap", &map[..]), ("huge", &huge[..])] {
            if !srcs.split(',').any(|s| s == src) {
                continue;
            }
            let x: Vec<f32> = (0..n_in).map(|_| rng.f()).collect();
            let mut y = vec![0f32; n_out];
            for &threads in &threads_list {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                // One call for the whole matrix, and model-sized calls
                // (2304 × 2304, as in a 2B model's attention) one after another.
                for per_call in [n_out, 2304] {
                    let rs = w.len() / n_out;
                    // The 8-row and the one-row kernels alternating, rep by rep.
                    let mut t = [vec![], vec![]];
                    for _ in 0..reps {
                        for (v, kk) in [k, plain].into_iter().enumerate() {
                            let mut mm = MatmulScratch::default();
                            mm.kernels = kk;
                            let t0 = Instant::now();
                            team::run(&pool, || {
                                for (wc, yc) in w.chunks(per_call * rs).zip(y.chunks_mut(per_call)) {
                                    matmul(ty, wc, n_in, per_call, &x, yc, &mut mm);
                                }
                            });
                            t[v].push(t0.elapsed().as_nanos() as f64);
                        }
                    }
                    let best = |v: &[f64]| w.len() as f64 / v.iter().copied().fold(f64::MAX, f64::min);
                    let mut ratio: Vec<f64> = (0..reps).map(|i| t[1][i] / t[0][i]).collect();
                    ratio.sort_by(f64::total_cmp);
                    eprintln!(
                        "{:>12} {ty:>5} {src} {threads} thr {per_call:>6} rows/call: rows {:5.1}, row {:5.1} GB/s (best of {reps}); median time row/rows {:.3}",
                        k.isa,
                        best(&t[0]),
                        best(&t[1]),
                        ratio[reps / 2]
                    );
                }
            }
        }
    }
}

/// `bytes` copied into anonymous memory advised into transparent huge
/// pages, as the engine copies the weights by default (`--weights auto`).
fn huge_copy(bytes: &[u8]) -> memmap2::Mmap {
    let mut m = memmap2::MmapMut::map_anon(bytes.len()).unwrap();
    let _ = m.advise(memmap2::Advice::HugePage);
    m.copy_from_slice(bytes);
    m.make_read_only().unwrap()
}

/// `bytes` written to a temporary file and memory-mapped, as model weights
/// are (page-cache pages, not anonymous memory); the file is unlinked at once.
fn mapped_copy(bytes: &[u8]) -> memmap2::Mmap {
    let path = std::env::temp_dir().join(format!("ember-bench-{}.bin", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    // SAFETY: a private temporary file nothing else writes; unlinking it
    // keeps the mapping valid.
    let map = unsafe { memmap2::Mmap::map(&std::fs::File::open(&path).unwrap()).unwrap() };
    std::fs::remove_file(&path).unwrap();
    map
}

/// Fork-join cost: tiny matmuls back to back on 2 threads.
pub fn bench_matmul_overhead() {
    let (n_in, n_out) = (2304, 128);
    let mut rng = Rng(4);
    let k = CpuKernels::detect(false);
    let ty = GgmlType::Q4_0;
    let w = weight_row(&mut rng, ty, n_in * n_out, false);
    let x: Vec<f32> = (0..n_in).map(|_| rng.f()).collect();
    let mut y = vec![0f32; n_out];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut mm = MatmulScratch::default();
        mm.kernels = k;
        let reps = 20000;
        let t0 = Instant::now();
        pool.install(|| {
            for _ in 0..reps {
                matmul(ty, &w, n_in, n_out, &x, &mut y, &mut mm);
            }
        });
        eprintln!("{threads} thr: {:.2} µs per 128-row matmul", t0.elapsed().as_nanos() as f64 / reps as f64 / 1e3);
    }
}

/// A 2B-shaped generation step's matmuls alone (40 layers: q/k/v as one
/// region, o, gate/up as one region, down; Q4_0; memory-mapped weights),
/// against the same bytes as one matmul: what the region boundaries cost.
pub fn bench_generation_regions() {
    use crate::backend::cpu::{matmul_many, MatJob};
    let (e, ff, layers) = (2304, 5760, 40);
    let ty = GgmlType::Q4_0;
    let (re, rf) = (ty.row_size(e).unwrap(), ty.row_size(ff).unwrap());
    let layer = 4 * e * re + 2 * ff * re + e * rf;
    let mut rng = Rng(5);
    let bytes: Vec<u8> = (0..layers)
        .flat_map(|_| weight_row(&mut rng, ty, e * (4 * e + 2 * ff), false).into_iter().chain(weight_row(&mut rng, ty, ff * e, false)))
        .collect();
    assert_eq!(bytes.len(), layers * layer);
    let map = mapped_copy(&bytes);
    drop(bytes);
    let k = CpuKernels::detect(false);
    let x: Vec<f32> = (0..ff).map(|_| rng.f()).collect();
    let (mut q, mut kk, mut v, mut o, mut g, mut u, mut d) =
        (vec![0f32; e], vec![0f32; e], vec![0f32; e], vec![0f32; e], vec![0f32; ff], vec![0f32; ff], vec![0f32; e]);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut mm = MatmulScratch::default();
        mm.kernels = k;
        let mut best = [f64::MAX; 2];
        for _ in 0..5 {
            let t0 = Instant::now();
            crate::backend::cpu::team::run(&pool, || {
                for l in 0..layers {
                    let w = &map[l * layer..(l + 1) * layer];
                    let m = |i: usize| &w[i * e * re..(i + 1) * e * re];
                    matmul_many(
                        e,
                        &x[..e],
                        &mut [
                            MatJob { ty, w: m(0), n_out: e, y: &mut q },
                            MatJob { ty, w: m(1), n_out: e, y: &mut kk },
                            MatJob { ty, w: m(2), n_out: e, y: &mut v },
                        ],
                        &mut mm,
                    );
                    matmul(ty, m(3), e, e, &x[..e], &mut o, &mut mm);
                    let (gw, uw) = (&w[4 * e * re..4 * e * re + ff * re], &w[4 * e * re + ff * re..4 * e * re + 2 * ff * re]);
                    matmul_many(
                        e,
                        &x[..e],
                        &mut [MatJob { ty, w: gw, n_out: ff, y: &mut g }, MatJob { ty, w: uw, n_out: ff, y: &mut u }],
                        &mut mm,
                    );
                    matmul(ty, &w[4 * e * re + 2 * ff * re..], ff, e, &x, &mut d, &mut mm);
                }
            });
            best[0] = best[0].min(t0.elapsed().as_nanos() as f64);
            let t0 = Instant::now();
            let mut y = vec![0f32; map.len() / re];
            pool.install(|| matmul(ty, &map[..y.len() * re], e, y.len(), &x[..e], &mut y, &mut mm));
            best[1] = best[1].min(t0.elapsed().as_nanos() as f64);
        }
        eprintln!(
            "{threads} thr: layer regions {:5.1} GB/s ({:.1} ms), one matmul {:5.1} GB/s",
            map.len() as f64 / best[0],
            best[0] / 1e6,
            map.len() as f64 / best[1]
        );
    }
}

/// A real model's layer matmuls in generation order (q/k/v, o, gate/up,
/// down; on a spinning team, 2 threads), its weights memory-mapped, copied
/// into 4 KiB pages or into huge pages: what the weight memory costs.
/// `EMBER_BENCH_MODEL` (a GGUF with `blk.N.attn_q` … `ffn_down` tensors),
/// `EMBER_BENCH_WEIGHTS` (`mmap,small,huge` by default).
pub fn bench_model_layers() {
    use crate::backend::cpu::{matmul_many, team, MatJob};
    let Ok(path) = std::env::var("EMBER_BENCH_MODEL") else {
        eprintln!("set EMBER_BENCH_MODEL to a GGUF file");
        return;
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let k = CpuKernels::detect(false);
    let kinds = std::env::var("EMBER_BENCH_WEIGHTS").unwrap_or("mmap,small,huge".into());
    for kind in kinds.split(',') {
        let f = crate::gguf::GgufFile::open(&path).unwrap();
        let f = match kind {
            "mmap" => f,
            k => f.copy_to_memory(k == "huge").unwrap(),
        };
        // Per layer: (q, k, v), o, (gate, up), down as (type, bytes, n_in, n_out).
        let names = [&["attn_q", "attn_k", "attn_v"][..], &["attn_output"], &["ffn_gate", "ffn_up"], &["ffn_down"]];
        let mut regions = vec![];
        for l in 0.. {
            let Some(_) = f.tensor(&format!("blk.{l}.attn_q.weight")) else { break };
            for group in names {
                regions.push(
                    group
                        .iter()
                        .map(|n| {
                            let t = f.tensor(&format!("blk.{l}.{n}.weight")).unwrap();
                            (t.ty, f.tensor_data(t), t.ne0(), t.n_rows())
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        let total: usize = regions.iter().flatten().map(|j| j.1.len()).sum();
        let width = regions.iter().flatten().map(|j| j.2.max(j.3)).max().unwrap();
        let mut rng = Rng(5);
        let x: Vec<f32> = (0..width).map(|_| rng.f()).collect();
        let mut ys: Vec<Vec<f32>> = (0..3).map(|_| vec![0f32; width]).collect();
        let mut mm = MatmulScratch::default();
        mm.kernels = k;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t0 = Instant::now();
            team::run(&pool, || {
                for r in &regions {
                    let n_in = r[0].2;
                    let mut jobs: Vec<MatJob> =
                        r.iter().zip(ys.iter_mut()).map(|(j, y)| MatJob { ty: j.0, w: j.1, n_out: j.3, y: &mut y[..j.3] }).collect();
                    matmul_many(n_in, &x[..n_in], &mut jobs, &mut mm);
                }
            });
            best = best.min(t0.elapsed().as_nanos() as f64);
        }
        eprintln!("{kind:>5}: {:5.1} GB/s ({:.1} ms for {} MB, best of 5)", total as f64 / best, best / 1e6, total / 1_000_000);
    }
}

/// A generation step's matmuls of a Q4_K_M-typed model shape alone (all
/// layers in order: q/k/v as one region, o, gate/up as one region, down;
/// then the output head), its weights in transparent huge pages as the
/// engine copies them, on a spinning team of 2 threads; with and without
/// the 8-row kernels (`EMBER_BENCH_ROWS`: the types whose 8-row kernel to
/// drop in the "row" variant, default all), alternating, `EMBER_BENCH_REPS`
/// (7) times. `EMBER_BENCH_SHAPE`: `qwen1.5b` (Qwen2.5-1.5B: n_embd 1536,
/// 28 layers, n_ff 8960, 2 KV heads of 128, vocab 151936) or `minicpm2b`
/// (n_embd 2304, 40 layers, n_ff 5760, vocab 122753: ffn_down Q5_0 / Q8_0,
/// as llama.cpp's Q4_K_M falls back for rows that are not whole
/// super-blocks); `EMBER_BENCH_MIX=q4_k` makes every matrix Q4_K instead.
pub fn bench_generation_mix() {
    use crate::backend::cpu::{matmul_many, team, MatJob};
    use GgmlType::*;
    let shape = std::env::var("EMBER_BENCH_SHAPE").unwrap_or("qwen1.5b".into());
    let (e, kv, ff, layers, vocab) = match shape.as_str() {
        "qwen1.5b" => (1536, 256, 8960, 28, 151936),
        "minicpm2b" => (2304, 2304, 5760, 40, 122753),
        s => panic!("unknown shape {s}"),
    };
    // llama.cpp's Q4_K_M: attn_v and ffn_down get Q6_K in the first and last
    // eighth of the layers and every third one between.
    let more_bits = |l: usize| l < layers / 8 || l >= 7 * layers / 8 || (l - layers / 8) % 3 == 2;
    // `EMBER_BENCH_MIX=q4_k`: every matrix Q4_K (Q4_0 where rows are not whole super-blocks).
    let q4_only = std::env::var("EMBER_BENCH_MIX").is_ok_and(|m| m == "q4_k");
    let six = |n_in: usize| match (n_in.is_multiple_of(QK_K), q4_only) {
        (true, false) => Q6_K,
        (false, false) => Q8_0,
        (true, true) => Q4_K,
        (false, true) => Q4_0,
    };
    let four = |n_in: usize| match (n_in.is_multiple_of(QK_K), q4_only) {
        (true, _) => Q4_K,
        (false, false) => Q5_0,
        (false, true) => Q4_0,
    };
    // Per layer: regions of (type, n_in, n_out).
    let layer = |l: usize| -> Vec<Vec<(GgmlType, usize, usize)>> {
        let v = if more_bits(l) { six(e) } else { four(e) };
        let down = if more_bits(l) { six(ff) } else { four(ff) };
        vec![vec![(Q4_K, e, e), (Q4_K, e, kv), (v, e, kv)], vec![(Q4_K, e, e)], vec![(Q4_K, e, ff), (Q4_K, e, ff)], vec![(down, ff, e)]]
    };
    let mut regions: Vec<Vec<(GgmlType, usize, usize)>> = (0..layers).flat_map(layer).collect();
    regions.push(vec![(six(e), e, vocab)]);
    let size = |j: &(GgmlType, usize, usize)| j.0.row_size(j.1).unwrap() * j.2;
    let total: usize = regions.iter().flatten().map(size).sum();
    let mut by_type = std::collections::BTreeMap::<String, usize>::new();
    for j in regions.iter().flatten() {
        *by_type.entry(j.0.to_string()).or_default() += size(j);
    }
    let mix: Vec<String> = by_type.iter().map(|(t, b)| format!("{t} {:.0}%", 100.0 * *b as f64 / total as f64)).collect();
    eprintln!("{shape}: {} MB per token ({})", total / 1_000_000, mix.join(", "));
    let mut rng = Rng(6);
    let mut bytes = Vec::with_capacity(total);
    let mut views = vec![];
    for r in &regions {
        let mut v = vec![];
        for j in r {
            let w = weight_row(&mut rng, j.0, j.1 * j.2, false);
            v.push((j.0, bytes.len(), w.len(), j.1, j.2));
            bytes.extend(w);
        }
        views.push(v);
    }
    let mem = huge_copy(&bytes);
    drop(bytes);
    let x: Vec<f32> = (0..ff.max(e)).map(|_| rng.f()).collect();
    let mut ys: Vec<Vec<f32>> = (0..3).map(|_| vec![0f32; vocab.max(ff)]).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let k = CpuKernels::detect(false);
    let drop_rows = std::env::var("EMBER_BENCH_ROWS")
        .map_or(TYPES.to_vec(), |t| TYPES.iter().copied().filter(|ty| t.split(',').any(|t| t == ty.to_string())).collect());
    let mut row = *k;
    for ty in &drop_rows {
        if let Some(i) = super::slot(*ty) {
            row.formats[i].rows = None;
        }
    }
    let row: &'static CpuKernels = Box::leak(Box::new(row));
    let variants = [("rows", k), ("row", row)];
    let mut times: Vec<Vec<f64>> = vec![vec![]; variants.len()];
    let reps: usize = std::env::var("EMBER_BENCH_REPS").map_or(7, |v| v.parse().unwrap());
    for _ in 0..reps {
        for (v, (_, kk)) in variants.iter().enumerate() {
            let mut mm = MatmulScratch::default();
            mm.kernels = kk;
            let t0 = Instant::now();
            team::run(&pool, || {
                for r in &views {
                    let n_in = r[0].3;
                    let mut jobs: Vec<MatJob> = r
                        .iter()
                        .zip(ys.iter_mut())
                        .map(|(j, y)| MatJob { ty: j.0, w: &mem[j.1..j.1 + j.2], n_out: j.4, y: &mut y[..j.4] })
                        .collect();
                    matmul_many(n_in, &x[..n_in], &mut jobs, &mut mm);
                }
            });
            times[v].push(t0.elapsed().as_nanos() as f64);
        }
    }
    for (v, (name, _)) in variants.iter().enumerate() {
        let mut t = times[v].clone();
        t.sort_by(f64::total_cmp);
        let (best, med) = (t[0], t[t.len() / 2]);
        eprintln!(
            "{:>12} {shape} {name:>4}: best {:6.2} ms ({:5.1} GB/s), median {:6.2} ms of {reps}",
            k.isa,
            best / 1e6,
            total as f64 / best,
            med / 1e6
        );
    }
    // Per rep, each variant against the first ("rows"): the median ratio.
    for v in 1..variants.len() {
        let mut r: Vec<f64> = (0..reps).map(|i| times[v][i] / times[0][i]).collect();
        r.sort_by(f64::total_cmp);
        eprintln!("{:>12} {shape} {} / {}: median time ratio {:.3}", k.isa, variants[v].0, variants[0].0, r[reps / 2]);
    }
}

/// The activation quantizers (`CpuKernels::quantize_act`): ns per value of
/// a 2304-wide row (9 KiB of f32, in L1), for each `vec_dot_type`.
pub fn bench_quantize_act() {
    let n = 2304;
    let mut rng = Rng(5);
    let x: Vec<f32> = (0..n).map(|_| rng.f()).collect();
    for k in CpuKernels::available() {
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F16] {
            let mut dst = vec![0u8; ty.row_size(n).unwrap()];
            let cpu = best_time(5, 2000, || (k.quantize_act)(ty, std::hint::black_box(&x), &mut dst));
            std::hint::black_box(&dst);
            eprintln!("{:>14} {ty:>5} quantize_act: {:6.3} ns/value (cpu)", k.isa, cpu / n as f64);
        }
    }
}
