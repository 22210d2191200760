//! Live policies: named policy slots with scopes, prepared off the request path and swapped
//! atomically, a version history for rollback, and canary/shadow candidates. [`PolicySet`]
//! is the gateway's [`crate::dispatch::RoutingRule`].

pub mod admin;
mod watch;

pub use watch::{ConfigReader, Watcher, watch};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::dispatch::{GatewayHost, RouteEvaluation, RoutingRule};
use crate::domain::{Decision, PolicyRequest, Verdict};
use crate::policy::{
    FailureKind, LoadedPolicy, PolicyEngine, PolicySpec, StaticHost, cases, policy_label,
};

/// Previous versions kept for rollback.
pub const HISTORY_LEN: usize = 8;
/// Shadow disagreements kept as samples.
const SAMPLES: usize = 20;

/// One named policy as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotConfig {
    pub name: String,
    pub path: PathBuf,
    pub params: BTreeMap<String, String>,
    pub fallback: Decision,
    /// Model aliases this policy decides (e.g. `auto-private`).
    pub models: Vec<String>,
    /// Tenants this policy decides.
    pub tenants: Vec<String>,
}

impl SlotConfig {
    fn spec(&self) -> PolicySpec {
        PolicySpec {
            name: self.name.clone(),
            params: self.params.clone(),
            fallback: self.fallback.clone(),
        }
    }

    /// The self-test case file beside the component: `NAME.cases.json` for `NAME.wasm`.
    pub fn cases_path(&self) -> PathBuf {
        cases_path(&self.path)
    }
}

/// `dir/NAME.cases.json` for `dir/NAME.wasm`.
pub fn cases_path(component: &Path) -> PathBuf {
    let stem = component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    component.with_file_name(format!("{stem}.cases.json"))
}

/// One loaded version of a policy.
#[derive(Debug)]
pub struct Version {
    pub policy: LoadedPolicy,
    pub loaded_at: SystemTime,
    /// `file`, `upload`, `rollback` or `promote`.
    pub origin: &'static str,
}

impl Version {
    fn new(policy: LoadedPolicy, origin: &'static str) -> Arc<Self> {
        Arc::new(Self {
            policy,
            loaded_at: SystemTime::now(),
            origin,
        })
    }
}

/// How a candidate version takes part in traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum CandidateMode {
    /// Serves `percent` % of traffic, bucketed by a stable hash of the tenant (the request
    /// id for the unauthenticated `default` tenant).
    Canary { percent: f64 },
    /// Evaluated on live traffic without acting; agreement is counted.
    Shadow,
}

/// One shadow disagreement.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub request_id: String,
    pub live: String,
    pub candidate: String,
}

/// A candidate version and its counters.
#[derive(Debug)]
pub struct Candidate {
    pub version: Arc<Version>,
    pub mode: CandidateMode,
    served: AtomicU64,
    agree: AtomicU64,
    disagree: AtomicU64,
    samples: Mutex<Vec<Disagreement>>,
}

/// A named policy: its live version, history, candidate and status.
#[derive(Debug)]
pub struct Slot {
    config: ArcSwap<SlotConfig>,
    live: ArcSwap<Version>,
    candidate: ArcSwapOption<Candidate>,
    history: Mutex<Vec<Arc<Version>>>,
    status: Mutex<SlotStatus>,
    decisions: AtomicU64,
    /// Serialises prepare + commit of this slot.
    update: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct SlotStatus {
    last_error: Option<String>,
    last_error_at_ms: Option<u64>,
    swaps: u64,
    rejected: u64,
}

impl Slot {
    pub fn name(&self) -> String {
        self.config.load().name.clone()
    }
    pub fn config(&self) -> Arc<SlotConfig> {
        self.config.load_full()
    }
    /// The version new requests are decided by (outside a canary).
    pub fn live(&self) -> Arc<Version> {
        self.live.load_full()
    }
    pub fn candidate(&self) -> Option<Arc<Candidate>> {
        self.candidate.load_full()
    }

    fn commit(&self, version: Arc<Version>) -> Arc<Version> {
        let previous = self.live.swap(version);
        let mut history = lock(&self.history);
        history.push(previous.clone());
        if history.len() > HISTORY_LEN {
            history.remove(0);
        }
        lock(&self.status).swaps += 1;
        previous
    }

    fn record_error(&self, error: &str) {
        let mut status = lock(&self.status);
        status.last_error = Some(error.to_owned());
        status.last_error_at_ms = Some(unix_ms(SystemTime::now()));
        status.rejected += 1;
    }

    fn clear_error(&self) {
        lock(&self.status).last_error = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum ReloadOutcome {
    /// The bytes are those of the live version.
    Unchanged { digest: String },
    /// A new version is live.
    Swapped { from: String, to: String },
    /// A new candidate is staged.
    Staged { digest: String },
}

/// Why an update was refused; the live version keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("no policy named {0:?}")]
    UnknownPolicy(String),
    #[error("{0}")]
    Prepare(String),
    #[error("{0}")]
    Invalid(String),
}

/// Every live policy of the gateway.
#[derive(Debug)]
pub struct PolicySet {
    engine: PolicyEngine,
    /// The first slot is the default policy.
    slots: Vec<Arc<Slot>>,
}

impl PolicySet {
    /// Loads every configured policy (each must load and pass its self-test cases).
    pub async fn load(engine: PolicyEngine, configs: Vec<SlotConfig>) -> Result<Self, String> {
        if configs.is_empty() {
            return Err("no policy configured".to_owned());
        }
        let mut slots = Vec::new();
        for config in configs {
            let bytes = tokio::fs::read(&config.path)
                .await
                .map_err(|e| format!("reading policy {}: {e}", config.path.display()))?;
            let policy = prepare(&engine, &config, bytes)
                .await
                .map_err(|e| format!("policy {} ({}): {e}", config.name, config.path.display()))?;
            tracing::info!(policy = %policy_label(&policy), file = %config.path.display(), "policy loaded");
            slots.push(Arc::new(Slot {
                config: ArcSwap::from_pointee(config),
                live: ArcSwap::new(Version::new(policy, "file")),
                candidate: ArcSwapOption::empty(),
                history: Mutex::new(Vec::new()),
                status: Mutex::new(SlotStatus::default()),
                decisions: AtomicU64::new(0),
                update: tokio::sync::Mutex::new(()),
            }));
        }
        Ok(Self { engine, slots })
    }

    pub fn slots(&self) -> &[Arc<Slot>] {
        &self.slots
    }

    pub fn slot(&self, name: &str) -> Result<&Arc<Slot>, UpdateError> {
        self.slots
            .iter()
            .find(|s| s.config.load().name == name)
            .ok_or_else(|| UpdateError::UnknownPolicy(name.to_owned()))
    }

    /// The slot deciding `request`: a policy scoped to its model alias, else to its
    /// tenant, else the default.
    fn select(&self, request: &PolicyRequest) -> &Arc<Slot> {
        let by_model = self
            .slots
            .iter()
            .find(|s| s.config.load().models.contains(&request.model));
        let by_tenant = || {
            self.slots
                .iter()
                .find(|s| s.config.load().tenants.contains(&request.tenant))
        };
        by_model
            .or_else(by_tenant)
            .unwrap_or_else(|| &self.slots[0])
    }

    /// Re-reads the slot's file; a changed, valid file becomes live. On failure the
    /// previous version keeps serving and the error is recorded.
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let path = slot.config().path.clone();
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            let msg = format!("reading {}: {e}", path.display());
            self.failed(&slot, &msg);
            UpdateError::Prepare(msg)
        })?;
        self.update(&slot, bytes, None, "file").await
    }

    /// A new version from bytes: live at once (`mode` `None`), or staged as a candidate.
    pub async fn upload(
        &self,
        name: &str,
        bytes: Vec<u8>,
        mode: Option<CandidateMode>,
    ) -> Result<ReloadOutcome, UpdateError> {
        if let Some(CandidateMode::Canary { percent }) = mode
            && !(0.0..=100.0).contains(&percent)
        {
            return Err(UpdateError::Invalid(
                "canary percent must be in 0..=100".to_owned(),
            ));
        }
        let slot = self.slot(name)?.clone();
        self.update(&slot, bytes, mode, "upload").await
    }

    /// Re-reads every slot's config (params, path, scopes) and reloads those that changed.
    pub async fn apply_configs(&self, configs: Vec<SlotConfig>) {
        for config in configs {
            let Ok(slot) = self.slot(&config.name).cloned() else {
                tracing::warn!(policy = %config.name,
                    "a policy was added to the config; restart the gateway to serve it");
                continue;
            };
            if *slot.config() == config {
                continue;
            }
            let name = config.name.clone();
            let path = config.path.clone();
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    self.failed(&slot, &format!("reading {}: {e}", path.display()));
                    continue;
                }
            };
            let guard = slot.update.lock().await;
            match prepare(&self.engine, &config, bytes).await {
                Ok(policy) => {
                    slot.config.store(Arc::new(config));
                    let label = policy_label(&policy);
                    slot.commit(Version::new(policy, "file"));
                    slot.clear_error();
                    reload_metric(&name, "ok");
                    tracing::info!(policy = %label, "policy config changed; new version live");
                }
                Err(e) => self.failed(&slot, &e),
            }
            drop(guard);
        }
    }

    async fn update(
        &self,
        slot: &Arc<Slot>,
        bytes: Vec<u8>,
        mode: Option<CandidateMode>,
        origin: &'static str,
    ) -> Result<ReloadOutcome, UpdateError> {
        let _guard = slot.update.lock().await;
        let name = slot.name();
        let live = slot.live();
        let digest = crate::policy::digest_of(&bytes);
        if mode.is_none() && digest == live.policy.digest() {
            reload_metric(&name, "unchanged");
            return Ok(ReloadOutcome::Unchanged { digest });
        }
        let config = slot.config();
        let started = Instant::now();
        let policy = match prepare(&self.engine, &config, bytes).await {
            Ok(p) => p,
            Err(e) => {
                self.failed(slot, &e);
                return Err(UpdateError::Prepare(e));
            }
        };
        slot.clear_error();
        let version = Version::new(policy, origin);
        let to = policy_label(&version.policy);
        let outcome = match mode {
            None => {
                let from = policy_label(&slot.commit(version).policy);
                slot.candidate.store(None);
                reload_metric(&name, "ok");
                tracing::info!(from = %from, to = %to, origin,
                    prepare_ms = started.elapsed().as_millis() as u64, "policy swapped");
                ReloadOutcome::Swapped { from, to }
            }
            Some(mode) => {
                slot.candidate.store(Some(Arc::new(Candidate {
                    version,
                    mode,
                    served: AtomicU64::new(0),
                    agree: AtomicU64::new(0),
                    disagree: AtomicU64::new(0),
                    samples: Mutex::new(Vec::new()),
                })));
                reload_metric(&name, "staged");
                tracing::info!(candidate = %to, ?mode, "policy candidate staged");
                ReloadOutcome::Staged { digest: to }
            }
        };
        Ok(outcome)
    }

    fn failed(&self, slot: &Slot, error: &str) {
        let name = slot.name();
        slot.record_error(error);
        reload_metric(&name, "failed");
        tracing::error!(policy = %name, live = %policy_label(&slot.live().policy), error,
            "policy update rejected; the live version keeps serving");
    }

    /// Makes the previous version live again.
    pub async fn rollback(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let _guard = slot.update.lock().await;
        let previous = lock(&slot.history)
            .pop()
            .ok_or_else(|| UpdateError::Invalid(format!("policy {name} has no earlier version")))?;
        let restored = Version::new(previous.policy.clone(), "rollback");
        let from = slot.live.swap(restored);
        lock(&slot.status).swaps += 1;
        let to = policy_label(&previous.policy);
        let from = policy_label(&from.policy);
        reload_metric(name, "rollback");
        tracing::info!(from = %from, to = %to, "policy rolled back");
        Ok(ReloadOutcome::Swapped { from, to })
    }

    /// Makes the candidate live.
    pub async fn promote(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let _guard = slot.update.lock().await;
        let candidate = take_candidate(&slot, name)?;
        let version = Version::new(candidate.version.policy.clone(), "promote");
        let to = policy_label(&version.policy);
        let from = policy_label(&slot.commit(version).policy);
        reload_metric(name, "promoted");
        tracing::info!(from = %from, to = %to, "policy candidate promoted");
        Ok(ReloadOutcome::Swapped { from, to })
    }

    /// Drops the candidate.
    pub async fn abort(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let _guard = slot.update.lock().await;
        let candidate = take_candidate(&slot, name)?;
        let digest = policy_label(&candidate.version.policy);
        tracing::info!(candidate = %digest, "policy candidate aborted");
        Ok(ReloadOutcome::Unchanged {
            digest: policy_label(&slot.live().policy),
        })
    }

    /// What the admin API lists.
    pub fn report(&self) -> Vec<SlotReport> {
        self.slots.iter().map(|s| s.report()).collect()
    }
}

/// Removes the slot's candidate, or says there is none.
fn take_candidate(slot: &Slot, name: &str) -> Result<Arc<Candidate>, UpdateError> {
    slot.candidate
        .swap(None)
        .ok_or_else(|| UpdateError::Invalid(format!("policy {name} has no candidate")))
}

/// Compiles (or takes from the cache) and links `bytes` on a blocking thread, makes one
/// smoke decision with the demo host (a guest that traps, loops or runs out of memory on
/// a plain request never goes live), then runs the self-test case file beside the
/// component when there is one.
async fn prepare(
    engine: &PolicyEngine,
    config: &SlotConfig,
    bytes: Vec<u8>,
) -> Result<LoadedPolicy, String> {
    let engine = engine.clone();
    let spec = config.spec();
    let policy = tokio::task::spawn_blocking(move || engine.load(spec, &bytes))
        .await
        .map_err(|e| format!("policy loader task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    smoke(&policy).await?;
    let cases_file = config.cases_path();
    match tokio::fs::read_to_string(&cases_file).await {
        Ok(text) => {
            let file = cases::CaseFile::parse(&text)
                .map_err(|e| format!("{}: {e}", cases_file.display()))?;
            let failed: Vec<String> = cases::run(&policy, &file)
                .await
                .into_iter()
                .filter(|r| !r.passed())
                .map(|r| format!("{}: {}", r.name, r.problems.join("; ")))
                .collect();
            if !failed.is_empty() {
                return Err(format!(
                    "self-test {} failed {} case(s): {}",
                    cases_file.display(),
                    failed.len(),
                    failed.join(" | ")
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", cases_file.display())),
    }
    Ok(policy)
}

/// One plain request with the demo backends. Only crashes count: a decision naming a
/// backend the demo set lacks is fine (the policy's params may name real ones), and a
/// missed deadline counts only when the retries miss it too (a loaded machine must not
/// stop a gateway from starting).
async fn smoke(policy: &LoadedPolicy) -> Result<(), String> {
    let request = PolicyRequest {
        id: "smoke-test".to_owned(),
        model: "auto".to_owned(),
        messages: vec![crate::domain::ChatMessage {
            role: crate::domain::Role::User,
            content: "Classify the sentiment of: I love this product.".to_owned(),
        }],
        max_tokens: None,
        temperature: None,
        streaming: false,
        tenant: crate::config::defaults::TENANT.to_owned(),
        labels: BTreeMap::new(),
        prompt_tokens: 12,
    };
    let evaluation =
        cases::decide_patiently(policy, &request, Arc::new(StaticHost::default())).await;
    match evaluation.failure {
        Some(f)
            if matches!(
                f.kind,
                FailureKind::Trap
                    | FailureKind::Deadline
                    | FailureKind::Memory
                    | FailureKind::Timeout
            ) =>
        {
            Err(format!("smoke decision failed: {f}"))
        }
        _ => Ok(()),
    }
}

fn reload_metric(policy: &str, result: &'static str) {
    metrics::counter!("switchyard_policy_reloads_total",
        "policy" => policy.to_owned(), "result" => result)
    .increment(1);
}

/// A stable bucket in 0..10000 for canary assignment.
fn bucket(key: &str) -> u64 {
    policy_sdk::fnv::fnv1a(key.as_bytes()) % 10_000
}

/// Short text of a verdict for comparisons and samples.
fn summary(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Route(d) => {
            let targets: Vec<&str> = d.targets.iter().map(|t| t.backend.as_str()).collect();
            format!("route {}", targets.join(","))
        }
        Verdict::Reject(r) => format!("reject {}", r.status),
    }
}

impl Candidate {
    fn record_shadow(&self, request_id: &str, live: &Verdict, shadow: &Verdict, policy: &str) {
        let (live, shadow) = (summary(live), summary(shadow));
        let outcome = if live == shadow {
            self.agree.fetch_add(1, Ordering::Relaxed);
            "agree"
        } else {
            self.disagree.fetch_add(1, Ordering::Relaxed);
            let mut samples = lock(&self.samples);
            if samples.len() < SAMPLES {
                samples.push(Disagreement {
                    request_id: request_id.to_owned(),
                    live,
                    candidate: shadow,
                });
            }
            "disagree"
        };
        metrics::counter!("switchyard_policy_shadow_total",
            "policy" => policy.to_owned(), "outcome" => outcome)
        .increment(1);
    }
}

impl RoutingRule for PolicySet {
    fn label(&self) -> String {
        policy_label(&self.slots[0].live().policy)
    }

    fn aliases(&self) -> Vec<String> {
        self.slots
            .iter()
            .flat_map(|s| s.config.load().models.clone())
            .collect()
    }

    fn decide<'a>(
        &'a self,
        request: &'a PolicyRequest,
        host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation> {
        let slot = self.select(request).clone();
        async move {
            slot.decisions.fetch_add(1, Ordering::Relaxed);
            let live = slot.live();
            let candidate = slot.candidate();
            let mut version = live;
            let mut shadow = None;
            if let Some(c) = candidate {
                match c.mode {
                    CandidateMode::Canary { percent } => {
                        let key = if request.tenant == crate::config::defaults::TENANT {
                            &request.id
                        } else {
                            &request.tenant
                        };
                        if (bucket(key) as f64) < percent * 100.0 {
                            c.served.fetch_add(1, Ordering::Relaxed);
                            version = c.version.clone();
                        }
                    }
                    CandidateMode::Shadow => shadow = Some(c),
                }
            }
            let evaluation = version.policy.decide(request, host.clone()).await;
            if let Some(c) = shadow {
                // Evaluated off the response path: the client never waits for the shadow.
                let request = request.clone();
                let live_verdict = evaluation.verdict.clone();
                let name = version.policy.name().to_owned();
                tokio::spawn(async move {
                    let candidate = c.version.policy.decide(&request, host).await;
                    c.served.fetch_add(1, Ordering::Relaxed);
                    c.record_shadow(&request.id, &live_verdict, &candidate.verdict, &name);
                });
            }
            RouteEvaluation {
                policy: policy_label(&version.policy),
                verdict: evaluation.verdict,
                failure: evaluation.failure.map(|f| f.to_string()),
                elapsed: evaluation.elapsed,
            }
        }
        .boxed()
    }
}

/// A policy as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotReport {
    pub name: String,
    pub path: PathBuf,
    pub models: Vec<String>,
    pub tenants: Vec<String>,
    pub live: VersionReport,
    pub history: Vec<VersionReport>,
    pub candidate: Option<CandidateReport>,
    pub decisions: u64,
    pub status: &'static str,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<u64>,
    pub swaps: u64,
    pub rejected_updates: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionReport {
    pub policy: String,
    pub digest: String,
    pub version: String,
    pub loaded_at_ms: u64,
    pub origin: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    #[serde(flatten)]
    pub version: VersionReport,
    #[serde(flatten)]
    pub mode: CandidateMode,
    pub served: u64,
    pub agree: u64,
    pub disagree: u64,
    pub samples: Vec<Disagreement>,
}

fn version_report(v: &Version) -> VersionReport {
    VersionReport {
        policy: policy_label(&v.policy),
        digest: v.policy.digest().to_owned(),
        version: v.policy.info().version.clone(),
        loaded_at_ms: unix_ms(v.loaded_at),
        origin: v.origin,
    }
}

impl Slot {
    fn report(&self) -> SlotReport {
        let config = self.config();
        let status = lock(&self.status).clone();
        SlotReport {
            name: config.name.clone(),
            path: config.path.clone(),
            models: config.models.clone(),
            tenants: config.tenants.clone(),
            live: version_report(&self.live()),
            history: lock(&self.history)
                .iter()
                .rev()
                .map(|v| version_report(v))
                .collect(),
            candidate: self.candidate().map(|c| CandidateReport {
                version: version_report(&c.version),
                mode: c.mode,
                served: c.served.load(Ordering::Relaxed),
                agree: c.agree.load(Ordering::Relaxed),
                disagree: c.disagree.load(Ordering::Relaxed),
                samples: lock(&c.samples).clone(),
            }),
            decisions: self.decisions.load(Ordering::Relaxed),
            status: if status.last_error.is_some() {
                "serving; last update failed"
            } else {
                "serving"
            },
            last_error: status.last_error,
            last_error_at_ms: status.last_error_at_ms,
            swaps: status.swaps,
            rejected_updates: status.rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("acme"), bucket("acme"));
        let in_ten = (0..10_000)
            .filter(|i| bucket(&format!("tenant-{i}")) < 1_000)
            .count();
        assert!((900..=1_100).contains(&in_ten), "{in_ten}");
    }

    #[test]
    fn cases_file_sits_beside_the_component() {
        assert_eq!(
            cases_path(Path::new("/p/hybrid.wasm")),
            PathBuf::from("/p/hybrid.cases.json")
        );
    }
}
