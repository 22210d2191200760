//! Dispatch: client request → routing rule's decision → targets in order → response. The
//! one place where the policy and the backends meet; it also feeds live backend stats to
//! the policy ([`GatewayHost`]).

mod attempt;
mod embeddings;
mod host;
mod privacy;
mod rule;
mod settle;

pub use attempt::{Attempt, AttemptError};
pub use embeddings::Embedded;
pub use host::{GatewayHost, TokenCounter};
pub use rule::{RouteEvaluation, RoutingRule, StaticTargets};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backends::instrumented::{BackendFacts, Instrumented};
use crate::backends::{ChatRequest, ChatResponse, ChatStream, Passthrough, ProviderError, Usage};
use crate::config::{ConnectorKind, Fallback, PrivacyConfig, Retry};
use crate::decision_log::{DecisionLog, DecisionLogRecord};
use crate::domain::{ChatMessage, Decision, PolicyRequest, Target, Verdict};
use crate::ledger::{Ledger, LedgerError};
use crate::live_feed::LiveFeed;
use attempt::{Plan, PlannedTarget};
use privacy::{LocalOnly, PrivacyRules};
use settle::{PendingRecord, TokenCharge};

/// A client's chat request after the HTTP layer parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    /// Model alias asked for (`auto` or a model a backend serves).
    pub model: String,
    /// Shared with every upstream attempt; never copied per target.
    pub messages: Arc<[ChatMessage]>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub stream: bool,
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    /// The client's request as OpenAI JSON (fields and messages as sent).
    pub passthrough: Passthrough,
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

    /// Records that `backend` (asked for `model`) served the request.
    fn chosen(&mut self, backend: &DispatchBackend, model: String) {
        let facts = backend.backend.facts();
        self.backend = backend.backend.name().to_owned();
        self.model = model;
        self.usd_per_mtok_in = facts.usd_per_mtok_in;
        self.usd_per_mtok_out = facts.usd_per_mtok_out;
        self.attempts.push(Attempt {
            backend: self.backend.clone(),
            error: None,
        });
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
    /// The policy failed and the configured fallback is `reject`.
    #[error("policy {policy} failed and the configured fallback is reject")]
    PolicyFailed { policy: String },
    /// The request must stay on local backends and none served it (or none was named).
    #[error("request must stay on local backends ({rule}) and {}", local_outcome(.attempts))]
    LocalOnly {
        rule: String,
        attempts: Vec<Attempt>,
    },
    #[error("{backend} refused the request: {message}")]
    Upstream {
        backend: String,
        status: u16,
        message: String,
        /// The upstream's `Retry-After` (a 429), passed on to the client.
        retry_after_s: Option<u64>,
        /// The provider's error type and code, kept in the client's error body.
        provider: Option<Box<ProviderError>>,
    },
    /// No target can honour what the request asks for (a field, a content part); found
    /// before any upstream call.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Budget(String),
    /// Over the tenant's rate limit (`limit`: "requests" or "tokens").
    #[error("{message}")]
    RateLimited {
        limit: &'static str,
        retry_after_s: u64,
        message: String,
    },
    #[error("spend ledger unavailable: {0}")]
    Ledger(String),
    #[error("all targets failed: {}", describe(.attempts))]
    AllFailed {
        attempts: Vec<Attempt>,
        /// Every failure was "unavailable" (breaker, queue full, not loaded).
        unavailable: bool,
    },
}

/// A request not served: why, and, once the routing rule has decided, which policy
/// version decided and the request's id (the client gets them as `x-switchyard-policy`
/// and `x-request-id`, as a served request does).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub error: DispatchError,
    /// The deciding policy version; `None` when the request was refused before its
    /// policy ran (an unknown model, a rate limit, the ledger).
    pub policy: Option<String>,
    pub request_id: Option<String>,
}

impl From<DispatchError> for Refused {
    fn from(error: DispatchError) -> Self {
        Self {
            error,
            policy: None,
            request_id: None,
        }
    }
}

impl Routed {
    /// `error`, for a request this policy decision routed.
    fn refused(&self, error: DispatchError) -> Refused {
        Refused {
            error,
            policy: Some(self.policy.clone()),
            request_id: Some(self.request_id.clone()),
        }
    }
}

fn local_outcome(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        "no local backend was among the targets".to_owned()
    } else {
        format!("no local backend served it: {}", describe(attempts))
    }
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
            Self::NoTargets { .. } | Self::PolicyFailed { .. } | Self::LocalOnly { .. } => 503,
            Self::Budget(_) | Self::RateLimited { .. } => 429,
            Self::Ledger(_) => 503,
            Self::Upstream { status, .. } => *status,
            Self::Unsupported(_) => 400,
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

/// A backend as the dispatcher holds it: live stats and breaker, and its settings.
#[derive(Debug)]
pub struct DispatchBackend {
    pub backend: Arc<Instrumented>,
    /// Longest wait for a stream's first event.
    pub first_byte_timeout: Duration,
    pub retry: Retry,
}

/// Executes requests: asks the routing rule, then tries its targets in order.
pub struct Dispatcher {
    backends: BTreeMap<String, Arc<DispatchBackend>>,
    rule: Arc<dyn RoutingRule>,
    /// Targets used when the policy failed or its decision names none; `None`: a failed
    /// policy's request is refused (`fallback_targets = "reject"`).
    fallback: Option<Vec<Target>>,
    privacy: PrivacyRules,
    host: Arc<GatewayHost>,
    decision_log: Option<Arc<DecisionLog>>,
    live: Option<Arc<LiveFeed>>,
    next_id: AtomicU64,
    id_prefix: u64,
    ledger: Option<Arc<Ledger>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("policy", &self.rule.label())
            .finish_non_exhaustive()
    }
}

/// Why the dispatcher could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Backend(#[from] crate::backends::BuildError),
    #[error("backend {0} is local but no local engine was supplied")]
    MissingLocal(String),
    #[error(transparent)]
    Models(#[from] crate::classifiers::LoadError),
}

impl Dispatcher {
    /// `fallback`: what a request gets when the rule failed or its decision names no
    /// targets.
    pub fn new(
        backends: Vec<DispatchBackend>,
        rule: Arc<dyn RoutingRule>,
        fallback: Fallback,
        tokens: TokenCounter,
    ) -> Self {
        let id_prefix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            host: Arc::new(GatewayHost {
                backends: backends.iter().map(|b| b.backend.clone()).collect(),
                tokens,
                ledger: None,
                scorer: GatewayHost::no_scorer(),
            }),
            backends: backends
                .into_iter()
                .map(|b| (b.backend.name().to_owned(), Arc::new(b)))
                .collect(),
            rule,
            fallback: match fallback {
                Fallback::Targets(list) => Some(Decision::to_backends(list, "fallback").targets),
                Fallback::Reject => None,
            },
            privacy: PrivacyRules::default(),
            decision_log: None,
            live: None,
            next_id: AtomicU64::new(0),
            id_prefix,
            ledger: None,
        }
    }

    /// Builds every configured backend: cloud connectors from config (keys read through
    /// `env`), local ones taken from `local` by name.
    pub fn from_config(
        config: &crate::config::Config,
        rule: Arc<dyn RoutingRule>,
        mut local: BTreeMap<String, Arc<dyn crate::backends::Backend>>,
        tokens: TokenCounter,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SetupError> {
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
        let dispatcher = Self::new(backends, rule, config.policy.fallback.clone(), tokens)
            .with_privacy(config.privacy.clone());
        let models = crate::classifiers::Classifiers::from_config(config)?;
        if models.is_empty() {
            return Ok(dispatcher);
        }
        Ok(dispatcher.with_text_scorer(Arc::new(models)))
    }

    /// The scorer policies' `embeddings` calls and `/v1/embeddings` reach.
    pub fn text_scorer(&self) -> Arc<dyn crate::embeddings::TextScorer> {
        self.host.scorer.clone()
    }

    /// Enforces `privacy` on every target list, the rule's and the fallback's: requests
    /// it keeps local are never sent to a non-local backend.
    pub fn with_privacy(mut self, privacy: PrivacyConfig) -> Self {
        self.privacy = PrivacyRules::new(privacy);
        self
    }

    /// Records spend in `ledger`: each attempt reserves its estimated cost first (refused
    /// at the tenant's hard cap → 429) and is settled or released after.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.host = Arc::new(GatewayHost {
            backends: self.host.backends.clone(),
            tokens: self.host.tokens.clone(),
            ledger: Some(ledger.clone()),
            scorer: self.host.scorer.clone(),
        });
        self.ledger = Some(ledger);
        self
    }

    /// Answers policies' `embeddings` calls with `scorer` (each recent text embedded once).
    pub fn with_text_scorer(mut self, scorer: Arc<dyn crate::embeddings::TextScorer>) -> Self {
        self.host = Arc::new(GatewayHost {
            backends: self.host.backends.clone(),
            tokens: self.host.tokens.clone(),
            ledger: self.host.ledger.clone(),
            scorer: Arc::new(crate::embeddings::Memoized::new(scorer)),
        });
        self
    }

    /// Writes one decision-log record per request to `log`.
    pub fn with_decision_log(mut self, log: Arc<DecisionLog>) -> Self {
        self.decision_log = Some(log);
        self
    }

    /// Sends every finished request to `feed`'s watchers (nothing while there are none).
    pub fn with_live_feed(mut self, feed: Arc<LiveFeed>) -> Self {
        self.live = Some(feed);
        self
    }

    pub fn host(&self) -> &Arc<GatewayHost> {
        &self.host
    }

    pub fn policy_label(&self) -> String {
        self.rule.label()
    }

    /// Backends in name order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Instrumented>> {
        self.backends.values().map(|b| &b.backend)
    }

    /// Model aliases the rule decides besides `auto`.
    pub fn aliases(&self) -> Vec<String> {
        self.rule.aliases()
    }

    /// Whether `model` names something this gateway routes.
    pub fn is_routable(&self, model: &str) -> bool {
        model == "auto"
            || self.rule.aliases().iter().any(|a| a == model)
            || self
                .backends
                .values()
                .any(|b| b.backend.backend().models().iter().any(|m| m == model))
    }

    fn new_request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("chatcmpl-{:x}{:06x}", self.id_prefix & 0xffff_ffff_ffff, n)
    }

    /// Serves a whole completion.
    pub async fn complete(
        &self,
        request: &ClientRequest,
    ) -> Result<(Routed, ChatResponse), Refused> {
        let mut record = None;
        let result = self.complete_logged(request, &mut record).await;
        if let Some(record) = record {
            match &result {
                Ok((routed, response)) => record.write(Some(routed), 200, Some(response.usage)),
                Err(e) => record.write(None, e.error.status(), None),
            }
        }
        result
    }

    async fn complete_logged(
        &self,
        request: &ClientRequest,
        record: &mut Option<PendingRecord>,
    ) -> Result<(Routed, ChatResponse), Refused> {
        let (mut routed, mut plan) = self.plan(request, record).await?;
        let charge = plan.charge.take();
        let attempted = self
            .attempts(&mut routed, plan, |b, chat| async move {
                b.backend.chat(chat).await
            })
            .await;
        let (response, reservation) = attempted.map_err(|e| routed.refused(e))?;
        settle::close(reservation, Some(routed.cost_usd(&response.usage)));
        if let Some(charge) = charge {
            charge.used(&response.usage);
        }
        Ok((routed, response))
    }

    /// Serves a streamed completion. Fails over only until the first event arrives; the
    /// returned stream starts with that event.
    pub async fn stream(&self, request: &ClientRequest) -> Result<(Routed, ChatStream), Refused> {
        let mut record = None;
        let result = self.plan(request, &mut record).await;
        let served = match result {
            Ok((mut routed, mut plan)) => {
                let charge = plan.charge.take();
                match self.attempts(&mut routed, plan, attempt::first_event).await {
                    Ok((stream, reservation)) => Ok((routed, stream, reservation, charge)),
                    Err(e) => Err(routed.refused(e)),
                }
            }
            Err(e) => Err(e),
        };
        match served {
            Ok((routed, stream, reservation, charge)) => {
                let stream = settle::on_stream_end(stream, &routed, reservation, record, charge);
                Ok((routed, stream))
            }
            Err(e) => {
                if let Some(record) = record {
                    record.write(None, e.error.status(), None);
                }
                Err(e)
            }
        }
    }

    /// Asks the routing rule and turns its decision into a plan: the targets this gateway
    /// has, in order (the fallback's when the rule failed or named none), less every
    /// non-local one for a request the host keeps local ([`Dispatcher::enforce_privacy`]),
    /// and the request they are sent with (the decision's rewritten messages, the lower of
    /// the two `max_tokens`). Starts the request's decision-log record.
    async fn plan(
        &self,
        request: &ClientRequest,
        record: &mut Option<PendingRecord>,
    ) -> Result<(Routed, Plan), Refused> {
        let started = Instant::now();
        if !self.is_routable(&request.model) {
            return Err(DispatchError::UnknownModel(request.model.clone()).into());
        }
        let policy_request = self.policy_request(request);
        let charge = self.admit(&policy_request).await?;
        let eval = self.rule.decide(&policy_request, self.host.clone()).await;
        let policy = eval.policy.clone();
        let decided = |error| Refused {
            error,
            policy: Some(eval.policy.clone()),
            request_id: Some(policy_request.id.clone()),
        };
        crate::metrics::decision(&policy, eval.elapsed, eval.failure.is_some());
        let live = self.live.as_ref().filter(|live| live.watched());
        if self.decision_log.is_some() || live.is_some() {
            let decision_us = u64::try_from(eval.elapsed.as_micros()).unwrap_or(u64::MAX);
            let failure = eval.failure.as_deref();
            *record = Some(PendingRecord {
                record: match &self.decision_log {
                    Some(log) => log.record(
                        &policy_request,
                        &policy,
                        &eval.verdict,
                        failure,
                        decision_us,
                    ),
                    None => DecisionLogRecord::decided(
                        &policy_request,
                        &policy,
                        &eval.verdict,
                        failure,
                        decision_us,
                    ),
                },
                log: self.decision_log.clone(),
                live: live.cloned(),
                started,
            });
        }
        let decision = match eval.verdict {
            Verdict::Reject(r) => {
                let status = if (400..=599).contains(&r.status) {
                    r.status
                } else {
                    403
                };
                return Err(decided(DispatchError::Rejected {
                    policy,
                    status,
                    message: r.message,
                }));
            }
            Verdict::Route(d) => d,
        };
        let fell_back = eval.failure.is_some() || decision.targets.is_empty();
        let chosen = match (fell_back, &self.fallback) {
            (false, _) => decision.targets,
            (true, Some(fallback)) => self.fallback_for(fallback, &request.model),
            (true, None) if eval.failure.is_some() => {
                return Err(decided(DispatchError::PolicyFailed { policy }));
            }
            (true, None) => Vec::new(),
        };
        let (mut targets, attempts) = self.resolve(chosen, &request.model);
        if targets.is_empty() {
            return Err(decided(DispatchError::NoTargets {
                policy,
                reason: decision.reason,
            }));
        }
        let mut reason = decision.reason;
        let local_only = self
            .enforce_privacy(request, fell_back, &mut targets, &mut reason, record)
            .await
            .map_err(decided)?;
        let max_tokens = match (request.max_tokens, decision.max_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut passthrough = request.passthrough.clone();
        let messages = match decision.messages {
            None => request.messages.clone(),
            Some(replaced) => {
                passthrough.messages = passthrough
                    .messages
                    .and_then(|raw| rewrite_raw(&raw, &request.messages, &replaced));
                Arc::from(replaced)
            }
        };
        let plan = Plan {
            targets,
            local_only,
            request: ChatRequest {
                model: String::new(),
                messages,
                max_tokens,
                temperature: request.temperature,
                top_p: request.top_p,
                stop: request.stop.clone(),
                seed: request.seed,
                passthrough,
            },
            charge,
        };
        let routed = Routed {
            request_id: policy_request.id,
            tenant: policy_request.tenant,
            policy,
            reason,
            backend: String::new(),
            model: String::new(),
            attempts,
            policy_failure: eval.failure,
            decision_time: eval.elapsed,
            prompt_tokens: policy_request.prompt_tokens,
            usd_per_mtok_in: 0.0,
            usd_per_mtok_out: 0.0,
        };
        Ok((routed, plan))
    }

    /// Admits the request against its tenant's rate limits (before its policy runs):
    /// its token charge, or 429 with the wait when it is over a limit.
    async fn admit(&self, request: &PolicyRequest) -> Result<Option<TokenCharge>, DispatchError> {
        let completion = request
            .max_tokens
            .unwrap_or(crate::config::defaults::ESTIMATE_COMPLETION_TOKENS);
        let tokens = request.prompt_tokens.saturating_add(completion);
        self.admit_tokens(&request.tenant, tokens).await
    }

    /// Admits a request of `tenant` that may use `tokens` against its rate limits.
    async fn admit_tokens(
        &self,
        tenant: &str,
        tokens: u32,
    ) -> Result<Option<TokenCharge>, DispatchError> {
        let Some(ledger) = &self.ledger else {
            return Ok(None);
        };
        match ledger.admit(tenant, tokens).await {
            Ok(0) => Ok(None),
            Ok(charged) => Ok(Some(TokenCharge {
                ledger: ledger.clone(),
                tenant: tenant.to_owned(),
                charged,
                used: 0,
            })),
            Err(ref e @ LedgerError::RateLimited { ref refused, .. }) => {
                crate::metrics::rate_limited(tenant, refused.kind.as_str());
                Err(DispatchError::RateLimited {
                    limit: refused.kind.as_str(),
                    retry_after_s: crate::ledger::retry_after_s(refused),
                    message: e.to_string(),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "rate limit admission failed");
                Err(DispatchError::Ledger(e.to_string()))
            }
        }
    }

    /// The fallback's targets for a request for `model`: for a model some backend serves
    /// (not an alias), the fallback's backends that serve it, else every backend that does
    /// (an explicit model is answered by that model or not at all).
    fn fallback_for(&self, fallback: &[Target], model: &str) -> Vec<Target> {
        let serving = self.host.serving(model);
        if serving.is_empty() {
            return fallback.to_vec();
        }
        let listed: Vec<&str> = fallback
            .iter()
            .map(|t| t.backend.as_str())
            .filter(|b| serving.contains(b))
            .collect();
        let chosen = if listed.is_empty() { serving } else { listed };
        chosen
            .into_iter()
            .map(|backend| Target {
                backend: backend.to_owned(),
                model: Some(model.to_owned()),
            })
            .collect()
    }

    /// The targets this gateway has, each with the model to ask for (the target's, else
    /// the one the client named when the backend serves it, else the backend's default),
    /// and an attempt recorded for each target it does not have.
    fn resolve(&self, chosen: Vec<Target>, asked: &str) -> (Vec<PlannedTarget>, Vec<Attempt>) {
        let mut attempts = Vec::new();
        let mut targets = Vec::new();
        for target in chosen {
            let Some(backend) = self.backends.get(&target.backend) else {
                attempts.push(Attempt {
                    backend: target.backend,
                    error: Some(AttemptError::UnknownBackend),
                });
                continue;
            };
            let served = backend.backend.backend().models();
            let model = target
                .model
                .or_else(|| served.iter().find(|m| **m == asked).cloned())
                .or_else(|| served.first().cloned())
                .unwrap_or_default();
            targets.push(PlannedTarget {
                backend: backend.clone(),
                model,
            });
        }
        (targets, attempts)
    }

    /// The privacy step every plan goes through, whoever chose its targets: a request the
    /// host keeps local (its tenant or data class; on a fallback, PII the host finds in
    /// it) loses every non-local target. Removing any is a host override: the reason
    /// becomes `host:privacy:KIND (the policy's reason)`, and it is counted and logged;
    /// with nothing left the request is refused (503). Returns the rule that applied.
    async fn enforce_privacy(
        &self,
        request: &ClientRequest,
        fell_back: bool,
        targets: &mut Vec<PlannedTarget>,
        reason: &mut String,
        record: &mut Option<PendingRecord>,
    ) -> Result<Option<LocalOnly>, DispatchError> {
        let mut rule = self.privacy.rule_for(&request.tenant, &request.labels);
        if rule.is_none()
            && fell_back
            && !targets.iter().all(privacy::is_local)
            && privacy::pii_found(&request.messages).await
        {
            rule = Some(LocalOnly::Pii);
        }
        let Some(rule) = rule else {
            return Ok(None);
        };
        let removed = privacy::keep_local(targets);
        if removed == 0 {
            return Ok(Some(rule));
        }
        let refused = targets.is_empty();
        crate::metrics::privacy_override(rule.kind(), refused);
        tracing::info!(rule = %rule, removed, refused, "privacy: the host kept the request on local backends");
        if let Some(pending) = record {
            pending.record.host_override = Some(format!(
                "host:privacy:{} removed {removed} non-local target(s)",
                rule.kind()
            ));
        }
        if refused {
            return Err(DispatchError::LocalOnly {
                rule: rule.to_string(),
                attempts: Vec::new(),
            });
        }
        *reason = format!("host:privacy:{} ({reason})", rule.kind());
        Ok(Some(rule))
    }

    /// What the policy sees of `request`, with a new request id and the prompt's tokens.
    fn policy_request(&self, request: &ClientRequest) -> PolicyRequest {
        let prompt: String = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let mut needs = crate::backends::fields::needs(&request.passthrough);
        needs.explicit_model = !self.host.serving(&request.model).is_empty();
        PolicyRequest {
            id: self.new_request_id(),
            model: request.model.clone(),
            messages: request.messages.to_vec(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            streaming: request.stream,
            tenant: request.tenant.clone(),
            labels: request.labels.clone(),
            prompt_tokens: self.host.count_tokens(&prompt),
            needs,
        }
    }
}

/// The client's messages as OpenAI JSON after a policy replaced `original` (their text)
/// with `replaced`. When the replacement keeps the conversation's shape (as many messages,
/// the same roles), each message keeps what the policy does not see (tool calls, names,
/// the parts of a message it left alone) and takes the policy's text where it changed it;
/// otherwise `None`: the policy's text messages are sent as they are.
fn rewrite_raw(
    raw: &[serde_json::Value],
    original: &[ChatMessage],
    replaced: &[ChatMessage],
) -> Option<Arc<[serde_json::Value]>> {
    if raw.len() != replaced.len()
        || original.len() != replaced.len()
        || original.iter().zip(replaced).any(|(a, b)| a.role != b.role)
    {
        return None;
    }
    Some(
        raw.iter()
            .zip(original.iter().zip(replaced))
            .map(|(raw, (old, new))| {
                let mut message = raw.clone();
                if old.content != new.content
                    && let serde_json::Value::Object(fields) = &mut message
                {
                    fields.insert(
                        "content".to_owned(),
                        serde_json::Value::from(new.content.as_str()),
                    );
                }
                message
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
