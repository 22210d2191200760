//! OpenAI chat-completions connector; with a `base_url` it also serves OpenAI-compatible
//! upstreams (Together, Fireworks, Groq, vLLM, Ollama, OpenRouter). The client's request
//! goes up whole (every field, its messages as sent) with only `model`, `stream`,
//! `stream_options.include_usage` and a policy's `max_tokens` cap set by the gateway; the
//! upstream's completion and chunks come back as they are. Wire types stay here.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::upstream::{self, MAX_REPLY_BYTES, Step, Translate, reply_body, send, sse_events};
use super::{
    ApiKey, Backend, BackendError, ChatRequest, ChatResponse, ChatStream, EmbedRequest,
    EmbedResponse, StreamEvent, Usage,
};
use crate::config::{BackendConfig, Timeouts};
use crate::domain::{BackendKind, ChatMessage, Role};
use serde_json::{Map, Value};

/// Connector for `POST {base_url}/chat/completions`.
#[derive(Debug)]
pub struct OpenAi {
    name: String,
    models: Vec<String>,
    locality: BackendKind,
    url: reqwest::Url,
    /// `{base_url}/embeddings`.
    embeddings_url: reqwest::Url,
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
            embeddings_url: upstream::endpoint(&cfg.base_url, "embeddings")?,
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
        let body = serde_json::to_vec(&WireBody::new(request, stream))
            .map_err(|e| BackendError::Protocol(e.to_string()))?;
        self.post(self.url.clone(), body).await
    }

    async fn post(
        &self,
        url: reqwest::Url,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, BackendError> {
        let mut builder = self
            .client
            .post(url)
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
            let body = reply_body(response, MAX_REPLY_BYTES).await?;
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
                raw: Some(body),
            })
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let response = self.send(&request, true).await?;
            Ok(sse_events(response.bytes_stream(), Chunks))
        }
        .boxed()
    }

    /// `POST {base_url}/embeddings` with the client's body; the reply comes back as sent.
    fn embed(&self, request: EmbedRequest) -> BoxFuture<'_, Result<EmbedResponse, BackendError>> {
        async move {
            let mut body = (*request.fields).clone();
            body.insert("model".into(), Value::String(request.model));
            let body =
                serde_json::to_vec(&body).map_err(|e| BackendError::Protocol(e.to_string()))?;
            let response = self.post(self.embeddings_url.clone(), body).await?;
            let body = reply_body(response, MAX_REPLY_BYTES).await?;
            let usage: EmbeddingsUsage = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("bad embeddings JSON: {e}")))?;
            Ok(EmbedResponse {
                prompt_tokens: usage.usage.map_or(0, |u| u.prompt_tokens),
                body,
            })
        }
        .boxed()
    }
}

/// The usage of an OpenAI embeddings reply (the rest passes through unread).
#[derive(Deserialize)]
struct EmbeddingsUsage {
    usage: Option<EmbeddingsTokens>,
}

#[derive(Deserialize)]
struct EmbeddingsTokens {
    #[serde(default)]
    prompt_tokens: u32,
}

/// OpenAI's chunks, passed through ([`parse_chunk`]) until `[DONE]`.
struct Chunks;

impl Translate for Chunks {
    fn event(&mut self, event: &super::sse::SseEvent) -> Result<Step, BackendError> {
        Ok(match parse_chunk(event)? {
            Some(events) => Step::More(events),
            None => Step::End(Vec::new()),
        })
    }
}

fn parse_chunk(ev: &super::sse::SseEvent) -> Result<Option<Vec<StreamEvent>>, BackendError> {
    if ev.data.trim() == "[DONE]" {
        return Ok(None);
    }
    let chunk: WireChunk = serde_json::from_str(&ev.data)
        .map_err(|e| BackendError::Protocol(format!("bad stream chunk: {e}")))?;
    if let Some(err) = chunk.error {
        let provider = super::upstream::provider_error(ev.data.as_bytes()).map(Box::new);
        return Err(BackendError::Status {
            status: 502,
            message: err
                .message
                .unwrap_or_else(|| "error event in stream".into()),
            retry_after_s: None,
            provider,
        });
    }
    let choices = chunk.choices.unwrap_or_default();
    let text_bytes = choices
        .iter()
        .filter_map(|c| c.delta.as_ref())
        .map(|d| {
            d.content.as_ref().map_or(0, String::len)
                + d.tool_calls
                    .iter()
                    .flatten()
                    .filter_map(|t| t.function.as_ref()?.arguments.as_ref())
                    .map(String::len)
                    .sum::<usize>()
        })
        .sum();
    let mut out = vec![StreamEvent::Chunk {
        json: ev.data.clone(),
        text_bytes,
        usage_only: choices.is_empty() && chunk.usage.is_some(),
    }];
    if let Some(usage) = chunk.usage {
        out.push(StreamEvent::Usage(usage.into()));
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------- wire types

/// The upstream body: the client's fields as sent, with what the gateway sets per attempt
/// in front (serialized in place: nothing the client sent is copied).
struct WireBody<'a> {
    fields: &'a Map<String, Value>,
    /// Set by the gateway; these replace the client's fields of the same name.
    set: Vec<(&'static str, Value)>,
    messages: Messages<'a>,
}

enum Messages<'a> {
    /// As the client sent them.
    Raw(&'a [Value]),
    /// Built from the domain messages' text (a request the gateway built, or messages a
    /// policy replaced wholesale).
    Text(&'a [ChatMessage]),
}

impl<'a> WireBody<'a> {
    fn new(r: &'a ChatRequest, stream: bool) -> Self {
        let fields = &*r.passthrough.fields;
        let mut set: Vec<(&'static str, Value)> = vec![
            ("model", Value::from(r.model.as_str())),
            ("stream", Value::Bool(stream)),
        ];
        if stream {
            let mut options = match fields.get("stream_options") {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            options.insert("include_usage".into(), Value::Bool(true));
            set.push(("stream_options", Value::Object(options)));
        }
        if let Some(max) = r.max_tokens {
            let named: Vec<&'static str> = ["max_tokens", "max_completion_tokens"]
                .into_iter()
                .filter(|k| fields.get(*k).is_some_and(|v| !v.is_null()))
                .collect();
            if named.is_empty() {
                set.push(("max_tokens", Value::from(max)));
            }
            set.extend(named.into_iter().map(|k| (k, Value::from(max))));
        }
        // Requests the gateway built carry their sampling settings only in typed form.
        let mut typed = |key: &'static str, value: Option<Value>| {
            if let Some(value) = value
                && !fields.contains_key(key)
            {
                set.push((key, value));
            }
        };
        typed("temperature", r.temperature.map(Value::from));
        typed("top_p", r.top_p.map(Value::from));
        typed("seed", r.seed.map(Value::from));
        typed(
            "stop",
            (!r.stop.is_empty()).then(|| Value::from(r.stop.clone())),
        );
        let messages = match &r.passthrough.messages {
            Some(raw) if raw.len() == r.messages.len() => Messages::Raw(raw),
            _ => Messages::Text(&r.messages),
        };
        Self {
            fields,
            set,
            messages,
        }
    }
}

impl Serialize for WireBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (key, value) in &self.set {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("messages", &self.messages)?;
        for (key, value) in self.fields {
            if key != "messages" && !self.set.iter().any(|(k, _)| k == key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl Serialize for Messages<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Self::Raw(raw) => raw.serialize(s),
            Self::Text(messages) => {
                let mut seq = s.serialize_seq(Some(messages.len()))?;
                for m in messages.iter() {
                    seq.serialize_element(&WireMessage {
                        role: match m.role {
                            Role::System => "system",
                            Role::User => "user",
                            Role::Assistant => "assistant",
                            Role::Tool => "tool",
                        },
                        content: &m.content,
                    })?;
                }
                seq.end()
            }
        }
    }
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
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
    delta: Option<WireDelta>,
}

#[derive(Deserialize)]
struct WireDelta {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Deserialize)]
struct WireToolCallDelta {
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    arguments: Option<String>,
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
    use std::sync::Arc;

    use super::*;
    use crate::backends::Passthrough;
    use crate::backends::sse::SseEvent;

    fn request(passthrough: Passthrough) -> ChatRequest {
        ChatRequest {
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
            passthrough,
        }
    }

    #[test]
    fn request_carries_sampling_and_stream_options() {
        let req = request(Passthrough::default());
        let v: Value = serde_json::to_value(WireBody::new(&req, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"gpt-4o","messages":[{"role":"system","content":"be brief"}],
                "max_tokens":7,"temperature":0.5,"stop":["\n"],"stream":true,
                "stream_options":{"include_usage":true}})
        );
    }

    #[test]
    fn client_fields_and_messages_pass_unchanged_with_the_gateways_overrides() {
        let fields = serde_json::json!({"model": "auto", "stream": false,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": "auto", "logprobs": true, "top_logprobs": 2, "x_vendor": {"k": [1]},
            "temperature": 0.25, "max_completion_tokens": 50,
            "stream_options": {"include_usage": false, "other": 1}});
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        let raw = serde_json::json!([{"role": "system", "content": [{"type": "text", "text": "be brief"}],
            "name": "s"}]);
        let Value::Array(raw) = raw else {
            unreachable!()
        };
        let req = request(Passthrough {
            fields: Arc::new(fields),
            messages: Some(raw.clone().into()),
        });
        let v: Value = serde_json::to_value(WireBody::new(&req, true)).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["stream"], true);
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true, "other": 1})
        );
        // The policy's cap replaces the field the client used, and adds no other.
        assert_eq!(v["max_completion_tokens"], 7);
        assert!(v.get("max_tokens").is_none());
        assert_eq!(v["temperature"], 0.25);
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["tools"][0]["function"]["name"], "f");
        assert_eq!(v["top_logprobs"], 2);
        assert_eq!(v["x_vendor"], serde_json::json!({"k": [1]}));
        assert_eq!(v["messages"], Value::Array(raw));
        let text = serde_json::to_string(&WireBody::new(&req, false)).unwrap();
        assert_eq!(text.matches("\"model\"").count(), 1, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["stream"], false);
        assert_eq!(v["stream_options"]["include_usage"], false);
    }

    #[test]
    fn chunks_pass_through_with_usage_read() {
        let ev = |d: &str| SseEvent {
            event: None,
            data: d.into(),
        };
        let data = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi","tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":null}]}"#;
        let out = parse_chunk(&ev(data)).unwrap();
        assert_eq!(
            out,
            Some(vec![StreamEvent::Chunk {
                json: data.into(),
                text_bytes: 4,
                usage_only: false
            }])
        );
        let data =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let out = parse_chunk(&ev(data)).unwrap();
        assert_eq!(
            out,
            Some(vec![
                StreamEvent::Chunk {
                    json: data.into(),
                    text_bytes: 0,
                    usage_only: true
                },
                StreamEvent::Usage(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2
                })
            ])
        );
        assert_eq!(parse_chunk(&ev("[DONE]")).unwrap(), None);
        assert!(parse_chunk(&ev("{not json")).is_err());
    }
}
