//! Q6_K: 256 weights per 210-byte super-block, 16 sub-blocks of 16, 6-bit
//! symmetric with signed 8-bit scales.
//!
//! ```text
//! u8  ql[128]     low 4 bits   } for half h < 2, l < 32 (ql += 64h, qh += 32h):
//! u8  qh[64]      high 2 bits  }   element 128h + l      : ql[l] & 0xF,    qh[l] bits 0-1
//!                                  element 128h + 32 + l : ql[l+32] & 0xF, qh[l] bits 2-3
//!                                  element 128h + 64 + l : ql[l] >> 4,     qh[l] bits 4-5
//!                                  element 128h + 96 + l : ql[l+32] >> 4,  qh[l] bits 6-7
//! i8  scales[16]  per 16 elements
//! f16 d           super-block scale
//! y = d * scales[element / 16] * (q - 32)
//! ```
//! Dotted against Q8_K activations.

use super::common::{blocks, f16_to_f32, kquant_lanes, F16};
use super::q8_k::BlockQ8K;
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: F16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// The 256 signed quants (-32..32) in element order.
#[inline(always)]
pub(crate) fn unpack(b: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
        let a = &mut a[128 * h..128 * h + 128];
        for l in 0..32 {
            a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ6K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let a = unpack(b);
        for (j, (y, a)) in y.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let dl = d * b.scales[j] as f32;
            for (y, &q) in y.iter_mut().zip(a) {
                *y = dl * q as f32;
            }
        }
    }
}

/// Q6_K weights · Q8_K activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ6K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / QK_K && y.len() == x.len());
    let mut sums = [0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let sc = x.scales.map(|s| s as i32);
        let aux32 = kquant_lanes(&y.qs, &unpack(x), &sc);
        let d = f16_to_f32(x.d) * y.d();
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    sums.iter().fold(0f32, |s, v| s + v)
}
