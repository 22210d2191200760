//! The classifiers named in `[classifiers]`, loaded at start and answering policies'
//! `embeddings.score`: a trained router scores a text by its rank among its training
//! prompts, so a policy's `strong_share` is a share of traffic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::embeddings::{NO_MODEL, TextScorer};
use crate::router_model::{RouterModel, RouterModelError};

/// Loaded classifiers by name; `embed` is refused (no embedding model is loaded here).
#[derive(Debug, Default)]
pub struct Classifiers {
    routers: BTreeMap<String, RouterModel>,
}

impl Classifiers {
    /// Loads every `name → path` of the config's `[classifiers]`.
    pub fn load(paths: &BTreeMap<String, PathBuf>) -> Result<Self, RouterModelError> {
        let routers = paths
            .iter()
            .map(|(name, path)| Ok((name.clone(), RouterModel::load(path)?)))
            .collect::<Result<_, RouterModelError>>()?;
        Ok(Self { routers })
    }

    /// Classifiers from models already in memory.
    pub fn from_models(routers: BTreeMap<String, RouterModel>) -> Self {
        Self { routers }
    }

    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    /// The loaded names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.routers.keys().map(String::as_str).collect()
    }
}

impl TextScorer for Classifiers {
    fn embed(&self, _text: &str) -> Result<Arc<[f32]>, String> {
        Err(NO_MODEL.to_owned())
    }

    fn score(&self, classifier: &str, text: &str) -> Result<f64, String> {
        match self.routers.get(classifier) {
            Some(router) => Ok(router.rank_text(text)),
            None => Err(format!(
                "no classifier named {classifier:?} is loaded (loaded: {})",
                self.names().join(", ")
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::router_model::DENSE_FEATURES;

    fn router() -> RouterModel {
        let buckets = 16;
        RouterModel {
            buckets,
            bias: 0.0,
            weights: vec![0.5; buckets as usize + DENSE_FEATURES],
            dense_mean: vec![0.0; DENSE_FEATURES],
            dense_scale: vec![1.0; DENSE_FEATURES],
            score_quantiles: (0..=100).map(|i| i as f32 / 100.0).collect(),
        }
    }

    #[test]
    fn scores_by_rank_and_names_a_missing_classifier() {
        let classifiers = Classifiers::from_models(BTreeMap::from([("router".into(), router())]));
        let rank = classifiers.score("router", "Prove it.").unwrap();
        assert_eq!(rank, router().rank_text("Prove it."));
        assert!((0.0..=1.0).contains(&rank));
        let err = classifiers.score("other", "x").unwrap_err();
        assert!(err.contains("\"other\"") && err.contains("router"), "{err}");
        assert_eq!(classifiers.embed("x").unwrap_err(), NO_MODEL);
    }

    #[test]
    fn load_reads_files_and_reports_the_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("router.bin");
        std::fs::write(&good, router().to_bytes()).unwrap();
        let loaded = Classifiers::load(&BTreeMap::from([("router".into(), good)])).unwrap();
        assert_eq!(loaded.names(), ["router"]);
        let bad = dir.path().join("bad.bin");
        std::fs::write(&bad, b"not a model").unwrap();
        assert!(Classifiers::load(&BTreeMap::from([("router".into(), bad)])).is_err());
        let missing = dir.path().join("missing.bin");
        let err = Classifiers::load(&BTreeMap::from([("r".into(), missing)])).unwrap_err();
        assert!(err.to_string().contains("missing.bin"), "{err}");
    }
}
