//! Q5_1: 32 weights per 24-byte block, 5-bit with a min.
//!
//! ```text
//! f16 d        scale
//! f16 m        min
//! u8  qh[4]    fifth bits: bit j of the little-endian u32 belongs to element j
//! u8  qs[16]   low nibble: element j, high nibble: element j+16
//! y[j] = ((qs[j] & 0xF) | h_j << 4) * d + m ; y[j+16] likewise with qs[j] >> 4, h_(j+16)
//! ```
//! Dotted against Q8_1 activations (the min term uses their `s = d·Σq`).

use super::common::{blocks, f16_to_f32, F16};
use super::q5_0::q5_pair;
use super::q8_1::BlockQ8_1;

pub const QK5_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    pub d: F16,
    pub m: F16,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ5_1>(src).iter().zip(dst.chunks_exact_mut(QK5_1)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        let qh = u32::from_le_bytes(b.qh);
        let (lo, hi) = y.split_at_mut(QK5_1 / 2);
        for j in 0..QK5_1 / 2 {
            let (q0, q1) = q5_pair(&b.qs, qh, j);
            lo[j] = q0 as f32 * d + m;
            hi[j] = q1 as f32 * d + m;
        }
    }
}

/// Q5_1 weights · Q8_1 activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ5_1>(w), blocks::<BlockQ8_1>(act));
    debug_assert!(x.len() == n / QK5_1 && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(x.qh);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK5_1 / 2 {
            let (q0, q1) = q5_pair(&x.qs, qh, j);
            sumi0 += q0 * y.qs[j] as i32;
            sumi1 += q1 * y.qs[j + QK5_1 / 2] as i32;
        }
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * (sumi0 + sumi1) as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
    }
    sumf
}
