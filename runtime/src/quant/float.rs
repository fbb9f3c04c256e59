//! Plain float formats, one element per "block", little-endian:
//! F32 (4 bytes), F16 (IEEE half, 2 bytes), BF16 (top half of an f32, 2 bytes).
//!
//! As in ggml, F16 weights are dotted against activations rounded to F16,
//! BF16 against BF16, F32 against F32; products are accumulated in f32
//! (8 lanes, so the loop vectorizes).

use super::common::{f16_to_f32, f32_to_f16};

#[inline(always)]
fn f32_of(b: [u8; 4]) -> f32 {
    f32::from_le_bytes(b)
}
#[inline(always)]
fn bf16_of(b: [u8; 2]) -> f32 {
    f32::from_bits((u16::from_le_bytes(b) as u32) << 16)
}
/// Round to nearest even like ggml's `GGML_FP32_TO_BF16` (NaN stays NaN).
#[inline(always)]
fn to_bf16(x: f32) -> [u8; 2] {
    half::bf16::from_f32(x).to_bits().to_le_bytes()
}

#[inline(always)]
fn decode<const W: usize>(src: &[u8], dst: &mut [f32], conv: impl Fn([u8; W]) -> f32) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(W)) {
        *y = conv(b.try_into().unwrap());
    }
}

#[inline(always)]
fn encode<const W: usize>(x: &[f32], dst: &mut [u8], conv: impl Fn(f32) -> [u8; W]) {
    for (&x, b) in x.iter().zip(dst.chunks_exact_mut(W)) {
        b.copy_from_slice(&conv(x));
    }
}

#[inline(always)]
fn dot<const W: usize>(n: usize, w: &[u8], act: &[u8], conv: impl Fn([u8; W]) -> f32) -> f32 {
    debug_assert!(w.len() == n * W && act.len() == n * W);
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let (wc, ac) = (w.chunks_exact(LANES * W), act.chunks_exact(LANES * W));
    let (wr, ar) = (wc.remainder(), ac.remainder());
    for (wc, ac) in wc.zip(ac) {
        for l in 0..LANES {
            let (x, y) = (&wc[l * W..l * W + W], &ac[l * W..l * W + W]);
            acc[l] += conv(x.try_into().unwrap()) * conv(y.try_into().unwrap());
        }
    }
    for (x, y) in wr.chunks_exact(W).zip(ar.chunks_exact(W)) {
        acc[0] += conv(x.try_into().unwrap()) * conv(y.try_into().unwrap());
    }
    acc.iter().sum()
}

pub fn dequantize_row_f32(src: &[u8], dst: &mut [f32]) {
    decode(src, dst, f32_of)
}
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    decode(src, dst, f16_to_f32)
}
pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) {
    decode(src, dst, bf16_of)
}

pub fn quantize_row_f32(x: &[f32], dst: &mut [u8]) {
    encode(x, dst, f32::to_le_bytes)
}
pub fn quantize_row_f16(x: &[f32], dst: &mut [u8]) {
    encode(x, dst, f32_to_f16)
}
pub fn quantize_row_bf16(x: &[f32], dst: &mut [u8]) {
    encode(x, dst, to_bf16)
}

pub fn vec_dot_f32(n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot(n, w, act, f32_of)
}
/// F16 conversion goes through half's slice converter (F16C/NEON when the
/// CPU has it, detected at run time) on 32-element stack chunks.
pub fn vec_dot_f16(n: usize, w: &[u8], act: &[u8]) -> f32 {
    debug_assert!(w.len() == 2 * n && act.len() == 2 * n);
    const C: usize = 32;
    let (wc, ac) = (w.chunks_exact(2 * C), act.chunks_exact(2 * C));
    let tail = dot(wc.remainder().len() / 2, wc.remainder(), ac.remainder(), f16_to_f32);
    let mut acc = [0f32; 8];
    let (mut xf, mut yf) = ([0f32; C], [0f32; C]);
    for (wc, ac) in wc.zip(ac) {
        f16_chunk_to_f32(wc, &mut xf);
        f16_chunk_to_f32(ac, &mut yf);
        for (x, y) in xf.chunks_exact(8).zip(yf.chunks_exact(8)) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn f16_chunk_to_f32<const C: usize>(src: &[u8], dst: &mut [f32; C]) {
    use half::slice::HalfFloatSliceExt;
    let mut h = [half::f16::ZERO; C];
    for (h, b) in h.iter_mut().zip(src.chunks_exact(2)) {
        *h = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
    }
    h.convert_to_f32_slice(dst);
}
pub fn vec_dot_bf16(n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot(n, w, act, bf16_of)
}
