//! Local sentence embeddings: all-MiniLM-L6-v2 (a 6-layer BERT) from a Hugging Face /
//! sentence-transformers directory (`config.json`, `model.safetensors`, `tokenizer.json`),
//! tokenised with the model's WordPiece tokenizer, truncated to 256 tokens, encoded in
//! batches on a private thread pool. The public API is `Embedder`.

mod bert;
mod matmul;

use bert::{Bert, BertConfig};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// The embedding width of all-MiniLM-L6-v2.
pub const DIM: usize = 384;
/// The model name clients ask for.
pub const MODEL_NAME: &str = "all-minilm-l6-v2";
/// The directory name of the model under the models directory.
pub const MODEL_DIR: &str = "all-minilm-l6-v2";
/// Tokens per text the model sees (sentence-transformers' `max_seq_length`), specials included.
pub const MAX_TOKENS: usize = 256;
/// Tokens encoded together in one forward pass (texts are packed, not padded).
const TOKENS_PER_PASS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model config: {0}")]
    Config(String),
    #[error("model weights: {0}")]
    Weights(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("input: {0}")]
    Input(String),
}

/// The default embedding model directory: `<models dir>/all-minilm-l6-v2`.
pub fn default_model_dir() -> PathBuf {
    crate::default_models_dir().join(MODEL_DIR)
}

/// A loaded sentence-embedding model; `embed_batch` may be called from many threads at once.
pub struct Embedder {
    bert: Bert,
    tokenizer: Tokenizer,
    pool: rayon::ThreadPool,
    threads: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Embedder {
    /// Loads the model in `dir` with one thread per core.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self::load_with_threads(dir, threads)
    }

    /// Loads the model in `dir`; its matmuls run on `threads` threads.
    pub fn load_with_threads(dir: &Path, threads: usize) -> Result<Self, EmbedError> {
        let threads = threads.max(1);
        let config: BertConfig = serde_json::from_slice(&read(&dir.join("config.json"))?)
            .map_err(|e| EmbedError::Config(e.to_string()))?;
        if config.hidden_size != DIM {
            return Err(EmbedError::Config(format!(
                "hidden size {} (expected {DIM})",
                config.hidden_size
            )));
        }
        let bert = Bert::from_safetensors(config, &read(&dir.join("model.safetensors"))?)?;
        let mut tokenizer = Tokenizer::from_bytes(read(&dir.join("tokenizer.json"))?)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        // tokenizer.json pads and truncates to 128; sentence-transformers truncates to 256.
        let max_length = MAX_TOKENS.min(bert.config().max_position_embeddings);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("embed-{i}"))
            .build()
            .map_err(|e| EmbedError::Config(format!("thread pool: {e}")))?;
        Ok(Self {
            bert,
            tokenizer,
            pool,
            threads,
        })
    }

    /// The threads the matmuls run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Tokens the model sees for `text`: its WordPiece tokens plus `[CLS]` and `[SEP]`,
    /// truncated to `MAX_TOKENS` (0 if the text cannot be tokenised).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.encode(text).map_or(0, |ids| ids.len())
    }

    /// Embeds each text into a unit-length `DIM`-vector, in order (texts longer than
    /// `MAX_TOKENS` tokens are truncated, as sentence-transformers does).
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_batch_counted(texts).map(|(vectors, _)| vectors)
    }

    /// `embed_batch`, also returning the tokens each text used (for usage accounting).
    pub fn embed_batch_counted(
        &self,
        texts: &[&str],
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>), EmbedError> {
        let sequences = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        let counts = sequences.iter().map(Vec::len).collect();
        let mut vectors = Vec::with_capacity(sequences.len());
        let mut start = 0;
        while start < sequences.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < sequences.len()
                && (end == start || tokens + sequences[end].len() <= TOKENS_PER_PASS)
            {
                tokens += sequences[end].len();
                end += 1;
            }
            let chunk = &sequences[start..end];
            vectors.extend(self.pool.install(|| self.bert.embed(chunk, self.threads))?);
            start = end;
        }
        Ok((vectors, counts))
    }
}
