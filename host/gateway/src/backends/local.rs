//! Local backend: adapts [`switchyard_local::LocalEngine`] (its own inference thread and
//! bounded queue) to the [`Backend`] trait. A model that failed to load leaves the backend
//! present but not ready, so the gateway still serves its cloud backends.

use std::collections::VecDeque;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use switchyard_local::structured::OutputFormat;
use switchyard_local::{FinishReason, GenerateEvent, GenerateRequest, LocalEngine, LocalError};

use super::{Backend, BackendError, ChatRequest, ChatResponse, ChatStream, StreamEvent, Usage};
use crate::domain::{BackendKind, Role};

/// Completion tokens when the request sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// Sampling temperature when the request sets none (OpenAI's default).
pub const DEFAULT_TEMPERATURE: f32 = 1.0;

/// The local model as a backend.
#[derive(Debug)]
pub struct LocalBackend {
    name: String,
    models: Vec<String>,
    engine: Result<LocalEngine, String>,
}

impl LocalBackend {
    /// `engine`: the started engine, or why it could not start (reported, not fatal).
    pub fn new(name: String, models: Vec<String>, engine: Result<LocalEngine, String>) -> Self {
        Self {
            name,
            models,
            engine,
        }
    }

    fn engine(&self) -> Result<LocalEngine, BackendError> {
        self.engine
            .clone()
            .map_err(|e| BackendError::Unavailable(format!("local model not loaded: {e}")))
    }

    /// Renders, tokenizes and queues the request off the async workers.
    async fn submit(
        &self,
        request: ChatRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<GenerateEvent>, BackendError> {
        let engine = self.engine()?;
        let format = output_format(&request, &self.name)?;
        let req = GenerateRequest {
            messages: request
                .messages
                .iter()
                .map(|m| {
                    let role = match m.role {
                        Role::System => "system",
                        Role::User => "user",
                        Role::Assistant => "assistant",
                        Role::Tool => "tool",
                    };
                    (role.to_owned(), m.content.clone())
                })
                .collect(),
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: request.temperature.unwrap_or(DEFAULT_TEMPERATURE),
            top_k: None,
            top_p: request.top_p,
            seed: request.seed,
            stop: request.stop,
            format,
        };
        tokio::task::spawn_blocking(move || engine.submit(req))
            .await
            .map_err(|e| BackendError::Unavailable(format!("local submit task failed: {e}")))?
            .map_err(map_error)
    }
}

fn map_error(err: LocalError) -> BackendError {
    match err {
        LocalError::QueueFull { .. } | LocalError::WorkerGone => {
            BackendError::Unavailable(err.to_string())
        }
        LocalError::PromptTooLong { .. } => BackendError::ContextExceeded(err.to_string()),
        LocalError::Template(_) => BackendError::InvalidRequest(err.to_string()),
        LocalError::OutputFormat(_) => BackendError::Unsupported(err.to_string()),
        other => BackendError::Unavailable(other.to_string()),
    }
}

/// The `response_format` the local model honours: `text` (nothing to do), `json_object`,
/// or `json_schema` (always enforced, `strict` or not: every reply matches the schema; no
/// schema means any JSON object). Anything else is refused by name.
fn output_format(
    request: &ChatRequest,
    backend: &str,
) -> Result<Option<OutputFormat>, BackendError> {
    let Some(value) = request
        .passthrough
        .fields
        .get("response_format")
        .filter(|v| !super::fields::neutral(v))
    else {
        return Ok(None);
    };
    let refuse = |what: &str| Err(super::fields::unsupported(backend, "local", what));
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
        Some("json_schema") => match value.pointer("/json_schema/schema") {
            None | Some(Value::Null) => {
                Ok(Some(OutputFormat::JsonSchema(json!({"type": "object"}))))
            }
            Some(schema @ (Value::Object(_) | Value::Bool(true))) => {
                Ok(Some(OutputFormat::JsonSchema(schema.clone())))
            }
            Some(_) => {
                refuse("`response_format.json_schema.schema` that is not a JSON Schema object")
            }
        },
        other => refuse(&format!(
            "`response_format` of type {:?}",
            other.unwrap_or("?")
        )),
    }
}

fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

impl Backend for LocalBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }
    fn models(&self) -> &[String] {
        &self.models
    }
    fn ready(&self) -> bool {
        self.engine.is_ok()
    }
    fn queue_depth(&self) -> u32 {
        self.engine
            .as_ref()
            .map(LocalEngine::queue_depth)
            .unwrap_or(0)
    }

    fn check(&self, request: &ChatRequest) -> Result<(), BackendError> {
        super::fields::text_only(
            request,
            &self.name,
            "local",
            &["temperature", "top_p", "stop", "seed", "response_format"],
        )?;
        // The schema itself compiles at submit, off the async threads (the first one also
        // indexes the vocabulary); a schema it cannot compile is refused there, as
        // unsupported, before anything is queued.
        output_format(request, &self.name).map(drop)
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
        async move {
            let model = request.model.clone();
            let mut rx = self.submit(request).await?;
            let mut content = String::new();
            while let Some(event) = rx.recv().await {
                match event {
                    GenerateEvent::Delta(text) => content.push_str(&text),
                    GenerateEvent::Done {
                        finish_reason,
                        prompt_tokens,
                        completion_tokens,
                    } => {
                        return Ok(ChatResponse {
                            model,
                            content,
                            finish_reason: finish(finish_reason).to_owned(),
                            usage: Usage {
                                prompt_tokens,
                                completion_tokens,
                            },
                            raw: None,
                        });
                    }
                    GenerateEvent::Error(e) => {
                        return Err(BackendError::Unavailable(format!("local model: {e}")));
                    }
                }
            }
            Err(BackendError::Unavailable(
                "local model stopped before finishing".into(),
            ))
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let rx = self.submit(request).await?;
            let state = (rx, VecDeque::<StreamEvent>::new(), false);
            let stream =
                futures_util::stream::unfold(state, |(mut rx, mut pending, mut done)| async move {
                    loop {
                        if let Some(ev) = pending.pop_front() {
                            return Some((Ok(ev), (rx, pending, done)));
                        }
                        if done {
                            return None;
                        }
                        match rx.recv().await {
                            Some(GenerateEvent::Delta(text)) => {
                                pending.push_back(StreamEvent::Delta(text))
                            }
                            Some(GenerateEvent::Done {
                                finish_reason,
                                prompt_tokens,
                                completion_tokens,
                            }) => {
                                done = true;
                                pending.push_back(StreamEvent::Finish(
                                    finish(finish_reason).to_owned(),
                                ));
                                pending.push_back(StreamEvent::Usage(Usage {
                                    prompt_tokens,
                                    completion_tokens,
                                }));
                            }
                            Some(GenerateEvent::Error(e)) => {
                                return Some((
                                    Err(BackendError::Unavailable(format!("local model: {e}"))),
                                    (rx, pending, true),
                                ));
                            }
                            None => {
                                return Some((
                                    Err(BackendError::Unavailable(
                                        "local model stopped before finishing".into(),
                                    )),
                                    (rx, pending, true),
                                ));
                            }
                        }
                    }
                });
            let stream: ChatStream = stream.boxed();
            Ok(stream)
        }
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::ChatMessage;

    #[tokio::test]
    async fn unloaded_model_is_not_ready_and_fails_over() {
        let backend =
            LocalBackend::new("local".into(), vec!["m".into()], Err("no such file".into()));
        assert!(!backend.ready());
        let err = backend
            .chat(ChatRequest {
                model: "m".into(),
                messages: vec![ChatMessage {
                    role: Role::User,
                    content: "hi".into(),
                }]
                .into(),
                max_tokens: None,
                temperature: None,
                top_p: None,
                stop: vec![],
                seed: None,
                passthrough: Default::default(),
            })
            .await
            .unwrap_err();
        assert!(err.is_failover());
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn queue_full_fails_over_and_prompt_too_long_is_context() {
        assert!(map_error(LocalError::QueueFull { capacity: 1 }).is_failover());
        let e = map_error(LocalError::PromptTooLong {
            prompt_tokens: 9000,
            context: 8192,
        });
        assert!(matches!(e, BackendError::ContextExceeded(_)));
    }
}
