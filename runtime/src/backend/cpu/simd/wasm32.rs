//! WebAssembly SIMD128 kernels (the browser build, web/): compiled in when the target has
//! `simd128` (scripts/build-web.sh; every browser with WebGPU runs it), so there is nothing
//! to detect at run time.
//!
//! Each block's integer sum is computed exactly (products widened to i16, summed in i32 by
//! `i32x4.dot_i16x8_s`) and the f32 part is the scalar twin's expression in the same order:
//! these kernels return the very bits of `quant::*::vec_dot` (held to that by
//! ember-web's in-browser parity check, `kernelParity`).

use core::arch::wasm32::*;

use super::{formats, CpuKernels, FormatKernels, SCALAR, SCALAR_FORMATS};
use crate::quant::common::{blocks, f16_to_f32, scale_min_k4};
use crate::quant::q4_0::BlockQ4_0;
use crate::quant::q4_1::BlockQ4_1;
use crate::quant::q4_k::BlockQ4K;
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q5_k::BlockQ5K;
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::q8_1::BlockQ8_1;
use crate::quant::q8_k::BlockQ8K;

pub static SIMD128: CpuKernels = CpuKernels {
    isa: "simd128",
    formats: formats![SCALAR_FORMATS;
        Q4_0 => FormatKernels::dot(q4_0_q8_0),
        Q4_1 => FormatKernels::dot(q4_1_q8_1),
        Q5_0 => FormatKernels::dot(q5_0_q8_0),
        Q8_0 => FormatKernels::dot(q8_0_q8_0),
        Q4_K => FormatKernels::dot(q4_k_q8_k),
        Q5_K => FormatKernels::dot(q5_k_q8_k),
        Q6_K => FormatKernels::dot(q6_k_q8_k),
    ],
    ..SCALAR
};

/// `Σ a[i]·b[i]` over 16 signed bytes each, exactly, as four i32 lanes.
#[inline(always)]
fn dot_i8x16(a: v128, b: v128) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), i16x8_extend_low_i8x16(b));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), i16x8_extend_high_i8x16(b));
    i32x4_add(lo, hi)
}

#[inline(always)]
fn hsum_i32x4(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

#[inline(always)]
fn load16(b: &[u8]) -> v128 {
    assert!(b.len() >= 16);
    // SAFETY: 16 bytes are there (checked); v128_load takes unaligned addresses.
    unsafe { v128_load(b.as_ptr() as *const v128) }
}

/// Q4_1 weights · Q8_1 activations (`quant::q4_1::vec_dot`).
pub fn q4_1_q8_1(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4_1>(w), blocks::<BlockQ8_1>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    let mask = u8x16_splat(0x0F);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let q = load16(&x.qs);
        let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
        // Nibbles are 0..15: as signed bytes they are the same values.
        let lo = v128_and(q, mask);
        let hi = u8x16_shr(q, 4);
        let sumi = hsum_i32x4(i32x4_add(dot_i8x16(lo, load16(&ys[..16])), dot_i8x16(hi, load16(&ys[16..]))));
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
    }
    sumf
}

/// Q8_0 weights · Q8_0 activations (`quant::q8_0::vec_dot`).
pub fn q8_0_q8_0(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ8_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (xs, ys) = (bytemuck::cast_slice::<i8, u8>(&x.qs), bytemuck::cast_slice::<i8, u8>(&y.qs));
        let s = i32x4_add(dot_i8x16(load16(&xs[..16]), load16(&ys[..16])), dot_i8x16(load16(&xs[16..]), load16(&ys[16..])));
        sumf += hsum_i32x4(s) as f32 * (f16_to_f32(x.d) * f16_to_f32(y.d));
    }
    sumf
}

/// Q4_0 weights · Q8_0 activations (`quant::q4_0::vec_dot`).
pub fn q4_0_q8_0(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    let (mask, eight) = (u8x16_splat(0x0F), i8x16_splat(8));
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let q = load16(&x.qs);
        let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
        // Low nibbles are elements 0..16, high ones 16..32; minus 8: -8..7.
        let lo = i8x16_sub(v128_and(q, mask), eight);
        let hi = i8x16_sub(u8x16_shr(q, 4), eight);
        let sumi = hsum_i32x4(i32x4_add(dot_i8x16(lo, load16(&ys[..16])), dot_i8x16(hi, load16(&ys[16..]))));
        sumf += sumi as f32 * f16_to_f32(x.d) * f16_to_f32(y.d);
    }
    sumf
}

/// The 32 bits of `qh` as 32 bytes (ggml's `bytes_from_bits_32`): byte i of the first vector
/// is 0xFF where bit i is set, byte i of the second where bit 16 + i is.
#[inline(always)]
fn bytes_from_bits_32(qh: [u8; 4]) -> (v128, v128) {
    let h = u32x4_splat(u32::from_le_bytes(qh));
    // Byte j of the qh word under each lane, then each lane's own bit of it.
    let lo = u8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(h, h);
    let hi = u8x16_shuffle::<2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3>(h, h);
    let bit = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    (i8x16_eq(v128_and(lo, bit), bit), i8x16_eq(v128_and(hi, bit), bit))
}

/// Q5_0 weights · Q8_0 activations (`quant::q5_0::vec_dot`).
pub fn q5_0_q8_0(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ5_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    let (mask, high) = (u8x16_splat(0x0F), u8x16_splat(0xF0));
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let q = load16(&x.qs);
        let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
        // q − 16 as a signed byte, ggml's way: the nibble with 0xF0 over it (nibble − 16)
        // where the fifth bit is clear, the bare nibble ((nibble + 16) − 16) where it is set.
        let (h0, h1) = bytes_from_bits_32(x.qh);
        let lo = v128_or(v128_and(q, mask), v128_andnot(high, h0));
        let hi = v128_or(u8x16_shr(q, 4), v128_andnot(high, h1));
        let sumi = hsum_i32x4(i32x4_add(dot_i8x16(lo, load16(&ys[..16])), dot_i8x16(hi, load16(&ys[16..]))));
        sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32;
    }
    sumf
}

// The K-quants. Their scalar twins (`quant::common::kquant_lanes`, ggml's generic kernels) keep
// 8 integer lanes per super-block, lane l summing the scaled products of the elements at
// l mod 8, and add each lane into its own f32 sum: so do these, with i16x8 lane l of a 16-byte
// product vector ↔ lane l. `i16x8_extmul_{low,high}_i8x16` give a 16-element group's products
// as two i16x8 (|q| ≤ 32, |y| ≤ 128: each ≤ 4096), added in i16 (up to four of them, |·| ≤
// 16384 for 5 bits), then times the group's scale widened to i32: the very integers of the
// scalar lanes, in another order of exact additions.

/// Σ over the 16-element groups `(q[i], y[i])` of their products, lane l of the i16x8 holding
/// the elements at l mod 8. The callers keep the sum within i16 (see above).
#[inline(always)]
fn mul_lanes<const N: usize>(q: [v128; N], y: [v128; N]) -> v128 {
    let mut s = i16x8_splat(0);
    for (q, y) in q.into_iter().zip(y) {
        s = i16x8_add(s, i16x8_add(i16x8_extmul_low_i8x16(q, y), i16x8_extmul_high_i8x16(q, y)));
    }
    s
}

/// `acc` (lanes 0..4, 4..8) + `p` · `sc`, widened to i32.
#[inline(always)]
fn scale_acc(acc: &mut [v128; 2], p: v128, sc: i16) {
    let s = i16x8_splat(sc);
    acc[0] = i32x4_add(acc[0], i32x4_extmul_low_i16x8(p, s));
    acc[1] = i32x4_add(acc[1], i32x4_extmul_high_i16x8(p, s));
}

/// `sums[l] += d · aux32[l] as f32` over the 8 lanes, as the scalar twin's loop.
#[inline(always)]
fn add_lanes(sums: &mut [v128; 2], d: f32, aux32: [v128; 2]) {
    let d = f32x4_splat(d);
    sums[0] = f32x4_add(sums[0], f32x4_mul(d, f32x4_convert_i32x4(aux32[0])));
    sums[1] = f32x4_add(sums[1], f32x4_mul(d, f32x4_convert_i32x4(aux32[1])));
}

/// `sums.iter().fold(init, |s, v| s + v)`: the 8 lanes added one by one, in order.
#[inline(always)]
fn fold_lanes(init: f32, sums: [v128; 2]) -> f32 {
    let mut s = init;
    for v in sums {
        s += f32x4_extract_lane::<0>(v);
        s += f32x4_extract_lane::<1>(v);
        s += f32x4_extract_lane::<2>(v);
        s += f32x4_extract_lane::<3>(v);
    }
    s
}

/// The 16 i16 `bsums` of a Q8_K block (sums of 16 activations each) as two i16x8.
#[inline(always)]
fn bsums(y: &BlockQ8K) -> (v128, v128) {
    let b = bytemuck::cast_slice::<[u8; 2], u8>(&y.bsums);
    (load16(&b[..16]), load16(&b[16..]))
}

/// Q4_K/Q5_K's min term `Σ_j bsum(j) · mn[j / 2]` (`quant::q4_k::dot_k4`'s `sumi`), exactly:
/// i16 pairs times i16 pairs summed in i32 by `i32x4.dot_i16x8_s`.
#[inline(always)]
fn k4_mins(y: &BlockQ8K, mn: [u8; 8]) -> i32 {
    let m = u16x8_extend_low_u8x16(u64x2_splat(u64::from_le_bytes(mn)));
    let (b0, b1) = bsums(y);
    let m0 = i16x8_shuffle::<0, 0, 1, 1, 2, 2, 3, 3>(m, m);
    let m1 = i16x8_shuffle::<4, 4, 5, 5, 6, 6, 7, 7>(m, m);
    hsum_i32x4(i32x4_add(i32x4_dot_i16x8(b0, m0), i32x4_dot_i16x8(b1, m1)))
}

/// The 8 integer lanes of one Q4_K/Q5_K super-block (`kquant_lanes` with each 32-element
/// sub-block's 6-bit scale `sc[j]`); `quants(c)`: the quants of elements 64c..64c + 64 as four
/// 16-byte vectors, in element order.
#[inline(always)]
fn k4_lanes(y: &BlockQ8K, sc: [u8; 8], mut quants: impl FnMut(usize) -> [v128; 4]) -> [v128; 2] {
    let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
    let mut acc = [i32x4_splat(0); 2];
    for c in 0..4 {
        let [a0, a1, a2, a3] = quants(c);
        let yk = |k: usize| load16(&ys[64 * c + 16 * k..]);
        scale_acc(&mut acc, mul_lanes([a0, a1], [yk(0), yk(1)]), sc[2 * c] as i16);
        scale_acc(&mut acc, mul_lanes([a2, a3], [yk(2), yk(3)]), sc[2 * c + 1] as i16);
    }
    acc
}

/// Q4_K weights · Q8_K activations (`quant::q4_k::vec_dot`).
pub fn q4_k_q8_k(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / 256 && y.len() == x.len());
    let mask = u8x16_splat(0x0F);
    let mut sums = [f32x4_splat(0.0); 2];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, mn) = scale_min_k4(&x.scales);
        // Bytes 32c..32c + 32 hold elements 64c.. in their low nibbles, 64c + 32.. in the high.
        let aux32 = k4_lanes(y, sc, |c| {
            let (q0, q1) = (load16(&x.qs[32 * c..]), load16(&x.qs[32 * c + 16..]));
            [v128_and(q0, mask), v128_and(q1, mask), u8x16_shr(q0, 4), u8x16_shr(q1, 4)]
        });
        add_lanes(&mut sums, f16_to_f32(x.d) * y.d(), aux32);
        sumf -= f16_to_f32(x.dmin) * y.d() * k4_mins(y, mn) as f32;
    }
    fold_lanes(sumf, sums)
}

/// Q5_K weights · Q8_K activations (`quant::q5_k::vec_dot`).
pub fn q5_k_q8_k(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ5K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / 256 && y.len() == x.len());
    let (mask, one, two) = (u8x16_splat(0x0F), u8x16_splat(1), u8x16_splat(2));
    let mut sums = [f32x4_splat(0.0); 2];
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, mn) = scale_min_k4(&x.scales);
        // As Q4_K, plus 16 where qh[l] has bit 2c (low nibbles) or 2c + 1 (high): the two
        // qh vectors (l = 0..16, 16..32) are shifted right by 2 per step, ggml's way.
        let mut qh = [load16(&x.qh[..16]), load16(&x.qh[16..])];
        let aux32 = k4_lanes(y, sc, |c| {
            let (q0, q1) = (load16(&x.qs[32 * c..]), load16(&x.qs[32 * c + 16..]));
            let lo = |h: v128| u8x16_shl(v128_and(h, one), 4);
            let hi = |h: v128| u8x16_shl(v128_and(h, two), 3);
            let a = [
                v128_or(v128_and(q0, mask), lo(qh[0])),
                v128_or(v128_and(q1, mask), lo(qh[1])),
                v128_or(u8x16_shr(q0, 4), hi(qh[0])),
                v128_or(u8x16_shr(q1, 4), hi(qh[1])),
            ];
            qh = qh.map(|h| u8x16_shr(h, 2));
            a
        });
        add_lanes(&mut sums, f16_to_f32(x.d) * y.d(), aux32);
        sumf -= f16_to_f32(x.dmin) * y.d() * k4_mins(y, mn) as f32;
    }
    fold_lanes(sumf, sums)
}

/// Q6_K weights · Q8_K activations (`quant::q6_k::vec_dot`).
pub fn q6_k_q8_k(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ6K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / 256 && y.len() == x.len());
    let (mask, m2, bias) = (u8x16_splat(0x0F), u8x16_splat(0x30), i8x16_splat(32));
    let mut sums = [f32x4_splat(0.0); 2];
    for (x, y) in x.iter().zip(y) {
        let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
        let mut acc = [i32x4_splat(0); 2];
        // Each half h (128 elements): ql bytes 64h + l and 64h + 32 + l (l < 32) carry elements
        // l, l + 32 (low nibbles) and l + 64, l + 96 (high); qh byte 32h + l their top 2 bits,
        // at bits 0, 2, 4, 6. Groups of 16 elements share a signed 8-bit scale.
        for h in 0..2 {
            for k in 0..2 {
                let ql0 = load16(&x.ql[64 * h + 16 * k..]);
                let ql1 = load16(&x.ql[64 * h + 32 + 16 * k..]);
                let qh = load16(&x.qh[32 * h + 16 * k..]);
                let a = [
                    v128_or(v128_and(ql0, mask), v128_and(u8x16_shl(qh, 4), m2)),
                    v128_or(v128_and(ql1, mask), v128_and(u8x16_shl(qh, 2), m2)),
                    v128_or(u8x16_shr(ql0, 4), v128_and(qh, m2)),
                    v128_or(u8x16_shr(ql1, 4), v128_and(u8x16_shr(qh, 2), m2)),
                ];
                for (i, a) in a.into_iter().enumerate() {
                    // Elements 128h + 32i + 16k.., group 8h + 2i + k.
                    let o = 128 * h + 32 * i + 16 * k;
                    let p = mul_lanes([i8x16_sub(a, bias)], [load16(&ys[o..])]);
                    scale_acc(&mut acc, p, x.scales[o / 16] as i16);
                }
            }
        }
        add_lanes(&mut sums, f16_to_f32(x.d) * y.d(), acc);
    }
    fold_lanes(0.0, sums)
}
