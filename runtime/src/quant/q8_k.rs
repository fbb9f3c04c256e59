//! Q8_K: 256 values per 292-byte block; activation format only (dotted with
//! the K-quant weights, ggml `quantize_row_q8_K_ref`).
//!
//! ```text
//! f32 d          scale (full precision)
//! i8  qs[256]    y[j] = qs[j] * d
//! i16 bsums[16]  sum of qs[16i..16i+16], for the weight's min terms
//! ```
//! `d` and `bsums` are stored as little-endian bytes so the block has
//! alignment 1 (ggml's has 4); the layout is the same.

use super::common::{blocks, blocks_mut, nearest_int};
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [[u8; 2]; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i32 {
        i16::from_le_bytes(self.bsums[j]) as i32
    }
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ8K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = d * q as f32;
        }
    }
}

/// `max` = the element of largest magnitude (its sign kept), iscale =
/// -127/max, qs = nearest_int(iscale·x) (half to even) capped at 127,
/// d = 1/iscale. An all-zero block gets d = 0, qs = 0, bsums = 0.
pub fn quantize_row(x: &[f32], dst: &mut [u8]) {
    for (x, b) in x.chunks_exact(QK_K).zip(blocks_mut::<BlockQ8K>(dst)) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (j, s) in b.bsums.iter_mut().enumerate() {
            let sum: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            *s = (sum as i16).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}
