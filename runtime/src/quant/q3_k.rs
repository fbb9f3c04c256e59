//! Q3_K: 256 weights per 110-byte super-block, 16 sub-blocks of 16, 3-bit.
//!
//! ```text
//! u8  hmask[32]   high bits: element 32k + l has bit k of hmask[l]  (k < 8)
//! u8  qs[64]      low 2 bits, laid out as Q2_K's qs
//! u8  scales[12]  16 signed 6-bit scales (see `common::q3k_scales`)
//! f16 d           super-block scale
//! y = d*s[element / 16] * (low2 - (high ? 0 : 4))
//! ```
//! Dotted against Q8_K activations.

use super::common::{blocks, f16_to_f32, kquant_lanes, q3k_scales, F16};
use super::q8_k::BlockQ8K;
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: F16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// The 256 signed quants (-4..4) in element order.
#[inline(always)]
fn unpack(b: &BlockQ3K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for n in 0..2 {
        for j in 0..4 {
            let m = 1u8 << (4 * n + j);
            for l in 0..32 {
                let lo = ((b.qs[32 * n + l] >> (2 * j)) & 3) as i8;
                a[128 * n + 32 * j + l] = lo - if b.hmask[l] & m != 0 { 0 } else { 4 };
            }
        }
    }
    a
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ3K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d_all = f16_to_f32(b.d);
        let s = q3k_scales(&b.scales);
        let a = unpack(b);
        for (j, (y, a)) in y.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let dl = d_all * s[j] as f32;
            for (y, &q) in y.iter_mut().zip(a) {
                *y = dl * q as f32;
            }
        }
    }
}

/// Q3_K weights · Q8_K activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ3K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / QK_K && y.len() == x.len());
    let mut sums = [0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let sc = q3k_scales(&x.scales).map(|s| s as i32);
        let aux32 = kquant_lanes(&y.qs, &unpack(x), &sc);
        let d = f16_to_f32(x.d) * y.d();
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    sums.iter().fold(0f32, |s, v| s + v)
}
