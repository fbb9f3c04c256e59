//! RMSNorm: `y = x / sqrt(mean(x²) + eps) * w` (ggml_rms_norm then ggml_mul).

/// Normalizes one row in place and multiplies by `w` (same length).
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    debug_assert_eq!(x.len(), w.len());
    // ggml accumulates the sum of squares in double (ggml_float).
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &wi) in x.iter_mut().zip(w) {
        *v = *v * scale * wi;
    }
}

/// RMSNorm without a weight (used by per-head q/k norms in some architectures).
pub fn rms_norm_unweighted(x: &mut [f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for v in x.iter_mut() {
        *v *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rms_after_norm() {
        let mut x = vec![1.0, -2.0, 3.0, -4.0];
        rms_norm(&mut x, &[1.0; 4], 0.0);
        let ms: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!((ms - 1.0).abs() < 1e-6, "{ms}");
        assert!((x[0] - 1.0 / 7.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn weight_multiplies() {
        let mut a = vec![0.5, 1.5, -2.0];
        let mut b = a.clone();
        rms_norm(&mut a, &[1.0, 1.0, 1.0], 1e-5);
        rms_norm(&mut b, &[2.0, 0.0, -1.0], 1e-5);
        assert_eq!(b[0], a[0] * 2.0);
        assert_eq!(b[1], 0.0);
        assert_eq!(b[2], -a[2]);
    }
}
