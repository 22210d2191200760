//! Next-token choice from logits: greedy, or temperature with top-k and top-p (nucleus)
//! from a seeded RNG.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
pub struct Sampler {
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    rng: StdRng,
}

impl Sampler {
    pub fn new(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, seed: u64) -> Self {
        Self {
            temperature,
            top_k,
            top_p,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0 || self.top_k == Some(1)
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let argmax = || {
            logits
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0 as u32
        };
        if self.greedy() {
            return argmax();
        }
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (i as u32, v / self.temperature))
            .collect();
        if cand.is_empty() {
            return argmax();
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = self.top_k.filter(|&k| k > 0) {
            cand.truncate(k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, v)| (v - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(p) = self.top_p.filter(|p| *p > 0.0 && *p < 1.0) {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|q| {
                    acc += q;
                    acc >= p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            cand.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_largest() {
        let mut s = Sampler::new(0.0, None, None, 1);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7) % 13) as f32 / 3.0).collect();
        let mut s = Sampler::new(1.0, Some(1), None, 9);
        assert_eq!(
            s.sample(&logits),
            Sampler::new(0.0, None, None, 0).sample(&logits)
        );
        let run = |seed| {
            let mut s = Sampler::new(0.8, Some(10), Some(0.9), seed);
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // One token holds almost all the mass: p = 0.5 leaves only it.
        let mut s = Sampler::new(1.0, None, Some(0.5), 3);
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.0, 10.0, 0.0, 0.0]), 1);
        }
    }
}
