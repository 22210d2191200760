//! The classifiers named in `[classifiers]`, loaded at start and answering policies'
//! `embeddings.score`: a trained router scores a text by its rank among its training
//! prompts, so a policy's `strong_share` is a share of traffic. Embedding calls go to the
//! embedding model given to [`Classifiers::with_embeddings`], if any.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::embeddings::{Batch, NO_MODEL, TextScorer};
use crate::router_model::{RouterModel, RouterModelError};

/// Why the config's classifiers or embedding model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("classifier: {0}")]
    Classifier(#[from] RouterModelError),
    #[error("{0}")]
    Embeddings(String),
}

/// Loaded classifiers by name, and the embedding model (without one, `embed` is refused).
#[derive(Default)]
pub struct Classifiers {
    routers: BTreeMap<String, RouterModel>,
    embeddings: Option<Arc<dyn TextScorer>>,
}

impl std::fmt::Debug for Classifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifiers")
            .field("routers", &self.names())
            .field("embedding_model", &self.embedding_model())
            .finish()
    }
}

impl Classifiers {
    /// The config's `[classifiers]` and `[embeddings]` model, loaded.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, LoadError> {
        let models = Self::load(&config.classifiers)?;
        Ok(match &config.embeddings {
            Some(embeddings) => models.with_embeddings(load_embeddings(embeddings)?),
            None => models,
        })
    }

    /// Loads every `name → path` of the config's `[classifiers]`.
    pub fn load(paths: &BTreeMap<String, PathBuf>) -> Result<Self, RouterModelError> {
        let routers = paths
            .iter()
            .map(|(name, path)| Ok((name.clone(), RouterModel::load(path)?)))
            .collect::<Result<_, RouterModelError>>()?;
        Ok(Self {
            routers,
            embeddings: None,
        })
    }

    /// Classifiers from models already in memory.
    pub fn from_models(routers: BTreeMap<String, RouterModel>) -> Self {
        Self {
            routers,
            embeddings: None,
        }
    }

    /// Answers `embed` (and `/v1/embeddings`) with `model`.
    pub fn with_embeddings(mut self, model: Arc<dyn TextScorer>) -> Self {
        self.embeddings = Some(model);
        self
    }

    /// No classifier and no embedding model.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty() && self.embeddings.is_none()
    }

    /// The loaded names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.routers.keys().map(String::as_str).collect()
    }
}

/// The local embedding model `[embeddings]` names.
#[cfg(feature = "local-model")]
fn load_embeddings(
    config: &crate::config::EmbeddingsConfig,
) -> Result<Arc<dyn TextScorer>, LoadError> {
    crate::embeddings::LocalEmbeddings::load(&config.model_dir, config.threads)
        .map(|model| Arc::new(model) as Arc<dyn TextScorer>)
        .map_err(LoadError::Embeddings)
}

/// Without the local engine there is no embedding model to load.
#[cfg(not(feature = "local-model"))]
fn load_embeddings(
    config: &crate::config::EmbeddingsConfig,
) -> Result<Arc<dyn TextScorer>, LoadError> {
    Err(LoadError::Embeddings(format!(
        "[embeddings] names {}, but this build has no local models (built without the local-model feature)",
        config.model_dir.display()
    )))
}

impl TextScorer for Classifiers {
    fn embed(&self, text: &str) -> Result<Arc<[f32]>, String> {
        match &self.embeddings {
            Some(model) => model.embed(text),
            None => Err(NO_MODEL.to_owned()),
        }
    }

    fn embedding_model(&self) -> Option<&str> {
        self.embeddings.as_deref()?.embedding_model()
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Batch, String> {
        match &self.embeddings {
            Some(model) => model.embed_batch(texts),
            None => Err(NO_MODEL.to_owned()),
        }
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
