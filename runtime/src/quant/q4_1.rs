//! Q4_1: 32 weights per 20-byte block, 4-bit with a min.
//!
//! ```text
//! f16 d        scale
//! f16 m        min
//! u8  qs[16]   low nibble: element j, high nibble: element j+16
//! y[j] = (qs[j] & 0xF) * d + m ;  y[j+16] = (qs[j] >> 4) * d + m
//! ```
//! Dotted against Q8_1 activations (the min term uses their `s = d·Σq`).

use super::common::{blocks, f16_to_f32, F16};
use super::q8_1::BlockQ8_1;

pub const QK4_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    pub d: F16,
    pub m: F16,
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ4_1>(src).iter().zip(dst.chunks_exact_mut(QK4_1)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        let (lo, hi) = y.split_at_mut(QK4_1 / 2);
        for j in 0..QK4_1 / 2 {
            lo[j] = (b.qs[j] & 0xF) as f32 * d + m;
            hi[j] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// Q4_1 weights · Q8_1 activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4_1>(w), blocks::<BlockQ8_1>(act));
    debug_assert!(x.len() == n / QK4_1 && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK4_1 / 2 {
            sumi0 += (x.qs[j] & 0xF) as i32 * y.qs[j] as i32;
            sumi1 += (x.qs[j] >> 4) as i32 * y.qs[j + QK4_1 / 2] as i32;
        }
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * (sumi0 + sumi1) as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
    }
    sumf
}
