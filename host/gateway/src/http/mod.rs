//! HTTP surface (axum): `/v1/chat/completions` (JSON and SSE), `/v1/embeddings`, `/v1/models`, `/healthz`,
//! `/readyz`. Knows only [`crate::dispatch`], domain types and OpenAI-shaped errors.

mod body;
mod embeddings;
mod listener;
pub mod tenants;
pub mod wire;

pub use listener::serve;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::backends::{ChatResponse, ChatStream, Passthrough, StreamEvent, Usage};
use crate::dispatch::{ClientRequest, DispatchError, Dispatcher, Refused, Routed};
use crate::log_text::sanitize;

/// Longest client- or policy-controlled value (model, tenant, reason) in a log line.
const LOG_VALUE_MAX: usize = 256;
/// Longest error text in a log line (it may quote client or upstream text).
const LOG_ERROR_MAX: usize = 1024;

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub dispatcher: Arc<Dispatcher>,
    pub max_body_bytes: usize,
    /// Client API keys (sha256 hex → tenant). Empty: no authentication, the tenant comes
    /// from the request. Otherwise a valid `Authorization: Bearer KEY` is required and
    /// fixes the tenant.
    pub client_keys: Arc<BTreeMap<String, String>>,
    /// Which client-named tenants are admitted (unused with client keys).
    pub tenants: Arc<tenants::TenantGate>,
}

/// The tenant of a request's API key, or a 401 when keys are configured and the request
/// has no valid one.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if state.client_keys.is_empty() {
        return Ok(None);
    }
    use sha2::Digest;
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing API key: send Authorization: Bearer <key>",
        )
        .with_code("invalid_api_key"));
    };
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    match state.client_keys.get(&digest) {
        Some(tenant) => Ok(Some(tenant.clone())),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid API key",
        )
        .with_code("invalid_api_key")),
    }
}

/// The gateway's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown route",
            )
            .with_code("not_found")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method not allowed on this route (chat completions take POST)",
            )
            .with_code("method_not_allowed")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An OpenAI-shaped error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: Cow<'static, str>,
    code: Option<Cow<'static, str>>,
    message: String,
    /// Sent as `Retry-After` (an upstream's 429).
    retry_after_s: Option<u64>,
    /// What decided the request, once its policy ran (boxed: most errors have none).
    decided: Option<Box<Decided>>,
}

/// The policy version that decided a request (sent as `x-switchyard-policy`) and the
/// request's id (`x-request-id`).
#[derive(Debug)]
struct Decided {
    policy: String,
    request_id: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: Cow::Borrowed(kind),
            code: None,
            message: message.into(),
            retry_after_s: None,
            decided: None,
        }
    }
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(Cow::Borrowed(code));
        self
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        let mut api = Self::from(refused.error);
        if let Some(policy) = refused.policy {
            api.decided = Some(Box::new(Decided {
                policy,
                request_id: refused.request_id,
            }));
        }
        api
    }
}

impl From<DispatchError> for ApiError {
    fn from(err: DispatchError) -> Self {
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let (kind, code) = match &err {
            DispatchError::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            DispatchError::Rejected { .. } => ("policy_rejection", "rejected"),
            DispatchError::NoTargets { .. } => ("service_unavailable", "no_targets"),
            DispatchError::PolicyFailed { .. } => ("service_unavailable", "policy_failed"),
            DispatchError::LocalOnly { .. } => ("service_unavailable", "local_only"),
            DispatchError::Budget(_) => ("insufficient_quota", "budget_exceeded"),
            DispatchError::RateLimited { limit, .. } => (*limit, "rate_limit_exceeded"),
            DispatchError::Ledger(_) => ("service_unavailable", "ledger_unavailable"),
            DispatchError::Upstream { .. } => ("upstream_error", "upstream_refused"),
            DispatchError::Unsupported(_) => ("invalid_request_error", "unsupported_parameter"),
            DispatchError::AllFailed { .. } => ("upstream_error", "all_targets_failed"),
        };
        let mut api = Self::new(status, kind, err.to_string()).with_code(code);
        if let DispatchError::Rejected { policy, .. }
        | DispatchError::NoTargets { policy, .. }
        | DispatchError::PolicyFailed { policy } = &err
        {
            api.decided = Some(Box::new(Decided {
                policy: policy.clone(),
                request_id: None,
            }));
        }
        if let DispatchError::RateLimited { retry_after_s, .. } = err {
            api.retry_after_s = Some(retry_after_s);
            return api;
        }
        if let DispatchError::Upstream {
            retry_after_s,
            provider,
            ..
        } = err
        {
            // The provider's own error type and code, where it gave them.
            api.retry_after_s = retry_after_s;
            if let Some(provider) = provider {
                if let Some(kind) = provider.kind {
                    api.kind = Cow::Owned(kind);
                }
                api.code = provider.code.map(Cow::Owned).or(api.code);
            }
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = wire::ErrorBody {
            error: wire::ErrorDetail {
                message: &self.message,
                kind: &self.kind,
                code: self.code.as_deref(),
                param: None,
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response();
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(decided) = &self.decided {
            let headers = response.headers_mut();
            headers.insert(
                HeaderName::from_static("x-switchyard-policy"),
                header_value(&decided.policy),
            );
            if let Some(id) = &decided.request_id {
                headers.insert(HeaderName::from_static("x-request-id"), header_value(id));
            }
        }
        response
    }
}

fn header_value(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .take(200)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

fn decision_headers(headers: &mut HeaderMap, routed: &Routed, cost: Option<f64>) {
    let mut put = |name: &'static str, value: &str| {
        headers.insert(HeaderName::from_static(name), header_value(value));
    };
    put("x-request-id", &routed.request_id);
    put("x-switchyard-tenant", &routed.tenant);
    put("x-switchyard-policy", &routed.policy);
    put("x-switchyard-reason", &routed.reason);
    if !routed.backend.is_empty() {
        put("x-switchyard-backend", &routed.backend);
        put("x-switchyard-model", &routed.model);
    }
    if let Some(cost) = cost {
        put("x-switchyard-cost-usd", &format!("{cost:.8}"));
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Tenant and labels from `x-switchyard-*` headers, `metadata` and `user`
/// ([`wire::routing_inputs`]).
fn routing_inputs(
    headers: &HeaderMap,
    user: Option<String>,
    metadata: Option<BTreeMap<String, serde_json::Value>>,
) -> (String, BTreeMap<String, String>) {
    let from_headers = headers.iter().filter_map(|(name, value)| {
        let key = name.as_str().strip_prefix("x-switchyard-")?;
        let value = value.to_str().ok()?;
        (!key.is_empty()).then(|| (key.to_owned(), value.to_owned()))
    });
    wire::routing_inputs(user, metadata, from_headers)
}

/// The client's request: the fields the gateway reads, typed, and the whole body kept as
/// JSON for the targets that take it as sent ([`Passthrough`]).
fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<(ClientRequest, bool), ApiError> {
    let invalid = |e: serde_json::Error| ApiError::invalid(format!("invalid request body: {e}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    let req = wire::ChatCompletionRequest::deserialize(&value).map_err(invalid)?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    let raw_messages = match fields.remove("messages") {
        Some(serde_json::Value::Array(list)) => list,
        _ => Vec::new(),
    };
    for key in ["model", "stream"] {
        fields.remove(key);
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty"));
    }
    if req.n == Some(0) {
        return Err(ApiError::invalid("`n` must be at least 1"));
    }
    if let Some(t) = req.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::invalid("`temperature` must be between 0 and 2"));
    }
    let messages: Vec<_> = req
        .messages
        .into_iter()
        .map(wire::RequestMessage::into_domain)
        .collect();
    let (tenant, labels) = routing_inputs(headers, req.user, req.metadata);
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    Ok((
        ClientRequest {
            model: req.model,
            messages: messages.into(),
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            temperature: req.temperature,
            top_p: req.top_p,
            stop: req.stop.map(wire::Stop::into_vec).unwrap_or_default(),
            seed: req.seed,
            stream: req.stream.unwrap_or(false),
            tenant,
            labels,
            passthrough: Passthrough {
                fields: Arc::new(fields),
                messages: Some(raw_messages.into()),
            },
        },
        include_usage,
    ))
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let (request, include_usage) = match client_request(&state, &headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let span = tracing::info_span!(
        "request",
        tenant = %sanitize(&request.tenant, LOG_VALUE_MAX),
        model = %sanitize(&request.model, LOG_VALUE_MAX),
        stream = request.stream,
        id = tracing::field::Empty,
        policy = tracing::field::Empty,
        backend = tracing::field::Empty,
    );
    let served = if request.stream {
        state
            .dispatcher
            .stream(&request)
            .await
            .map(|(routed, stream)| {
                crate::metrics::time_to_first_token(&routed.backend, started.elapsed());
                tracing::info!(parent: &span, reason = %sanitize(&routed.reason, LOG_VALUE_MAX), "streaming");
                (routed, Served::Stream(stream))
            })
    } else {
        state
            .dispatcher
            .complete(&request)
            .await
            .map(|(routed, response)| {
                let cost = routed.cost_usd(&response.usage);
                crate::metrics::usage(
                    &routed.backend,
                    response.usage.prompt_tokens,
                    response.usage.completion_tokens,
                    cost,
                );
                tracing::info!(
                    parent: &span,
                    reason = %sanitize(&routed.reason, LOG_VALUE_MAX),
                    prompt_tokens = response.usage.prompt_tokens,
                    completion_tokens = response.usage.completion_tokens,
                    cost_usd = cost,
                    "completed"
                );
                (routed, Served::Whole(response))
            })
    };
    match served {
        Ok((routed, served)) => {
            span.record("id", routed.request_id.as_str());
            span.record("backend", routed.backend.as_str());
            crate::metrics::request(
                &routed.backend,
                &routed.policy,
                &routed.reason,
                200,
                request.stream,
                started.elapsed(),
            );
            match served {
                Served::Stream(stream) => stream_response(routed, stream, include_usage),
                Served::Whole(response) => completion_response(&routed, &response),
            }
        }
        Err(refused) => {
            let err = &refused.error;
            if let Some(id) = &refused.request_id {
                span.record("id", id.as_str());
            }
            let message = err.to_string();
            let error = sanitize(&message, LOG_ERROR_MAX);
            if err.status() >= 500 {
                tracing::warn!(parent: &span, %error, "request failed");
            } else {
                // The client's own doing (a limit, a budget, a bad field): counted in
                // the metrics; a client repeating it must not flood the log.
                tracing::debug!(parent: &span, %error, "request refused");
            }
            let policy = match &refused.policy {
                Some(policy) => policy.clone(),
                None => state.dispatcher.policy_label(),
            };
            crate::metrics::request(
                "none",
                &policy,
                "",
                err.status(),
                request.stream,
                started.elapsed(),
            );
            ApiError::from(refused).into_response()
        }
    }
}

/// What a request was served with.
enum Served {
    Whole(ChatResponse),
    Stream(ChatStream),
}

/// The client's request from its headers and body: authenticated (the key's tenant
/// pays, whatever the headers say), parsed and checked.
/// The request body, or the error for one too large, too slow or unreadable.
fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    match body {
        Ok(b) => Ok(b),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("request body exceeds {} bytes", state.max_body_bytes),
            )
            .with_code("body_too_large"))
        }
        Err(rejection) if body::is_timeout(&rejection) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request body not received in time",
        )
        .with_code("body_timeout")),
        Err(rejection) => Err(ApiError::invalid(rejection.body_text())),
    }
}

fn client_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(ClientRequest, bool), ApiError> {
    let body = read_body(state, body)?;
    let key_tenant = authenticate(state, headers)?;
    let (mut request, include_usage) = parse_request(headers, &body)?;
    request.tenant = match key_tenant {
        // The key decides who pays; a client cannot bill another tenant by header.
        Some(tenant) => tenant,
        None => state
            .tenants
            .admit(std::mem::take(&mut request.tenant))
            .map_err(tenant_refused)?,
    };
    Ok((request, include_usage))
}

/// The client's answer for a tenant name that was not admitted (never echoing the name).
fn tenant_refused(why: tenants::Refusal) -> ApiError {
    use tenants::Refusal;
    match why {
        Refusal::Invalid => ApiError::invalid(format!(
            "invalid tenant name (x-switchyard-tenant, metadata.tenant or user): 1 to {} \
             characters of A-Z a-z 0-9 . _ - @ +",
            tenants::MAX_TENANT_LEN
        ))
        .with_code("invalid_tenant"),
        Refusal::Unknown => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "unknown tenant",
        )
        .with_code("unknown_tenant"),
        Refusal::TooMany => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "too many distinct tenants: the gateway admits no new tenant name",
        )
        .with_code("tenant_limit"),
    }
}

/// The JSON body of a whole completion (an OpenAI-compatible upstream's as it came),
/// with the decision headers.
fn completion_response(routed: &Routed, response: &ChatResponse) -> Response {
    let json = match &response.raw {
        Some(raw) => raw.clone(),
        None => synthesized(routed, response).into(),
    };
    let mut resp = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    decision_headers(
        resp.headers_mut(),
        routed,
        Some(routed.cost_usd(&response.usage)),
    );
    resp
}

/// OpenAI's completion JSON for a connector that translated its upstream's reply.
fn synthesized(routed: &Routed, response: &ChatResponse) -> Vec<u8> {
    let body = wire::Completion {
        id: &routed.request_id,
        object: "chat.completion",
        created: now_secs(),
        model: &response.model,
        choices: [wire::CompletionChoice {
            index: 0,
            message: wire::AssistantMessage {
                role: "assistant",
                content: &response.content,
            },
            finish_reason: &response.finish_reason,
        }],
        usage: wire_usage(response.usage),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

fn wire_usage(u: Usage) -> wire::WireUsage {
    wire::WireUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
    }
}

struct StreamState {
    upstream: ChatStream,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Option<Usage>,
    /// The stream's opening is decided: the gateway's role chunk sent, or the upstream's
    /// chunks passed through.
    sent_role: bool,
    /// The upstream speaks OpenAI's chunks: they go to the client as they came.
    passthrough: bool,
    /// An upstream item read ahead (to decide the opening), not yet handled.
    held: Option<Option<Result<StreamEvent, crate::backends::BackendError>>>,
    finished: bool,
    phase: Phase,
}

#[derive(PartialEq)]
enum Phase {
    Body,
    Usage,
    Done,
    End,
}

impl StreamState {
    fn chunk(&self, delta: wire::Delta<'_>, finish: Option<&str>, usage: Option<Usage>) -> Event {
        let chunk = wire::Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: if usage.is_some() {
                Vec::new()
            } else {
                vec![wire::ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason: finish,
                }]
            },
            usage: usage.map(wire_usage),
        };
        Event::default().data(serde_json::to_string(&chunk).unwrap_or_default())
    }
}

fn stream_response(routed: Routed, upstream: ChatStream, include_usage: bool) -> Response {
    let state = StreamState {
        upstream,
        id: routed.request_id.clone(),
        model: routed.model.clone(),
        created: now_secs(),
        include_usage,
        usage: None,
        sent_role: false,
        passthrough: false,
        held: None,
        finished: false,
        phase: Phase::Body,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            match st.phase {
                Phase::End => return None,
                Phase::Done => {
                    st.phase = Phase::End;
                    return Some((Ok::<_, Infallible>(Event::default().data("[DONE]")), st));
                }
                Phase::Usage => {
                    st.phase = Phase::Done;
                    if st.include_usage {
                        let usage = st.usage.unwrap_or_default();
                        let ev = st.chunk(
                            wire::Delta {
                                role: None,
                                content: None,
                            },
                            None,
                            Some(usage),
                        );
                        return Some((Ok(ev), st));
                    }
                }
                Phase::Body => {
                    let next = match st.held.take() {
                        Some(next) => next,
                        None => st.upstream.next().await,
                    };
                    if !st.sent_role {
                        st.sent_role = true;
                        if !matches!(next, Some(Ok(StreamEvent::Chunk { .. }))) {
                            st.held = Some(next);
                            let ev = st.chunk(
                                wire::Delta {
                                    role: Some("assistant"),
                                    content: Some(""),
                                },
                                None,
                                None,
                            );
                            return Some((Ok(ev), st));
                        }
                    }
                    match next {
                        Some(Ok(StreamEvent::Chunk {
                            json, usage_only, ..
                        })) => {
                            st.passthrough = true;
                            // The gateway asks for usage; a client that did not gets none.
                            if !usage_only || st.include_usage {
                                return Some((Ok(Event::default().data(json)), st));
                            }
                        }
                        None if st.passthrough => st.phase = Phase::Done,
                        Some(Ok(StreamEvent::Delta(text))) => {
                            let ev = st.chunk(
                                wire::Delta {
                                    role: None,
                                    content: Some(&text),
                                },
                                None,
                                None,
                            );
                            return Some((Ok(ev), st));
                        }
                        Some(Ok(StreamEvent::Finish(reason))) => {
                            if !st.finished {
                                st.finished = true;
                                let ev = st.chunk(
                                    wire::Delta {
                                        role: None,
                                        content: None,
                                    },
                                    Some(&reason),
                                    None,
                                );
                                return Some((Ok(ev), st));
                            }
                        }
                        Some(Ok(StreamEvent::Usage(u))) => st.usage = Some(u),
                        None => {
                            st.phase = Phase::Usage;
                            if !st.finished {
                                st.finished = true;
                                let ev = st.chunk(
                                    wire::Delta {
                                        role: None,
                                        content: None,
                                    },
                                    Some("stop"),
                                    None,
                                );
                                return Some((Ok(ev), st));
                            }
                        }
                        Some(Err(err)) => {
                            // Headers are gone: report in-band, and end without [DONE].
                            tracing::warn!(error = %sanitize(&err.to_string(), LOG_ERROR_MAX), "upstream stream broke");
                            st.phase = Phase::End;
                            let body = wire::ErrorBody {
                                error: wire::ErrorDetail {
                                    message: &format!("upstream stream failed: {err}"),
                                    kind: "upstream_error",
                                    code: Some("stream_interrupted"),
                                    param: None,
                                },
                            };
                            let ev = Event::default()
                                .data(serde_json::to_string(&body).unwrap_or_default());
                            return Some((Ok(ev), st));
                        }
                    }
                }
            }
        }
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    decision_headers(response.headers_mut(), &routed, None);
    response
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authenticate(&state, &headers) {
        return e.into_response();
    }
    let aliases = std::iter::once("auto".to_owned()).chain(state.dispatcher.aliases());
    let mut data: Vec<wire::ModelEntry> = aliases
        .map(|id| wire::ModelEntry {
            id,
            object: "model",
            created: 0,
            owned_by: "switchyard".to_owned(),
        })
        .collect();
    for backend in state.dispatcher.backends() {
        for model in backend.backend().models() {
            if !data.iter().any(|d| d.id == *model) {
                data.push(wire::ModelEntry {
                    id: model.clone(),
                    object: "model",
                    created: 0,
                    owned_by: backend.name().to_owned(),
                });
            }
        }
    }
    if let Some(model) = state.dispatcher.text_scorer().embedding_model() {
        data.push(wire::ModelEntry {
            id: model.to_owned(),
            object: "model",
            created: 0,
            owned_by: "switchyard".to_owned(),
        });
    }
    axum::Json(wire::ModelList {
        object: "list",
        data,
    })
    .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    use crate::backends::instrumented::BreakerState;
    for backend in state.dispatcher.backends() {
        let value = match backend.breaker() {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        };
        crate::metrics::breaker(backend.name(), value);
    }
    match crate::metrics::render() {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            text,
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "metrics recorder not installed",
        )
        .into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let statuses = state.dispatcher.host().backends();
    let healthy: Vec<&str> = statuses
        .iter()
        .filter(|s| s.healthy)
        .map(|s| s.name.as_str())
        .collect();
    let body = serde_json::json!({
        "ready": !healthy.is_empty(),
        "policy": state.dispatcher.policy_label(),
        "backends": statuses.iter().map(|s| (s.name.clone(), s.healthy)).collect::<BTreeMap<_, _>>(),
    });
    let status = if healthy.is_empty() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_refusal_names_the_policy_version() {
        let refused = ApiError::from(DispatchError::Rejected {
            policy: "cost@1a2b3c4d".to_owned(),
            status: 503,
            message: "no backend".to_owned(),
        })
        .into_response();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["x-switchyard-policy"], "cost@1a2b3c4d");
        let unknown = ApiError::from(DispatchError::UnknownModel("x".to_owned())).into_response();
        assert!(!unknown.headers().contains_key("x-switchyard-policy"));
    }

    #[test]
    fn a_failure_after_the_decision_names_the_policy_version_and_request() {
        let failed = ApiError::from(Refused {
            error: DispatchError::AllFailed {
                attempts: Vec::new(),
                unavailable: false,
            },
            policy: Some("hybrid@0badc0de".to_owned()),
            request_id: Some("chatcmpl-1".to_owned()),
        })
        .into_response();
        assert_eq!(failed.status(), 502);
        assert_eq!(failed.headers()["x-switchyard-policy"], "hybrid@0badc0de");
        assert_eq!(failed.headers()["x-request-id"], "chatcmpl-1");
    }

    #[test]
    fn routing_inputs_merge_headers_metadata_and_user() {
        let mut headers = HeaderMap::new();
        headers.insert("x-switchyard-tenant", HeaderValue::from_static("acme"));
        headers.insert(
            "x-switchyard-data-class",
            HeaderValue::from_static("restricted"),
        );
        let metadata =
            serde_json::from_str(r#"{"team":"ml","data-class":"public","n":3}"#).unwrap();
        let (tenant, labels) = routing_inputs(&headers, Some("bob".into()), Some(metadata));
        assert_eq!(tenant, "acme");
        assert_eq!(labels["data-class"], "restricted");
        assert_eq!(labels["team"], "ml");
        assert_eq!(labels["n"], "3");
        assert_eq!(labels["user"], "bob");
        assert!(!labels.contains_key("tenant"));

        let (tenant, _) = routing_inputs(&HeaderMap::new(), Some("bob".into()), None);
        assert_eq!(tenant, "bob");
        let (tenant, _) = routing_inputs(&HeaderMap::new(), None, None);
        assert_eq!(tenant, "default");
    }

    #[test]
    fn header_values_are_sanitised() {
        assert_eq!(header_value("a\nb→c"), "a?b?c");
    }
}
