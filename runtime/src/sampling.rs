//! Token sampling: picks the next token id from a row of logits.
//!
//! The chain follows llama.cpp's common sampler default order:
//! penalties → top-k → top-p → min-p → temperature → distribution sampling.
//!
//! * penalties: for every token in the last `repeat_last_n` entries of the
//!   history, `logit = logit <= 0 ? logit * repeat_penalty : logit / repeat_penalty`,
//!   then `logit -= count * frequency_penalty + (count > 0) * presence_penalty`.
//! * top-k keeps the `k` highest logits (ties broken towards the lowest id).
//! * top-p keeps the smallest prefix (by descending probability) whose
//!   cumulative probability reaches `top_p` (at least one token).
//! * min-p keeps tokens with `p >= min_p * p_max` (equivalently
//!   `logit >= max_logit + ln(min_p)`).
//! * temperature divides the logits; `temperature <= 0` means greedy.
//! * the distribution step takes a softmax and draws with a seeded
//!   xoshiro256** generator.
//!
//! NaN logits are treated as `-inf`: they are never picked while any other
//! token is available, and nothing panics.

use crate::{Error, Result};

/// Sampling parameters. The defaults follow llama.cpp's `common_params_sampling`.
#[derive(Clone, Debug)]
pub struct SamplingParams {
    /// 0 (or < 0) = greedy (argmax, ties -> lowest id).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off. For tokens in the last `repeat_last_n`: `logit > 0 ? logit / pen : logit * pen`.
    pub repeat_penalty: f32,
    /// Window of history the penalties look at (0 = penalties off).
    pub repeat_last_n: usize,
    /// 0 = off: `logit -= count * frequency_penalty`.
    pub frequency_penalty: f32,
    /// 0 = off: `logit -= (count > 0) * presence_penalty`.
    pub presence_penalty: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

// The defaults, named once: `SamplingParams::default()`, the CLI flags, the
// bindings and the server all refer to these, so the numbers cannot drift
// apart. They are llama.cpp's `common_params_sampling` values.
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
pub const DEFAULT_TOP_K: usize = 40;
pub const DEFAULT_TOP_P: f32 = 0.95;
pub const DEFAULT_MIN_P: f32 = 0.05;
/// 1.0: no repetition penalty.
pub const DEFAULT_REPEAT_PENALTY: f32 = 1.0;
pub const DEFAULT_REPEAT_LAST_N: usize = 64;
pub const DEFAULT_FREQUENCY_PENALTY: f32 = 0.0;
pub const DEFAULT_PRESENCE_PENALTY: f32 = 0.0;
/// Default seed (fixed so that runs are reproducible unless a seed is given).
pub const DEFAULT_SEED: u64 = 0xEEEE;

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: DEFAULT_TEMPERATURE,
            top_k: DEFAULT_TOP_K,
            top_p: DEFAULT_TOP_P,
            min_p: DEFAULT_MIN_P,
            repeat_penalty: DEFAULT_REPEAT_PENALTY,
            repeat_last_n: DEFAULT_REPEAT_LAST_N,
            frequency_penalty: DEFAULT_FREQUENCY_PENALTY,
            presence_penalty: DEFAULT_PRESENCE_PENALTY,
            seed: DEFAULT_SEED,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: argmax of the logits, all filters and penalties off.
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, ..Default::default() }
    }

    /// Checks that every parameter is in range.
    pub fn validate(&self) -> Result<()> {
        fn bad(msg: String) -> Result<()> {
            Err(Error::InvalidParam(msg))
        }
        if !self.temperature.is_finite() {
            return bad(format!("temperature must be finite, got {}", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(format!("top_p must be in [0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(format!("repeat_penalty must be finite and > 0, got {}", self.repeat_penalty));
        }
        if !self.frequency_penalty.is_finite() {
            return bad(format!("frequency_penalty must be finite, got {}", self.frequency_penalty));
        }
        if !self.presence_penalty.is_finite() {
            return bad(format!("presence_penalty must be finite, got {}", self.presence_penalty));
        }
        Ok(())
    }

    fn penalties_active(&self) -> bool {
        self.repeat_last_n > 0 && (self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0)
    }
}

/// Argmax of `logits`, ties -> lowest id, NaN never wins over a number.
/// Returns 0 for an empty slice or one that is all NaN.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    let mut found = false;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if !found || v > best_v {
            best = i;
            best_v = v;
            found = true;
        }
    }
    best as u32
}

/// The `k` highest `(id, logit)` pairs of `row`, best first (in `f32::total_cmp`'s order), ties
/// to the lower id: what `ember logits --top K` and the browser's `session.logits` report. `k`
/// past the row's length: the whole row, sorted.
pub fn top_logits(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let by_logit = |x: &u32, y: &u32| row[*y as usize].total_cmp(&row[*x as usize]).then(x.cmp(y));
    let mut order: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(row.len());
    if k < row.len() {
        order.select_nth_unstable_by(k, by_logit);
    }
    order.truncate(k);
    order.sort_by(by_logit);
    order.into_iter().map(|i| (i, row[i as usize])).collect()
}

/// Applies repetition, frequency and presence penalties (llama.cpp semantics)
/// in place to `logits`, counting tokens in the last `params.repeat_last_n`
/// entries of `history`. Ids outside the vocabulary are ignored.
pub fn apply_penalties(logits: &mut [f32], history: &[u32], params: &SamplingParams) {
    let mut scratch = Vec::new();
    apply_penalties_with(logits, history, params, &mut scratch);
}

fn apply_penalties_with(logits: &mut [f32], history: &[u32], params: &SamplingParams, scratch: &mut Vec<u32>) {
    if !params.penalties_active() {
        return;
    }
    let start = history.len().saturating_sub(params.repeat_last_n);
    scratch.clear();
    scratch.extend_from_slice(&history[start..]);
    scratch.sort_unstable();
    let mut i = 0;
    while i < scratch.len() {
        let id = scratch[i];
        let mut j = i + 1;
        while j < scratch.len() && scratch[j] == id {
            j += 1;
        }
        let count = (j - i) as f32;
        i = j;
        let Some(l) = logits.get_mut(id as usize) else {
            continue;
        };
        if *l <= 0.0 {
            *l *= params.repeat_penalty;
        } else {
            *l /= params.repeat_penalty;
        }
        *l -= count * params.frequency_penalty + params.presence_penalty;
    }
}

/// xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[derive(Clone, Copy, Debug)]
struct Cand {
    logit: f32,
    id: u32,
}

/// Descending logit, then ascending id: a total order (NaN already removed).
#[inline]
fn cand_order(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// A seeded sampler. Reuses its buffers, so after the first call `sample`
/// does not allocate (as long as the vocabulary size does not grow).
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    cands: Vec<Cand>,
    probs: Vec<f64>,
    window: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Sampler { params, rng, cands: Vec::new(), probs: Vec::new(), window: Vec::new() })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Reseeds the generator with the initial seed.
    pub fn reset(&mut self) {
        self.rng = Rng::new(self.params.seed);
    }

    /// Picks the next token from a row of logits. `logits` is used as scratch
    /// (penalties are applied to it in place). `history` = previously seen
    /// token ids (prompt + generated) for the penalties. Returns 0 for an
    /// empty row.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        let p = &self.params;
        apply_penalties_with(logits, history, p, &mut self.window);

        if p.temperature <= 0.0 {
            // Filters never remove the argmax (ties resolved to the lowest id
            // everywhere), so greedy is the argmax of the penalized logits.
            return argmax(logits);
        }

        // Candidates, NaN -> -inf.
        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Cand { logit: if l.is_nan() { f32::NEG_INFINITY } else { l }, id: i as u32 }));
        let mut sorted = false;

        // top-k
        let k = p.top_k;
        if k > 0 && k < self.cands.len() {
            self.cands.select_nth_unstable_by(k - 1, cand_order);
            self.cands.truncate(k);
            self.cands.sort_unstable_by(cand_order);
            sorted = true;
        }

        // top-p
        if p.top_p < 1.0 && self.cands.len() > 1 {
            if !sorted {
                self.cands.sort_unstable_by(cand_order);
                sorted = true;
            }
            softmax_into(&self.cands, &mut self.probs);
            let target = p.top_p as f64;
            let mut cum = 0.0f64;
            let mut keep = self.cands.len();
            for (i, &pr) in self.probs.iter().enumerate() {
                cum += pr;
                if cum >= target {
                    keep = i + 1;
                    break;
                }
            }
            self.cands.truncate(keep.max(1));
        }

        // min-p: keep logit >= max_logit + ln(min_p)
        if p.min_p > 0.0 && self.cands.len() > 1 {
            let max_logit = if sorted { self.cands[0].logit } else { self.cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit)) };
            let min_logit = max_logit + p.min_p.ln();
            if sorted {
                let keep = self.cands.iter().take_while(|c| c.logit >= min_logit).count();
                self.cands.truncate(keep.max(1));
            } else {
                // The max itself always satisfies the condition, so at least one remains.
                self.cands.retain(|c| c.logit >= min_logit);
            }
        }

        // temperature
        let inv_t = 1.0 / p.temperature;
        for c in self.cands.iter_mut() {
            c.logit *= inv_t;
        }

        // distribution
        softmax_into(&self.cands, &mut self.probs);
        let total: f64 = self.probs.iter().sum();
        if total.is_nan() || total <= 0.0 || total.is_infinite() {
            // Everything is -inf: fall back to the best candidate.
            return best_cand(&self.cands);
        }
        let u = self.rng.next_f64() * total;
        let mut cum = 0.0f64;
        let mut last_nonzero = None;
        for (c, &pr) in self.cands.iter().zip(self.probs.iter()) {
            if pr > 0.0 {
                cum += pr;
                last_nonzero = Some(c.id);
                if u < cum {
                    return c.id;
                }
            }
        }
        // Rounding left u past the end: the last token with mass.
        last_nonzero.unwrap_or_else(|| best_cand(&self.cands))
    }
}

fn best_cand(cands: &[Cand]) -> u32 {
    cands.iter().min_by(|a, b| cand_order(a, b)).map(|c| c.id).unwrap_or(0)
}

/// Unnormalized-safe softmax of candidate logits into `out` (f64). Handles
/// +inf (the +inf tokens share the mass) and all -inf (all zero).
fn softmax_into(cands: &[Cand], out: &mut Vec<f64>) {
    out.clear();
    let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
    if max == f32::NEG_INFINITY {
        out.extend(cands.iter().map(|_| 0.0));
        return;
    }
    if max == f32::INFINITY {
        out.extend(cands.iter().map(|c| if c.logit == f32::INFINITY { 1.0 } else { 0.0 }));
    } else {
        let m = max as f64;
        out.extend(cands.iter().map(|c| (c.logit as f64 - m).exp()));
    }
    let sum: f64 = out.iter().sum();
    if sum > 0.0 {
        for v in out.iter_mut() {
            *v /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 42,
        };
        f(&mut p);
        p
    }

    /// Pseudo-random logits without an RNG dependency.
    fn test_logits(n: usize, salt: u64) -> Vec<f32> {
        let mut r = Rng::new(salt);
        (0..n).map(|_| (r.next_f64() * 10.0 - 5.0) as f32).collect()
    }

    fn draws(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        let mut buf = logits.to_vec();
        (0..n)
            .map(|_| {
                buf.copy_from_slice(logits);
                s.sample(&mut buf, &[])
            })
            .collect()
    }

    #[test]
    fn argmax_basic_ties_and_nan() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 2.9]), 1);
        assert_eq!(argmax(&[1.0, 5.0, 5.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -3.0, f32::NAN, -2.0]), 3);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY, -1e30]), 2);
    }

    #[test]
    fn greedy_equals_argmax() {
        for salt in 0..20 {
            let logits = test_logits(1000, salt);
            let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
            let mut buf = logits.clone();
            assert_eq!(s.sample(&mut buf, &[]), argmax(&logits));
            // Negative temperature is greedy too.
            let mut s = Sampler::new(params(|p| p.temperature = -1.0)).unwrap();
            let mut buf = logits.clone();
            assert_eq!(s.sample(&mut buf, &[]), argmax(&logits));
        }
        // Tie -> lowest id.
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&mut [0.0, 2.0, 1.0, 2.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let logits = test_logits(64, 7);
        let flat: Vec<f32> = logits.iter().map(|l| l * 0.2).collect();
        let mk = |seed| Sampler::new(params(|p| p.seed = seed)).unwrap();
        let a = draws(&mut mk(1), &flat, 500);
        let b = draws(&mut mk(1), &flat, 500);
        let c = draws(&mut mk(2), &flat, 500);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let diff = a.iter().zip(&c).filter(|(x, y)| x != y).count();
        assert!(diff > 250, "only {diff} of 500 draws differ");
        // The sequence is not constant.
        assert!(a.iter().any(|&t| t != a[0]));
    }

    #[test]
    fn reset_reseeds() {
        let logits = test_logits(64, 3);
        let mut s = Sampler::new(params(|p| p.seed = 99)).unwrap();
        let a = draws(&mut s, &logits, 200);
        let b = draws(&mut s, &logits, 200);
        assert_ne!(a, b);
        s.reset();
        let c = draws(&mut s, &logits, 200);
        assert_eq!(a, c);
    }

    #[test]
    fn very_low_temperature_is_greedy() {
        for salt in 0..10 {
            let logits = test_logits(500, salt);
            let mut s = Sampler::new(params(|p| {
                p.temperature = 1e-4;
                p.seed = salt;
            }))
            .unwrap();
            let got = draws(&mut s, &logits, 50);
            assert!(got.iter().all(|&t| t == argmax(&logits)), "{got:?}");
        }
    }

    #[test]
    fn top_logits_best_first_ties_to_lower_id() {
        let row = [0.5, 2.0, -1.0, 2.0, 7.0, 0.5];
        assert_eq!(top_logits(&row, 3), vec![(4, 7.0), (1, 2.0), (3, 2.0)]);
        assert_eq!(top_logits(&row, 0), vec![]);
        let all = top_logits(&row, 99);
        assert_eq!(all.iter().map(|p| p.0).collect::<Vec<_>>(), vec![4, 1, 3, 0, 5, 2]);
    }

    #[test]
    fn top_k_1_is_greedy() {
        for salt in 0..10 {
            let logits = test_logits(5000, salt);
            let mut s = Sampler::new(params(|p| {
                p.top_k = 1;
                p.temperature = 5.0;
                p.seed = salt;
            }))
            .unwrap();
            let got = draws(&mut s, &logits, 50);
            assert!(got.iter().all(|&t| t == argmax(&logits)));
        }
    }

    #[test]
    fn top_k_restricts_to_k_best() {
        let logits = test_logits(1000, 11);
        let mut order: Vec<u32> = (0..1000).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let top: Vec<u32> = order[..5].to_vec();
        let mut s = Sampler::new(params(|p| {
            p.top_k = 5;
            p.temperature = 100.0;
        }))
        .unwrap();
        let got = draws(&mut s, &logits, 2000);
        assert!(got.iter().all(|t| top.contains(t)));
        for t in &top {
            assert!(got.contains(t), "token {t} of the top 5 never drawn");
        }
    }

    #[test]
    fn top_p_tiny_is_greedy() {
        for salt in 0..10 {
            let logits = test_logits(5000, salt);
            let mut s = Sampler::new(params(|p| {
                p.top_p = 1e-6;
                p.temperature = 5.0;
                p.seed = salt;
            }))
            .unwrap();
            let got = draws(&mut s, &logits, 50);
            assert!(got.iter().all(|&t| t == argmax(&logits)));
        }
    }

    #[test]
    fn top_p_keeps_smallest_prefix() {
        // probs 0.5, 0.3, 0.15, 0.05 (ids 2, 0, 3, 1)
        let probs = [0.3f32, 0.05, 0.5, 0.15];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        // 0.5 + 0.3 = 0.8 >= 0.75 -> keep {2, 0}
        let mut s = Sampler::new(params(|p| p.top_p = 0.75)).unwrap();
        let got = draws(&mut s, &logits, 3000);
        assert!(got.iter().all(|&t| t == 2 || t == 0));
        assert!(got.contains(&0) && got.contains(&2));
        // 0.9 -> keep {2, 0, 3}
        let mut s = Sampler::new(params(|p| p.top_p = 0.9)).unwrap();
        let got = draws(&mut s, &logits, 3000);
        assert!(got.iter().all(|&t| t != 1));
        assert!(got.contains(&3));
    }

    #[test]
    fn min_p_filters() {
        // p_max = 0.5; min_p = 0.25 -> threshold 0.125: keeps 0.5, 0.3, 0.15; drops 0.05
        let probs = [0.3f32, 0.05, 0.5, 0.15];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(params(|p| p.min_p = 0.25)).unwrap();
        let got = draws(&mut s, &logits, 5000);
        assert!(!got.contains(&1));
        assert!(got.contains(&0) && got.contains(&2) && got.contains(&3));
        // min_p = 0.7 -> threshold 0.35: only id 2
        let mut s = Sampler::new(params(|p| p.min_p = 0.7)).unwrap();
        let got = draws(&mut s, &logits, 1000);
        assert!(got.iter().all(|&t| t == 2));
        // min_p combined with top_k (sorted path)
        let mut s = Sampler::new(params(|p| {
            p.min_p = 0.25;
            p.top_k = 3;
        }))
        .unwrap();
        let got = draws(&mut s, &logits, 5000);
        assert!(!got.contains(&1));
        assert!(got.contains(&3));
    }

    fn assert_freqs_match(got: &[u32], expected: &[f64], tol: f64) {
        let n = got.len() as f64;
        for (id, &e) in expected.iter().enumerate() {
            let f = got.iter().filter(|&&t| t as usize == id).count() as f64 / n;
            assert!((f - e).abs() < tol, "token {id}: frequency {f:.4}, expected {e:.4}");
        }
    }

    #[test]
    fn frequencies_match_softmax() {
        let logits = [1.0f32, 2.0, 0.5, -1.0];
        let m = 2.0f64;
        let w: Vec<f64> = logits.iter().map(|&l| (l as f64 - m).exp()).collect();
        let z: f64 = w.iter().sum();
        let expected: Vec<f64> = w.iter().map(|x| x / z).collect();
        let mut s = Sampler::new(params(|p| p.seed = 12345)).unwrap();
        let got = draws(&mut s, &logits, 20000);
        assert_freqs_match(&got, &expected, 0.015);

        // temperature 2: softmax(logits / 2)
        let w: Vec<f64> = logits.iter().map(|&l| ((l as f64 - m) / 2.0).exp()).collect();
        let z: f64 = w.iter().sum();
        let expected: Vec<f64> = w.iter().map(|x| x / z).collect();
        let mut s = Sampler::new(params(|p| p.temperature = 2.0)).unwrap();
        let got = draws(&mut s, &logits, 20000);
        assert_freqs_match(&got, &expected, 0.015);
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let base = [2.0f32, -2.0, 1.0, 0.0, 3.0];
        let p = params(|p| p.repeat_penalty = 2.0);
        let mut l = base;
        apply_penalties(&mut l, &[0, 1, 1, 3, 77], &p); // 77 out of vocab: ignored
        assert_eq!(l, [1.0, -4.0, 1.0, 0.0, 3.0]);

        let p = params(|p| p.frequency_penalty = 0.5);
        let mut l = base;
        apply_penalties(&mut l, &[0, 1, 1, 1, 4], &p);
        assert_eq!(l, [1.5, -3.5, 1.0, 0.0, 2.5]);

        let p = params(|p| p.presence_penalty = 0.25);
        let mut l = base;
        apply_penalties(&mut l, &[0, 1, 1, 1, 4], &p);
        assert_eq!(l, [1.75, -2.25, 1.0, 0.0, 2.75]);

        // All three: repeat first, then freq/presence.
        let p = params(|p| {
            p.repeat_penalty = 2.0;
            p.frequency_penalty = 0.5;
            p.presence_penalty = 0.25;
        });
        let mut l = base;
        apply_penalties(&mut l, &[1, 1, 4], &p);
        assert_eq!(l, [2.0, -4.0 - 1.0 - 0.25, 1.0, 0.0, 1.5 - 0.5 - 0.25]);

        // Window: only the last repeat_last_n tokens count.
        let p = params(|p| {
            p.repeat_penalty = 2.0;
            p.repeat_last_n = 2;
        });
        let mut l = base;
        apply_penalties(&mut l, &[0, 2, 4], &p);
        assert_eq!(l, [2.0, -2.0, 0.5, 0.0, 1.5]);

        // repeat_last_n = 0 disables.
        let p = params(|p| {
            p.repeat_penalty = 2.0;
            p.repeat_last_n = 0;
        });
        let mut l = base;
        apply_penalties(&mut l, &[0, 2, 4], &p);
        assert_eq!(l, base);
    }

    #[test]
    fn penalties_applied_in_sampler() {
        // Greedy would pick 4; a strong presence penalty on 4 moves it to 0.
        let base = [2.0f32, -2.0, 1.0, 0.0, 3.0];
        let mut s = Sampler::new(SamplingParams { presence_penalty: 1.5, ..SamplingParams::greedy() }).unwrap();
        let mut l = base;
        assert_eq!(s.sample(&mut l, &[4]), 0);
        let mut l = base;
        assert_eq!(s.sample(&mut l, &[]), 4);
    }

    #[test]
    fn nan_logits_are_never_picked() {
        let mut logits = vec![f32::NAN; 100];
        logits[37] = -50.0;
        logits[81] = -51.0;
        for cfg in [
            params(|_| {}),
            params(|p| p.top_k = 3),
            params(|p| p.top_p = 0.5),
            params(|p| p.min_p = 0.1),
            params(|p| {
                p.top_k = 40;
                p.top_p = 0.95;
                p.min_p = 0.05;
                p.repeat_penalty = 1.3;
            }),
            SamplingParams::default(),
            SamplingParams::greedy(),
        ] {
            let mut s = Sampler::new(cfg).unwrap();
            let got = draws(&mut s, &logits, 200);
            assert!(got.iter().all(|&t| t == 37 || t == 81), "{got:?}");
        }
        // All NaN / all -inf / +inf: no panic, valid id.
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        let mut all_nan = vec![f32::NAN; 10];
        assert!(s.sample(&mut all_nan, &[1, 2]) < 10);
        let mut all_ninf = vec![f32::NEG_INFINITY; 10];
        assert!(s.sample(&mut all_ninf, &[]) < 10);
        let mut inf = vec![0.0f32; 10];
        inf[6] = f32::INFINITY;
        assert_eq!(s.sample(&mut inf, &[]), 6);
        let mut huge = vec![0.0f32; 10];
        huge[3] = f32::MAX;
        let mut s = Sampler::new(params(|p| p.temperature = 0.01)).unwrap();
        assert_eq!(s.sample(&mut huge, &[]), 3);
        assert_eq!(s.sample(&mut [], &[]), 0);
    }

    #[test]
    fn validate_rejects_bad_params() {
        assert!(SamplingParams::default().validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
        let bad = [
            params(|p| p.temperature = f32::NAN),
            params(|p| p.temperature = f32::INFINITY),
            params(|p| p.top_p = 1.5),
            params(|p| p.top_p = -0.1),
            params(|p| p.top_p = f32::NAN),
            params(|p| p.min_p = -0.1),
            params(|p| p.min_p = f32::NAN),
            params(|p| p.min_p = 2.0),
            params(|p| p.repeat_penalty = 0.0),
            params(|p| p.repeat_penalty = f32::NAN),
            params(|p| p.frequency_penalty = f32::NAN),
            params(|p| p.presence_penalty = f32::INFINITY),
        ];
        for p in bad {
            assert!(matches!(p.validate(), Err(Error::InvalidParam(_))), "{p:?}");
            assert!(Sampler::new(p).is_err());
        }
    }

    #[test]
    fn large_vocab_defaults() {
        let logits = test_logits(262_144, 5);
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let top40 = &order[..40];
        let mut buf = logits.clone();
        for _ in 0..20 {
            buf.copy_from_slice(&logits);
            let t = s.sample(&mut buf, &[]);
            assert!(top40.contains(&t));
        }
        // top_k off, top_p on: full sort path.
        let mut s = Sampler::new(params(|p| p.top_p = 0.5)).unwrap();
        buf.copy_from_slice(&logits);
        assert!((s.sample(&mut buf, &[]) as usize) < logits.len());
    }
}
