//! Rotary position embedding as ggml_rope_ext computes it, YaRN included.
//!
//! For rotary pair index `i` in `0..n_rot/2`:
//! `theta_i = pos · base^(−2i/n_rot) / ff[i]`, then linear (`freq_scale`) and
//! YaRN interpolation, then `(x0, x1) → (x0·cos − x1·sin, x0·sin + x1·cos)`.
//! NORM mode rotates adjacent pairs `(x[2i], x[2i+1])`; NEOX mode rotates
//! `(x[i], x[i + n_rot/2])`. Dimensions `≥ n_rot` pass through.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs (llama, minicpm: their q/k rows were permuted by the converter).
    Norm,
    /// Split halves (qwen, gemma, phi3, minicpm3).
    Neox,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    pub n_rot: usize,
    pub mode: RopeMode,
    pub freq_base: f32,
    /// 1 / linear scaling factor.
    pub freq_scale: f32,
    /// YaRN extrapolation mix; 0 disables YaRN.
    pub ext_factor: f32,
    /// Magnitude scale applied to cos/sin.
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The training context length YaRN corrections are computed for.
    pub n_ctx_orig: usize,
}

impl RopeParams {
    /// Plain RoPE (no scaling).
    pub fn plain(n_rot: usize, mode: RopeMode, freq_base: f32) -> Self {
        RopeParams {
            n_rot,
            mode,
            freq_base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 0,
        }
    }

    fn corr_dims(&self) -> [f32; 2] {
        let n_dims = self.n_rot as f32;
        let corr_dim =
            |n_rot: f32| n_dims * (self.n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln() / (2.0 * self.freq_base.ln());
        let start = corr_dim(self.beta_fast).floor();
        let end = corr_dim(self.beta_slow).ceil();
        [start.max(0.0), end.min(n_dims - 1.0)]
    }

    /// cos/sin for each rotary pair at position `pos` (`cache.len() == n_rot/2`).
    /// `freq_factors`, when given, divide theta per pair (LongRoPE, Llama-3 scaling).
    pub fn cache(&self, pos: usize, freq_factors: Option<&[f32]>, cache: &mut [(f32, f32)]) {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let corr = if self.ext_factor != 0.0 { self.corr_dims() } else { [0.0, 0.0] };
        // ggml builds theta by repeated multiplication in f32; do the same so
        // positions far into the context round like llama.cpp.
        let mut theta = pos as f32;
        for (i, c) in cache.iter_mut().enumerate() {
            let ff = freq_factors.map_or(1.0, |f| f[i]);
            let theta_extrap = theta / ff;
            let theta_interp = self.freq_scale * theta_extrap;
            let mut th = theta_interp;
            let mut mscale = self.attn_factor;
            if self.ext_factor != 0.0 {
                let y = (i as f32 - corr[0]) / (corr[1] - corr[0]).max(0.001);
                let ramp = (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor;
                th = theta_interp * (1.0 - ramp) + theta_extrap * ramp;
                mscale *= 1.0 + 0.1 * (1.0 / self.freq_scale).ln();
            }
            *c = (th.cos() * mscale, th.sin() * mscale);
            theta *= theta_scale;
        }
    }
}

/// Rotates one head vector in place with a cache from [`RopeParams::cache`].
pub fn apply(x: &mut [f32], cache: &[(f32, f32)], mode: RopeMode) {
    let half = cache.len();
    match mode {
        RopeMode::Norm => {
            for (i, &(cos, sin)) in cache.iter().enumerate() {
                let (x0, x1) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = x0 * cos - x1 * sin;
                x[2 * i + 1] = x0 * sin + x1 * cos;
            }
        }
        RopeMode::Neox => {
            for (i, &(cos, sin)) in cache.iter().enumerate() {
                let (x0, x1) = (x[i], x[i + half]);
                x[i] = x0 * cos - x1 * sin;
                x[i + half] = x0 * sin + x1 * cos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity() {
        let p = RopeParams::plain(4, RopeMode::Norm, 10000.0);
        let mut c = vec![(0.0, 0.0); 2];
        p.cache(0, None, &mut c);
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        apply(&mut x, &c, RopeMode::Norm);
        assert_eq!(x, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn norm_and_neox_pair_differently() {
        let p = RopeParams::plain(4, RopeMode::Norm, 10000.0);
        let mut c = vec![(0.0, 0.0); 2];
        p.cache(1, None, &mut c);
        // pair 0 rotates by 1 radian, pair 1 by 1/100.
        let mut a = vec![1.0, 0.0, 0.0, 0.0];
        apply(&mut a, &c, RopeMode::Norm);
        assert!((a[0] - 1f32.cos()).abs() < 1e-6 && (a[1] - 1f32.sin()).abs() < 1e-6);
        let mut b = vec![1.0, 0.0, 0.0, 0.0];
        apply(&mut b, &c, RopeMode::Neox);
        assert!((b[0] - 1f32.cos()).abs() < 1e-6 && (b[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(b[1], 0.0);
    }

    #[test]
    fn freq_factors_divide_theta() {
        let p = RopeParams::plain(2, RopeMode::Norm, 10000.0);
        let mut c = vec![(0.0, 0.0); 1];
        p.cache(6, Some(&[3.0]), &mut c);
        assert!((c[0].0 - 2f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn rotation_preserves_norm() {
        let p = RopeParams::plain(8, RopeMode::Neox, 1e6);
        let mut c = vec![(0.0, 0.0); 4];
        p.cache(123, None, &mut c);
        let mut x: Vec<f32> = (0..8).map(|i| (i as f32 * 0.7).sin()).collect();
        let n0: f32 = x.iter().map(|v| v * v).sum();
        apply(&mut x, &c, RopeMode::Neox);
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-5);
    }
}
