//! The configuration file as serde reads it: one raw type per TOML section, unknown keys
//! refused (`deny_unknown_fields`), every value still optional and unchecked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConnectorKind;

/// The whole file: every section, each defaulting to empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) backends: Vec<RawBackend>,
    #[serde(default)]
    pub(super) ledger: RawLedger,
    #[serde(default)]
    pub(super) tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    pub(super) policies: Vec<RawNamedPolicy>,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) auth: RawAuth,
    pub(super) decision_log: Option<RawDecisionLog>,
    pub(super) hardware: Option<RawHardware>,
    #[serde(default)]
    pub(super) privacy: RawPrivacy,
    /// `[classifiers]`: name → model file, scored by policies' `embeddings.score`.
    #[serde(default)]
    pub(super) classifiers: BTreeMap<String, PathBuf>,
    pub(super) embeddings: Option<RawEmbeddings>,
}

/// `[embeddings]`: the local sentence-embedding model for policies and `/v1/embeddings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmbeddings {
    pub(super) model_dir: PathBuf,
    pub(super) threads: Option<usize>,
}

/// `[privacy]`: data classes the host keeps on local backends whatever a policy says.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrivacy {
    /// Client label naming a request's data class (default `data-class`).
    pub(super) data_class_label: Option<String>,
    /// Data class → rule (`"local_only"`).
    #[serde(default)]
    pub(super) data_classes: BTreeMap<String, String>,
}

/// `[hardware]`: the local machine's cost profile, for `switchyard replay`'s break-even.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHardware {
    pub(super) name: Option<String>,
    pub(super) price_usd: Option<f64>,
    pub(super) months: Option<f64>,
    pub(super) watts: Option<f64>,
    pub(super) usd_per_kwh: Option<f64>,
    pub(super) hours_per_day: Option<f64>,
    pub(super) tokens_per_s: Option<f64>,
}

/// `[decision_log]`: one JSONL line per request for `switchyard replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecisionLog {
    pub(super) path: PathBuf,
    pub(super) max_mb: Option<u64>,
    pub(super) keep: Option<u32>,
    #[serde(default)]
    pub(super) include_content: bool,
}

/// Client API keys (`[[auth.keys]]`): each maps to a tenant. Only digests are stored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    pub(super) keys: Vec<RawClientKey>,
    pub(super) unknown_tenant: Option<String>,
    pub(super) max_tenants: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientKey {
    pub(super) tenant: String,
    /// sha256 hex of the key (`printf %s "$KEY" | sha256sum`).
    pub(super) key_sha256: String,
}

/// A scoped policy besides the default one (`[[policies]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamedPolicy {
    pub(super) name: String,
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) params: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) models: Vec<String>,
    #[serde(default)]
    pub(super) tenants: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) token_env: Option<String>,
    pub(super) watch: Option<bool>,
    pub(super) debounce_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLedger {
    pub(super) path: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) when_down: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) daily_budget_usd: Option<f64>,
    pub(super) monthly_budget_usd: Option<f64>,
    pub(super) hard_cap_usd: Option<f64>,
    pub(super) requests_per_minute: Option<u32>,
    pub(super) tokens_per_minute: Option<u32>,
    /// The host keeps every request of this tenant on local backends.
    pub(super) local_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) body_read_timeout_ms: Option<u64>,
    pub(super) body_min_bytes_per_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) static_targets: Option<Vec<String>>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, String>,
    pub(super) fallback_targets: Option<RawFallback>,
    pub(super) deadline_ms: Option<u64>,
    pub(super) outer_timeout_ms: Option<u64>,
    pub(super) memory_limit_mb: Option<usize>,
    pub(super) cache_dir: Option<PathBuf>,
    pub(super) warm_instances: Option<usize>,
    pub(super) max_targets: Option<usize>,
    pub(super) quarantine_failures: Option<u32>,
    pub(super) quarantine_window_ms: Option<u64>,
    pub(super) quarantine_ms: Option<u64>,
}

/// `policy.fallback_targets`: a list of backend names, or the word `"reject"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawFallback {
    Targets(Vec<String>),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) name: String,
    pub(super) kind: ConnectorKind,
    pub(super) base_url: Option<String>,
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) models: Vec<String>,
    pub(super) context_window: Option<u32>,
    pub(super) usd_per_mtok_in: Option<f64>,
    pub(super) usd_per_mtok_out: Option<f64>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) first_byte_timeout_ms: Option<u64>,
    /// Retries of this backend (connect errors, timeouts, 429, 5xx) before the next target.
    pub(super) retries: Option<u32>,
    /// Base of the jittered exponential backoff between retries.
    pub(super) retry_backoff_ms: Option<u64>,
    pub(super) total_timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    /// `local` for an OpenAI-compatible server on your own hardware (vLLM, Ollama).
    pub(super) locality: Option<crate::domain::BackendKind>,
    pub(super) model_path: Option<PathBuf>,
    pub(super) device: Option<String>,
    pub(super) queue_capacity: Option<usize>,
    pub(super) threads: Option<usize>,
}

impl RawBackend {
    /// A backend with only its name and kind set (the embedded default builds on it).
    pub(super) fn new(name: &str, kind: ConnectorKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            base_url: None,
            api_key_env: None,
            models: Vec::new(),
            context_window: None,
            usd_per_mtok_in: None,
            usd_per_mtok_out: None,
            connect_timeout_ms: None,
            first_byte_timeout_ms: None,
            total_timeout_ms: None,
            retries: None,
            retry_backoff_ms: None,
            labels: BTreeMap::new(),
            locality: None,
            model_path: None,
            device: None,
            queue_capacity: None,
            threads: None,
        }
    }
}
