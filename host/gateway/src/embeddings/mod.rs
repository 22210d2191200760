//! The host side of contract 0.2's `embeddings` import: [`TextScorer`], what a policy's
//! `embed` and `score` calls reach, its default ([`NoEmbeddings`]) and [`Memoized`], which
//! computes each text's embedding at most once while it is recent and shares it; with the
//! `local-model` feature, [`LocalEmbeddings`] runs all-MiniLM-L6-v2 in-process.

#[cfg(feature = "local-model")]
mod local;

#[cfg(feature = "local-model")]
pub use local::LocalEmbeddings;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// What the host answers a policy's `embeddings.embed` and `embeddings.score` with. The
/// embedding engine (all-MiniLM-L6-v2) and trained classifiers implement it; calls come
/// from policy decisions, under the decision's host-call budget.
pub trait TextScorer: std::fmt::Debug + Send + Sync + 'static {
    /// The L2-normalised sentence embedding of `text` (384 dims for all-MiniLM-L6-v2).
    fn embed(&self, text: &str) -> Result<Arc<[f32]>, String>;
    /// `text` scored by the classifier loaded as `classifier`, 0.0..=1.0.
    fn score(&self, classifier: &str, text: &str) -> Result<f64, String>;
    /// The embedding model's name (what `/v1/embeddings` clients ask for), when one is loaded.
    fn embedding_model(&self) -> Option<&str> {
        None
    }
    /// Embeds `texts` in one batch (`/v1/embeddings`); also answers the tokens they used.
    fn embed_batch(&self, texts: &[&str]) -> Result<Batch, String> {
        let _ = texts;
        Err(NO_MODEL.to_owned())
    }
}

/// Embeddings of a batch of texts, in order, and the tokens the model read for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub vectors: Vec<Arc<[f32]>>,
    pub tokens: usize,
}

/// The answer of a host without an embedding model.
pub const NO_MODEL: &str = "no embedding model loaded";

/// A host with no embedding model and no classifier: every call is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEmbeddings;

impl TextScorer for NoEmbeddings {
    fn embed(&self, _text: &str) -> Result<Arc<[f32]>, String> {
        Err(NO_MODEL.to_owned())
    }
    fn score(&self, _classifier: &str, _text: &str) -> Result<f64, String> {
        Err(NO_MODEL.to_owned())
    }
}

/// Texts whose embeddings [`Memoized`] keeps.
const RECENT_TEXTS: usize = 64;

/// A text and its embedding.
type Embedded = (Arc<str>, Arc<[f32]>);

/// Wraps a scorer so that the embedding of a recent text is computed once and shared: a
/// request's primary, canary and shadow decisions (each a policy call) embed its prompt
/// once. Errors are not kept.
pub struct Memoized {
    inner: Arc<dyn TextScorer>,
    recent: Mutex<VecDeque<Embedded>>,
}

impl std::fmt::Debug for Memoized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memoized").finish_non_exhaustive()
    }
}

impl Memoized {
    pub fn new(inner: Arc<dyn TextScorer>) -> Self {
        Self {
            inner,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TEXTS)),
        }
    }
}

impl TextScorer for Memoized {
    fn embed(&self, text: &str) -> Result<Arc<[f32]>, String> {
        let lock = || self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, v)) = lock().iter().find(|(t, _)| &**t == text) {
            return Ok(v.clone());
        }
        let vector = self.inner.embed(text)?;
        let mut recent = lock();
        if recent.len() == RECENT_TEXTS {
            recent.pop_front();
        }
        recent.push_back((Arc::from(text), vector.clone()));
        Ok(vector)
    }
    fn score(&self, classifier: &str, text: &str) -> Result<f64, String> {
        self.inner.score(classifier, text)
    }
    fn embedding_model(&self) -> Option<&str> {
        self.inner.embedding_model()
    }
    fn embed_batch(&self, texts: &[&str]) -> Result<Batch, String> {
        self.inner.embed_batch(texts)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Counting(AtomicU32);

    impl TextScorer for Counting {
        fn embed(&self, text: &str) -> Result<Arc<[f32]>, String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::from(vec![text.len() as f32]))
        }
        fn score(&self, _classifier: &str, _text: &str) -> Result<f64, String> {
            Ok(0.5)
        }
    }

    #[test]
    fn without_a_model_every_call_is_refused() {
        assert_eq!(NoEmbeddings.embed("hi").unwrap_err(), NO_MODEL);
        assert_eq!(NoEmbeddings.score("router", "hi").unwrap_err(), NO_MODEL);
    }

    #[test]
    fn a_recent_text_is_embedded_once() {
        let counting = Arc::new(Counting(AtomicU32::new(0)));
        let memo = Memoized::new(counting.clone());
        assert_eq!(&*memo.embed("abc").unwrap(), &[3.0]);
        assert_eq!(&*memo.embed("abc").unwrap(), &[3.0]);
        assert_eq!(counting.0.load(Ordering::Relaxed), 1);
        for i in 0..RECENT_TEXTS {
            memo.embed(&i.to_string()).unwrap();
        }
        memo.embed("abc").unwrap();
        assert_eq!(counting.0.load(Ordering::Relaxed), 2 + RECENT_TEXTS as u32);
        assert_eq!(memo.score("r", "x").unwrap(), 0.5);
    }
}
