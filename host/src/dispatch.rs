//! Dispatch: client request → policy decision → targets in order → response. The one place
//! where the policy and the backends meet; it also feeds live backend stats to the policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use crate::backends::instrumented::Instrumented;
use crate::backends::{BackendError, ChatRequest, ChatResponse, ChatStream, Usage};
use crate::decision_log::DecisionLog;
use crate::domain::{
    BackendStatus, ChatMessage, Decision, PolicyRequest, SpendStatus, Target, Verdict,
};
use crate::ledger::{Ledger, LedgerError, Reservation};
use crate::replay::{DecisionLogRecord, UsageRecord};

/// A client's chat request after the HTTP layer parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    /// Model alias asked for (`auto` or a model a backend serves).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub stream: bool,
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
}

/// What a routing rule returned for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEvaluation {
    /// `name@short_digest` of the rule version that decided (shown in responses).
    pub policy: String,
    pub verdict: Verdict,
    /// Set when the rule failed and `verdict` is the configured fallback.
    pub failure: Option<String>,
    pub elapsed: Duration,
}

/// A routing rule: a policy component, or a fixed list. Object-safe.
pub trait Router: Send + Sync + 'static {
    /// `name@short_digest`, shown in the `x-switchyard-policy` header.
    fn label(&self) -> String;
    /// Model aliases besides `auto` that this rule decides (scoped policies).
    fn aliases(&self) -> Vec<String> {
        Vec::new()
    }
    fn decide<'a>(
        &'a self,
        request: &'a PolicyRequest,
        host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation>;
}

/// A fixed ordered target list (config `policy.static_targets`): primary first.
#[derive(Debug, Clone)]
pub struct StaticRouter {
    targets: Vec<String>,
}

impl StaticRouter {
    pub fn new(targets: Vec<String>) -> Self {
        Self { targets }
    }
}

impl Router for StaticRouter {
    fn label(&self) -> String {
        "static@config".to_owned()
    }
    fn decide<'a>(
        &'a self,
        _request: &'a PolicyRequest,
        _host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation> {
        let verdict = Verdict::Route(Decision {
            targets: self
                .targets
                .iter()
                .map(|b| Target {
                    backend: b.clone(),
                    model: None,
                })
                .collect(),
            reason: "static route".to_owned(),
            messages: None,
            max_tokens: None,
            labels: BTreeMap::new(),
        });
        std::future::ready(RouteEvaluation {
            policy: self.label(),
            verdict,
            failure: None,
            elapsed: Duration::ZERO,
        })
        .boxed()
    }
}

/// The wait before retry number `retry` (0-based) after `err`, or `None` when the error
/// is not worth a retry (or the upstream asks for a longer pause than we hold a client).
fn retry_delay(err: &BackendError, retry: u32, base: Duration) -> Option<Duration> {
    let retryable = match err {
        BackendError::Connect(_) | BackendError::Timeout(_) => true,
        BackendError::Status { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    };
    if !retryable {
        return None;
    }
    if let BackendError::Status {
        retry_after_s: Some(secs),
        ..
    } = err
    {
        let wait = Duration::from_secs(*secs);
        let cap = Duration::from_millis(crate::config::defaults::MAX_RETRY_AFTER_MS);
        return (wait <= cap).then_some(wait);
    }
    Some(
        base.saturating_mul(1 << retry.min(10))
            .mul_f64(0.5 + jitter()),
    )
}

/// A uniform number in 0..1 from the std hasher's random keys (no RNG dependency).
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Counts prompt tokens for the policy.
pub type TokenCounter = Arc<dyn Fn(&str) -> u32 + Send + Sync>;

/// Estimate used when no tokenizer is at hand: about four bytes per token.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// What the host tells a policy: live backend status, spend, token counts.
pub struct GatewayHost {
    backends: Vec<Arc<Instrumented>>,
    tokens: TokenCounter,
    ledger: Option<Arc<Ledger>>,
}

impl std::fmt::Debug for GatewayHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHost")
            .field("backends", &self.backends.len())
            .finish_non_exhaustive()
    }
}

impl GatewayHost {
    pub fn backends(&self) -> Vec<BackendStatus> {
        self.backends.iter().map(|b| b.status()).collect()
    }
    /// Whether a backend is named `name` (without rendering every status).
    pub fn has_backend(&self, name: &str) -> bool {
        self.backends.iter().any(|b| b.name() == name)
    }
    /// Spend and budgets of `scope` (a tenant); zero when no ledger is configured.
    pub fn spend(&self, scope: &str) -> SpendStatus {
        match &self.ledger {
            None => SpendStatus {
                scope: scope.to_owned(),
                ..SpendStatus::default()
            },
            Some(ledger) => ledger.status(scope),
        }
    }
    pub fn count_tokens(&self, text: &str) -> u32 {
        (self.tokens)(text)
    }
}

/// One upstream attempt and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub backend: String,
    pub error: Option<String>,
}

/// How a request was routed (for headers, logs and metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub request_id: String,
    /// Tenant billed for the request.
    pub tenant: String,
    pub policy: String,
    pub reason: String,
    pub backend: String,
    pub model: String,
    pub attempts: Vec<Attempt>,
    pub policy_failure: Option<String>,
    pub decision_time: Duration,
    pub prompt_tokens: u32,
    usd_per_mtok_in: f64,
    usd_per_mtok_out: f64,
}

impl Routed {
    /// USD cost of `usage` at the chosen backend's prices.
    pub fn cost_usd(&self, usage: &Usage) -> f64 {
        f64::from(usage.prompt_tokens) * self.usd_per_mtok_in / 1e6
            + f64::from(usage.completion_tokens) * self.usd_per_mtok_out / 1e6
    }
}

/// Why a request was not served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    #[error("model {0:?} is not routable; see GET /v1/models")]
    UnknownModel(String),
    #[error("request rejected by policy {policy}: {message}")]
    Rejected {
        policy: String,
        status: u16,
        message: String,
    },
    #[error("policy {policy} returned no usable target ({reason})")]
    NoTargets { policy: String, reason: String },
    #[error("{backend} refused the request: {message}")]
    Upstream {
        backend: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Budget(String),
    #[error("spend ledger unavailable: {0}")]
    Ledger(String),
    #[error("all targets failed: {}", describe(.attempts))]
    AllFailed {
        attempts: Vec<Attempt>,
        /// Every failure was "unavailable" (breaker, queue full, not loaded).
        unavailable: bool,
    },
}

fn describe(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| match &a.error {
            Some(e) => format!("{}: {e}", a.backend),
            None => a.backend.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl DispatchError {
    /// HTTP status for the client.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownModel(_) => 404,
            Self::Rejected { status, .. } => *status,
            Self::NoTargets { .. } => 503,
            Self::Budget(_) => 429,
            Self::Ledger(_) => 503,
            Self::Upstream { status, .. } => *status,
            Self::AllFailed { unavailable, .. } => {
                if *unavailable {
                    503
                } else {
                    502
                }
            }
        }
    }
}

/// Executes requests: asks the router, then tries its targets in order.
pub struct Dispatcher {
    backends: BTreeMap<String, Arc<Instrumented>>,
    router: Arc<dyn Router>,
    fallback: Vec<String>,
    host: Arc<GatewayHost>,
    first_byte: BTreeMap<String, Duration>,
    retry: BTreeMap<String, crate::config::Retry>,
    decision_log: Option<Arc<DecisionLog>>,
    next_id: AtomicU64,
    id_prefix: u64,
    ledger: Option<Arc<Ledger>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("policy", &self.router.label())
            .finish_non_exhaustive()
    }
}

/// A backend and its first-byte timeout, as the dispatcher takes them.
#[derive(Debug)]
pub struct DispatchBackend {
    pub backend: Arc<Instrumented>,
    pub first_byte_timeout: Duration,
    pub retry: crate::config::Retry,
}

impl Dispatcher {
    /// `fallback`: targets used when the router's decision names nothing usable.
    pub fn new(
        backends: Vec<DispatchBackend>,
        router: Arc<dyn Router>,
        fallback: Vec<String>,
        tokens: TokenCounter,
    ) -> Self {
        let list: Vec<Arc<Instrumented>> = backends.iter().map(|b| b.backend.clone()).collect();
        let first_byte = backends
            .iter()
            .map(|b| (b.backend.name().to_owned(), b.first_byte_timeout))
            .collect();
        let retry = backends
            .iter()
            .map(|b| (b.backend.name().to_owned(), b.retry))
            .collect();
        let id_prefix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            backends: list
                .iter()
                .map(|b| (b.name().to_owned(), b.clone()))
                .collect(),
            router,
            fallback,
            host: Arc::new(GatewayHost {
                backends: list,
                tokens,
                ledger: None,
            }),
            first_byte,
            retry,
            decision_log: None,
            next_id: AtomicU64::new(0),
            id_prefix,
            ledger: None,
        }
    }

    /// Records spend in `ledger`: each attempt reserves its estimated cost first (refused
    /// at the tenant's hard cap → 429) and is settled or released after.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.host = Arc::new(GatewayHost {
            backends: self.host.backends.clone(),
            tokens: self.host.tokens.clone(),
            ledger: Some(ledger.clone()),
        });
        self.ledger = Some(ledger);
        self
    }

    /// Writes one decision-log record per request to `log`.
    pub fn with_decision_log(mut self, log: Arc<DecisionLog>) -> Self {
        self.decision_log = Some(log);
        self
    }

    /// Reserves the worst-case cost of one attempt (`None` without a ledger).
    fn reserve(
        &self,
        routed: &Routed,
        tenant: &str,
        attempt: usize,
        backend: &Instrumented,
        chat: &ChatRequest,
    ) -> Result<Option<HeldReservation>, DispatchError> {
        let Some(ledger) = &self.ledger else {
            return Ok(None);
        };
        let facts = backend.facts();
        let completion = chat
            .max_tokens
            .unwrap_or(crate::config::defaults::ESTIMATE_COMPLETION_TOKENS);
        let estimate = f64::from(routed.prompt_tokens) * facts.usd_per_mtok_in / 1e6
            + f64::from(completion) * facts.usd_per_mtok_out / 1e6;
        let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        match ledger.reserve(
            tenant,
            &routed.request_id,
            attempt,
            backend.name(),
            estimate,
        ) {
            Ok(reservation) => Ok(Some(HeldReservation {
                ledger: ledger.clone(),
                reservation,
            })),
            Err(e @ LedgerError::HardCap { .. }) => Err(DispatchError::Budget(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "ledger reserve failed");
                Err(DispatchError::Ledger(e.to_string()))
            }
        }
    }

    /// Before each attempt: a retry of the backend that just failed waits a jittered
    /// exponential backoff (or the upstream's `Retry-After`, when short) and runs only for
    /// retryable errors. Returns whether to make the attempt.
    async fn before_attempt(
        &self,
        backend: &Instrumented,
        last: Option<&(String, BackendError)>,
        retry: &mut u32,
    ) -> bool {
        let Some((previous, err)) = last.filter(|(name, _)| name == backend.name()) else {
            *retry = 0;
            return true;
        };
        let base = self
            .retry
            .get(previous)
            .map_or(Duration::ZERO, |r| r.backoff);
        match retry_delay(err, *retry, base) {
            Some(wait) => {
                *retry += 1;
                crate::metrics::retry(backend.name());
                tracing::info!(
                    backend = backend.name(),
                    wait_ms = wait.as_millis() as u64,
                    retry = *retry,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
                true
            }
            None => false,
        }
    }

    pub fn host(&self) -> &Arc<GatewayHost> {
        &self.host
    }

    pub fn policy_label(&self) -> String {
        self.router.label()
    }

    /// Backends in name order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Instrumented>> {
        self.backends.values()
    }

    /// Model aliases the router decides besides `auto`.
    pub fn aliases(&self) -> Vec<String> {
        self.router.aliases()
    }

    /// Whether `model` names something this gateway routes.
    pub fn is_routable(&self, model: &str) -> bool {
        model == "auto"
            || self.router.aliases().iter().any(|a| a == model)
            || self
                .backends
                .values()
                .any(|b| b.backend().models().iter().any(|m| m == model))
    }

    fn new_request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("chatcmpl-{:x}{:06x}", self.id_prefix & 0xffff_ffff_ffff, n)
    }

    /// Asks the router and validates the plan.
    async fn plan(
        &self,
        request: &ClientRequest,
        record: &mut Option<DecisionLogRecord>,
    ) -> Result<(Routed, Vec<(Arc<Instrumented>, ChatRequest)>), DispatchError> {
        if !self.is_routable(&request.model) {
            return Err(DispatchError::UnknownModel(request.model.clone()));
        }
        let prompt: String = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let policy_request = PolicyRequest {
            id: self.new_request_id(),
            model: request.model.clone(),
            messages: request.messages.clone(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            streaming: request.stream,
            tenant: request.tenant.clone(),
            labels: request.labels.clone(),
            prompt_tokens: self.host.count_tokens(&prompt),
        };
        let eval = self.router.decide(&policy_request, self.host.clone()).await;
        let policy = eval.policy.clone();
        crate::metrics::decision(&policy, eval.elapsed, eval.failure.is_some());
        if let Some(log) = &self.decision_log {
            *record = Some(log.record(
                &policy_request,
                &policy,
                &eval.verdict,
                eval.failure.as_deref(),
                u64::try_from(eval.elapsed.as_micros()).unwrap_or(u64::MAX),
            ));
        }
        let decision = match eval.verdict {
            Verdict::Reject(r) => {
                let status = if (400..=599).contains(&r.status) {
                    r.status
                } else {
                    403
                };
                return Err(DispatchError::Rejected {
                    policy,
                    status,
                    message: r.message,
                });
            }
            Verdict::Route(d) => d,
        };
        let mut attempts = Vec::new();
        let mut plan = Vec::new();
        let mut targets = decision.targets.clone();
        if targets.is_empty() {
            targets = self
                .fallback
                .iter()
                .map(|b| Target {
                    backend: b.clone(),
                    model: None,
                })
                .collect();
        }
        let messages = decision
            .messages
            .clone()
            .unwrap_or_else(|| request.messages.clone());
        let max_tokens = match (request.max_tokens, decision.max_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for target in targets {
            let Some(backend) = self.backends.get(&target.backend) else {
                attempts.push(Attempt {
                    backend: target.backend.clone(),
                    error: Some("unknown backend".into()),
                });
                continue;
            };
            let served = backend.backend().models();
            let model = target
                .model
                .clone()
                .or_else(|| served.iter().find(|m| **m == request.model).cloned())
                .or_else(|| served.first().cloned())
                .unwrap_or_default();
            let chat = ChatRequest {
                model,
                messages: messages.clone(),
                max_tokens,
                temperature: request.temperature,
                top_p: request.top_p,
                stop: request.stop.clone(),
                seed: request.seed,
            };
            // A retry is the same target again; `before_attempt` decides whether and
            // when it runs.
            let retries = self.retry.get(backend.name()).map_or(0, |r| r.retries);
            for _ in 0..retries {
                plan.push((backend.clone(), chat.clone()));
            }
            plan.push((backend.clone(), chat));
        }
        if plan.is_empty() {
            return Err(DispatchError::NoTargets {
                policy,
                reason: decision.reason,
            });
        }
        Ok((
            Routed {
                request_id: policy_request.id,
                tenant: policy_request.tenant,
                policy,
                reason: decision.reason,
                backend: String::new(),
                model: String::new(),
                attempts,
                policy_failure: eval.failure,
                decision_time: eval.elapsed,
                prompt_tokens: policy_request.prompt_tokens,
                usd_per_mtok_in: 0.0,
                usd_per_mtok_out: 0.0,
            },
            plan,
        ))
    }

    fn chosen(routed: &mut Routed, backend: &Instrumented, model: String) {
        routed.backend = backend.name().to_owned();
        routed.model = model;
        routed.usd_per_mtok_in = backend.facts().usd_per_mtok_in;
        routed.usd_per_mtok_out = backend.facts().usd_per_mtok_out;
        routed.attempts.push(Attempt {
            backend: backend.name().to_owned(),
            error: None,
        });
    }

    fn failed(routed: Routed, last: Option<(String, BackendError)>) -> DispatchError {
        let only_context = routed.attempts.iter().all(|a| {
            a.error
                .as_deref()
                .is_none_or(|e| e.starts_with("prompt too long") || e == "unknown backend")
        });
        match last {
            Some((backend, err)) if !err.is_failover() => {
                let (status, message) = match err {
                    BackendError::Status {
                        status: s @ (400 | 404 | 413 | 422),
                        message,
                        ..
                    } => (s, message),
                    BackendError::InvalidRequest(message) => (400, message),
                    other => (502, other.to_string()),
                };
                DispatchError::Upstream {
                    backend,
                    status,
                    message,
                }
            }
            // Every target was too small for the prompt: that is the client's request.
            Some((backend, BackendError::ContextExceeded(message))) if only_context => {
                DispatchError::Upstream {
                    backend,
                    status: 400,
                    message,
                }
            }
            _ => {
                let unavailable = routed.attempts.iter().all(|a| {
                    a.error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("backend unavailable"))
                });
                DispatchError::AllFailed {
                    attempts: routed.attempts,
                    unavailable,
                }
            }
        }
    }

    /// Serves a whole completion.
    pub async fn complete(
        &self,
        request: &ClientRequest,
    ) -> Result<(Routed, ChatResponse), DispatchError> {
        let started = Instant::now();
        let mut record = None;
        let result = self.complete_inner(request, &mut record).await;
        if let (Some(log), Some(mut record)) = (&self.decision_log, record) {
            match &result {
                Ok((routed, response)) => outcome(&mut record, routed, Some(response.usage)),
                Err(e) => record.status = Some(e.status()),
            }
            record.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            log.write(record);
        }
        result
    }

    async fn complete_inner(
        &self,
        request: &ClientRequest,
        record: &mut Option<DecisionLogRecord>,
    ) -> Result<(Routed, ChatResponse), DispatchError> {
        let (mut routed, plan) = self.plan(request, record).await?;
        let mut last = None;
        let mut retry = 0;
        for (i, (backend, chat)) in plan.into_iter().enumerate() {
            if !self
                .before_attempt(&backend, last.as_ref(), &mut retry)
                .await
            {
                continue;
            }
            let model = chat.model.clone();
            let reservation = self.reserve(&routed, &request.tenant, i, &backend, &chat)?;
            match backend.chat(chat).await {
                Ok(response) => {
                    Self::chosen(&mut routed, &backend, model);
                    finish(reservation, Some(routed.cost_usd(&response.usage)));
                    return Ok((routed, response));
                }
                Err(err) => {
                    finish(reservation, None);
                    tracing::warn!(backend = backend.name(), error = %err, "attempt failed");
                    routed.attempts.push(Attempt {
                        backend: backend.name().to_owned(),
                        error: Some(err.to_string()),
                    });
                    let stop = !err.is_failover();
                    if !stop {
                        crate::metrics::fallback(backend.name());
                    }
                    last = Some((backend.name().to_owned(), err));
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(Self::failed(routed, last))
    }

    /// Serves a streamed completion. Fails over only until the first event arrives; the
    /// returned stream starts with that event.
    pub async fn stream(
        &self,
        request: &ClientRequest,
    ) -> Result<(Routed, ChatStream), DispatchError> {
        let started = Instant::now();
        let mut record = None;
        match self.stream_inner(request, &mut record).await {
            Ok((routed, stream, ledger)) => {
                let log = match (&self.decision_log, record) {
                    (Some(log), Some(record)) => Some((log.clone(), record, started)),
                    _ => None,
                };
                let stream = if ledger.is_none() && log.is_none() {
                    stream
                } else {
                    finish_on_end(stream, &routed, ledger, log)
                };
                Ok((routed, stream))
            }
            Err(e) => {
                if let (Some(log), Some(mut record)) = (&self.decision_log, record) {
                    record.status = Some(e.status());
                    record.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
                    log.write(record);
                }
                Err(e)
            }
        }
    }

    async fn stream_inner(
        &self,
        request: &ClientRequest,
        record: &mut Option<DecisionLogRecord>,
    ) -> Result<(Routed, ChatStream, Option<HeldReservation>), DispatchError> {
        let (mut routed, plan) = self.plan(request, record).await?;
        let mut last = None;
        let mut retry = 0;
        for (i, (backend, chat)) in plan.into_iter().enumerate() {
            if !self
                .before_attempt(&backend, last.as_ref(), &mut retry)
                .await
            {
                continue;
            }
            let model = chat.model.clone();
            let reservation = self.reserve(&routed, &request.tenant, i, &backend, &chat)?;
            let first_byte = self
                .first_byte
                .get(backend.name())
                .copied()
                .unwrap_or(Duration::from_secs(60));
            let started = Instant::now();
            let result = match backend.chat_stream(chat).await {
                Ok(mut stream) => {
                    let left = first_byte.saturating_sub(started.elapsed());
                    match tokio::time::timeout(left, stream.next()).await {
                        Err(_) => Err(BackendError::Timeout("first stream event")),
                        Ok(None) => Err(BackendError::Protocol("empty stream".into())),
                        Ok(Some(Err(e))) => Err(e),
                        Ok(Some(Ok(first))) => {
                            Ok(futures_util::stream::once(std::future::ready(Ok(first)))
                                .chain(stream)
                                .boxed())
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(stream) => {
                    Self::chosen(&mut routed, &backend, model);
                    return Ok((routed, stream, reservation));
                }
                Err(err) => {
                    finish(reservation, None);
                    tracing::warn!(backend = backend.name(), error = %err, "stream attempt failed");
                    routed.attempts.push(Attempt {
                        backend: backend.name().to_owned(),
                        error: Some(err.to_string()),
                    });
                    let stop = !err.is_failover();
                    if !stop {
                        crate::metrics::fallback(backend.name());
                    }
                    last = Some((backend.name().to_owned(), err));
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(Self::failed(routed, last))
    }
}

/// Why the dispatcher could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Backend(#[from] crate::backends::BuildError),
    #[error("backend {0} is local but no local engine was supplied")]
    MissingLocal(String),
}

impl Dispatcher {
    /// Builds every configured backend: cloud connectors from config (keys read through
    /// `env`), local ones taken from `local` by name.
    pub fn from_config(
        config: &crate::config::Config,
        router: Arc<dyn Router>,
        mut local: BTreeMap<String, Arc<dyn crate::backends::Backend>>,
        tokens: TokenCounter,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SetupError> {
        use crate::backends::instrumented::BackendFacts;
        use crate::config::ConnectorKind;
        let mut backends = Vec::with_capacity(config.backends.len());
        for cfg in &config.backends {
            let backend = if cfg.kind == ConnectorKind::Local {
                local
                    .remove(&cfg.name)
                    .ok_or_else(|| SetupError::MissingLocal(cfg.name.clone()))?
            } else {
                crate::backends::build_cloud(cfg, env)?
            };
            backends.push(DispatchBackend {
                backend: Arc::new(Instrumented::new(backend, BackendFacts::from(cfg))),
                first_byte_timeout: cfg.timeouts.first_byte,
                retry: cfg.retry,
            });
        }
        Ok(Self::new(
            backends,
            router,
            config.policy.fallback_targets.clone(),
            tokens,
        ))
    }
}

/// Fills a decision-log record with what happened upstream.
fn outcome(record: &mut DecisionLogRecord, routed: &Routed, usage: Option<Usage>) {
    record.status = Some(200);
    record.backend = Some(routed.backend.clone());
    record.served_model = Some(routed.model.clone());
    if let Some(usage) = usage {
        record.usage = Some(UsageRecord {
            prompt_tokens: Some(usage.prompt_tokens),
            completion_tokens: Some(usage.completion_tokens),
        });
        record.cost_usd = Some(routed.cost_usd(&usage));
    }
}

/// An attempt's open reservation. [`finish`] settles or releases it; dropped unfinished
/// (the request went away during the upstream call, which may still be billed) it is
/// settled at its estimate.
struct HeldReservation {
    ledger: Arc<Ledger>,
    reservation: Reservation,
}

impl HeldReservation {
    /// Settles with `cost`, or releases (`None`); only the first call counts.
    fn close(&self, cost: Option<f64>) {
        let result = match cost {
            Some(cost) => self.ledger.settle(&self.reservation, cost),
            None => self.ledger.release(&self.reservation),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "ledger settle failed; the reservation stays open until restart");
        }
    }
}

impl Drop for HeldReservation {
    fn drop(&mut self) {
        self.close(Some(self.reservation.estimate_usd));
    }
}

/// Settles an attempt's reservation with `cost`, or releases it (`None`: the attempt failed).
fn finish(reservation: Option<HeldReservation>, cost: Option<f64>) {
    if let Some(held) = reservation {
        held.close(cost);
    }
}

/// When a served stream ends (or the client goes away): settles the ledger reservation
/// with the reported usage (or an estimate from the text seen) and writes the
/// decision-log record.
fn finish_on_end(
    stream: ChatStream,
    routed: &Routed,
    ledger: Option<HeldReservation>,
    log: Option<(Arc<DecisionLog>, DecisionLogRecord, Instant)>,
) -> ChatStream {
    struct Finish {
        ledger: Option<HeldReservation>,
        log: Option<(Arc<DecisionLog>, DecisionLogRecord, Instant)>,
        usage: Option<Usage>,
        text_bytes: usize,
        routed: Routed,
    }
    impl Drop for Finish {
        fn drop(&mut self) {
            let usage = self.usage.unwrap_or(Usage {
                prompt_tokens: self.routed.prompt_tokens,
                completion_tokens: u32::try_from(self.text_bytes.div_ceil(4)).unwrap_or(u32::MAX),
            });
            finish(self.ledger.take(), Some(self.routed.cost_usd(&usage)));
            if let Some((log, mut record, started)) = self.log.take() {
                outcome(&mut record, &self.routed, Some(usage));
                record.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
                log.write(record);
            }
        }
    }
    let mut finish = Finish {
        ledger,
        log,
        usage: None,
        text_bytes: 0,
        routed: routed.clone(),
    };
    stream
        .inspect(move |item| {
            // Borrow the whole struct so the closure owns it (and its Drop) entirely.
            let finish = &mut finish;
            match item {
                Ok(crate::backends::StreamEvent::Delta(t)) => finish.text_bytes += t.len(),
                Ok(crate::backends::StreamEvent::Usage(u)) => finish.usage = Some(*u),
                _ => {}
            }
        })
        .boxed()
}
