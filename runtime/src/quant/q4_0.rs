//! Q4_0: 32 weights per 18-byte block, symmetric 4-bit.
//!
//! ```text
//! f16 d        scale
//! u8  qs[16]   low nibble: element j, high nibble: element j+16
//! y[j] = ((qs[j] & 0xF) - 8) * d ;  y[j+16] = ((qs[j] >> 4) - 8) * d
//! ```
//! Dotted against Q8_0 activations.

use super::common::{blocks, f16_to_f32, F16};
use super::q8_0::BlockQ8_0;

pub const QK4_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    pub d: F16,
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ4_0>(src).iter().zip(dst.chunks_exact_mut(QK4_0)) {
        let d = f16_to_f32(b.d);
        let (lo, hi) = y.split_at_mut(QK4_0 / 2);
        for j in 0..QK4_0 / 2 {
            lo[j] = ((b.qs[j] & 0xF) as i32 - 8) as f32 * d;
            hi[j] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_0 weights · Q8_0 activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / QK4_0 && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK4_0 / 2 {
            let v0 = (x.qs[j] & 0xF) as i32 - 8;
            let v1 = (x.qs[j] >> 4) as i32 - 8;
            sumi0 += v0 * y.qs[j] as i32;
            sumi1 += v1 * y.qs[j + QK4_0 / 2] as i32;
        }
        sumf += (sumi0 + sumi1) as f32 * f16_to_f32(x.d) * f16_to_f32(y.d);
    }
    sumf
}

/// Weight-side quantizer (ggml `quantize_row_q4_0_ref`): d = max/-8 with
/// `max` the element of largest magnitude (its sign kept), q = min(15,
/// trunc(x/d + 8.5)). Used to write synthetic benchmark models.
pub fn quantize_row(x: &[f32], dst: &mut [u8]) {
    use super::common::{blocks_mut, f32_to_f16};
    for (x, b) in x.chunks_exact(QK4_0).zip(blocks_mut::<BlockQ4_0>(dst)) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        for j in 0..QK4_0 / 2 {
            let x0 = ((x[j] * id + 8.5) as i32).min(15) as u8;
            let x1 = ((x[j + QK4_0 / 2] * id + 8.5) as i32).min(15) as u8;
            b.qs[j] = x0 | (x1 << 4);
        }
    }
}
