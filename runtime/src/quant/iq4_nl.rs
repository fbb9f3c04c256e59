//! IQ4_NL: 32 weights per 18-byte block, 4-bit indices into a fixed
//! non-linear table of 16 signed values (denser near zero, where weights are).
//!
//! ```text
//! f16 d        scale
//! u8  qs[16]   low nibble: index of element j, high nibble: of element j+16
//! y[j] = d * kvalues_iq4nl[qs[j] & 0xF] ;  y[j+16] = d * kvalues_iq4nl[qs[j] >> 4]
//! ```
//! The nibble order is Q4_0's. Dotted against Q8_0 activations
//! (ggml `vec_dot_type`), so the integer block sums are Σ kvalue·q8.

use super::common::{blocks, f16_to_f32, F16};
use super::q8_0::BlockQ8_0;

pub const QK4_NL: usize = 32;

/// ggml's `kvalues_iq4nl`: what each 4-bit index stands for (IQ4_NL and IQ4_XS).
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ4NL {
    pub d: F16,
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4NL>() == 18);

/// 32 elements (Q4_0's order) from 16 index bytes: `d` times their table
/// values, into `y` (shared with IQ4_XS's sub-blocks).
#[inline(always)]
pub(super) fn dequantize_32(d: f32, qs: &[u8; 16], y: &mut [f32]) {
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        lo[j] = d * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as f32;
        hi[j] = d * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
    }
}

/// Σ over 32 elements of kvalue·q8 (ggml's `sumi1 + sumi2`; shared with IQ4_XS).
#[inline(always)]
pub(super) fn isum_32(qs: &[u8; 16], q8: &[i8]) -> i32 {
    let (mut sumi1, mut sumi2) = (0i32, 0i32);
    for j in 0..16 {
        sumi1 += q8[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as i32;
        sumi2 += q8[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
    }
    sumi1 + sumi2
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockIQ4NL>(src).iter().zip(dst.chunks_exact_mut(QK4_NL)) {
        dequantize_32(f16_to_f32(b.d), &b.qs, y);
    }
}

/// IQ4_NL weights · Q8_0 activations (ggml `ggml_vec_dot_iq4_nl_q8_0_generic`:
/// d = dy·dx, then sumf += d·sumi per block).
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockIQ4NL>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / QK4_NL && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let d = f16_to_f32(y.d) * f16_to_f32(x.d);
        sumf += d * isum_32(&x.qs, &y.qs) as f32;
    }
    sumf
}
