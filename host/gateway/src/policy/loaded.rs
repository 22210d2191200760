//! A loaded policy: a compiled, linked component under a spec, its `info()`, and its
//! decisions (`decide`, `decide_blocking`): whether they run (quarantine), where they
//! run, the guest call, sorting a failure into a [`FailureKind`] and checking the
//! decision before it is used.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Trap;

use super::bindings::{ContractVersion, Pre};
use super::budget::OverBudget;
use super::guest_log::LogBudget;
use super::imports::MAX_LOG_LINES;
use super::instance::{WarmPool, flush_stdio};
use super::quarantine::{Admission, Change, Quarantine};
use super::ticker::ticks;
use super::{
    DecisionLimits, Evaluation, FailureKind, HostState, PolicyEngine, PolicyError, PolicyFailure,
    PolicyInfo, PolicySpec,
};
use crate::domain::{self, Verdict};
use crate::log_text::sanitize;

/// Deadline for the `info()` call made once at load time.
const INFO_DEADLINE: Duration = Duration::from_secs(1);
/// Decisions that recently took less than this run on the calling (async) thread.
const INLINE_BELOW: Duration = Duration::from_micros(500);
/// Most of a failure's message one log line quotes (bytes, before escaping).
const MAX_FAILURE_LOGGED: usize = 1024;

/// `name@short_digest` of a loaded policy.
pub fn policy_label(policy: &LoadedPolicy) -> String {
    format!("{}@{}", policy.name(), policy.short_digest())
}

/// sha256 hex of component bytes: the digest a loaded policy reports.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) struct LoadedInner {
    pub(super) engine: PolicyEngine,
    pub(super) pre: Pre,
    digest: String,
    info: PolicyInfo,
    /// Epoch deadline of a decision (by the component's size, see
    /// [`super::EngineConfig::deadline_for`]).
    deadline: Duration,
    /// Moving average of this component's decision run time, ns (`u64::MAX` before the
    /// first); decides whether a decision runs on the calling thread.
    recent_ns: AtomicU64,
    /// Set once the guest called a WASI function that blocks on tokio (see `decide`).
    blocking_only: AtomicBool,
}

/// A compiled, linked policy ready to decide. Cheap to clone.
#[derive(Clone)]
pub struct LoadedPolicy {
    pub(super) inner: Arc<LoadedInner>,
    pub(super) spec: Arc<PolicySpec>,
    pub(super) name: Arc<str>,
    pub(super) warm: Arc<WarmPool>,
    /// Guest log lines allowed (per spec, like the name the lines carry).
    pub(super) log_budget: Arc<LogBudget>,
    /// Failure record and quarantine of this policy under this spec.
    quarantine: Arc<Quarantine>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("digest", &self.inner.digest)
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Verdict(Verdict),
    Failed(PolicyFailure),
}

impl LoadedPolicy {
    /// Wraps a linked component and asks it for its `info()`.
    pub(super) fn new(
        engine: PolicyEngine,
        pre: Pre,
        digest: String,
        deadline: Duration,
        spec: PolicySpec,
    ) -> Result<Self, PolicyError> {
        let warm = WarmPool::new(engine.inner.config.warm_instances);
        let quarantine = Arc::new(Quarantine::new(engine.inner.config.quarantine));
        let mut policy = Self {
            inner: Arc::new(LoadedInner {
                engine,
                pre,
                digest,
                deadline,
                info: PolicyInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                },
                recent_ns: AtomicU64::new(u64::MAX),
                blocking_only: AtomicBool::new(false),
            }),
            name: Arc::from(spec.name.as_str()),
            spec: Arc::new(spec),
            warm,
            log_budget: Arc::new(LogBudget::new()),
            quarantine,
        };
        let info = policy.call_info().map_err(PolicyError::Info)?;
        if let Some(inner) = Arc::get_mut(&mut policy.inner) {
            inner.info = info;
        }
        Ok(policy)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// sha256 hex of the component bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }
    /// First 12 hex chars of the digest; `name@short_digest` in headers.
    pub fn short_digest(&self) -> &str {
        &self.inner.digest[..12]
    }
    pub fn info(&self) -> &PolicyInfo {
        &self.inner.info
    }
    /// The contract version the component was built against.
    pub fn contract(&self) -> ContractVersion {
        self.inner.pre.version()
    }
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }
    /// The same compiled component under another spec (name, params, fallback); no recompile.
    pub fn with_spec(&self, spec: PolicySpec) -> Self {
        Self {
            inner: self.inner.clone(),
            name: Arc::from(spec.name.as_str()),
            spec: Arc::new(spec),
            // Warm instances carry the spec's params and name: never share them.
            warm: WarmPool::new(self.inner.engine.inner.config.warm_instances),
            log_budget: Arc::new(LogBudget::new()),
            quarantine: Arc::new(Quarantine::new(self.inner.engine.inner.config.quarantine)),
        }
    }

    /// Whether this policy is quarantined now: failing so often that its fallback is used
    /// without running it (see [`super::QuarantineConfig`]).
    pub fn quarantined(&self) -> bool {
        self.quarantine.is_quarantined()
    }

    fn call_info(&self) -> Result<PolicyInfo, String> {
        let _busy = self.inner.engine.inner.ticker.busy();
        let host: Arc<dyn HostState> = Arc::new(super::StaticHost::default());
        let mut store = self.new_store(host, "info");
        let result = self.inner.pre.instantiate(&mut store).and_then(|p| {
            store.set_epoch_deadline(ticks(INFO_DEADLINE));
            store.data_mut().deadline = Instant::now() + INFO_DEADLINE;
            p.info(&mut store)
        });
        flush_stdio(&store);
        result.map_err(|e| format!("{e:#}"))
    }

    /// Runs the guest with a fresh store (or a warm instance); any failure yields the
    /// spec's fallback decision, as does a quarantine (without running the guest). A
    /// policy whose recent decisions ran in under
    /// [`INLINE_BELOW`] runs on the calling thread (handing it to a blocking thread and
    /// back costs more than the decision); others run on a blocking thread, at most one
    /// per core, under the outer timeout.
    pub async fn decide(
        &self,
        request: &domain::PolicyRequest,
        host: Arc<dyn HostState>,
    ) -> Evaluation {
        let start = Instant::now();
        let admission = self.quarantine.admit(start);
        if admission == Admission::Skip {
            return self.finish(
                Outcome::Failed(quarantined()),
                admission,
                &request.id,
                start.elapsed(),
            );
        }
        let running = &self.inner.engine.inner.running;
        // Inline decisions take no permit: the async threads (one per core) bound them.
        if !self.inner.blocking_only.load(Ordering::Relaxed)
            && self.inner.recent_ns.load(Ordering::Relaxed) < INLINE_BELOW.as_nanos() as u64
        {
            // WASI's synchronous stream and poll functions (a guest writing to stdout, for
            // one) block on tokio, which panics on a runtime thread: such a guest's
            // decision is run again on a blocking thread, as are all its later ones.
            let inline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run_timed(request, host.clone())
            }));
            match inline {
                Ok(outcome) => {
                    return self.finish(outcome, admission, &request.id, start.elapsed());
                }
                Err(_) => {
                    self.inner.blocking_only.store(true, Ordering::Relaxed);
                    tracing::info!(policy = %self.name, digest = %self.inner.digest,
                        "the policy calls blocking WASI functions; its decisions run on blocking threads");
                }
            }
        }
        // A large component's longer deadline keeps the configured slack above it.
        let config = &self.inner.engine.inner.config;
        let outer = config.outer_timeout + self.inner.deadline.saturating_sub(config.deadline);
        // At most one decision per core runs: under load the others queue here, before
        // their wall-clock deadline starts, instead of timing out while descheduled.
        let permit = match running.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => {
                let failure = PolicyFailure {
                    kind: FailureKind::Internal,
                    message: "policy engine is shutting down".to_owned(),
                };
                return self.finish(
                    Outcome::Failed(failure),
                    admission,
                    &request.id,
                    start.elapsed(),
                );
            }
        };
        let this = self.clone();
        let req = request.clone();
        let task = tokio::task::spawn_blocking(move || {
            let outcome = this.run_timed(&req, host);
            drop(permit);
            outcome
        });
        let outcome = match tokio::time::timeout(outer, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => Outcome::Failed(PolicyFailure {
                kind: FailureKind::Internal,
                message: format!("policy task failed: {join}"),
            }),
            Err(_) => Outcome::Failed(PolicyFailure {
                kind: FailureKind::Timeout,
                message: format!("policy call exceeded {} ms", outer.as_millis()),
            }),
        };
        self.finish(outcome, admission, &request.id, start.elapsed())
    }

    /// [`LoadedPolicy::run_blocking`], folding its run time into the moving average.
    fn run_timed(&self, request: &domain::PolicyRequest, host: Arc<dyn HostState>) -> Outcome {
        let started = Instant::now();
        let outcome = self.run_blocking(request, host);
        let sample = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let recent = &self.inner.recent_ns;
        let old = recent.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        recent.store(new, Ordering::Relaxed);
        outcome
    }

    /// The same as [`LoadedPolicy::decide`] on the calling thread, without the outer
    /// timeout (the epoch deadline still applies). For benchmarks and tools.
    pub fn decide_blocking(
        &self,
        request: &domain::PolicyRequest,
        host: Arc<dyn HostState>,
    ) -> Evaluation {
        let start = Instant::now();
        let admission = self.quarantine.admit(start);
        let outcome = if admission == Admission::Skip {
            Outcome::Failed(quarantined())
        } else {
            self.run_blocking(request, host)
        };
        self.finish(outcome, admission, &request.id, start.elapsed())
    }

    fn finish(
        &self,
        outcome: Outcome,
        admission: Admission,
        request_id: &str,
        elapsed: Duration,
    ) -> Evaluation {
        if admission != Admission::Skip {
            let failed = matches!(&outcome, Outcome::Failed(f) if f.kind.guest_fault());
            if let Some(change) = self.quarantine.record(admission, failed, Instant::now()) {
                self.quarantine_changed(change);
            }
        }
        match outcome {
            Outcome::Verdict(verdict) => Evaluation {
                verdict,
                failure: None,
                elapsed,
            },
            Outcome::Failed(failure) => {
                // A quarantined policy's skipped decisions were announced once, when the
                // quarantine began; one warning each would flood the log.
                if failure.kind != FailureKind::Quarantined {
                    let error = sanitize(&failure.message, MAX_FAILURE_LOGGED);
                    tracing::warn!(policy = %self.name, digest = %self.inner.digest,
                        request_id, kind = failure.kind.as_str(), error = %error,
                        "policy failed; using the fallback decision");
                }
                metrics::counter!("switchyard_policy_failures_total",
                    "policy" => self.name.to_string(), "kind" => failure.kind.as_str())
                .increment(1);
                Evaluation {
                    verdict: Verdict::Route(self.spec.fallback.clone()),
                    failure: Some(failure),
                    elapsed,
                }
            }
        }
    }

    fn quarantine_changed(&self, change: Change) {
        let gauge =
            metrics::gauge!("switchyard_policy_quarantined", "policy" => self.name.to_string());
        match change {
            Change::Quarantined => {
                gauge.set(1.0);
                let q = self.inner.engine.inner.config.quarantine;
                tracing::warn!(policy = %self.name, digest = %self.inner.digest,
                    failures = q.failures, window_ms = q.window.as_millis() as u64,
                    period_ms = q.period.as_millis() as u64,
                    "policy quarantined: it keeps failing; its fallback decision is used \
                     without running it until a probe decision succeeds");
            }
            Change::Released => {
                gauge.set(0.0);
                tracing::info!(policy = %self.name, digest = %self.inner.digest,
                    "policy released from quarantine: the probe decision succeeded");
            }
        }
    }

    /// Idle warm instances this policy holds now (always 0 when the pool is off).
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
    }

    fn run_blocking(&self, request: &domain::PolicyRequest, host: Arc<dyn HostState>) -> Outcome {
        let _busy = self.inner.engine.inner.ticker.busy();
        let deadline = self.inner.deadline;
        let mut warm = match self.instance(&host, &request.id) {
            Ok(warm) => warm,
            Err(failure) => return Outcome::Failed(failure),
        };
        warm.store.set_epoch_deadline(ticks(deadline));
        warm.store.data_mut().deadline = Instant::now() + deadline;
        let result = warm.policy.route(&mut warm.store, request);
        let quiet = !flush_stdio(&warm.store) && warm.store.data().logs <= MAX_LOG_LINES;
        self.log_budget.summarize(&self.name);
        let limits = &self.inner.engine.inner.config.decision_limits;
        let outcome = match result {
            Ok(Ok(decision)) => validate_decision(decision, limits, host.as_ref()),
            Ok(Err(rejection)) => {
                if let Some(over) = limits.rejection_exceeded(&rejection) {
                    Outcome::Failed(PolicyFailure {
                        kind: FailureKind::OverLimit,
                        message: format!("rejection is over a limit: {over}"),
                    })
                } else if (400..=599).contains(&rejection.status) {
                    Outcome::Verdict(Verdict::Reject(rejection))
                } else {
                    Outcome::Failed(PolicyFailure {
                        kind: FailureKind::BadStatus,
                        message: format!(
                            "rejection status {} is outside 400..=599",
                            rejection.status
                        ),
                    })
                }
            }
            Err(e) => Outcome::Failed(classify(&e)),
        };
        // Only an instance that just answered well, and wrote nothing to stdio (whose
        // buffers are per store), is kept; a trap or an interrupt leaves it unusable.
        if quiet && matches!(outcome, Outcome::Verdict(_)) {
            self.warm.put(warm);
        }
        outcome
    }
}

/// The failure a quarantined policy's skipped decision reports.
fn quarantined() -> PolicyFailure {
    PolicyFailure {
        kind: FailureKind::Quarantined,
        message: "policy is quarantined after repeated failures; not run".to_owned(),
    }
}

/// A decision's checks, caps first (so no later message quotes an oversized name).
fn validate_decision(
    decision: domain::Decision,
    limits: &DecisionLimits,
    host: &dyn HostState,
) -> Outcome {
    if let Some(over) = limits.exceeded(&decision) {
        return Outcome::Failed(PolicyFailure {
            kind: FailureKind::OverLimit,
            message: format!("decision is over a limit: {over}"),
        });
    }
    if decision.targets.is_empty() {
        return Outcome::Failed(PolicyFailure {
            kind: FailureKind::EmptyTargets,
            message: "decision has no targets".into(),
        });
    }
    for target in &decision.targets {
        if !host.has_backend(&target.backend) {
            return Outcome::Failed(PolicyFailure {
                kind: FailureKind::UnknownBackend,
                message: format!("decision names unknown backend {:?}", target.backend),
            });
        }
    }
    Outcome::Verdict(Verdict::Route(decision))
}

/// Sorts a failed instantiate/call into a [`FailureKind`]. The epoch interrupt and a host
/// call refused for lack of time are deadlines; the store limiter's forced trap is the memory cap; running out of the pooling
/// allocator's slots is the host's problem (internal), not the guest's; anything else the
/// guest did (unreachable, out-of-bounds, too much data handed to the host) is a trap.
pub(super) fn classify(e: &wasmtime::Error) -> PolicyFailure {
    let message = format!("{e:#}");
    let kind = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::Deadline,
        Some(_) => FailureKind::Trap,
        None if e.is::<OverBudget>() => FailureKind::Deadline,
        None if e.is::<wasmtime::PoolConcurrencyLimitError>() => FailureKind::Internal,
        None if message.contains("forcing trap when growing memory")
            || message.contains("forcing a memory growth failure") =>
        {
            FailureKind::Memory
        }
        None => FailureKind::Trap,
    };
    PolicyFailure { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Decision, Target};
    use crate::policy::StaticHost;

    fn decision(backends: &[&str]) -> Decision {
        Decision {
            targets: backends
                .iter()
                .map(|b| Target {
                    backend: (*b).to_owned(),
                    model: None,
                })
                .collect(),
            reason: "test".to_owned(),
            messages: None,
            max_tokens: None,
            labels: Default::default(),
        }
    }

    fn failure_kind(outcome: Outcome) -> Option<FailureKind> {
        match outcome {
            Outcome::Verdict(_) => None,
            Outcome::Failed(f) => Some(f.kind),
        }
    }

    #[test]
    fn decisions_must_name_known_backends() {
        let host = StaticHost::default();
        let limits = &DecisionLimits::default();
        assert_eq!(
            failure_kind(validate_decision(decision(&["local"]), limits, &host)),
            None
        );
        assert_eq!(
            failure_kind(validate_decision(decision(&[]), limits, &host)),
            Some(FailureKind::EmptyTargets)
        );
        assert_eq!(
            failure_kind(validate_decision(
                decision(&["local", "nope"]),
                limits,
                &host
            )),
            Some(FailureKind::UnknownBackend)
        );
        // Caps come first: an oversized unknown name is over a limit, never quoted whole.
        let long = "n".repeat(1 << 20);
        assert_eq!(
            failure_kind(validate_decision(decision(&[&long]), limits, &host)),
            Some(FailureKind::OverLimit)
        );
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
