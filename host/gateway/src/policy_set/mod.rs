//! The live policy set: named policy slots with scopes, each with a live version, a
//! history for rollback and an optional canary/shadow candidate. [`PolicySet`] is the
//! gateway's [`crate::dispatch::RoutingRule`] (`routing`); versions are prepared off the
//! request path and made live by one commit (`update`); the admin API reports it
//! (`report`, `admin`); files are watched for changes (`watch`).

pub mod admin;
mod history;
mod host;
mod prepare;
pub mod replicas;
mod report;
mod routing;
pub mod saved;
mod update;
mod uploads;
mod watch;

pub use report::{CandidateReport, SlotReport, VersionReport};
pub use update::Accepted;
pub use uploads::{UploadReport, UploadStage};
pub use watch::{ConfigReader, Watcher, watch};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

use self::history::History;
use crate::domain::Decision;
use crate::policy::{LoadedPolicy, PolicyEngine, PolicySpec, policy_label};

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

/// How a version came to be live (shown in the admin report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Read from the slot's file (at start, on a file change or a config change).
    File,
    /// Uploaded through the admin API.
    Upload,
    /// An earlier version made live again.
    Rollback,
    /// A candidate made live.
    Promote,
    /// Made live (or staged) by another replica, through the shared database.
    Replica,
    /// Saved by this node before a restart ([`saved`]) and made live again.
    Restored,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Upload => "upload",
            Self::Rollback => "rollback",
            Self::Promote => "promote",
            Self::Replica => "replica",
            Self::Restored => "restored",
        }
    }
}

/// One loaded version of a policy.
#[derive(Debug)]
pub struct Version {
    pub policy: LoadedPolicy,
    pub loaded_at: SystemTime,
    pub origin: Origin,
}

impl Version {
    fn new(policy: LoadedPolicy, origin: Origin) -> Arc<Self> {
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
    /// Shadow decisions where either side failed and took its fallback: not judged.
    fallbacks: AtomicU64,
    samples: Mutex<Vec<Disagreement>>,
}

impl Candidate {
    fn new(version: Arc<Version>, mode: CandidateMode) -> Self {
        Self {
            version,
            mode,
            served: AtomicU64::new(0),
            agree: AtomicU64::new(0),
            disagree: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        }
    }
}

/// A named policy: its live version, history, candidate and status.
#[derive(Debug)]
pub struct Slot {
    config: ArcSwap<SlotConfig>,
    live: ArcSwap<Version>,
    candidate: ArcSwapOption<Candidate>,
    history: Mutex<History<Arc<Version>>>,
    status: Mutex<SlotStatus>,
    decisions: AtomicU64,
    /// Serialises prepare + commit of this slot.
    update: tokio::sync::Mutex<()>,
    /// Admin uploads preparing in the background, and the last few finished.
    uploads: uploads::Uploads,
}

#[derive(Debug, Clone, Default, Serialize)]
struct SlotStatus {
    last_error: Option<String>,
    last_error_at_ms: Option<u64>,
    swaps: u64,
    rejected: u64,
}

impl Slot {
    fn new(config: SlotConfig, live: Arc<Version>) -> Self {
        Self {
            config: ArcSwap::from_pointee(config),
            live: ArcSwap::new(live),
            candidate: ArcSwapOption::empty(),
            history: Mutex::new(History::default()),
            status: Mutex::new(SlotStatus::default()),
            decisions: AtomicU64::new(0),
            update: tokio::sync::Mutex::new(()),
            uploads: uploads::Uploads::default(),
        }
    }

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
    /// Too many uploads of the slot are still being prepared.
    #[error("{0}")]
    Busy(String),
}

/// Every live policy of the gateway.
#[derive(Debug)]
pub struct PolicySet {
    engine: PolicyEngine,
    /// The first slot is the default policy.
    slots: Vec<Arc<Slot>>,
    /// Set when versions are shared with other replicas ([`replicas::share`]).
    announcer: std::sync::OnceLock<replicas::Announcer>,
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
            let policy = prepare::prepare(&engine, &config, bytes, None)
                .await
                .map_err(|e| format!("policy {} ({}): {e}", config.name, config.path.display()))?;
            tracing::info!(policy = %policy_label(&policy), file = %config.path.display(), "policy loaded");
            let live = Version::new(policy, Origin::File);
            slots.push(Arc::new(Slot::new(config, live)));
        }
        Ok(Self {
            engine,
            slots,
            announcer: std::sync::OnceLock::new(),
        })
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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_file_sits_beside_the_component() {
        assert_eq!(
            cases_path(Path::new("/p/hybrid.wasm")),
            PathBuf::from("/p/hybrid.cases.json")
        );
    }

    #[test]
    fn origins_keep_their_report_names() {
        for origin in [
            Origin::File,
            Origin::Upload,
            Origin::Rollback,
            Origin::Promote,
            Origin::Replica,
            Origin::Restored,
        ] {
            let json = serde_json::to_value(origin).ok();
            assert_eq!(json, Some(serde_json::Value::from(origin.as_str())));
        }
    }
}
