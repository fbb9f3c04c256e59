//! Quantized matrix products the ggml way: the activations are quantized once
//! to the weight type's `vec_dot_type` (Q8_0, Q8_1, Q8_K, F16 …), then every
//! output element is an integer-friendly `vec_dot` of a weight row with an
//! activation row. Work is split over threads by blocks of weight rows; each
//! weight row is read once per call and dotted with every token's activations.

use super::profile::{self, OpKind, OpProfile};
use super::simd::tile::{PackFn, TileFormat, ROWS, WIDE_ROWS};
use super::simd::{CpuKernels, RowsDotFn, SCALAR};
use super::{team, SharedMut};
use crate::quant::{self, GgmlType};

/// Reused buffers (no allocation once warm), and the kernel table of the
/// backend running the forward pass.
pub struct MatmulScratch {
    /// Quantized activations.
    act: Vec<u8>,
    /// Per-token side data of the strip and 8-row kernels (u32: its structs hold f32/i32).
    aux: Vec<u32>,
    /// Generation's tasks: (job, first row, end row).
    tasks: Vec<(usize, usize, usize)>,
    pub kernels: &'static CpuKernels,
    /// Time per op kind, when the session profiles (`ember bench --per-type`).
    pub profile: Option<OpProfile>,
}

impl Default for MatmulScratch {
    fn default() -> Self {
        MatmulScratch { act: Vec::new(), aux: Vec::new(), tasks: Vec::new(), kernels: &SCALAR, profile: None }
    }
}

/// Tokens per tile in prompt processing: a tile's quantized activations
/// (16 × ~1-3 KiB) stay in L1 while a task's weight rows stream through it,
/// so each weight block loaded is reused by 16 tokens before it is evicted.
const TOK_TILE: usize = 16;

/// From this many tokens on, a product takes the prompt path (strips, see
/// [`super::simd::tile::MIN_TOK`]), below it generation's.
const TILE_MIN_TOK: usize = super::simd::tile::MIN_TOK;

/// One product of a [`matmul_many`] call: `y = W · x` for the call's shared `x`.
pub struct MatJob<'a> {
    pub ty: GgmlType,
    /// `n_out` rows of `n_in` elements of `ty`.
    pub w: &'a [u8],
    pub n_out: usize,
    /// `n_tok × n_out` f32.
    pub y: &'a mut [f32],
}

/// `y[t][o] = Σ_i W[o][i] · x[t][i]`.
///
/// `w`: `n_out` rows of `n_in` elements of `ty` (`w.len() == n_out · row_size`);
/// `x`: `n_tok × n_in` f32; `y`: `n_tok × n_out` f32.
pub fn matmul(ty: GgmlType, w: &[u8], n_in: usize, n_out: usize, x: &[f32], y: &mut [f32], scratch: &mut MatmulScratch) {
    matmul_many(n_in, x, &mut [MatJob { ty, w, n_out, y }], scratch);
}

/// Several products of the same input (attention's q, k, v; the FFN's gate
/// and up), the activations quantized once per `vec_dot_type`. In
/// generation they run as one parallel region: each region costs a
/// fork-join and a ramp-up of the memory streams, and a token runs hundreds
/// of them.
pub fn matmul_many(n_in: usize, x: &[f32], jobs: &mut [MatJob], scratch: &mut MatmulScratch) {
    let n_tok = x.len() / n_in;
    debug_assert_eq!(x.len(), n_tok * n_in);
    // Time per weight type when profiling; a region running several products
    // splits its time by their weight bytes.
    let mut profile = scratch.profile.take();
    for chunk in jobs.chunks_mut(MAX_JOBS) {
        let kinds: [_; MAX_JOBS] =
            std::array::from_fn(|i| chunk.get(i).map_or((OpKind::Attention, 0), |j| (OpKind::Matmul(j.ty), j.w.len() as u64)));
        profile::timed(&mut profile, &kinds[..chunk.len()], || {
            if n_tok >= TILE_MIN_TOK {
                matmul_batch(n_in, x, chunk, scratch)
            } else {
                matmul_gen(n_in, x, chunk, scratch)
            }
        });
    }
    scratch.profile = profile;
}

/// Quantizes `x` (`n_tok × n_in`) to `act_ty` at the end of `act`; its offset.
fn quantize_act(k: &CpuKernels, act_ty: GgmlType, n_in: usize, x: &[f32], act: &mut Vec<u8>) -> usize {
    let act_row = act_ty.row_size(n_in).expect("activation row is a whole number of blocks");
    let off = act.len();
    act.resize(off + x.len() / n_in * act_row, 0);
    team::for_each_chunk_mut(&mut act[off..], act_row, |t, dst| (k.quantize_act)(act_ty, &x[t * n_in..(t + 1) * n_in], dst));
    off
}

/// The aux of every activation row of `act` at the end of `aux`; its offset (in u32).
fn act_aux(fmt: &TileFormat, n_in: usize, act: &[u8], act_row: usize, aux: &mut Vec<u32>) -> usize {
    let aux_row = (fmt.aux_size)(n_in) / 4;
    let off = aux.len();
    aux.resize(off + act.len() / act_row * aux_row, 0);
    team::for_each_chunk_mut(&mut aux[off..], aux_row, |t, dst| {
        (fmt.aux)(n_in, &act[t * act_row..(t + 1) * act_row], bytemuck::cast_slice_mut(dst))
    });
    off
}

/// Where [`prepare`] put each job's inputs: its activations (offset in
/// `act`, row size) and, where it has a kernel, that kernel with the offset
/// (in u32) of the aux it reads in `aux`.
type Prepared<F> = [(usize, usize, Option<(&'static TileFormat, F, usize)>); MAX_JOBS];

/// Quantizes `x` once per `vec_dot_type` of the jobs, and for each job whose
/// weight type `kernel` gives a kernel (strips, 8 rows), the aux layout that
/// kernel reads, once per activation buffer and layout.
fn prepare<F: Copy>(
    n_in: usize,
    x: &[f32],
    jobs: &[MatJob],
    scratch: &mut MatmulScratch,
    kernel: impl Fn(GgmlType) -> Option<(&'static TileFormat, F)>,
) -> Prepared<F> {
    let (n_tok, k) = (x.len() / n_in, scratch.kernels);
    scratch.act.clear();
    scratch.aux.clear();
    let mut at: Prepared<F> = [(0, 0, None); MAX_JOBS];
    for i in 0..jobs.len() {
        let act_ty = quant::vec_dot_type(jobs[i].ty);
        let same = (0..i).find(|&p| quant::vec_dot_type(jobs[p].ty) == act_ty);
        let (off, act_row) = match same {
            Some(p) => (at[p].0, at[p].1),
            None => {
                let act_row = act_ty.row_size(n_in).expect("activation row is a whole number of blocks");
                (quantize_act(k, act_ty, n_in, x, &mut scratch.act), act_row)
            }
        };
        let kern = kernel(jobs[i].ty).map(|(fmt, f)| {
            let earlier = (0..i).filter(|&p| at[p].0 == off).find_map(|p| at[p].2.filter(|e| std::ptr::eq(e.0, fmt)));
            let aux_off = match earlier {
                Some(e) => e.2,
                None => act_aux(fmt, n_in, &scratch.act[off..off + n_tok * act_row], act_row, &mut scratch.aux),
            };
            (fmt, f, aux_off)
        });
        at[i] = (off, act_row, kern);
    }
    at
}

/// Prompt processing: the jobs one after another, with the activations
/// quantized once per `vec_dot_type` and their aux once per strip layout
/// for all of them (quantizing a batch costs about as much as the dots of
/// a small product, such as k or v with few KV heads).
fn matmul_batch(n_in: usize, x: &[f32], jobs: &mut [MatJob], scratch: &mut MatmulScratch) {
    let n_tok = x.len() / n_in;
    let k = scratch.kernels;
    let at = prepare(n_in, x, jobs, scratch, |ty| k.tile(ty).filter(|(fmt, _)| n_tok >= fmt.min_tok));
    for (j, &(off, act_row, strips)) in jobs.iter_mut().zip(&at) {
        let act = &scratch.act[off..off + n_tok * act_row];
        let strips = strips.map(|(fmt, dot, a)| (fmt, dot, &bytemuck::cast_slice(&scratch.aux[a..])[..n_tok * (fmt.aux_size)(n_in)]));
        batch_job(j, n_in, act, act_row, strips, k);
    }
}

/// One product of a prompt batch: strip tiles where the table has them,
/// else row kernels over tiles of tokens.
fn batch_job(
    j: &mut MatJob,
    n_in: usize,
    act: &[u8],
    act_row: usize,
    strips: Option<(&'static TileFormat, super::simd::tile::TileDotFn, &[u8])>,
    k: &CpuKernels,
) {
    let (ty, w, n_out) = (j.ty, j.w, j.n_out);
    let n_tok = act.len() / act_row;
    debug_assert_eq!(j.y.len(), n_tok * n_out);
    let w_row = ty.row_size(n_in).expect("weight row is a whole number of blocks");
    debug_assert_eq!(w.len(), n_out * w_row);
    let n_threads = rayon::current_num_threads().max(1);
    let yp = SharedMut(j.y.as_mut_ptr());

    let mut tiled_rows = 0;
    if let Some((fmt, dot, aux)) = strips {
        let aux_row = (fmt.aux_size)(n_in);
        // Wide (16-row) strips where the table has them, 8-row ones for the rest.
        if let Some((pack, dot)) = k.wide(ty) {
            let (packed_size, rows) = (2 * (fmt.packed_size)(n_in), n_out / WIDE_ROWS * WIDE_ROWS);
            let tiles = Tiles { pack, packed_size, dot, n_in, n_out, rows: 0..rows, n_tok, w, w_row, act, act_row, aux, aux_row };
            tiles.run(n_threads, yp);
            tiled_rows = rows;
        }
        let rows = tiled_rows..tiled_rows + (n_out - tiled_rows) / ROWS * ROWS;
        if !rows.is_empty() {
            let packed_size = (fmt.packed_size)(n_in);
            let tiles =
                Tiles { pack: fmt.pack, packed_size, dot, n_in, n_out, rows: rows.clone(), n_tok, w, w_row, act, act_row, aux, aux_row };
            tiles.run(n_threads, yp);
        }
        tiled_rows = rows.end;
    }

    // Rows per task: enough tasks to balance, few enough to keep overhead low.
    let rows = n_out - tiled_rows;
    let rows_per_task = (rows / (n_threads * 8)).clamp(1, 256);
    team::for_each(rows.div_ceil(rows_per_task), |task| {
        // The whole SharedMut (Send), not its raw pointer field, into the closure.
        #[allow(clippy::redundant_locals)]
        let yp = yp;
        let r0 = tiled_rows + task * rows_per_task;
        let r1 = (r0 + rows_per_task).min(n_out);
        for t0 in (0..n_tok).step_by(TOK_TILE) {
            let t1 = (t0 + TOK_TILE).min(n_tok);
            for o in r0..r1 {
                let wr = &w[o * w_row..(o + 1) * w_row];
                for t in t0..t1 {
                    let v = k.vec_dot(ty, n_in, wr, &act[t * act_row..(t + 1) * act_row]);
                    // SAFETY: each (t, o) is written by exactly one task (o is in
                    // this task's disjoint row range) and y outlives the scope.
                    unsafe { *yp.0.add(t * n_out + o) = v };
                }
            }
        }
    });
}

/// Most products in one generation region (q, k, v is the most we need).
const MAX_JOBS: usize = 4;

/// What a generation task needs of its job.
#[derive(Clone, Copy)]
struct GenJob<'a> {
    ty: GgmlType,
    w: &'a [u8],
    w_row: usize,
    n_out: usize,
    y: SharedMut<f32>,
    act: &'a [u8],
    act_row: usize,
    /// The 8-row kernel and the activations' aux, where the table has one.
    rows: Option<(RowsDotFn, &'a [u8], usize)>,
}

/// Generation (fewer than [`TILE_MIN_TOK`] tokens): every job's rows in one
/// parallel region, 8 rows at a time where the table has an 8-row kernel.
fn matmul_gen(n_in: usize, x: &[f32], jobs: &mut [MatJob], scratch: &mut MatmulScratch) {
    let n_tok = x.len() / n_in;
    let k = scratch.kernels;
    debug_assert!(jobs.iter().all(|j| j.y.len() == n_tok * j.n_out));
    let at = prepare(n_in, x, jobs, scratch, |ty| k.rows(ty));
    let (act, aux): (&[u8], &[u32]) = (&scratch.act, &scratch.aux);
    let views: [Option<GenJob>; MAX_JOBS] = std::array::from_fn(|i| {
        let j = jobs.get_mut(i)?;
        let (off, act_row, rows) = at[i];
        let w_row = j.ty.row_size(n_in).expect("weight row is a whole number of blocks");
        debug_assert_eq!(j.w.len(), j.n_out * w_row);
        let rows = rows.map(|(fmt, dot, a)| {
            let aux_row = (fmt.aux_size)(n_in);
            (dot, &bytemuck::cast_slice(&aux[a..])[..n_tok * aux_row], aux_row)
        });
        Some(GenJob {
            ty: j.ty,
            w: j.w,
            w_row,
            n_out: j.n_out,
            y: SharedMut(j.y.as_mut_ptr()),
            act: &act[off..off + n_tok * act_row],
            act_row,
            rows,
        })
    });

    // Tasks of equal row counts (a multiple of ROWS), enough to balance the
    // threads, none spanning two jobs.
    let n_threads = rayon::current_num_threads().max(1);
    let total: usize = jobs.iter().map(|j| j.n_out).sum();
    let per_task = (total / (n_threads * 8)).div_ceil(ROWS).clamp(1, 64) * ROWS;
    scratch.tasks.clear();
    for (i, j) in jobs.iter().enumerate() {
        scratch.tasks.extend((0..j.n_out).step_by(per_task).map(|r0| (i, r0, (r0 + per_task).min(j.n_out))));
    }
    let tasks = &scratch.tasks[..];
    team::for_each(tasks.len(), |t| {
        let (i, r0, r1) = tasks[t];
        let j = views[i].expect("a task's job is in the region");
        let mut r = r0;
        if let Some((dot, aux, aux_row)) = j.rows {
            while r + ROWS <= r1 {
                let wg = &j.w[r * j.w_row..(r + ROWS) * j.w_row];
                for t in 0..n_tok {
                    let a = &aux[t * aux_row..(t + 1) * aux_row];
                    let v = dot(n_in, wg, &j.act[t * j.act_row..(t + 1) * j.act_row], a);
                    // SAFETY: each (t, row) of a job is written by exactly one
                    // task (their row ranges are disjoint) and y outlives the
                    // region; the 8 rows are < r1 ≤ n_out.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), j.y.0.add(t * j.n_out + r), ROWS) };
                }
                r += ROWS;
            }
        }
        for o in r..r1 {
            let wr = &j.w[o * j.w_row..(o + 1) * j.w_row];
            for t in 0..n_tok {
                let v = k.vec_dot(j.ty, n_in, wr, &j.act[t * j.act_row..(t + 1) * j.act_row]);
                // SAFETY: as above.
                unsafe { *j.y.0.add(t * j.n_out + o) = v };
            }
        }
    });
}

/// One matmul's strip-tiled part: `rows` (a multiple of `R`), all tokens,
/// in strips of `R` rows dotted with up to `T` tokens per call.
#[allow(clippy::type_complexity)] // `dot` is the strip kernel's signature, spelled out
struct Tiles<'a, const R: usize, const T: usize> {
    pack: PackFn,
    /// Bytes of one packed strip.
    packed_size: usize,
    dot: fn(usize, &[u8], &[&[u8]], &[&[u8]]) -> [[f32; R]; T],
    n_in: usize,
    n_out: usize,
    rows: std::ops::Range<usize>,
    n_tok: usize,
    w: &'a [u8],
    w_row: usize,
    act: &'a [u8],
    act_row: usize,
    aux: &'a [u8],
    aux_row: usize,
}

impl<const R: usize, const T: usize> Tiles<'_, R, T> {
    fn run(&self, n_threads: usize, yp: SharedMut<f32>) {
        let n_strips = self.rows.len() / R;
        let strips_per_task = (n_strips / (n_threads * 8)).clamp(1, 64);
        team::for_each(n_strips.div_ceil(strips_per_task), |task| {
            // The whole SharedMut (Send), not its raw pointer field, into the closure.
            #[allow(clippy::redundant_locals)]
            let yp = yp;
            // u32 storage: the packed structs hold f32/i32.
            let mut packed = vec![0u32; self.packed_size / 4];
            let s0 = task * strips_per_task;
            for s in s0..(s0 + strips_per_task).min(n_strips) {
                let r0 = self.rows.start + s * R;
                let packed = bytemuck::cast_slice_mut(&mut packed);
                (self.pack)(self.n_in, &self.w[r0 * self.w_row..(r0 + R) * self.w_row], packed);
                // Every token against the strip while it is in L1.
                for t0 in (0..self.n_tok).step_by(T) {
                    let t1 = (t0 + T).min(self.n_tok);
                    let act: [&[u8]; T] = std::array::from_fn(|i| self.row(self.act, self.act_row, t0 + i));
                    let aux: [&[u8]; T] = std::array::from_fn(|i| self.row(self.aux, self.aux_row, t0 + i));
                    let v = (self.dot)(self.n_in, packed, &act[..t1 - t0], &aux[..t1 - t0]);
                    for (t, v) in (t0..t1).zip(v) {
                        // SAFETY: each (t, row) is written by exactly one task (its
                        // strips are disjoint) and y outlives the scope; the R
                        // rows of a strip are < n_out.
                        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), yp.0.add(t * self.n_out + r0), R) };
                    }
                }
            }
        });
    }

    /// Row `t` of `rows` (empty past the last token: unused slots of a call).
    fn row<'b>(&self, rows: &'b [u8], len: usize, t: usize) -> &'b [u8] {
        rows.get(t * len..(t + 1) * len).unwrap_or(&[])
    }
}
