//! [`LocalEmbeddings`]: the local engine's all-MiniLM-L6-v2 encoder behind [`TextScorer`],
//! so policies' `embeddings.embed` and clients' `/v1/embeddings` share one loaded model.

use std::path::Path;
use std::sync::Arc;

use switchyard_local::embed::{Embedder, MODEL_NAME};

use super::{Batch, TextScorer};

/// The in-process sentence-embedding model; it scores with no classifier.
#[derive(Debug)]
pub struct LocalEmbeddings {
    embedder: Embedder,
}

impl LocalEmbeddings {
    /// Loads the model in `dir` (config.json, model.safetensors, tokenizer.json) with
    /// `threads` threads for its matmuls (one per core when `None`).
    pub fn load(dir: &Path, threads: Option<usize>) -> Result<Self, String> {
        let loaded = match threads {
            Some(n) => Embedder::load_with_threads(dir, n),
            None => Embedder::load(dir),
        };
        loaded
            .map(|embedder| Self { embedder })
            .map_err(|e| format!("embedding model {}: {e}", dir.display()))
    }
}

impl TextScorer for LocalEmbeddings {
    fn embed(&self, text: &str) -> Result<Arc<[f32]>, String> {
        let batch = self.embed_batch(&[text])?;
        batch
            .vectors
            .into_iter()
            .next()
            .ok_or_else(|| "the embedding model answered no vector".to_owned())
    }

    fn score(&self, classifier: &str, _text: &str) -> Result<f64, String> {
        Err(format!("no classifier named {classifier:?} is loaded"))
    }

    fn embedding_model(&self) -> Option<&str> {
        Some(MODEL_NAME)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Batch, String> {
        let (vectors, counts) = self
            .embedder
            .embed_batch_counted(texts)
            .map_err(|e| e.to_string())?;
        Ok(Batch {
            vectors: vectors.into_iter().map(Arc::from).collect(),
            tokens: counts.iter().sum(),
        })
    }
}
