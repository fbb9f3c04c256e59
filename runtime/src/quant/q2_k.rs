//! Q2_K: 256 weights per 84-byte super-block, 16 sub-blocks of 16, 2-bit.
//!
//! ```text
//! u8  scales[16]  per sub-block: low nibble scale, high nibble min
//! u8  qs[64]      2-bit quants: element 128n + 32j + 16h + l is bits 2j..2j+2
//!                 of qs[32n + 16h + l]   (n < 2, j < 4, h < 2, l < 16)
//! f16 d           super-block scale of the scales
//! f16 dmin        super-block scale of the mins
//! y = d*(sc & 0xF) * q - dmin*(sc >> 4)      (sc = scales[element / 16])
//! ```
//! Dotted against Q8_K activations; the min term uses their bsums.

use super::common::{blocks, f16_to_f32, kquant_lanes, F16};
use super::q8_k::BlockQ8K;
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: F16,
    pub dmin: F16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// The 256 quants (0..4) in element order.
#[inline(always)]
fn unpack(b: &BlockQ2K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                a[128 * n + 32 * j + l] = ((b.qs[32 * n + l] >> (2 * j)) & 3) as i8;
            }
        }
    }
    a
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ2K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let a = unpack(b);
        for (j, (y, a)) in y.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let dl = d * (b.scales[j] & 0xF) as f32;
            let ml = dmin * (b.scales[j] >> 4) as f32;
            for (y, &q) in y.iter_mut().zip(a) {
                *y = dl * q as f32 - ml;
            }
        }
    }
}

/// Q2_K weights · Q8_K activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ2K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / QK_K && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let summs: i32 = (0..16).map(|j| y.bsum(j) * (x.scales[j] >> 4) as i32).sum();
        let sc = x.scales.map(|s| (s & 0xF) as i32);
        let dall = y.d() * f16_to_f32(x.d);
        let dmin = y.d() * f16_to_f32(x.dmin);
        let isum: i32 = kquant_lanes(&y.qs, &unpack(x), &sc).iter().sum();
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}
