//! WebAssembly SIMD128 kernels (the browser build, web/): compiled in when the target has
//! `simd128` (scripts/build-web.sh; every browser with WebGPU runs it), so there is nothing
//! to detect at run time.
//!
//! Each block's integer sum is computed exactly (products widened to i16, summed in i32 by
//! `i32x4.dot_i16x8_s`) and the f32 part is the scalar twin's expression in the same order:
//! these kernels return the very bits of `quant::*::vec_dot` (held to that by
//! ember-web's in-browser parity check, `kernelParity`).
//!
//! The scalar twins are compiled with `simd128` too, and LLVM vectorizes some of their loops
//! (the K-quants' 8 integer lanes): what these kernels add is what it does not do. They read
//! activations with `v128.load8x8_s` (load and widen to i16 in one instruction), reduce four
//! 32-element blocks' sums together and convert their fp16 scales four at a time
//! ([`blocks32`]), and scale the K-quants' sub-blocks two at a time with `dot_i16x8`
//! ([`pair_acc`]).

use core::arch::wasm32::*;

use super::{formats, CpuKernels, FormatKernels, SCALAR, SCALAR_FORMATS};
use crate::quant::common::{blocks, f16_to_f32, F16};
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

#[inline(always)]
fn load16(b: &[u8]) -> v128 {
    assert!(b.len() >= 16);
    // SAFETY: 16 bytes are there (checked); v128_load takes unaligned addresses.
    unsafe { v128_load(b.as_ptr() as *const v128) }
}

/// The first 8 bytes of `b` as signed bytes widened to i16x8 (`v128.load8x8_s`).
#[inline(always)]
fn load8_i16(b: &[u8]) -> v128 {
    assert!(b.len() >= 8);
    // SAFETY: 8 bytes are there (checked); the load takes unaligned addresses.
    unsafe { i16x8_load_extend_i8x8(b.as_ptr() as *const i8) }
}

/// `Σ a[i]·y[i]` over 16 signed bytes (`a`, `y[..16]`), exactly, as four i32 lanes to add up.
#[inline(always)]
fn dot_i8x16(a: v128, y: &[u8]) -> v128 {
    let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), load8_i16(y));
    let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), load8_i16(&y[8..]));
    i32x4_add(lo, hi)
}

/// Lane b = the sum of the four lanes of `v[b]`.
#[inline(always)]
fn hsum4(v: [v128; 4]) -> v128 {
    // [a0+a2, b0+b2, a1+a3, b1+b3], the same of c and d, then their halves added.
    let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]), i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]));
    let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]), i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
}

/// Four fp16 → f32x4: [`f16_to_f32`]'s steps lane by lane, so the same bits for every input.
#[inline(always)]
fn f16x4(h: [F16; 4]) -> v128 {
    let h = h.map(|h| u16::from_le_bytes(h) as u32);
    let h = u32x4(h[0], h[1], h[2], h[3]);
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let em = v128_and(h, u32x4_splat(0x7fff));
    let normal = f32x4_mul(i32x4_shl(em, 13), f32x4_splat(f32::from_bits(0x7780_0000)));
    let special = v128_or(u32x4_splat(0x7f80_0000), i32x4_shl(v128_and(em, u32x4_splat(0x03ff)), 13));
    v128_or(sign, v128_bitselect(special, normal, u32x4_ge(em, u32x4_splat(0x7c00))))
}

/// The dot of two rows of 32-element blocks: `sumf += term(b)` block by block, in order, as
/// the scalar twins do. `isum(x, y)`: a block's integer dot as four i32 lanes to add up;
/// `term(sumi, x, y)`: four blocks' f32 terms (lane b: block b) from their sums (as f32x4),
/// the scalar twin's expression lane by lane. Four blocks share one horizontal reduction
/// ([`hsum4`]) and one conversion of their scales ([`f16x4`]); a last group of fewer than
/// four repeats its last block in the lanes left, which are not added.
#[inline(always)]
fn blocks32<X, Y>(x: &[X], y: &[Y], isum: impl Fn(&X, &Y) -> v128, term: impl Fn(v128, [&X; 4], [&Y; 4]) -> v128) -> f32 {
    let mut sumf = 0f32;
    let (xs, ys) = (x.chunks_exact(4), y.chunks_exact(4));
    let (xr, yr) = (xs.remainder(), ys.remainder());
    for (x, y) in xs.zip(ys) {
        let t = terms4([&x[0], &x[1], &x[2], &x[3]], [&y[0], &y[1], &y[2], &y[3]], &isum, &term);
        for v in t {
            sumf += v;
        }
    }
    if !xr.is_empty() && yr.len() == xr.len() {
        let last = xr.len() - 1;
        let (xi, yi) = (|i: usize| &xr[i.min(last)], |i: usize| &yr[i.min(last)]);
        let t = terms4([xi(0), xi(1), xi(2), xi(3)], [yi(0), yi(1), yi(2), yi(3)], &isum, &term);
        for v in &t[..xr.len()] {
            sumf += v;
        }
    }
    sumf
}

/// [`blocks32`]'s four blocks' terms.
#[inline(always)]
fn terms4<X, Y>(x: [&X; 4], y: [&Y; 4], isum: &impl Fn(&X, &Y) -> v128, term: &impl Fn(v128, [&X; 4], [&Y; 4]) -> v128) -> [f32; 4] {
    let s = hsum4([isum(x[0], y[0]), isum(x[1], y[1]), isum(x[2], y[2]), isum(x[3], y[3])]);
    let t = term(f32x4_convert_i32x4(s), x, y);
    [f32x4_extract_lane::<0>(t), f32x4_extract_lane::<1>(t), f32x4_extract_lane::<2>(t), f32x4_extract_lane::<3>(t)]
}

/// The fp16 field `f` of four blocks as f32x4.
#[inline(always)]
fn fp16s<B>(b: [&B; 4], f: impl Fn(&B) -> F16) -> v128 {
    f16x4(b.map(f))
}

fn q8s(y: &BlockQ8_0) -> &[u8] {
    bytemuck::cast_slice::<i8, u8>(&y.qs)
}

/// Q4_0 weights · Q8_0 activations (`quant::q4_0::vec_dot`).
pub fn q4_0_q8_0(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    let (mask, eight) = (u8x16_splat(0x0F), i8x16_splat(8));
    blocks32(
        x,
        y,
        |x, y| {
            let q = load16(&x.qs);
            let ys = q8s(y);
            // Low nibbles are elements 0..16, high ones 16..32; minus 8: -8..7.
            let lo = i8x16_sub(v128_and(q, mask), eight);
            let hi = i8x16_sub(u8x16_shr(q, 4), eight);
            i32x4_add(dot_i8x16(lo, ys), dot_i8x16(hi, &ys[16..]))
        },
        // sumi as f32 · dx · dy
        |s, x, y| f32x4_mul(f32x4_mul(s, fp16s(x, |x| x.d)), fp16s(y, |y| y.d)),
    )
}

/// Q4_1 weights · Q8_1 activations (`quant::q4_1::vec_dot`).
pub fn q4_1_q8_1(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ4_1>(w), blocks::<BlockQ8_1>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    let mask = u8x16_splat(0x0F);
    blocks32(
        x,
        y,
        |x, y| {
            let q = load16(&x.qs);
            let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
            // Nibbles are 0..15: as signed bytes they are the same values.
            i32x4_add(dot_i8x16(v128_and(q, mask), ys), dot_i8x16(u8x16_shr(q, 4), &ys[16..]))
        },
        // (dx · dy) · sumi as f32 + m · s
        |s, x, y| {
            let d = f32x4_mul(fp16s(x, |x| x.d), fp16s(y, |y| y.d));
            f32x4_add(f32x4_mul(d, s), f32x4_mul(fp16s(x, |x| x.m), fp16s(y, |y| y.s)))
        },
    )
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
    blocks32(
        x,
        y,
        |x, y| {
            let q = load16(&x.qs);
            let ys = q8s(y);
            // q − 16 as a signed byte, ggml's way: the nibble with 0xF0 over it (nibble − 16)
            // where the fifth bit is clear, the bare nibble ((nibble + 16) − 16) where it is set.
            let (h0, h1) = bytes_from_bits_32(x.qh);
            let lo = v128_or(v128_and(q, mask), v128_andnot(high, h0));
            let hi = v128_or(u8x16_shr(q, 4), v128_andnot(high, h1));
            i32x4_add(dot_i8x16(lo, ys), dot_i8x16(hi, &ys[16..]))
        },
        // (dx · dy) · sumi as f32
        |s, x, y| f32x4_mul(f32x4_mul(fp16s(x, |x| x.d), fp16s(y, |y| y.d)), s),
    )
}

/// Q8_0 weights · Q8_0 activations (`quant::q8_0::vec_dot`).
pub fn q8_0_q8_0(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ8_0>(w), blocks::<BlockQ8_0>(act));
    debug_assert!(x.len() == n / 32 && y.len() == x.len());
    blocks32(
        x,
        y,
        |x, y| {
            let (xs, ys) = (q8s(x), q8s(y));
            let d = |o: usize| i32x4_dot_i16x8(load8_i16(&xs[o..]), load8_i16(&ys[o..]));
            i32x4_add(i32x4_add(d(0), d(8)), i32x4_add(d(16), d(24)))
        },
        // sumi as f32 · (dx · dy)
        |s, x, y| f32x4_mul(s, f32x4_mul(fp16s(x, |x| x.d), fp16s(y, |y| y.d))),
    )
}

// The K-quants. Their scalar twins (`quant::common::kquant_lanes`, ggml's generic kernels) keep
// 8 integer lanes per super-block, lane l summing the scaled products of the elements at
// l mod 8, and add each lane into its own f32 sum: so do these. A 16-element group's products
// are two i16x8 (|q| ≤ 32, |y| ≤ 128: each ≤ 4096; lane l: elements l and 8 + l), added in
// i16 (up to four of them, |·| ≤ 16384 for 5 bits), then times their sub-block's scale in
// i32: the very integers of the scalar lanes, in another order of exact additions.

/// `q[..16] · y[..16]` as i16x8, lane l = q[l]·y[l] + q[8 + l]·y[8 + l] (signed bytes, exact
/// for |q| ≤ 64).
#[inline(always)]
fn products(q: v128, y: &[u8]) -> v128 {
    let lo = i16x8_mul(i16x8_extend_low_i8x16(q), load8_i16(y));
    let hi = i16x8_mul(i16x8_extend_high_i8x16(q), load8_i16(&y[8..]));
    i16x8_add(lo, hi)
}

/// `acc` (lanes 0..4, 4..8) + `p`·s_p + `q`·s_q, widened to i32 (`s`: i16 lanes s_p, s_q, s_p,
/// s_q, …): the two sub-blocks' lanes interleaved, so each `dot_i16x8` pair is one lane's.
#[inline(always)]
fn pair_acc(acc: &mut [v128; 2], p: v128, q: v128, s: v128) {
    acc[0] = i32x4_add(acc[0], i32x4_dot_i16x8(i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(p, q), s));
    acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(p, q), s));
}

/// The i16 lanes A, B of `s` repeated (the scales of two sub-blocks, for [`pair_acc`]).
#[inline(always)]
fn scale_pair<const A: usize, const B: usize>(s: v128) -> v128 {
    i16x8_shuffle::<A, B, A, B, A, B, A, B>(s, s)
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

/// The 8 sub-block scales and 8 mins of a Q4_K/Q5_K block as i16x8 each, unpacked from their
/// 12 bytes with word operations (`quant::scale_min_k4` bit for bit; ggml's `kmask` form).
#[inline(always)]
fn scales_mins_k4(q: &[u8; 12]) -> (v128, v128) {
    const M6: u32 = 0x3F3F_3F3F;
    const M4: u32 = 0x0F0F_0F0F;
    const M2: u32 = 0x0303_0303;
    let w = |k: usize| u32::from_le_bytes([q[4 * k], q[4 * k + 1], q[4 * k + 2], q[4 * k + 3]]);
    let (w0, w1, w2) = (w(0), w(1), w(2));
    // Sub-blocks 0..4: the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8: a nibble
    // of bytes 8..12 and the top 2 bits of bytes 0..4 / 4..8.
    let sc_hi = (w2 & M4) | (((w0 >> 6) & M2) << 4);
    let mn_hi = ((w2 >> 4) & M4) | (((w1 >> 6) & M2) << 4);
    let v = u32x4(w0 & M6, sc_hi, w1 & M6, mn_hi);
    (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v))
}

/// Q4_K/Q5_K's min term `Σ_j bsum(j) · mn[j / 2]` (`quant::q4_k::dot_k4`'s `sumi`), exactly:
/// i16 pairs times i16 pairs summed in i32 by `i32x4.dot_i16x8_s`.
#[inline(always)]
fn k4_mins(y: &BlockQ8K, mn: v128) -> i32 {
    let b = bytemuck::cast_slice::<[u8; 2], u8>(&y.bsums);
    let m0 = i16x8_shuffle::<0, 0, 1, 1, 2, 2, 3, 3>(mn, mn);
    let m1 = i16x8_shuffle::<4, 4, 5, 5, 6, 6, 7, 7>(mn, mn);
    let s = i32x4_add(i32x4_dot_i16x8(load16(b), m0), i32x4_dot_i16x8(load16(&b[16..]), m1));
    i32x4_extract_lane::<0>(s) + i32x4_extract_lane::<1>(s) + i32x4_extract_lane::<2>(s) + i32x4_extract_lane::<3>(s)
}

/// Sub-blocks A = 2c and B = 2c + 1 of a Q4_K/Q5_K block (elements 64c..64c + 64, their quants
/// `a` in element order) into the lanes `acc`; `sc`: the 8 scales as i16.
#[inline(always)]
fn k4_pair<const A: usize, const B: usize>(acc: &mut [v128; 2], ys: &[u8], a: [v128; 4], sc: v128) {
    let o = 32 * A;
    let pa = i16x8_add(products(a[0], &ys[o..]), products(a[1], &ys[o + 16..]));
    let pb = i16x8_add(products(a[2], &ys[o + 32..]), products(a[3], &ys[o + 48..]));
    pair_acc(acc, pa, pb, scale_pair::<A, B>(sc));
}

/// The 8 integer lanes of one Q4_K/Q5_K super-block (`kquant_lanes` with each 32-element
/// sub-block's 6-bit scale); `quants(c)`: the quants of elements 64c..64c + 64 as four
/// 16-byte vectors, in element order (called for c = 0, 1, 2, 3 in turn).
#[inline(always)]
fn k4_lanes(y: &BlockQ8K, sc: v128, mut quants: impl FnMut(usize) -> [v128; 4]) -> [v128; 2] {
    let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
    let mut acc = [i32x4_splat(0); 2];
    k4_pair::<0, 1>(&mut acc, ys, quants(0), sc);
    k4_pair::<2, 3>(&mut acc, ys, quants(1), sc);
    k4_pair::<4, 5>(&mut acc, ys, quants(2), sc);
    k4_pair::<6, 7>(&mut acc, ys, quants(3), sc);
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
        let (sc, mn) = scales_mins_k4(&x.scales);
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
        let (sc, mn) = scales_mins_k4(&x.scales);
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
            qh = [u8x16_shr(qh[0], 2), u8x16_shr(qh[1], 2)];
            a
        });
        add_lanes(&mut sums, f16_to_f32(x.d) * y.d(), aux32);
        sumf -= f16_to_f32(x.dmin) * y.d() * k4_mins(y, mn) as f32;
    }
    fold_lanes(sumf, sums)
}

/// 16 elements in each of the four 32-element quarters of half `H` of a Q6_K block (elements
/// 128H + 32i + 16K.., i < 4; their groups' scales SA, SB, SC, SD of `sc`, half H's 8 scales as
/// i16) into the lanes `acc`. ql bytes 64H + l and 64H + 32 + l (l < 32) carry elements l,
/// l + 32 (low nibbles) and l + 64, l + 96 (high) of the half; qh byte 32H + l their top 2
/// bits, at bits 0, 2, 4, 6.
#[inline(always)]
fn q6_step<const H: usize, const K: usize, const SA: usize, const SB: usize, const SC: usize, const SD: usize>(
    acc: &mut [v128; 2],
    x: &BlockQ6K,
    ys: &[u8],
    sc: v128,
) {
    let (m4, m2, bias) = (u8x16_splat(0x0F), u8x16_splat(0x30), i8x16_splat(32));
    let ql0 = load16(&x.ql[64 * H + 16 * K..]);
    let ql1 = load16(&x.ql[64 * H + 32 + 16 * K..]);
    let qh = load16(&x.qh[32 * H + 16 * K..]);
    // The 6-bit quants minus 32: -32..31.
    let a = [
        v128_or(v128_and(ql0, m4), v128_and(u8x16_shl(qh, 4), m2)),
        v128_or(v128_and(ql1, m4), v128_and(u8x16_shl(qh, 2), m2)),
        v128_or(u8x16_shr(ql0, 4), v128_and(qh, m2)),
        v128_or(u8x16_shr(ql1, 4), v128_and(u8x16_shr(qh, 2), m2)),
    ]
    .map(|a| i8x16_sub(a, bias));
    let o = 128 * H + 16 * K;
    pair_acc(acc, products(a[0], &ys[o..]), products(a[1], &ys[o + 32..]), scale_pair::<SA, SB>(sc));
    pair_acc(acc, products(a[2], &ys[o + 64..]), products(a[3], &ys[o + 96..]), scale_pair::<SC, SD>(sc));
}

/// Q6_K weights · Q8_K activations (`quant::q6_k::vec_dot`).
pub fn q6_k_q8_k(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockQ6K>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / 256 && y.len() == x.len());
    let mut sums = [f32x4_splat(0.0); 2];
    for (x, y) in x.iter().zip(y) {
        let ys = bytemuck::cast_slice::<i8, u8>(&y.qs);
        // The 16 signed scales (one per 16 elements) as i16: 0..8 and 8..16.
        let s = load16(bytemuck::cast_slice::<i8, u8>(&x.scales));
        let (s0, s1) = (i16x8_extend_low_i8x16(s), i16x8_extend_high_i8x16(s));
        let mut acc = [i32x4_splat(0); 2];
        q6_step::<0, 0, 0, 2, 4, 6>(&mut acc, x, ys, s0);
        q6_step::<0, 1, 1, 3, 5, 7>(&mut acc, x, ys, s0);
        q6_step::<1, 0, 0, 2, 4, 6>(&mut acc, x, ys, s1);
        q6_step::<1, 1, 1, 3, 5, 7>(&mut acc, x, ys, s1);
        add_lanes(&mut sums, f16_to_f32(x.d) * y.d(), acc);
    }
    fold_lanes(0.0, sums)
}
