//! Anthropic Messages API connector (`POST {base_url}/messages`): system prompt lifted out
//! of the messages, stop reasons and usage mapped to OpenAI's vocabulary, and the
//! `message_start`/`content_block_delta`/`message_delta`/`message_stop` stream translated.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::sse::SseEvent;
use super::upstream::{self, send, sse_events};
use super::{
    ApiKey, Backend, BackendError, ChatRequest, ChatResponse, ChatStream, StreamEvent, Usage,
};
use crate::config::{BackendConfig, Timeouts};
use crate::domain::{BackendKind, Role};

/// API version header value.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; used when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Connector for Anthropic's Messages API.
#[derive(Debug)]
pub struct Anthropic {
    name: String,
    models: Vec<String>,
    url: reqwest::Url,
    key: Option<ApiKey>,
    timeouts: Timeouts,
    client: reqwest::Client,
}

impl Anthropic {
    pub fn new(cfg: &BackendConfig, key: Option<ApiKey>) -> Result<Self, String> {
        Ok(Self {
            name: cfg.name.clone(),
            models: cfg.models.clone(),
            url: upstream::endpoint(&cfg.base_url, "messages")?,
            key,
            timeouts: cfg.timeouts,
            client: upstream::http_client(&cfg.timeouts).map_err(|e| e.to_string())?,
        })
    }

    async fn post(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, BackendError> {
        let body = serde_json::to_vec(&WireRequest::from_request(request, stream))
            .map_err(|e| BackendError::Protocol(e.to_string()))?;
        let mut builder = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", API_VERSION)
            .body(body);
        if let Some(key) = &self.key {
            builder = builder.header("x-api-key", key.expose());
        }
        send(builder, self.timeouts.first_byte).await
    }
}

/// Anthropic stop reason → OpenAI finish reason.
fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

impl Backend for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> BackendKind {
        BackendKind::Cloud
    }
    fn models(&self) -> &[String] {
        &self.models
    }

    fn check(&self, request: &ChatRequest) -> Result<(), BackendError> {
        super::fields::text_only(
            request,
            &self.name,
            "anthropic",
            &["temperature", "top_p", "stop"],
        )
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
        async move {
            let response = self.post(&request, false).await?;
            let body = response
                .bytes()
                .await
                .map_err(|e| BackendError::from_reqwest(e, "response body"))?;
            let wire: WireResponse = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("bad message JSON: {e}")))?;
            let content = wire
                .content
                .into_iter()
                .filter(|b| b.kind == "text")
                .filter_map(|b| b.text)
                .collect::<String>();
            Ok(ChatResponse {
                model: wire.model.unwrap_or(request.model),
                content,
                finish_reason: finish_reason(wire.stop_reason.as_deref().unwrap_or("end_turn"))
                    .to_owned(),
                usage: Usage {
                    prompt_tokens: wire.usage.input_tokens,
                    completion_tokens: wire.usage.output_tokens,
                },
                raw: None,
            })
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let response = self.post(&request, true).await?;
            let mut translator = StreamTranslator::default();
            Ok(sse_events(response.bytes_stream(), false, move |ev| {
                translator.event(ev)
            }))
        }
        .boxed()
    }
}

/// Carries the input token count from `message_start` to the final usage.
#[derive(Debug, Default)]
struct StreamTranslator {
    input_tokens: u32,
}

impl StreamTranslator {
    fn event(&mut self, ev: &SseEvent) -> Result<Option<Vec<StreamEvent>>, BackendError> {
        let parsed: WireEvent = serde_json::from_str(&ev.data)
            .map_err(|e| BackendError::Protocol(format!("bad stream event: {e}")))?;
        Ok(Some(match parsed {
            WireEvent::MessageStart { message } => {
                self.input_tokens = message.usage.input_tokens;
                Vec::new()
            }
            WireEvent::ContentBlockDelta { delta } => match (delta.kind.as_str(), delta.text) {
                ("text_delta", Some(text)) if !text.is_empty() => vec![StreamEvent::Delta(text)],
                _ => Vec::new(),
            },
            WireEvent::MessageDelta { delta, usage } => {
                let mut out = Vec::new();
                if let Some(stop) = delta.stop_reason {
                    out.push(StreamEvent::Finish(finish_reason(&stop).to_owned()));
                }
                if let Some(usage) = usage {
                    out.push(StreamEvent::Usage(Usage {
                        prompt_tokens: self.input_tokens.max(usage.input_tokens),
                        completion_tokens: usage.output_tokens,
                    }));
                }
                out
            }
            WireEvent::MessageStop => return Ok(None),
            WireEvent::Error { error } => {
                let status = match error.kind.as_str() {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    _ => 502,
                };
                return Err(BackendError::Status {
                    status,
                    message: error.message,
                    retry_after_s: None,
                    provider: Some(Box::new(super::ProviderError {
                        kind: Some(error.kind),
                        code: None,
                    })),
                });
            }
            WireEvent::Other => Vec::new(),
        }))
    }
}

// ---------------------------------------------------------------- wire types

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> WireRequest<'a> {
    fn from_request(r: &'a ChatRequest, stream: bool) -> Self {
        let system: Vec<&str> = r
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        Self {
            model: &r.model,
            max_tokens: r.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: r
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| WireMessage {
                    role: if m.role == Role::Assistant {
                        "assistant"
                    } else {
                        "user"
                    },
                    content: &m.content,
                })
                .collect(),
            // Anthropic's range is 0..=1; OpenAI's is 0..=2.
            temperature: r.temperature.map(|t| t.clamp(0.0, 1.0)),
            top_p: r.top_p,
            stop_sequences: &r.stop,
            stream,
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::ChatMessage;

    #[test]
    fn system_messages_are_lifted_and_temperature_clamped() {
        let msg = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let req = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            messages: vec![msg(Role::System, "be brief"), msg(Role::User, "hi")].into(),
            max_tokens: None,
            temperature: Some(1.5),
            top_p: None,
            stop: vec!["END".into()],
            seed: Some(1),
            passthrough: Default::default(),
        };
        let v = serde_json::to_value(WireRequest::from_request(&req, false)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"claude-sonnet-4-5","max_tokens":4096,"system":"be brief",
                "messages":[{"role":"user","content":"hi"}],"temperature":1.0,
                "stop_sequences":["END"]})
        );
    }
}
