//! Q8_1: 32 values per 36-byte block; activation format only (dotted with
//! Q4_1 and Q5_1 weights, ggml `quantize_row_q8_1_ref`).
//!
//! ```text
//! f16 d        scale
//! f16 s        d * Σ qs  (lets the weight's min term skip a pass over qs)
//! i8  qs[32]   y[j] = qs[j] * d
//! ```

use super::common::{blocks, blocks_mut, f16_to_f32, f32_to_f16, round_i8, F16};

pub const QK8_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    pub d: F16,
    pub s: F16,
    pub qs: [i8; QK8_1],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ8_1>(src).iter().zip(dst.chunks_exact_mut(QK8_1)) {
        let d = f16_to_f32(b.d);
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// d = amax/127, qs = round(x/d) (half away from zero), s = d·Σqs with the
/// unrounded f32 d.
pub fn quantize_row(x: &[f32], dst: &mut [u8]) {
    for (x, b) in x.chunks_exact(QK8_1).zip(blocks_mut::<BlockQ8_1>(dst)) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = round_i8(v * id);
            sum += *q as i32;
        }
        b.s = f32_to_f16(sum as f32 * d);
    }
}
