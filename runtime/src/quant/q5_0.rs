//! Q5_0: 32 weights per 22-byte block, symmetric 5-bit.
//!
//! ```text
//! f16 d        scale
//! u8  qh[4]    fifth bits: bit j of the little-endian u32 belongs to element j
//! u8  qs[16]   low nibble: element j, high nibble: element j+16
//! y[j] = (((qs[j] & 0xF) | h_j << 4) - 16) * d ; y[j+16] likewise with qs[j] >> 4, h_(j+16)
//! ```
//! Dotted against Q8_0 activations.

use super::common::{blocks, f16_to_f32, F16};
use super::q8_0::BlockQ8_0;

pub const QK5_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    pub d: F16,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// The 5-bit unsigned quants (0..32) of elements j and j+16, shared with Q5_1.
#[inline(always)]
pub(super) fn q5_pair(qs: &[u8; 16], qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) & 1) << 4;
    let h1 = ((qh >> (j + 16)) & 1) << 4;
    (((qs[j] & 0xF) as u32 | h0) as i32, ((qs[j] >> 4) as u32 | h1) as i32)
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ5_0>(src).iter().zip(dst.chunks_exact_mut(QK5_0)) {
        let d = f16_to_f32(b.d);
        let qh = u32::from_le_bytes(b.qh);
        let (lo, hi) = y.split_at_mut(QK5_0 / 2);
        for j in 0..QK5_0 / 2 {
            let (q0, q1) = q5_pair(&b.qs, qh, j);
            lo[j] = (q0 - 16) as f32 * d;
            hi[j] = (q1 - 16) as f32 * d;
        }
    }
}

/// Q5_0 weights · Q8_0 activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ5_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / QK5_0 && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(x.qh);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK5_0 / 2 {
            let (q0, q1) = q5_pair(&x.qs, qh, j);
            sumi0 += (q0 - 16) * y.qs[j] as i32;
            sumi1 += (q1 - 16) * y.qs[j + QK5_0 / 2] as i32;
        }
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * (sumi0 + sumi1) as f32;
    }
    sumf
}
