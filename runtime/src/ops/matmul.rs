//! Reference matrix product: dequantize each weight row to f32 and dot it
//! with f32 activations. This is plain float math, not llama.cpp's
//! quantized-activation arithmetic; the backends' quantized products are held
//! to it within quantization tolerance.

use crate::quant::{self, GgmlType};
use crate::Result;

/// `y[t][o] = Σ_i W[o][i] · x[t][i]` for a weight of `n_out` rows of `n_in`
/// elements of type `ty` (`w.len() == n_out * row_size`), `x` = `n_tok × n_in`.
pub fn matmul_ref(ty: GgmlType, w: &[u8], n_in: usize, n_out: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    let row_bytes = ty.row_size(n_in).unwrap_or(0);
    let n_tok = x.len() / n_in;
    let mut row = vec![0f32; n_in];
    for o in 0..n_out {
        quant::dequantize_row(ty, &w[o * row_bytes..(o + 1) * row_bytes], &mut row)?;
        for t in 0..n_tok {
            let xt = &x[t * n_in..(t + 1) * n_in];
            let s: f64 = row.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
            y[t * n_out + o] = s as f32;
        }
    }
    Ok(())
}
