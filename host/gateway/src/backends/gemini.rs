//! Google Gemini connector (`models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`): roles and system instruction translated, finish
//! reasons and usage mapped to OpenAI's vocabulary. The key travels in `x-goog-api-key`,
//! never in the URL.

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

/// Connector for the Gemini API.
#[derive(Debug)]
pub struct Gemini {
    name: String,
    models: Vec<String>,
    base_url: String,
    key: Option<ApiKey>,
    timeouts: Timeouts,
    client: reqwest::Client,
}

impl Gemini {
    pub fn new(cfg: &BackendConfig, key: Option<ApiKey>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            name: cfg.name.clone(),
            models: cfg.models.clone(),
            base_url: cfg.base_url.clone(),
            key,
            timeouts: cfg.timeouts,
            client: upstream::http_client(&cfg.timeouts)?,
        })
    }

    async fn post(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, BackendError> {
        if request.model.is_empty()
            || !request
                .model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(BackendError::InvalidRequest(format!(
                "model name {:?} is not valid for Gemini",
                request.model
            )));
        }
        let url = if stream {
            format!(
                "{}/models/{}:streamGenerateContent?alt=sse",
                self.base_url, request.model
            )
        } else {
            format!("{}/models/{}:generateContent", self.base_url, request.model)
        };
        let body = serde_json::to_vec(&WireRequest::from_request(request))
            .map_err(|e| BackendError::Protocol(e.to_string()))?;
        let mut builder = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            builder = builder.header("x-goog-api-key", key.expose());
        }
        send(builder, self.timeouts.first_byte).await
    }
}

/// Gemini finish reason → OpenAI finish reason.
fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => "content_filter",
        _ => "stop",
    }
}

fn text_of(candidate: &WireCandidate) -> String {
    candidate
        .content
        .as_ref()
        .map(|c| c.parts.iter().filter_map(|p| p.text.as_deref()).collect())
        .unwrap_or_default()
}

impl Backend for Gemini {
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
            "gemini",
            &["temperature", "top_p", "stop", "seed"],
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
                .map_err(|e| BackendError::Protocol(format!("bad generateContent JSON: {e}")))?;
            let candidate = wire.candidates.first().ok_or_else(|| {
                BackendError::Protocol("response has no candidates (prompt blocked?)".into())
            })?;
            let usage = wire.usage_metadata.map(Usage::from).unwrap_or_default();
            Ok(ChatResponse {
                model: wire.model_version.clone().unwrap_or(request.model),
                content: text_of(candidate),
                finish_reason: finish_reason(candidate.finish_reason.as_deref().unwrap_or("STOP"))
                    .to_owned(),
                usage,
                raw: None,
            })
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let response = self.post(&request, true).await?;
            Ok(sse_events(response.bytes_stream(), true, translate))
        }
        .boxed()
    }
}

fn translate(ev: &SseEvent) -> Result<Option<Vec<StreamEvent>>, BackendError> {
    let wire: WireResponse = serde_json::from_str(&ev.data)
        .map_err(|e| BackendError::Protocol(format!("bad stream chunk: {e}")))?;
    if let Some(err) = wire.error {
        let provider = upstream::provider_error(ev.data.as_bytes()).map(Box::new);
        return Err(BackendError::Status {
            status: err.code.unwrap_or(502),
            message: err.message.unwrap_or_else(|| "error in stream".into()),
            retry_after_s: None,
            provider,
        });
    }
    let mut out = Vec::new();
    if let Some(candidate) = wire.candidates.first() {
        let text = text_of(candidate);
        if !text.is_empty() {
            out.push(StreamEvent::Delta(text));
        }
        if let Some(reason) = &candidate.finish_reason {
            out.push(StreamEvent::Finish(finish_reason(reason).to_owned()));
        }
    }
    if let Some(usage) = wire.usage_metadata {
        out.push(StreamEvent::Usage(usage.into()));
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------- wire types

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    contents: Vec<WireContentOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem>,
    generation_config: WireGenerationConfig<'a>,
}

#[derive(Serialize)]
struct WireContentOut<'a> {
    role: &'static str,
    parts: [WirePartOut<'a>; 1],
}

#[derive(Serialize)]
struct WirePartOut<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct WireSystem {
    parts: [WireSystemPart; 1],
}

#[derive(Serialize)]
struct WireSystemPart {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

impl<'a> WireRequest<'a> {
    fn from_request(r: &'a ChatRequest) -> Self {
        let system: Vec<&str> = r
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        Self {
            contents: r
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| WireContentOut {
                    role: if m.role == Role::Assistant {
                        "model"
                    } else {
                        "user"
                    },
                    parts: [WirePartOut { text: &m.content }],
                })
                .collect(),
            system_instruction: (!system.is_empty()).then(|| WireSystem {
                parts: [WireSystemPart {
                    text: system.join("\n\n"),
                }],
            }),
            generation_config: WireGenerationConfig {
                max_output_tokens: r.max_tokens,
                temperature: r.temperature,
                top_p: r.top_p,
                stop_sequences: &r.stop,
                seed: r.seed,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireContentIn>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContentIn {
    #[serde(default)]
    parts: Vec<WirePartIn>,
}

#[derive(Deserialize)]
struct WirePartIn {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u32,
    #[serde(default)]
    candidates_token_count: u32,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<u16>,
    message: Option<String>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u.candidates_token_count,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::ChatMessage;

    #[test]
    fn request_uses_gemini_roles_and_system_instruction() {
        let msg = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let req = ChatRequest {
            model: "gemini-2.0-flash".into(),
            messages: vec![
                msg(Role::System, "be brief"),
                msg(Role::User, "hi"),
                msg(Role::Assistant, "hello"),
                msg(Role::User, "again"),
            ]
            .into(),
            max_tokens: Some(10),
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: None,
            passthrough: Default::default(),
        };
        let v = serde_json::to_value(WireRequest::from_request(&req)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"contents":[{"role":"user","parts":[{"text":"hi"}]},
                {"role":"model","parts":[{"text":"hello"}]},{"role":"user","parts":[{"text":"again"}]}],
                "systemInstruction":{"parts":[{"text":"be brief"}]},
                "generationConfig":{"maxOutputTokens":10}})
        );
    }

    #[test]
    fn finish_reasons_map_to_openai() {
        assert_eq!(finish_reason("STOP"), "stop");
        assert_eq!(finish_reason("MAX_TOKENS"), "length");
        assert_eq!(finish_reason("SAFETY"), "content_filter");
    }
}
