//! Q4_K: 256 weights per 144-byte super-block, 8 sub-blocks of 32, 4-bit
//! with per-sub-block 6-bit scale and min.
//!
//! ```text
//! f16 d           super-block scale of the scales
//! f16 dmin        super-block scale of the mins
//! u8  scales[12]  8 scales + 8 mins, 6 bits each (see `common::get_scale_min_k4`)
//! u8  qs[128]     element 64c + l: low nibble of qs[32c + l];
//!                 element 64c + 32 + l: high nibble     (c < 4, l < 32)
//! y = d*sc_j * q - dmin*m_j        (j = element / 32)
//! ```
//! Dotted against Q8_K activations; the min term uses their bsums.

use super::common::{blocks, f16_to_f32, kquant_lanes, scale_min_k4, F16};
use super::q8_k::BlockQ8K;
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4K {
    pub d: F16,
    pub dmin: F16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// The 256 quants (0..16) in element order.
#[inline(always)]
pub(crate) fn unpack(b: &BlockQ4K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            a[64 * c + l] = (q & 0xF) as i8;
            a[64 * c + 32 + l] = (q >> 4) as i8;
        }
    }
    a
}

/// Dequantize a Q4_K/Q5_K block from its unpacked quants.
#[inline(always)]
pub(super) fn dequantize_k4(d: f32, dmin: f32, scales: &[u8; 12], a: &[i8; QK_K], y: &mut [f32]) {
    let (sc, mn) = scale_min_k4(scales);
    for (j, (y, a)) in y.chunks_exact_mut(32).zip(a.chunks_exact(32)).enumerate() {
        let d1 = d * sc[j] as f32;
        let m1 = dmin * mn[j] as f32;
        for (y, &q) in y.iter_mut().zip(a) {
            *y = d1 * q as f32 - m1;
        }
    }
}

/// One Q4_K/Q5_K block · one Q8_K block, ggml's way: returns the 8 float-
/// scaled lanes to add into `sums` and the min term to subtract.
#[inline(always)]
pub(super) fn dot_k4(d: f32, dmin: f32, scales: &[u8; 12], a: &[i8; QK_K], y: &BlockQ8K, sums: &mut [f32; 8]) -> f32 {
    let (sc, mn) = scale_min_k4(scales);
    let mut sumi = 0i32;
    for j in 0..16 {
        sumi += y.bsum(j) * mn[j / 2] as i32;
    }
    let sc16: [i32; 16] = std::array::from_fn(|j| sc[j / 2] as i32);
    let aux32 = kquant_lanes(&y.qs, a, &sc16);
    let d = d * y.d();
    for l in 0..8 {
        sums[l] += d * aux32[l] as f32;
    }
    dmin * y.d() * sumi as f32
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockQ4K>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        dequantize_k4(f16_to_f32(b.d), f16_to_f32(b.dmin), &b.scales, &unpack(b), y);
    }
}

/// Q4_K weights · Q8_K activations.
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / QK_K && y.len() == x.len());
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        sumf -= dot_k4(f16_to_f32(x.d), f16_to_f32(x.dmin), &x.scales, &unpack(x), y, &mut sums);
    }
    sums.iter().fold(sumf, |s, v| s + v)
}

/// A simple weight-side Q4_K quantizer for synthetic benchmark models (not
/// ggml's iterative `make_qkx2_quants` search): per sub-block of 32, min =
/// min(x, 0) and scale = (max - min)/15; the 8 scales and 8 mins are then
/// quantized to 6 bits against the super-block's `d` and `dmin`, and the
/// quants rounded against the quantized scale/min. Packing is ggml's.
pub fn quantize_row(x: &[f32], dst: &mut [u8]) {
    use super::common::{blocks_mut, f32_to_f16, nearest_int};
    for (x, b) in x.chunks_exact(QK_K).zip(blocks_mut::<BlockQ4K>(dst)) {
        let mut scale = [0f32; 8];
        let mut min = [0f32; 8];
        for (j, s) in x.chunks_exact(32).enumerate() {
            let mn = s.iter().fold(0f32, |m, &v| m.min(v));
            let mx = s.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            scale[j] = (mx - mn) / 15.0;
            min[j] = -mn;
        }
        let max_scale = scale.iter().fold(0f32, |m, &v| m.max(v));
        let max_min = min.iter().fold(0f32, |m, &v| m.max(v));
        let d = max_scale / 63.0;
        let dmin = max_min / 63.0;
        b.d = f32_to_f16(d);
        b.dmin = f32_to_f16(dmin);
        // Quantize against the fp16-rounded super-block scales, as dequant sees them.
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let mut ls = [0u8; 8];
        let mut lm = [0u8; 8];
        for j in 0..8 {
            ls[j] = if d > 0.0 { nearest_int(scale[j] / d).clamp(0, 63) as u8 } else { 0 };
            lm[j] = if dmin > 0.0 { nearest_int(min[j] / dmin).clamp(0, 63) as u8 } else { 0 };
        }
        // Inverse of get_scale_min_k4.
        b.scales = [0; 12];
        for j in 0..8 {
            if j < 4 {
                b.scales[j] = ls[j];
                b.scales[j + 4] = lm[j];
            } else {
                b.scales[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
                b.scales[j - 4] |= (ls[j] >> 4) << 6;
                b.scales[j] |= (lm[j] >> 4) << 6;
            }
        }
        let mut q = [0u8; QK_K];
        for j in 0..8 {
            let sc = d * ls[j] as f32;
            let m = dmin * lm[j] as f32;
            for l in 0..32 {
                let v = x[32 * j + l];
                q[32 * j + l] = if sc > 0.0 { nearest_int((v + m) / sc).clamp(0, 15) as u8 } else { 0 };
            }
        }
        for c in 0..4 {
            for l in 0..32 {
                b.qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
            }
        }
    }
}
