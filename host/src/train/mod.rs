//! Training the learned router: labelled prompts in, a fitted [`RouterModel`] out, with
//! cross-validation that holds out whole domains and the cost/quality curve it reaches.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::router_model::{DENSE_FEATURES, RouterModel, SparseFeatures, extract, sigmoid};

/// One labelled prompt: whether the weak and the strong backend answered it acceptably.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledPrompt {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub domain: String,
    pub prompt: String,
    pub weak_correct: bool,
    pub strong_correct: bool,
}

/// Reads JSON lines of [`LabelledPrompt`]; blank lines are skipped.
pub fn load_labelled(path: &Path) -> anyhow::Result<Vec<LabelledPrompt>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// Fitting knobs; the defaults are what `switchyard train router` uses.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub buckets: u32,
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            buckets: 4096,
            epochs: 30,
            learning_rate: 0.05,
            l2: 1e-4,
            seed: 17,
        }
    }
}

/// The label the router predicts: the weak backend's answer was not acceptable.
fn weak_fails(example: &LabelledPrompt) -> bool {
    !example.weak_correct
}

/// Fits a logistic regression by shuffled stochastic gradient descent (deterministic seed).
pub fn fit(examples: &[LabelledPrompt], options: &TrainOptions) -> RouterModel {
    let features: Vec<SparseFeatures> = examples
        .iter()
        .map(|e| extract(&e.prompt, options.buckets))
        .collect();
    let labels: Vec<f32> = examples
        .iter()
        .map(|e| if weak_fails(e) { 1.0 } else { 0.0 })
        .collect();
    let (dense_mean, dense_scale) = standardisation(&features);
    let mut model = RouterModel {
        buckets: options.buckets,
        bias: 0.0,
        weights: vec![0.0; options.buckets as usize + DENSE_FEATURES],
        dense_mean,
        dense_scale,
        score_quantiles: Vec::new(),
    };
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = options.seed.max(1);
    for epoch in 0..options.epochs {
        shuffle(&mut order, &mut rng);
        let rate = options.learning_rate / (1.0 + epoch as f32 * 0.1);
        for &i in &order {
            let (Some(x), Some(&y)) = (features.get(i), labels.get(i)) else {
                continue;
            };
            let p = sigmoid(f64::from(model.logit(x))) as f32;
            let gradient = p - y;
            model.bias -= rate * gradient;
            for &(bucket, value) in &x.hashed {
                if let Some(w) = model.weights.get_mut(bucket as usize) {
                    *w -= rate * (gradient * value + options.l2 * *w);
                }
            }
            let buckets = options.buckets as usize;
            for (d, &value) in x.dense.iter().enumerate() {
                let standardised = (value - model.dense_mean[d]) / model.dense_scale[d];
                if let Some(w) = model.weights.get_mut(buckets + d) {
                    *w -= rate * (gradient * standardised + options.l2 * *w);
                }
            }
        }
    }
    let mut scores: Vec<f32> = features.iter().map(|x| model.score(x) as f32).collect();
    model.score_quantiles = quantiles(&mut scores);
    model
}

fn standardisation(features: &[SparseFeatures]) -> (Vec<f32>, Vec<f32>) {
    let n = features.len().max(1) as f32;
    let mut mean = vec![0.0f32; DENSE_FEATURES];
    for x in features {
        for (m, v) in mean.iter_mut().zip(x.dense) {
            *m += v / n;
        }
    }
    let mut scale = vec![0.0f32; DENSE_FEATURES];
    for x in features {
        for ((s, m), v) in scale.iter_mut().zip(&mean).zip(x.dense) {
            *s += (v - m) * (v - m) / n;
        }
    }
    let scale = scale
        .into_iter()
        .map(|var| if var > 1e-12 { var.sqrt() } else { 1.0 })
        .collect();
    (mean, scale)
}

fn quantiles(scores: &mut [f32]) -> Vec<f32> {
    scores.sort_by(f32::total_cmp);
    let last = scores.len().saturating_sub(1);
    (0..=100)
        .filter_map(|q| scores.get(q * last / 100).copied())
        .collect()
}

/// xorshift64 Fisher–Yates: same seed, same order, on every machine.
fn shuffle(order: &mut [usize], state: &mut u64) {
    for i in (1..order.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        order.swap(i, (*state % (i as u64 + 1)) as usize);
    }
}

/// One held-out prompt: the router's score and whether each backend was acceptable.
#[derive(Debug, Clone, Copy)]
pub struct ScoredPrompt {
    pub score: f64,
    pub weak_correct: bool,
    pub strong_correct: bool,
}

/// Cross-validation by domain: domains are sorted and dealt round-robin into `folds`
/// folds; each fold is scored by a model trained on the others. Returns the held-out
/// scores grouped by fold.
pub fn cross_validate(
    examples: &[LabelledPrompt],
    folds: usize,
    options: &TrainOptions,
) -> Vec<Vec<ScoredPrompt>> {
    let domains: Vec<&str> = examples
        .iter()
        .map(|e| e.domain.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let folds = folds.clamp(2, domains.len().max(2));
    let fold_of = |domain: &str| domains.iter().position(|d| *d == domain).unwrap_or(0) % folds;
    (0..folds)
        .map(|fold| {
            let train: Vec<LabelledPrompt> = examples
                .iter()
                .filter(|e| fold_of(&e.domain) != fold)
                .cloned()
                .collect();
            let model = fit(&train, options);
            examples
                .iter()
                .filter(|e| fold_of(&e.domain) == fold)
                .map(|e| ScoredPrompt {
                    score: model.score_text(&e.prompt),
                    weak_correct: e.weak_correct,
                    strong_correct: e.strong_correct,
                })
                .collect()
        })
        .filter(|fold: &Vec<ScoredPrompt>| !fold.is_empty())
        .collect()
}

/// Quality when the `strong_share` highest-scoring prompts of a fold go to the strong
/// backend and the rest to the weak one (quality = share of acceptable answers).
pub fn routed_quality(fold: &[ScoredPrompt], strong_share: f64) -> f64 {
    let mut order: Vec<&ScoredPrompt> = fold.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let strong_count = (strong_share.clamp(0.0, 1.0) * fold.len() as f64).round() as usize;
    let correct = order
        .iter()
        .enumerate()
        .filter(|(rank, p)| {
            if *rank < strong_count {
                p.strong_correct
            } else {
                p.weak_correct
            }
        })
        .count();
    correct as f64 / fold.len().max(1) as f64
}

/// One point of the cost/quality curve, pooled over folds (weighted by fold size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub strong_share: f64,
    pub learned_quality: f64,
    pub random_quality: f64,
    /// Quality if every prompt went to the strong backend.
    pub strong_quality: f64,
}

/// The curve at `shares` (each 0..=1) over held-out folds.
pub fn curve(folds: &[Vec<ScoredPrompt>], shares: &[f64]) -> Vec<CurvePoint> {
    let total: usize = folds.iter().map(Vec::len).sum();
    let total = total.max(1) as f64;
    let rate = |pick: fn(&ScoredPrompt) -> bool| {
        folds.iter().flatten().filter(|p| pick(p)).count() as f64 / total
    };
    let weak = rate(|p| p.weak_correct);
    let strong = rate(|p| p.strong_correct);
    shares
        .iter()
        .map(|&share| CurvePoint {
            strong_share: share,
            learned_quality: folds
                .iter()
                .map(|f| routed_quality(f, share) * f.len() as f64 / total)
                .sum(),
            random_quality: weak * (1.0 - share) + strong * share,
            strong_quality: strong,
        })
        .collect()
}

/// Smallest strong share (1 % steps) whose quality reaches `target` of all-strong
/// quality, for the learned router and for random routing.
pub fn share_needed(folds: &[Vec<ScoredPrompt>], target: f64) -> (f64, f64) {
    let shares: Vec<f64> = (0..=100).map(|p| f64::from(p) / 100.0).collect();
    let points = curve(folds, &shares);
    let first = |pick: fn(&CurvePoint) -> f64| {
        points
            .iter()
            .find(|p| pick(p) >= target * p.strong_quality)
            .map_or(1.0, |p| p.strong_share)
    };
    (first(|p| p.learned_quality), first(|p| p.random_quality))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_quality_sends_the_top_scores_to_strong() {
        let fold = [
            ScoredPrompt {
                score: 0.9,
                weak_correct: false,
                strong_correct: true,
            },
            ScoredPrompt {
                score: 0.1,
                weak_correct: true,
                strong_correct: true,
            },
        ];
        assert_eq!(routed_quality(&fold, 0.0), 0.5);
        assert_eq!(routed_quality(&fold, 0.5), 1.0);
        assert_eq!(routed_quality(&fold, 1.0), 1.0);
    }
}
