//! Q5_K: 256 weights per 176-byte super-block, 8 sub-blocks of 32, 5-bit
//! with per-sub-block 6-bit scale and min (Q4_K plus a fifth bit).
//!
//! ```text
//! f16 d           super-block scale of the scales
//! f16 dmin        super-block scale of the mins
//! u8  scales[12]  as Q4_K
//! u8  qh[32]      fifth bits: element 32k + l has bit k of qh[l]  (k < 8)
//! u8  qs[128]     low 4 bits, laid out as Q4_K's qs
//! y = d*sc_j * q - dmin*m_j        (j = element / 32)
//! ```
//! Dotted against Q8_K activations; the min term uses their bsums.

use super::common::{blocks, f16_to_f32, F16};
use super::q4_k::{dequantize_k4, dot_k4};
use super::q8_k::BlockQ8K;
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5K {
    pub d: F16,
    pub dmin: F16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// The 256 quants (0..32) in element order.
#[inline(always)]
pub(crate) fn unpack(b: &BlockQ5K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for c in 0..4 {
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            a[64 * c + l] = ((q & 0xF) + if b.qh[l] & u1 != 0 { 16 } else { 0 }) as i8;
            a[64 * c + 32 + l] = ((q >> 4) + if b.qh[l] & u2 != 0 { 16 } else { 0 }) as i8;
        }
    }
    a
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ5K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        dequantize_k4(f16_to_f32(b.d), f16_to_f32(b.dmin), &b.scales, &unpack(b), y);
    }
}

/// Q5_K weights · Q8_K activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ5K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / QK_K && y.len() == x.len());
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        sumf -= dot_k4(f16_to_f32(x.d), f16_to_f32(x.dmin), &x.scales, &unpack(x), y, &mut sums);
    }
    sums.iter().fold(sumf, |s, v| s + v)
}
