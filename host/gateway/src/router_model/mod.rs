//! Learned router model: a logistic regression over cheap text features that scores how
//! likely the weak (local) backend is NOT good enough for a prompt. Shared by the trainer
//! (`switchyard train router`) and the gateway, so both compute the same features.

mod features;
mod format;

use std::path::Path;

pub use features::{DENSE_FEATURES, SparseFeatures, extract, final_question};

/// A trained router: weights over hashed word features and standardised dense features,
/// plus the training score quantiles that turn a strong-call share into a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterModel {
    /// Number of hash buckets for word unigrams and bigrams.
    pub buckets: u32,
    pub bias: f32,
    /// One weight per bucket, then one per dense feature.
    pub weights: Vec<f32>,
    /// Mean and scale used to standardise each dense feature.
    pub dense_mean: Vec<f32>,
    pub dense_scale: Vec<f32>,
    /// Scores at the 0th, 1st, ..., 100th percentile of the training prompts.
    pub score_quantiles: Vec<f32>,
}

/// Why a router model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RouterModelError {
    #[error("reading router model {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("router model is malformed: {0}")]
    Malformed(&'static str),
}

impl RouterModel {
    /// Loads a model written by [`RouterModel::to_bytes`].
    pub fn load(path: &Path) -> Result<Self, RouterModelError> {
        let bytes = std::fs::read(path).map_err(|source| RouterModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RouterModelError> {
        format::decode(bytes)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        format::encode(self)
    }

    /// Probability in [0, 1] that the weak backend is not good enough for `text`.
    pub fn score_text(&self, text: &str) -> f64 {
        self.score(&extract(text, self.buckets))
    }

    /// Probability in [0, 1] that the weak backend is not good enough, from features.
    pub fn score(&self, features: &SparseFeatures) -> f64 {
        sigmoid(f64::from(self.logit(features)))
    }

    /// The linear score before the sigmoid (the trainer's gradient needs it).
    pub fn logit(&self, features: &SparseFeatures) -> f32 {
        let mut z = self.bias;
        for &(bucket, value) in &features.hashed {
            if let Some(w) = self.weights.get(bucket as usize) {
                z += w * value;
            }
        }
        let dense_weights = self.weights.get(self.buckets as usize..).unwrap_or(&[]);
        for (i, (&value, w)) in features.dense.iter().zip(dense_weights).enumerate() {
            let mean = self.dense_mean.get(i).copied().unwrap_or(0.0);
            let scale = self.dense_scale.get(i).copied().unwrap_or(1.0);
            z += w * (value - mean) / scale;
        }
        z
    }

    /// `text`'s rank among the training prompts, 0.0..=1.0: the share of them that scored
    /// lower. Sending prompts ranked at or above `1 - s` to the strong backend sends about
    /// a share `s` of traffic like the training traffic there.
    pub fn rank_text(&self, text: &str) -> f64 {
        self.rank(self.score_text(text))
    }

    /// The rank of `score` among the training scores (linear between percentiles).
    pub fn rank(&self, score: f64) -> f64 {
        let q = &self.score_quantiles;
        let Some(last) = q.len().checked_sub(1).filter(|&l| l > 0) else {
            return score.clamp(0.0, 1.0);
        };
        let above = q.partition_point(|&v| f64::from(v) <= score);
        if above == 0 {
            return 0.0;
        }
        if above > last {
            return 1.0;
        }
        let (low, high) = (f64::from(q[above - 1]), f64::from(q[above]));
        let frac = if high > low {
            (score - low) / (high - low)
        } else {
            0.0
        };
        ((above - 1) as f64 + frac) / last as f64
    }

    /// The score threshold above which about `strong_share` (0..=1) of the training
    /// prompts went to the strong backend: operators pick a cost/quality point by share.
    pub fn threshold_for_share(&self, strong_share: f64) -> f64 {
        let share = strong_share.clamp(0.0, 1.0);
        let last = self.score_quantiles.len().saturating_sub(1);
        if last == 0 {
            return 0.5;
        }
        let position = (1.0 - share) * last as f64;
        let low = position.floor() as usize;
        let high = position.ceil() as usize;
        let at = |i: usize| f64::from(self.score_quantiles.get(i).copied().unwrap_or(0.5));
        let frac = position - low as f64;
        at(low) * (1.0 - frac) + at(high) * frac
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> RouterModel {
        let buckets = 8;
        let mut weights = vec![0.0; buckets as usize + DENSE_FEATURES];
        weights[3] = 1.5;
        weights[buckets as usize] = -0.25;
        RouterModel {
            buckets,
            bias: 0.1,
            weights,
            dense_mean: vec![0.5; DENSE_FEATURES],
            dense_scale: vec![2.0; DENSE_FEATURES],
            score_quantiles: (0..=100).map(|i| i as f32 / 100.0).collect(),
        }
    }

    #[test]
    fn bytes_round_trip_and_truncation_is_an_error() {
        let model = tiny_model();
        let bytes = model.to_bytes();
        assert_eq!(RouterModel::from_bytes(&bytes).ok(), Some(model));
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(RouterModel::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut wrong_magic = bytes.clone();
        wrong_magic[0] = b'X';
        assert!(RouterModel::from_bytes(&wrong_magic).is_err());
    }

    #[test]
    fn score_is_a_probability_and_follows_the_weights() {
        let model = tiny_model();
        let mut features = extract("What is two plus two?", model.buckets);
        assert!((0.0..=1.0).contains(&model.score(&features)));
        features.hashed = vec![];
        let without = model.score(&features);
        features.hashed = vec![(3, 1.0)];
        let with = model.score(&features);
        assert!((with.ln() - without.ln()) > 0.0, "{with} vs {without}");
        assert!((sigmoid(f64::from(model.logit(&features))) - with).abs() < 1e-12);
    }

    #[test]
    fn threshold_for_share_reads_the_quantiles() {
        let model = tiny_model();
        assert!((model.threshold_for_share(0.3) - 0.7).abs() < 1e-6);
        assert!((model.threshold_for_share(1.0) - 0.0).abs() < 1e-6);
        assert!((model.threshold_for_share(2.0) - 0.0).abs() < 1e-6);
        assert!((model.threshold_for_share(0.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rank_inverts_the_quantiles() {
        let model = tiny_model();
        assert_eq!(model.rank(-1.0), 0.0);
        assert_eq!(model.rank(2.0), 1.0);
        for share in [0.1, 0.35, 0.5, 0.8] {
            let rank = model.rank(model.threshold_for_share(share));
            assert!((rank - (1.0 - share)).abs() < 1e-6, "{share}: {rank}");
        }
        let text = "Find the degree of Q(sqrt(2)) over Q.";
        assert!((0.0..=1.0).contains(&model.rank_text(text)));
    }
}
