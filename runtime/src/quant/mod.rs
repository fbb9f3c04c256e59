//! Quantized block formats: one file per format (struct + size assert +
//! scalar dequantization + dot product against quantized activations).
//!
//! Matrix-vector products follow ggml's CPU path: the activation row is first
//! quantized to the weight type's [`vec_dot_type`] with [`quantize_row_act`]
//! (Q8_0, Q8_1 or Q8_K for quantized weights), then each weight row is dotted
//! with it by [`vec_dot`] using integer sums per block. The kernels here are
//! the scalar references (ggml's `*_ref` quantizers and `*_generic` dots);
//! every block struct has alignment 1, so rows are read in place from any
//! byte offset of a mapped file.

pub(crate) mod common;
pub mod float;
pub mod iq4_nl;
pub mod iq4_xs;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;
mod types;

#[cfg(test)]
mod tests;

pub use common::{f16_to_f32, scale_min_k4};
pub use types::{GgmlType, QK_K};

use crate::{Error, Result};

/// Whether Ember can compute with this weight type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS).
pub fn is_supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS)
}

/// Dequantize one row (n = dst.len() elements, must be a multiple of the block size; src.len() == row_size).
/// Err for unsupported type or bad lengths. Besides the weight types of
/// [`is_supported`], the activation formats Q8_1 and Q8_K are accepted too.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    use GgmlType::*;
    let f: fn(&[u8], &mut [f32]) = match ty {
        F32 => float::dequantize_row_f32,
        F16 => float::dequantize_row_f16,
        BF16 => float::dequantize_row_bf16,
        Q4_0 => q4_0::dequantize_row,
        Q4_1 => q4_1::dequantize_row,
        Q5_0 => q5_0::dequantize_row,
        Q5_1 => q5_1::dequantize_row,
        Q8_0 => q8_0::dequantize_row,
        Q8_1 => q8_1::dequantize_row,
        Q2_K => q2_k::dequantize_row,
        Q3_K => q3_k::dequantize_row,
        Q4_K => q4_k::dequantize_row,
        Q5_K => q5_k::dequantize_row,
        Q6_K => q6_k::dequantize_row,
        Q8_K => q8_k::dequantize_row,
        IQ4_NL => iq4_nl::dequantize_row,
        IQ4_XS => iq4_xs::dequantize_row,
        _ => {
            return Err(Error::UnsupportedType { ty: ty.name().into(), what: "dequantize_row".into() });
        }
    };
    let n = dst.len();
    if ty.row_size(n) != Some(src.len()) {
        return Err(Error::InvalidParam(format!(
            "dequantize_row: {n} {ty} elements need {} bytes (a multiple of {} elements), got {} bytes",
            ty.row_size(n).map_or("a whole number of blocks".to_string(), |s| s.to_string()),
            ty.block_size(),
            src.len()
        )));
    }
    f(src, dst);
    Ok(())
}

/// The activation format a weight type is dotted against (Q8_0, Q8_1, Q8_K, F32, F16, BF16).
/// For a type that is not [`is_supported`] the answer is F32 and meaningless.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    match ty {
        F16 => F16,
        BF16 => BF16,
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS => Q8_K,
        _ => F32,
    }
}

/// Quantize one activation row x into `act_ty` blocks written to dst (dst.len() == act_ty.row_size(x.len())).
/// `act_ty` must be one of F32, F16, BF16, Q8_0, Q8_1, Q8_K (other types: debug panic, dst untouched).
pub fn quantize_row_act(act_ty: GgmlType, x: &[f32], dst: &mut [u8]) {
    use GgmlType::*;
    debug_assert_eq!(act_ty.row_size(x.len()), Some(dst.len()), "quantize_row_act {act_ty}");
    match act_ty {
        F32 => float::quantize_row_f32(x, dst),
        F16 => float::quantize_row_f16(x, dst),
        BF16 => float::quantize_row_bf16(x, dst),
        Q8_0 => q8_0::quantize_row(x, dst),
        Q8_1 => q8_1::quantize_row(x, dst),
        Q8_K => q8_k::quantize_row(x, dst),
        _ => debug_assert!(false, "{act_ty} is not an activation format"),
    }
}

/// Dot product of one weight row (n elements, type ty) with one activation row already in vec_dot_type(ty).
/// Unsupported `ty` (see [`is_supported`], checked at model load): NaN, and a debug panic.
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], act: &[u8]) -> f32 {
    use GgmlType::*;
    debug_assert_eq!(ty.row_size(n), Some(w.len()), "vec_dot {ty} weights");
    debug_assert_eq!(vec_dot_type(ty).row_size(n), Some(act.len()), "vec_dot {ty} activations");
    match ty {
        F32 => float::vec_dot_f32(n, w, act),
        F16 => float::vec_dot_f16(n, w, act),
        BF16 => float::vec_dot_bf16(n, w, act),
        Q4_0 => q4_0::vec_dot(n, w, act),
        Q4_1 => q4_1::vec_dot(n, w, act),
        Q5_0 => q5_0::vec_dot(n, w, act),
        Q5_1 => q5_1::vec_dot(n, w, act),
        Q8_0 => q8_0::vec_dot(n, w, act),
        Q2_K => q2_k::vec_dot(n, w, act),
        Q3_K => q3_k::vec_dot(n, w, act),
        Q4_K => q4_k::vec_dot(n, w, act),
        Q5_K => q5_k::vec_dot(n, w, act),
        Q6_K => q6_k::vec_dot(n, w, act),
        IQ4_NL => iq4_nl::vec_dot(n, w, act),
        IQ4_XS => iq4_xs::vec_dot(n, w, act),
        _ => {
            debug_assert!(false, "vec_dot: unsupported weight type {ty}");
            f32::NAN
        }
    }
}
