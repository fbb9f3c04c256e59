//! Helpers shared by the block formats: fp16 fields, ggml's rounding, the
//! packed 6-bit scales of Q4_K/Q5_K and the 16 signed scales of Q3_K.

/// An IEEE fp16 stored as its two little-endian bytes, so block structs keep
/// alignment 1 and can be viewed in place at any byte offset of a row.
pub type F16 = [u8; 2];

/// Exact fp16 → f32 conversion, inlined into the dot loops (the `half`
/// crate's run-time dispatched call costs more than the conversion itself).
/// The exponent/mantissa are shifted into f32 position and rescaled by
/// 2^112, which also turns fp16 subnormals into the right f32 normals.
#[inline(always)]
pub fn f16_to_f32(h: F16) -> f32 {
    let h = u16::from_le_bytes(h) as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let bits = if em >= 0x7c00 {
        // inf / NaN: all-ones exponent, mantissa kept.
        0x7f80_0000 | ((em & 0x03ff) << 13)
    } else {
        (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits()
    };
    f32::from_bits(sign | bits)
}

/// Round to nearest even, like `GGML_FP32_TO_FP16`.
#[inline(always)]
pub fn f32_to_f16(x: f32) -> F16 {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

/// ggml's `nearest_int` (the 1.5·2^23 trick): round half to even.
///
/// Written out because `round_ties_even` is a libm call (`rintf`) on
/// baseline x86-64, which lacks SSE4.1's `roundss`; in the activation
/// quantizers that call cost as much as a Q4 dot. The trick is exact for
/// |x| ≤ 2^22; larger values take the libm path.
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    if x.abs() > 4_194_303.0 {
        return x.round_ties_even() as i32;
    }
    let val = x + 12_582_912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// C's `roundf` (half away from zero) to i8, saturating like `as i8`; inline
/// for the same reason as [`nearest_int`] (`f32::round` is libm's `roundf`).
#[inline(always)]
pub fn round_i8(x: f32) -> i8 {
    let a = x.abs();
    // `as` saturates and maps NaN to 0 (and NaN fails the half test), like `as i8`.
    let t = (a as i32).min(128);
    // a − t is exact for a < 2^23, so the half test is too.
    let r = t + (a - t as f32 >= 0.5) as i32;
    (if x < 0.0 { -r } else { r }).clamp(-128, 127) as i8
}

/// View `bytes` as blocks. Blocks are `#[repr(C)]` with alignment 1, so only
/// the length can be wrong (a whole number of blocks, checked at model load).
#[inline(always)]
pub fn blocks<B: bytemuck::Pod>(bytes: &[u8]) -> &[B] {
    bytemuck::cast_slice(bytes)
}

#[inline(always)]
pub fn blocks_mut<B: bytemuck::Pod>(bytes: &mut [u8]) -> &mut [B] {
    bytemuck::cast_slice_mut(bytes)
}

/// Scale and min of sub-block `j` (0..8) from Q4_K/Q5_K's 12 packed bytes:
/// 8 six-bit scales and 8 six-bit mins (ggml `get_scale_min_k4`).
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (d, m)
    }
}

/// All 8 (scale, min) pairs of a Q4_K/Q5_K block.
#[inline(always)]
pub fn scale_min_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = get_scale_min_k4(j, q);
    }
    (sc, mn)
}

/// Q3_K's 16 signed 6-bit scales (already minus 32) from its 12 packed bytes:
/// low 4 bits in bytes 0..8 (two per byte), high 2 bits in bytes 8..12.
#[inline(always)]
pub fn q3k_scales(q: &[u8; 12]) -> [i8; 16] {
    let mut s = [0i8; 16];
    for (j, s) in s.iter_mut().enumerate() {
        let lo = if j < 8 { q[j] & 0xF } else { q[j - 8] >> 4 };
        let hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
        *s = (lo | (hi << 4)) as i8 - 32;
    }
    s
}

/// Accumulation of the K-quant dots, as ggml's generic kernels do it: 8
/// integer lanes over a 256-element block of `(q8 · a)` products, each group
/// of 16 weighted by its sub-block scale (`scales[j]` for elements
/// 16j..16j+16). Returns the 8 lanes; the caller scales them by `d`.
#[inline(always)]
pub fn kquant_lanes(q8: &[i8; 256], a: &[i8; 256], scales: &[i32; 16]) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    for (j, &s) in scales.iter().enumerate() {
        for half in 0..2 {
            let o = 16 * j + 8 * half;
            for l in 0..8 {
                let p = q8[o + l] as i16 * a[o + l] as i16;
                aux32[l] += s * p as i32;
            }
        }
    }
    aux32
}

#[cfg(test)]
mod f16_tests {
    #[test]
    fn f16_to_f32_is_exact_for_every_value() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = super::f16_to_f32(bits.to_le_bytes());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}: {got} vs {want}");
        }
    }
}

#[cfg(test)]
mod rounding_tests {
    use super::{nearest_int, round_i8};

    /// The inline roundings equal the libm ones they replace.
    #[test]
    fn inline_roundings_match_libm() {
        let mut v: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 0.0625).collect();
        v.extend([0.49999997, -0.49999997, 0.5, -0.5, 1.5, 2.5, -2.5, 127.49, 127.5, -128.5, 1e9, -1e9, 5e6]);
        v.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0]);
        for x in v {
            assert_eq!(round_i8(x), x.round() as i8, "round_i8({x})");
            if x.is_finite() {
                assert_eq!(nearest_int(x), x.round_ties_even() as i32, "nearest_int({x})");
            }
        }
    }
}
