//! Backends: the object-safe [`Backend`] trait every connector implements, the
//! provider-neutral request/response/stream types, and construction from config.

pub mod anthropic;
mod chat_input;
mod chat_output;
pub mod fields;
pub mod gemini;
pub mod instrumented;
#[cfg(feature = "local-model")]
pub mod local;
pub mod openai;
pub mod sse;
mod upstream;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use futures_util::future::BoxFuture;

use crate::config::{BackendConfig, ConnectorKind};
use crate::domain::{BackendKind, ChatMessage};

/// A provider-neutral chat request, after the policy's rewrites and caps.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Upstream model name.
    pub model: String,
    /// Shared by every attempt of a request (a clone is a reference count, not a copy).
    pub messages: Arc<[ChatMessage]>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    /// The client's request as OpenAI JSON beyond what the gateway reads (shared by every
    /// attempt): forwarded unchanged to OpenAI-compatible targets, checked by the other
    /// connectors ([`Backend::check`]).
    pub passthrough: Passthrough,
}

/// The client's chat request as OpenAI JSON, kept so nothing it asked for is lost on the
/// way to an OpenAI-compatible upstream. Empty for requests the gateway builds itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Passthrough {
    /// Every top-level field of the client's body except `model`, `messages` and `stream`
    /// (the gateway sets those per attempt).
    pub fields: Arc<serde_json::Map<String, serde_json::Value>>,
    /// The messages as the client sent them (content parts, `tool_calls`, `tool_call_id`,
    /// `name`), one per entry of [`ChatRequest::messages`]; `None`: build them from the
    /// domain messages' text.
    pub messages: Option<Arc<[serde_json::Value]>>,
}

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A whole (non-streamed) completion.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Model that answered, as the upstream names it.
    pub model: String,
    pub content: String,
    /// OpenAI vocabulary: `stop`, `length`, `content_filter`, `tool_calls`.
    pub finish_reason: String,
    pub usage: Usage,
    /// The upstream's completion as it came (OpenAI-compatible upstreams): the client gets
    /// these bytes unchanged (tool calls, logprobs, refusals, every choice).
    pub raw: Option<bytes::Bytes>,
}

/// One event of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text.
    Delta(String),
    /// Generation ended (OpenAI vocabulary).
    Finish(String),
    /// Token usage (usually last).
    Usage(Usage),
    /// One `chat.completion.chunk` of an OpenAI-compatible upstream, its JSON as it came:
    /// forwarded to the client unchanged. `text_bytes`: the content it adds (an estimate
    /// when no usage arrives); `usage_only`: the chunk only reports usage (the gateway asks
    /// for it; a client that did not gets it dropped).
    Chunk {
        json: String,
        text_bytes: usize,
        usage_only: bool,
    },
}

/// An embeddings request for one upstream: the client's OpenAI body (`input`,
/// `encoding_format`, `dimensions`, `user`, ...) with `model` set per target.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub model: String,
    /// Every field of the client's body except `model` (shared by every attempt).
    pub fields: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// An upstream's embeddings in OpenAI's shape (`object: "list"`, `data`, `model`, `usage`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedResponse {
    /// The OpenAI JSON body the client gets.
    pub body: bytes::Bytes,
    /// Input tokens (the upstream's count, or an estimate where it reports none).
    pub prompt_tokens: u32,
}

/// A streamed completion; ends after the last event or at the first error.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, BackendError>> + Send>>;

/// Why a backend call failed. Messages never contain API keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("upstream returned {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after_s: Option<u64>,
        /// The provider's error type and code (`error.type`, `error.code`), kept for the
        /// client's error body.
        provider: Option<Box<ProviderError>>,
    },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("request refused: {0}")]
    InvalidRequest(String),
    /// The prompt does not fit this backend's context window (another one may fit it).
    #[error("prompt too long: {0}")]
    ContextExceeded(String),
    /// The request asks for something this backend cannot honour (a field, a content part);
    /// found before any upstream call, so another target may serve it.
    #[error("{0}")]
    Unsupported(String),
}

/// The type and code of a provider's error body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderError {
    pub kind: Option<String>,
    pub code: Option<String>,
}

impl BackendError {
    /// Whether the next target should be tried: connect errors, timeouts, a redirect, 401,
    /// 403 (this target's credentials or address are wrong, not the request), 429, 5xx, an
    /// unavailable backend, and a request this backend cannot honour. A request the
    /// upstream calls invalid is the client's problem.
    pub fn is_failover(&self) -> bool {
        match self {
            Self::Connect(_)
            | Self::Timeout(_)
            | Self::Unavailable(_)
            | Self::Protocol(_)
            | Self::ContextExceeded(_)
            | Self::Unsupported(_) => true,
            Self::Status { status, .. } => {
                (300..400).contains(status) || matches!(status, 401 | 403 | 429) || *status >= 500
            }
            Self::InvalidRequest(_) => false,
        }
    }

    /// Maps a reqwest error without its URL (which may carry a Gemini key).
    pub(crate) fn from_reqwest(err: reqwest::Error, phase: &'static str) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            Self::Timeout(phase)
        } else if err.is_connect() {
            Self::Connect(crate::log_text::with_causes(&err))
        } else {
            Self::Protocol(crate::log_text::with_causes(&err))
        }
    }
}

/// One backend. Object-safe: the gateway holds `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + 'static {
    /// Configured name (unique).
    fn name(&self) -> &str;
    /// Local or cloud.
    fn kind(&self) -> BackendKind;
    /// Models served; the first is the default.
    fn models(&self) -> &[String];
    /// Whether the backend can take requests at all (e.g. the local model loaded).
    fn ready(&self) -> bool {
        true
    }
    /// Requests waiting inside the backend (local queue).
    fn queue_depth(&self) -> u32 {
        0
    }
    /// Refuses, before any upstream call, a request that asks for something this backend
    /// cannot honour ([`BackendError::Unsupported`], naming the field and the backend).
    /// The default honours everything (OpenAI-compatible upstreams get the request whole).
    fn check(&self, _request: &ChatRequest) -> Result<(), BackendError> {
        Ok(())
    }
    /// A whole completion.
    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>>;
    /// A streamed completion; resolves once the upstream accepted the request.
    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>>;
    /// Embeddings of the request's input. The default serves none
    /// ([`BackendError::Unsupported`]): OpenAI, OpenAI-compatible and Gemini connectors do.
    fn embed(&self, request: EmbedRequest) -> BoxFuture<'_, Result<EmbedResponse, BackendError>> {
        let _ = request;
        let refusal =
            BackendError::Unsupported(format!("backend {:?} serves no embeddings", self.name()));
        Box::pin(std::future::ready(Err(refusal)))
    }
}

/// An API key read from the env var the config names. Debug never shows it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why a backend could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("backend {backend}: env var {env} is not set")]
    MissingKey { backend: String, env: String },
    #[error("backend {backend}: HTTP client: {message}")]
    Client { backend: String, message: String },
    #[error("backend {backend}: connector kind {kind:?} is not built from config alone")]
    Unsupported {
        backend: String,
        kind: ConnectorKind,
    },
}

/// Reads the API key named by the config, via `env` (so tests need not touch the process env).
pub fn api_key(
    cfg: &BackendConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ApiKey>, BuildError> {
    match &cfg.api_key_env {
        None => Ok(None),
        Some(var) => match env(var) {
            Some(k) if !k.is_empty() => Ok(Some(ApiKey::new(k))),
            _ => Err(BuildError::MissingKey {
                backend: cfg.name.clone(),
                env: var.clone(),
            }),
        },
    }
}

/// Builds a cloud connector from config. Local backends are built by the caller (they
/// need the model engine).
pub fn build_cloud(
    cfg: &BackendConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Backend>, BuildError> {
    let key = match cfg.kind {
        // OpenAI-compatible servers (vLLM, Ollama) may need no key.
        ConnectorKind::OpenaiCompatible if cfg.api_key_env.is_none() => None,
        _ => api_key(cfg, env)?,
    };
    match cfg.kind {
        ConnectorKind::Openai | ConnectorKind::OpenaiCompatible => {
            let backend = openai::OpenAi::new(cfg, key).map_err(|e| BuildError::Client {
                backend: cfg.name.clone(),
                message: e,
            })?;
            Ok(Arc::new(backend))
        }
        ConnectorKind::Anthropic => {
            let backend = anthropic::Anthropic::new(cfg, key).map_err(|e| BuildError::Client {
                backend: cfg.name.clone(),
                message: e,
            })?;
            Ok(Arc::new(backend))
        }
        ConnectorKind::Gemini => {
            let backend = gemini::Gemini::new(cfg, key).map_err(|e| BuildError::Client {
                backend: cfg.name.clone(),
                message: e.to_string(),
            })?;
            Ok(Arc::new(backend))
        }
        kind @ ConnectorKind::Local => Err(BuildError::Unsupported {
            backend: cfg.name.clone(),
            kind,
        }),
    }
}
