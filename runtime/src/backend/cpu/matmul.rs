//! Quantized matrix products the ggml way: the activations are quantized once
//! to the weight type's `vec_dot_type` (Q8_0, Q8_1, Q8_K, F16 …), then every
//! output element is an integer-friendly `vec_dot` of a weight row with an
//! activation row. Work is split over threads by blocks of weight rows; each
//! weight row is read once per call and dotted with every token's activations.

use rayon::prelude::*;

use super::simd::{CpuKernels, SCALAR};
use super::SharedMut;
use crate::quant::{self, GgmlType};

/// Reused buffer for quantized activations (no allocation once warm), and
/// the kernel table of the backend running the forward pass.
pub struct MatmulScratch {
    act: Vec<u8>,
    pub kernels: &'static CpuKernels,
}

impl Default for MatmulScratch {
    fn default() -> Self {
        MatmulScratch { act: Vec::new(), kernels: &SCALAR }
    }
}

/// Tokens per tile in prompt processing: a tile's quantized activations
/// (16 × ~1-3 KiB) stay in L1 while a task's weight rows stream through it,
/// so each weight block loaded is reused by 16 tokens before it is evicted.
const TOK_TILE: usize = 16;

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

    // Rows per task: enough tasks to balance, few enough to keep overhead low.
    let n_threads = rayon::current_num_threads().max(1);
    let rows_per_task = (n_out / (n_threads * 8)).clamp(1, 256);
    let yp = SharedMut(y.as_mut_ptr());
    (0..n_out.div_ceil(rows_per_task)).into_par_iter().for_each(|task| {
        let yp = yp;
        let r0 = task * rows_per_task;
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
