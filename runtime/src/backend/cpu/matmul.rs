//! Quantized matrix products the ggml way: the activations are quantized once
//! to the weight type's `vec_dot_type` (Q8_0, Q8_1, Q8_K, F16 …), then every
//! output element is an integer-friendly `vec_dot` of a weight row with an
//! activation row. Work is split over threads by blocks of weight rows; each
//! weight row is read once per call and dotted with every token's activations.

use rayon::prelude::*;

use super::simd::tile::{TileDotFn, TileFormat, ROWS, TOKS};
use super::simd::{CpuKernels, SCALAR};
use super::SharedMut;
use crate::quant::{self, GgmlType};

/// Reused buffer for quantized activations (no allocation once warm), and
/// the kernel table of the backend running the forward pass.
pub struct MatmulScratch {
    act: Vec<u8>,
    /// Per-token side data of the tile kernels (u32: its structs hold f32/i32).
    aux: Vec<u32>,
    pub kernels: &'static CpuKernels,
}

impl Default for MatmulScratch {
    fn default() -> Self {
        MatmulScratch { act: Vec::new(), aux: Vec::new(), kernels: &SCALAR }
    }
}

/// Tokens per tile in prompt processing: a tile's quantized activations
/// (16 × ~1-3 KiB) stay in L1 while a task's weight rows stream through it,
/// so each weight block loaded is reused by 16 tokens before it is evicted.
const TOK_TILE: usize = 16;

/// From this many tokens on, the strip tile kernels (when the table has
/// one for the format) beat the row kernels: packing a strip costs about
/// as much as dotting it with one token.
const TILE_MIN_TOK: usize = 4;

/// `y[t][o] = Σ_i W[o][i] · x[t][i]`.
///
/// `w`: `n_out` rows of `n_in` elements of `ty` (`w.len() == n_out · row_size`);
/// `x`: `n_tok × n_in` f32; `y`: `n_tok × n_out` f32.
pub fn matmul(
    ty: GgmlType,
    w: &[u8],
    n_in: usize,
    n_out: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let n_tok = x.len() / n_in;
    debug_assert_eq!(x.len(), n_tok * n_in);
    debug_assert_eq!(y.len(), n_tok * n_out);
    let act_ty = quant::vec_dot_type(ty);
    let act_row = act_ty.row_size(n_in).expect("activation row is a whole number of blocks");
    let w_row = ty.row_size(n_in).expect("weight row is a whole number of blocks");
    debug_assert_eq!(w.len(), n_out * w_row);

    scratch.act.resize(n_tok * act_row, 0);
    let act = &mut scratch.act[..n_tok * act_row];
    act.par_chunks_mut(act_row)
        .zip(x.par_chunks(n_in))
        .for_each(|(dst, src)| quant::quantize_row_act(act_ty, src, dst));
    let act = &*act;
    let k = scratch.kernels;
    let n_threads = rayon::current_num_threads().max(1);
    let yp = SharedMut(y.as_mut_ptr());

    let mut tiled_rows = 0;
    if n_tok >= TILE_MIN_TOK {
        if let Some((fmt, dot)) = k.tile(ty) {
            tiled_rows = n_out / ROWS * ROWS;
            let aux_row = (fmt.aux_size)(n_in) / 4;
            scratch.aux.resize(n_tok * aux_row, 0);
            let aux = &mut scratch.aux[..n_tok * aux_row];
            aux.par_chunks_mut(aux_row)
                .zip(act.par_chunks(act_row))
                .for_each(|(dst, a)| (fmt.aux)(n_in, a, bytemuck::cast_slice_mut(dst)));
            let aux: &[u8] = bytemuck::cast_slice(&*aux);
            let tiles = Tiles { fmt, dot, n_in, n_out, n_tok, w, w_row, act, act_row, aux, aux_row: aux_row * 4 };
            tiles.run(n_threads, yp);
        }
    }

    // Rows per task: enough tasks to balance, few enough to keep overhead low.
    let rows = n_out - tiled_rows;
    let rows_per_task = (rows / (n_threads * 8)).clamp(1, 256);
    (0..rows.div_ceil(rows_per_task)).into_par_iter().for_each(|task| {
        let yp = yp;
        let r0 = tiled_rows + task * rows_per_task;
        let r1 = (r0 + rows_per_task).min(n_out);
        for t0 in (0..n_tok).step_by(TOK_TILE) {
            let t1 = (t0 + TOK_TILE).min(n_tok);
            for o in r0..r1 {
                let wr = &w[o * w_row..(o + 1) * w_row];
                let mut t = t0;
                if let Some(f4) = k.vec_dot_x4(ty) {
                    while t + 4 <= t1 {
                        let a = |i: usize| &act[(t + i) * act_row..(t + i + 1) * act_row];
                        let v = f4(n_in, wr, [a(0), a(1), a(2), a(3)]);
                        for (i, v) in v.into_iter().enumerate() {
                            // SAFETY: as below.
                            unsafe { *yp.0.add((t + i) * n_out + o) = v };
                        }
                        t += 4;
                    }
                }
                for t in t..t1 {
                    let v = k.vec_dot(ty, n_in, wr, &act[t * act_row..(t + 1) * act_row]);
                    // SAFETY: each (t, o) is written by exactly one task (o is in
                    // this task's disjoint row range) and y outlives the scope.
                    unsafe { *yp.0.add(t * n_out + o) = v };
                }
            }
        }
    });
}

/// One matmul's strip-tiled part: rows `0..n_out / ROWS * ROWS`, all tokens.
struct Tiles<'a> {
    fmt: &'static TileFormat,
    dot: TileDotFn,
    n_in: usize,
    n_out: usize,
    n_tok: usize,
    w: &'a [u8],
    w_row: usize,
    act: &'a [u8],
    act_row: usize,
    aux: &'a [u8],
    aux_row: usize,
}

impl Tiles<'_> {
    fn run(&self, n_threads: usize, yp: SharedMut<f32>) {
        let n_strips = self.n_out / ROWS;
        let strips_per_task = (n_strips / (n_threads * 8)).clamp(1, 64);
        (0..n_strips.div_ceil(strips_per_task)).into_par_iter().for_each(|task| {
            let yp = yp;
            // u32 storage: the packed structs hold f32/i32.
            let mut packed = vec![0u32; (self.fmt.packed_size)(self.n_in) / 4];
            let s0 = task * strips_per_task;
            for s in s0..(s0 + strips_per_task).min(n_strips) {
                let r0 = s * ROWS;
                let packed = bytemuck::cast_slice_mut(&mut packed);
                (self.fmt.pack)(self.n_in, &self.w[r0 * self.w_row..(r0 + ROWS) * self.w_row], packed);
                // Every token against the strip while it is in L1.
                for t0 in (0..self.n_tok).step_by(TOKS) {
                    let t1 = (t0 + TOKS).min(self.n_tok);
                    let act: [&[u8]; TOKS] = std::array::from_fn(|i| self.row(self.act, self.act_row, t0 + i));
                    let aux: [&[u8]; TOKS] = std::array::from_fn(|i| self.row(self.aux, self.aux_row, t0 + i));
                    let v = (self.dot)(self.n_in, packed, &act[..t1 - t0], &aux[..t1 - t0]);
                    for (t, v) in (t0..t1).zip(v) {
                        // SAFETY: each (t, row) is written by exactly one task (its
                        // strips are disjoint) and y outlives the scope; the 8
                        // rows of a strip are < n_out.
                        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), yp.0.add(t * self.n_out + r0), ROWS) };
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
