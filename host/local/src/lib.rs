//! Switchyard's local backend: llama-family GGUF models (SmolLM2 by default) on the CPU (plain
//! Rust with llama.cpp's numerics) or a GPU (burn), run on a dedicated inference thread behind
//! a bounded queue. The public API is `LocalEngine`.

pub mod embed;
pub mod engine;
pub mod gguf;
mod host;
pub mod model;
pub mod quant;
pub mod sampling;
mod simd;
pub mod structured;
pub mod tokenizer;

use crate::engine::{JobHandle, Shared};
use crate::gguf::{GgufError, GgufFile};
use crate::model::Llama;
use crate::structured::{Grammars, OutputFormat};
use crate::tokenizer::{TextCodec, TokenizerError};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

/// The default model file name inside the models directory.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The models directory: `$SWITCHYARD_MODELS`, else `models/` at the workspace root.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_MODELS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
        PathBuf::from,
    )
}

/// The default model file: `$SWITCHYARD_MODEL`, else the models directory's SmolLM2 file.
pub fn default_model_path() -> PathBuf {
    std::env::var_os("SWITCHYARD_MODEL").map_or_else(
        || default_models_dir().join(DEFAULT_MODEL_FILE),
        PathBuf::from,
    )
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub model_path: PathBuf,
    /// `auto` | `cpu` | `burn-cpu` | `cuda:N` | `wgpu`.
    pub device: String,
    /// Requests that may wait (queued or running) before `submit` answers `QueueFull`.
    pub queue_capacity: usize,
    /// Threads for the CPU kernels (default: all cores).
    pub threads: Option<usize>,
    /// Caps the model's context window.
    pub context_length: Option<u32>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            model_path: default_model_path(),
            device: "auto".into(),
            queue_capacity: 16,
            threads: None,
            context_length: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// (role, content) pairs, rendered with the model's chat template.
    pub messages: Vec<(String, String)>,
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// The reply must be JSON (`None`: free text).
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GenerateEvent {
    /// The next piece of text (always whole UTF-8 characters).
    Delta(String),
    Done {
        finish_reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
    /// The request failed inside the model (e.g. a backend panic); no `Done` follows.
    Error(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("model file {path}: {source}")]
    Model { path: String, source: GgufError },
    #[error("model file {path}: {source}")]
    Tokenizer {
        path: String,
        source: TokenizerError,
    },
    #[error("{0}")]
    Device(String),
    #[error("local model queue is full ({capacity} requests waiting); retry later")]
    QueueFull { capacity: usize },
    #[error(
        "prompt is {prompt_tokens} tokens; the local model's context window is {context} tokens"
    )]
    PromptTooLong { prompt_tokens: u32, context: u32 },
    /// The chat template failed to render these messages.
    #[error("{0}")]
    Template(String),
    /// The requested output format cannot be compiled (an unsupported or broken schema).
    #[error("response_format: {0}")]
    OutputFormat(String),
    #[error("the local inference thread has stopped")]
    WorkerGone,
}

/// The local model: tokenizer and chat template on the caller's thread, inference on a
/// dedicated worker thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    device: String,
    context: u32,
    capacity: usize,
    codec: Arc<TextCodec>,
    /// Built on the first request with an output format.
    grammars: OnceLock<Result<Grammars, String>>,
    shared: Arc<Shared>,
    queue: mpsc::SyncSender<JobHandle>,
    load_time: Duration,
}

impl LocalEngine {
    /// Loads the GGUF file, picks the device and starts the worker.
    pub fn start(config: LocalConfig) -> Result<Self, LocalError> {
        let started = std::time::Instant::now();
        let path = config.model_path.display().to_string();
        let model_err = |source| LocalError::Model {
            path: path.clone(),
            source,
        };
        let file = GgufFile::open(&config.model_path).map_err(model_err)?;
        let codec = TextCodec::from_gguf(&file).map_err(|source| LocalError::Tokenizer {
            path: path.clone(),
            source,
        })?;
        let (device, compute, device_name) = engine::resolve_device(&config.device)?;
        let context = config.context_length.map_or(usize::MAX, |c| c as usize);
        let model = Llama::load(&file, &device, compute, context).map_err(model_err)?;
        let name = file.opt_str("general.name").ok().flatten().map_or_else(
            || {
                config
                    .model_path
                    .file_stem()
                    .map_or_else(|| "local".to_string(), |s| s.to_string_lossy().into_owned())
            },
            str::to_string,
        );
        drop(file);
        let context = model.config.context_length as u32;
        let codec = Arc::new(codec);
        let shared = Arc::new(Shared { depth: 0.into() });
        let queue = engine::spawn_worker(model, Arc::clone(&codec), &config, Arc::clone(&shared))?;
        let load_time = started.elapsed();
        tracing::info!(model = %name, device = %device_name, context, ?load_time, "local model loaded");
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                device: device_name,
                context,
                capacity: config.queue_capacity.max(1),
                codec,
                grammars: OnceLock::new(),
                shared,
                queue,
                load_time,
            }),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.inner.name
    }

    /// The device the model runs on, in words (`cpu`, `cuda:0`, ...).
    pub fn device_name(&self) -> &str {
        &self.inner.device
    }

    /// How long `start` took (file read, weights, tokenizer, worker).
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    pub fn context_window(&self) -> u32 {
        self.inner.context
    }

    pub fn count_tokens(&self, text: &str) -> u32 {
        self.tokenize(text, false).len() as u32
    }

    /// Token ids of `text` (no BOS); with `parse_special`, `<|im_start|>` etc. are single ids.
    pub fn tokenize(&self, text: &str, parse_special: bool) -> Vec<u32> {
        self.inner
            .codec
            .encode(text, parse_special)
            .unwrap_or_default()
    }

    /// The prompt text the chat template renders for `messages`.
    pub fn render_prompt(&self, messages: &[(String, String)]) -> Result<String, LocalError> {
        self.inner
            .codec
            .render_chat(messages)
            .map_err(|e| LocalError::Template(e.to_string()))
    }

    /// Requests queued or running.
    pub fn queue_depth(&self) -> u32 {
        self.inner.shared.depth.load(Ordering::SeqCst)
    }

    /// The output-format compiler, built on first use (it indexes the vocabulary).
    fn grammars(&self) -> Result<&Grammars, LocalError> {
        self.inner
            .grammars
            .get_or_init(|| Grammars::new(Arc::clone(&self.inner.codec)))
            .as_ref()
            .map_err(|e| LocalError::OutputFormat(format!("cannot index the vocabulary: {e}")))
    }

    /// Queues a generation. Events stream on the returned receiver; dropping it cancels.
    pub fn submit(
        &self,
        req: GenerateRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<GenerateEvent>, LocalError> {
        let prompt_text = match &req.format {
            Some(format) => self.render_prompt(&format.instruct(&req.messages))?,
            None => self.render_prompt(&req.messages)?,
        };
        let prompt = self.tokenize(&prompt_text, true);
        let context = self.inner.context;
        if prompt.len() as u64 >= u64::from(context) {
            return Err(LocalError::PromptTooLong {
                prompt_tokens: prompt.len() as u32,
                context,
            });
        }
        let constraint = match &req.format {
            Some(format) => Some(
                self.grammars()?
                    .constraint(format)
                    .map_err(LocalError::OutputFormat)?,
            ),
            None => None,
        };
        let capacity = self.inner.capacity;
        let depth = &self.inner.shared.depth;
        if depth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                ((d as usize) < capacity).then_some(d + 1)
            })
            .is_err()
        {
            return Err(LocalError::QueueFull { capacity });
        }
        let (tx, rx) = engine::event_channel();
        match self
            .inner
            .queue
            .try_send(JobHandle::new(prompt, req, constraint, tx))
        {
            Ok(()) => Ok(rx),
            Err(err) => {
                depth.fetch_sub(1, Ordering::SeqCst);
                Err(match err {
                    mpsc::TrySendError::Full(_) => LocalError::QueueFull { capacity },
                    mpsc::TrySendError::Disconnected(_) => LocalError::WorkerGone,
                })
            }
        }
    }
}
