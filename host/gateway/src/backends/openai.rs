//! OpenAI chat-completions connector; with a `base_url` it also serves OpenAI-compatible
//! upstreams (Together, Fireworks, Groq, vLLM, Ollama, OpenRouter). Wire types stay here.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::upstream::{self, send, sse_events};
use super::{
    ApiKey, Backend, BackendError, ChatRequest, ChatResponse, ChatStream, StreamEvent, Usage,
};
use crate::config::{BackendConfig, Timeouts};
use crate::domain::{BackendKind, Role};

/// Connector for `POST {base_url}/chat/completions`.
#[derive(Debug)]
pub struct OpenAi {
    name: String,
    models: Vec<String>,
    locality: BackendKind,
    url: reqwest::Url,
    key: Option<ApiKey>,
    timeouts: Timeouts,
    client: reqwest::Client,
}

impl OpenAi {
    pub fn new(cfg: &BackendConfig, key: Option<ApiKey>) -> Result<Self, String> {
        Ok(Self {
            name: cfg.name.clone(),
            models: cfg.models.clone(),
            locality: cfg.locality,
            url: upstream::endpoint(&cfg.base_url, "chat/completions")?,
            key,
            timeouts: cfg.timeouts,
            client: upstream::http_client(&cfg.timeouts).map_err(|e| e.to_string())?,
        })
    }

    async fn send(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, BackendError> {
        let body = WireRequest::from_request(request, stream);
        let body = serde_json::to_vec(&body).map_err(|e| BackendError::Protocol(e.to_string()))?;
        let mut builder = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            builder = builder.bearer_auth(key.expose());
        }
        send(builder, self.timeouts.first_byte).await
    }
}

impl Backend for OpenAi {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> BackendKind {
        self.locality
    }
    fn models(&self) -> &[String] {
        &self.models
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
        async move {
            let response = self.send(&request, false).await?;
            let body = response
                .bytes()
                .await
                .map_err(|e| BackendError::from_reqwest(e, "response body"))?;
            let wire: WireResponse = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("bad completion JSON: {e}")))?;
            let choice = wire
                .choices
                .into_iter()
                .next()
                .ok_or_else(|| BackendError::Protocol("completion has no choices".into()))?;
            let usage = wire.usage.map(Usage::from).unwrap_or_default();
            Ok(ChatResponse {
                model: wire.model.unwrap_or(request.model),
                content: choice.message.and_then(|m| m.content).unwrap_or_default(),
                finish_reason: choice.finish_reason.unwrap_or_else(|| "stop".into()),
                usage,
            })
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let response = self.send(&request, true).await?;
            Ok(sse_events(response.bytes_stream(), false, parse_chunk))
        }
        .boxed()
    }
}

fn parse_chunk(ev: &super::sse::SseEvent) -> Result<Option<Vec<StreamEvent>>, BackendError> {
    if ev.data.trim() == "[DONE]" {
        return Ok(None);
    }
    let chunk: WireChunk = serde_json::from_str(&ev.data)
        .map_err(|e| BackendError::Protocol(format!("bad stream chunk: {e}")))?;
    if let Some(err) = chunk.error {
        return Err(BackendError::Status {
            status: 502,
            message: err
                .message
                .unwrap_or_else(|| "error event in stream".into()),
            retry_after_s: None,
        });
    }
    let mut out = Vec::new();
    for choice in chunk.choices.unwrap_or_default() {
        if let Some(text) = choice.delta.and_then(|d| d.content)
            && !text.is_empty()
        {
            out.push(StreamEvent::Delta(text));
        }
        if let Some(reason) = choice.finish_reason {
            out.push(StreamEvent::Finish(reason));
        }
    }
    if let Some(usage) = chunk.usage {
        out.push(StreamEvent::Usage(usage.into()));
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------- wire types

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> WireRequest<'a> {
    fn from_request(r: &'a ChatRequest, stream: bool) -> Self {
        Self {
            model: &r.model,
            messages: r
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: match m.role {
                        Role::System => "system",
                        Role::User => "user",
                        Role::Assistant => "assistant",
                        Role::Tool => "tool",
                    },
                    content: &m.content,
                })
                .collect(),
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            stop: &r.stop,
            seed: r.seed,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireChunk {
    choices: Option<Vec<WireChunkChoice>>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    delta: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    message: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backends::sse::SseEvent;
    use crate::domain::ChatMessage;

    #[test]
    fn request_carries_sampling_and_stream_options() {
        let req = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![ChatMessage {
                role: Role::System,
                content: "be brief".into(),
            }]
            .into(),
            max_tokens: Some(7),
            temperature: Some(0.5),
            top_p: None,
            stop: vec!["\n".into()],
            seed: None,
        };
        let v = serde_json::to_value(WireRequest::from_request(&req, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"gpt-4o","messages":[{"role":"system","content":"be brief"}],
                "max_tokens":7,"temperature":0.5,"stop":["\n"],"stream":true,
                "stream_options":{"include_usage":true}})
        );
    }

    #[test]
    fn chunks_translate_to_events() {
        let ev = |d: &str| SseEvent {
            event: None,
            data: d.into(),
        };
        let out = parse_chunk(&ev(
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        ))
        .unwrap();
        assert_eq!(out, Some(vec![StreamEvent::Delta("Hi".into())]));
        let out = parse_chunk(&ev(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        ))
        .unwrap();
        assert_eq!(
            out,
            Some(vec![StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2
            })])
        );
        assert_eq!(parse_chunk(&ev("[DONE]")).unwrap(), None);
        assert!(parse_chunk(&ev("{not json")).is_err());
    }
}
