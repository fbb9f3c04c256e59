//! The accept step against exact distributions, and against sampling
//! without speculation (a stand-in model: logits a function of the history).

use super::*;
use crate::sampling::SamplingParams;

fn sampling(seed: u64) -> SamplingParams {
    SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, seed, ..Default::default() }
}

fn softmax(l: &[f32]) -> Vec<f64> {
    let m = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// Each emitted position follows the target's distribution: the first token
/// is distributed as row 0; given that draft 1 was accepted, the next as row
/// 1; given both, the last as row 2. Checked with a chi-square bound.
#[test]
fn accepted_tokens_follow_the_target_distribution() {
    let rows: [[f32; 4]; 3] = [[0.5, -1.0, 1.2, 0.0], [2.0, 0.1, -0.5, 0.3], [-0.2, 0.9, 0.4, 0.0]];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let drafts = [2u32, 0];
    let history = [3u32, 1, 2, 0]; // context 3 1, then the drafts
    let mut sampler = Sampler::new(sampling(7)).unwrap();
    let mut row = Vec::new();
    let mut counts = [[0usize; 4]; 3];
    let trials = 60_000;
    for _ in 0..trials {
        let out = accept(&mut sampler, &flat, &history, &drafts, &mut row);
        // Never longer than the drafts + 1; every token but the last is an accepted draft.
        assert!(!out.is_empty() && out.len() <= 3);
        assert_eq!(&out[..out.len() - 1], &drafts[..out.len() - 1]);
        for (i, &y) in out.iter().enumerate() {
            counts[i][y as usize] += 1;
        }
    }
    for (i, r) in rows.iter().enumerate() {
        let p = softmax(r);
        let n: usize = counts[i].iter().sum();
        // How often row i is reached: the product of the earlier drafts' probabilities.
        let reach: f64 = (0..i).map(|j| softmax(&rows[j])[drafts[j] as usize]).product();
        let expected_n = reach * trials as f64;
        assert!((n as f64 - expected_n).abs() < 4.0 * expected_n.sqrt() + 1.0, "row {i}: reached {n}, expected {expected_n:.0}");
        let chi2: f64 = (0..4).map(|a| (counts[i][a] as f64 - n as f64 * p[a]).powi(2) / (n as f64 * p[a])).sum();
        // 3 degrees of freedom: P(chi2 > 16.27) = 0.001.
        assert!(chi2 < 16.27, "row {i}: counts {:?}, p {p:?}, chi2 {chi2:.1}", counts[i]);
    }
}

/// A stand-in model: 16 logits that depend on the whole history.
fn fake_logits(history: &[u32]) -> Vec<f32> {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &t in history {
        h = (h ^ t as u64).wrapping_mul(0x100_0000_01b3);
    }
    (0..16u64)
        .map(|i| {
            let x = (h ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 3.0
        })
        .collect()
}

/// With the same seed, speculation emits exactly the tokens that sampling
/// without it does — penalties, top-k, top-p, min-p and temperature included —
/// whatever the drafts (right, wrong, or partly right).
#[test]
fn same_seed_same_tokens_as_without_speculation() {
    for (seed, temperature) in [(1u64, 0.0f32), (2, 0.7), (3, 1.5)] {
        let params = SamplingParams {
            temperature,
            top_k: 8,
            top_p: 0.9,
            min_p: 0.05,
            repeat_penalty: 1.3,
            repeat_last_n: 6,
            frequency_penalty: 0.2,
            presence_penalty: 0.1,
            seed,
        };
        let prompt = vec![1u32, 5, 9];
        let n = 120;
        let mut plain = prompt.clone();
        let mut s = Sampler::new(params.clone()).unwrap();
        while plain.len() < prompt.len() + n {
            let mut l = fake_logits(&plain);
            let y = s.sample(&mut l, &plain);
            plain.push(y);
        }

        let mut spec = prompt.clone();
        let mut s = Sampler::new(params.clone()).unwrap();
        let mut row = Vec::new();
        let mut round = 0usize;
        let mut accepted = 0usize;
        while spec.len() < prompt.len() + n {
            // Drafts: the true continuation with every 3rd round's 2nd token wrong.
            round += 1;
            let at = spec.len();
            let k = (round % 5) + 1;
            let mut drafts: Vec<u32> = plain[at..(at + k).min(plain.len())].to_vec();
            if round.is_multiple_of(3) && drafts.len() > 1 {
                drafts[1] = (drafts[1] + 1) % 16;
            }
            let mut history = spec.clone();
            history.extend_from_slice(&drafts);
            let rows: Vec<f32> = (0..=drafts.len()).flat_map(|i| fake_logits(&history[..at + i])).collect();
            let out = accept(&mut s, &rows, &history, &drafts, &mut row);
            accepted += out.len() - 1;
            spec.extend_from_slice(&out);
        }
        assert_eq!(&spec[..plain.len()], &plain[..], "seed {seed}, temperature {temperature}");
        assert!(accepted > n / 3, "only {accepted} drafts accepted");
    }
}
