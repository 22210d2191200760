//! Policy runtime: loads policy components, runs them sandboxed, and turns their output
//! into a [`crate::domain::Verdict`].

mod bindings;
mod budget;
mod cache;
mod engine;
mod guest_log;
mod host;
mod imports;
mod instance;
mod limits;
mod loaded;
mod pii;
mod quarantine;
mod ticker;
mod wasi;

pub mod cases;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::{Decision, Verdict};

pub use bindings::ContractVersion;
pub use budget::{EMBED_BYTES_PER_MS, SCAN_BYTES_PER_MS};
pub use cache::COMPILE_FAILED_EXIT;
pub use engine::PolicyEngine;
pub use host::{HostState, StaticHost};
pub use limits::DecisionLimits;
pub use loaded::{LoadedPolicy, digest_of, policy_label};
pub use quarantine::QuarantineConfig;

/// Engine-wide limits and settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Epoch deadline per guest call (the ticker runs every millisecond).
    pub deadline: Duration,
    /// ... of a component over [`LARGE_GUEST_BYTES`].
    pub large_guest_deadline: Duration,
    /// Limit on the whole call, host calls included.
    pub outer_timeout: Duration,
    /// Linear memory cap per instance.
    pub memory_limit_bytes: usize,
    /// Largest component file accepted by `load`.
    pub max_component_bytes: usize,
    /// Bytes a guest may hand to the host per call (wasmtime hostcall fuel).
    pub hostcall_fuel: usize,
    /// Compiled-component cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Concurrent instances the pooling allocator reserves room for.
    pub max_instances: u32,
    /// Idle instances kept per loaded policy for reuse (0, the default, instantiates a
    /// fresh store for every decision). An instance is put back only after a call that
    /// returned a valid verdict without trapping, hitting a limit or writing to stdio;
    /// guest globals then survive into the next request, so turn this on only for
    /// policies that keep no per-request state. Each idle instance holds one of
    /// `max_instances` pool slots.
    pub warm_instances: usize,
    /// Where cache misses are compiled (with a `cache_dir`; without one, in process).
    pub compiler: Compiler,
    /// Caps on a decision's size; over one it is a failure (`over_limit`).
    pub decision_limits: DecisionLimits,
    /// When a policy that keeps failing is set aside (its fallback used unrun).
    pub quarantine: QuarantineConfig,
}

/// Where components are compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compiler {
    /// On the calling thread.
    #[default]
    InProcess,
    /// In a child process running this executable (`switchyard policy compile-cache`),
    /// which writes the compiled-component cache that this process then maps: a server
    /// never maps Cranelift's code nor keeps its compile-time heap (about 12 MB of its
    /// idle resident memory), and a compiler crash cannot take it down.
    Child(PathBuf),
}

/// Components over this size embed an interpreter (componentize-py ~19 MB,
/// componentize-js ~12 MB; a Rust policy is ~0.2 MB): a fresh instance of one decides in
/// 4–35 ms on two cores, so it gets [`EngineConfig::large_guest_deadline`].
pub const LARGE_GUEST_BYTES: usize = 4 << 20;

impl EngineConfig {
    /// The deadline of a component of `bytes` bytes.
    pub fn deadline_for(&self, bytes: usize) -> Duration {
        if bytes > LARGE_GUEST_BYTES {
            self.large_guest_deadline
        } else {
            self.deadline
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(5),
            large_guest_deadline: Duration::from_millis(50),
            outer_timeout: Duration::from_millis(50),
            memory_limit_bytes: 64 << 20,
            max_component_bytes: 64 << 20,
            hostcall_fuel: 4 << 20,
            cache_dir: None,
            max_instances: 64,
            warm_instances: 0,
            compiler: Compiler::InProcess,
            decision_limits: DecisionLimits::default(),
            quarantine: QuarantineConfig::default(),
        }
    }
}

/// What a policy is configured with: its name, parameters and the fallback decision.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub fallback: Decision,
}

/// The name a policy file goes by when the config names none: its file stem.
pub fn name_from_path(path: &std::path::Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("policy")
        .to_owned()
}

/// Metadata from the component's `info()` export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// How a guest misbehaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Trap,
    Deadline,
    Memory,
    UnknownBackend,
    EmptyTargets,
    BadStatus,
    Timeout,
    /// The decision is over a [`DecisionLimits`] cap.
    OverLimit,
    /// The policy is quarantined: not run, its fallback used.
    Quarantined,
    Internal,
}

impl FailureKind {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::UnknownBackend => "unknown_backend",
            Self::EmptyTargets => "empty_targets",
            Self::BadStatus => "bad_status",
            Self::Timeout => "timeout",
            Self::OverLimit => "over_limit",
            Self::Quarantined => "quarantined",
            Self::Internal => "internal",
        }
    }

    /// Whether the guest is to blame (what counts toward quarantine): not the host's
    /// own trouble (`internal`) nor a decision it was not asked to make (`quarantined`).
    pub fn guest_fault(self) -> bool {
        !matches!(self, Self::Internal | Self::Quarantined)
    }
}

/// A guest failure: its kind and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// The result of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// `Some` means the guest misbehaved and `verdict` is the spec's fallback decision.
    pub failure: Option<PolicyFailure>,
    pub elapsed: Duration,
}

/// Errors from creating the engine or loading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("creating the policy engine failed: {0}")]
    Engine(String),
    #[error("reading policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy component is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    #[error("compiling the policy component failed (truncated or invalid?): {0}")]
    Compile(String),
    #[error("policy does not fit world `switchyard:policy/policy` (0.2.0 or 0.1.0): {0}")]
    WrongWorld(String),
    #[error("policy info() call failed: {0}")]
    Info(String),
}
