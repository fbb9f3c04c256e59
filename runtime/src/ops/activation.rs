//! Element-wise activations.

/// SiLU: `x · σ(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (ggml_gelu).
#[inline]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// `gate[i] = silu(gate[i]) * up[i]` (SwiGLU).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// `gate[i] = gelu(gate[i]) * up[i]` (GeGLU).
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu(*g) * u;
    }
}

/// GeGLU as ggml's CPU backend computes it (`ggml_vec_geglu_f32`): the gate is
/// rounded to f16 and GELU is read from a table of f16 results; |x| ≥ 10 is
/// passed through (x ≥ 10) or zeroed (x ≤ −10). Matching this rounding keeps
/// gemma's logits inside llama.cpp's own noise.
pub fn geglu_ggml(gate: &mut [f32], up: &[f32]) {
    use half::f16;
    let table = gelu_f16_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let a = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            f16::from_bits(table[f16::from_f32(x).to_bits() as usize]).to_f32()
        };
        *g = a * u;
    }
}

/// ggml's `ggml_table_gelu_f16`: the f16 GELU of every f16 input, by bits
/// (built once; a tanh per element made GeGLU a tenth of a prompt's time).
fn gelu_f16_table() -> &'static [u16] {
    use half::f16;
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|h| f16::from_f32(gelu(f16::from_bits(h).to_f32())).to_bits()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-20.0)).abs() < 1e-7);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu(-3.0) + 0.003_637_4).abs() < 1e-5);
    }

    /// The table holds, for each f16 x, GELU(x) rounded to f16: GeGLU
    /// through it equals the rounding spelled out, on values across the
    /// f16 range and beyond the ±10 pass-through bounds.
    #[test]
    fn geglu_table_equals_rounded_gelu() {
        use half::f16;
        let xs: Vec<f32> = (-2400..2400).map(|i| i as f32 * 0.0047 + 0.00013).chain([-12.0, -10.0, 9.99, 10.0, 50.0, 0.0, -0.0]).collect();
        let up: Vec<f32> = xs.iter().map(|x| 1.5 - x * 0.1).collect();
        let mut g = xs.clone();
        geglu_ggml(&mut g, &up);
        for ((x, u), got) in xs.iter().zip(&up).zip(&g) {
            let a = if *x <= -10.0 {
                0.0
            } else if *x >= 10.0 {
                *x
            } else {
                f16::from_f32(gelu(f16::from_f32(*x).to_f32())).to_f32()
            };
            assert_eq!(got.to_bits(), (a * u).to_bits(), "x = {x}");
        }
    }
}
