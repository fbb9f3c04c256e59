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
use crate::quant::common::{blocks, f16_to_f32};
use crate::quant::q4_1::BlockQ4_1;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::q8_1::BlockQ8_1;

pub static SIMD128: CpuKernels = CpuKernels {
    isa: "simd128",
    formats: formats![SCALAR_FORMATS;
        Q4_1 => FormatKernels::dot(q4_1_q8_1),
        Q8_0 => FormatKernels::dot(q8_0_q8_0),
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
