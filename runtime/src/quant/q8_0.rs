//! Q8_0: 32 weights per 34-byte block.
//!
//! ```text
//! f16 d        scale
//! i8  qs[32]   y[j] = qs[j] * d
//! ```
//! Also the activation format that Q4_0, Q5_0 and Q8_0 weights are dotted
//! against (ggml `quantize_row_q8_0_ref`).

use super::common::{blocks, blocks_mut, f16_to_f32, f32_to_f16, round_i8, F16};

pub const QK8_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    pub d: F16,
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ8_0>(src).iter().zip(dst.chunks_exact_mut(QK8_0)) {
        let d = f16_to_f32(b.d);
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// d = amax/127, qs = round(x/d) (half away from zero, as `roundf`).
pub fn quantize_row(x: &[f32], dst: &mut [u8]) {
    for (x, b) in x.chunks_exact(QK8_0).zip(blocks_mut::<BlockQ8_0>(dst)) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = round_i8(v * id);
        }
    }
}

/// Q8_0 weights · Q8_0 activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ8_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / QK8_0 && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..QK8_0 {
            sumi += x.qs[j] as i32 * y.qs[j] as i32;
        }
        sumf += sumi as f32 * (f16_to_f32(x.d) * f16_to_f32(y.d));
    }
    sumf
}
