//! Domain types shared by the request path: chat messages, policy requests and decisions,
//! backend status and spend. `http`, `dispatch`, `policy` and `backends` all speak these;
//! wire formats (OpenAI JSON, provider JSON, WIT bindings) convert to and from them at the edge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One chat message (text content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// What a policy sees of a client request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRequest {
    pub id: String,
    /// Model alias the client asked for, e.g. `auto`.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub streaming: bool,
    pub tenant: String,
    /// Client metadata: `x-switchyard-*` headers, `metadata`, `user`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Prompt tokens counted by the host.
    #[serde(default)]
    pub prompt_tokens: u32,
    /// What the request needs from the model (contract 0.2 shows it to policies).
    #[serde(default)]
    pub needs: RequestNeeds,
}

/// The output format a client asked for (`response_format.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    Text,
    JsonObject,
    JsonSchema,
}

/// What a request needs from the model that serves it, read from the client's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestNeeds {
    /// Names of the tools (functions) offered.
    pub tools: Vec<String>,
    pub response_format: ResponseFormat,
    pub logprobs: bool,
    /// Image parts across all messages.
    pub images: u32,
    /// Choices asked for (`n`).
    pub n: u32,
    /// The model asked for is one a configured backend serves (not an alias).
    pub explicit_model: bool,
}

impl Default for RequestNeeds {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            response_format: ResponseFormat::Text,
            logprobs: false,
            images: 0,
            n: 1,
            explicit_model: false,
        }
    }
}

/// What one model of a backend can do, as its connector can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCapabilities {
    pub model: String,
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub json_object: bool,
    #[serde(default)]
    pub json_schema: bool,
    #[serde(default)]
    pub vision: bool,
    #[serde(default)]
    pub logprobs: bool,
    /// `n` > 1.
    #[serde(default)]
    pub multiple_choices: bool,
    pub context_window: u32,
    #[serde(default)]
    pub usd_per_mtok_in: f64,
    #[serde(default)]
    pub usd_per_mtok_out: f64,
}

impl ModelCapabilities {
    /// A text-only model: no tools, JSON, images, logprobs or several choices.
    pub fn text_only(model: &str, context_window: u32, price: (f64, f64)) -> Self {
        Self {
            model: model.to_owned(),
            tools: false,
            json_object: false,
            json_schema: false,
            vision: false,
            logprobs: false,
            multiple_choices: false,
            context_window,
            usd_per_mtok_in: price.0,
            usd_per_mtok_out: price.1,
        }
    }

    /// A model the connector passes everything to (OpenAI-compatible upstreams).
    pub fn full(model: &str, context_window: u32, price: (f64, f64)) -> Self {
        Self {
            tools: true,
            json_object: true,
            json_schema: true,
            vision: true,
            logprobs: true,
            multiple_choices: true,
            ..Self::text_only(model, context_window, price)
        }
    }
}

/// One place to send a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A policy's routing decision: targets in order (first is primary, the rest fallbacks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub targets: Vec<Target>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Decision {
    /// A decision for `backends` in order (each at its default model), with `reason` and
    /// nothing rewritten.
    pub fn to_backends<S: Into<String>>(
        backends: impl IntoIterator<Item = S>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            targets: backends
                .into_iter()
                .map(|b| Target {
                    backend: b.into(),
                    model: None,
                })
                .collect(),
            reason: reason.into(),
            messages: None,
            max_tokens: None,
            labels: BTreeMap::new(),
        }
    }
}

/// A policy's refusal: the client gets `status` with `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
}

/// What a policy returned: a route or a refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Route(Decision),
    Reject(Rejection),
}

/// Local model on this machine, or a cloud provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Local,
    Cloud,
}

/// Live status of one backend, as the policy reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub kind: BackendKind,
    /// Models served; the first is the default.
    pub models: Vec<String>,
    pub healthy: bool,
    #[serde(default)]
    pub latency_p50_ms: f64,
    #[serde(default)]
    pub latency_p95_ms: f64,
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default)]
    pub in_flight: u32,
    #[serde(default)]
    pub queue_depth: u32,
    #[serde(default)]
    pub usd_per_mtok_in: f64,
    #[serde(default)]
    pub usd_per_mtok_out: f64,
    pub context_window: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Per model, in `models` order (empty from old records: policies then see none).
    #[serde(default)]
    pub capabilities: Vec<ModelCapabilities>,
}

/// Spend for a scope (tenant), USD.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpendStatus {
    pub scope: String,
    #[serde(default)]
    pub today_usd: f64,
    #[serde(default)]
    pub month_usd: f64,
    #[serde(default)]
    pub daily_budget_usd: Option<f64>,
    #[serde(default)]
    pub monthly_budget_usd: Option<f64>,
    #[serde(default)]
    pub hard_cap_usd: Option<f64>,
}

/// Token estimate used when no tokenizer is at hand: about four bytes per token.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}
