//! Gateway configuration: TOML → raw serde types (`deny_unknown_fields`) → a validated
//! [`Config`]. Every default lives in [`defaults`]; secrets are only ever named (env vars).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every default value of the configuration, in one place.
pub mod defaults {
    /// Listen address of `switchyard serve`.
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// Largest accepted request body.
    pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    /// Time a client gets to send its request headers.
    pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
    /// Upstream TCP (and TLS) connect timeout.
    pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
    /// Upstream time to response headers (and, for streams, the first event).
    pub const FIRST_BYTE_TIMEOUT_MS: u64 = 60_000;
    /// Base backoff between retries of one backend.
    pub const RETRY_BACKOFF_MS: u64 = 200;
    /// Most retries a backend may be configured with.
    pub const MAX_RETRIES: u32 = 5;
    /// Longest upstream `Retry-After` honoured before retrying; a longer one moves on to
    /// the next target instead.
    pub const MAX_RETRY_AFTER_MS: u64 = 5_000;
    /// Upstream whole-request timeout.
    pub const TOTAL_TIMEOUT_MS: u64 = 600_000;
    /// Context window assumed for a cloud model the price table does not know.
    pub const CONTEXT_WINDOW: u32 = 128_000;
    /// Warm instances of the embedded default's shipped policy ([`POLICY_PATH`], `hybrid`,
    /// which keeps no per-request state: CI runs its case file with `policy test --warm`);
    /// another `--policy` gets none. Enough for every runtime worker to decide on a reused
    /// instance on a machine of up to 16 cores.
    pub const EMBEDDED_WARM_INSTANCES: usize = 16;
    /// Local backend request queue.
    pub const LOCAL_QUEUE_CAPACITY: usize = 64;
    /// Local backend device.
    pub const LOCAL_DEVICE: &str = "auto";
    /// Tenant of requests that name none.
    pub const TENANT: &str = "default";
    /// Spend ledger database (SQLite, WAL).
    pub const LEDGER_PATH: &str = "switchyard-ledger.db";
    /// Completion tokens assumed when reserving budget for a request without `max_tokens`.
    pub const ESTIMATE_COMPLETION_TOKENS: u32 = 1024;
    /// Policy artifact of the embedded default configuration.
    pub const POLICY_PATH: &str = "target/policies/hybrid.wasm";
    /// Decision log file size before rotation.
    pub const DECISION_LOG_MAX_MB: u64 = 100;
    /// Rotated decision log files kept.
    pub const DECISION_LOG_KEEP: u32 = 5;
    /// Env var of the admin API's bearer token.
    pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
    /// Quiet time before a changed policy or config file is re-read.
    pub const WATCH_DEBOUNCE_MS: u64 = 25;
    /// Epoch deadline of one policy decision.
    pub const POLICY_DEADLINE_MS: u64 = 5;
    /// Limit on a whole policy call, host calls included.
    pub const POLICY_OUTER_TIMEOUT_MS: u64 = 50;
    /// Linear memory cap of one policy instance.
    pub const POLICY_MEMORY_MB: usize = 64;

    /// Compiled-policy cache: `$XDG_CACHE_HOME/switchyard/policies`, else
    /// `$HOME/.cache/switchyard/policies`; none when neither is set.
    pub fn policy_cache_dir(env: impl Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
        let base = env("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                env("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| std::path::Path::new(&h).join(".cache"))
            })?;
        Some(base.join("switchyard").join("policies"))
    }
    /// Base URLs of the providers.
    pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
    pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
    pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
    /// Env vars holding the providers' API keys.
    pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";
    pub const ANTHROPIC_KEY_ENV: &str = "ANTHROPIC_API_KEY";
    pub const GEMINI_KEY_ENV: &str = "GEMINI_API_KEY";

    /// Known list prices, USD per million tokens (input, output), and context windows.
    pub fn model_card(model: &str) -> Option<(f64, f64, u32)> {
        let card = match model {
            "gpt-4o" => (2.50, 10.00, 128_000),
            "gpt-4o-mini" => (0.15, 0.60, 128_000),
            "gpt-4.1" => (2.00, 8.00, 1_047_576),
            "gpt-4.1-mini" => (0.40, 1.60, 1_047_576),
            "claude-sonnet-4-5" => (3.00, 15.00, 200_000),
            "claude-haiku-4-5" => (1.00, 5.00, 200_000),
            "claude-opus-4-1" => (15.00, 75.00, 200_000),
            "gemini-2.0-flash" => (0.10, 0.40, 1_000_000),
            "gemini-2.5-flash" => (0.30, 2.50, 1_000_000),
            "gemini-2.5-pro" => (1.25, 10.00, 1_000_000),
            _ => return None,
        };
        Some(card)
    }
}

/// Why a configuration was refused; messages name the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid config at `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn hardware_profile(raw: RawHardware) -> Result<crate::hardware::HardwareProfile, ConfigError> {
    let mut hw = crate::hardware::HardwareProfile::rtx4090();
    hw.assumed = false;
    if let Some(name) = raw.name {
        hw.name = name;
    }
    for (key, value) in [
        ("price_usd", raw.price_usd),
        ("months", raw.months),
        ("watts", raw.watts),
        ("usd_per_kwh", raw.usd_per_kwh),
        ("hours_per_day", raw.hours_per_day),
        ("tokens_per_s", raw.tokens_per_s),
    ] {
        if let Some(x) = value {
            hw.set(key, x)
                .map_err(|e| invalid(format!("hardware.{key}"), e))?;
        }
    }
    Ok(hw)
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------- raw (serde) types

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    backends: Vec<RawBackend>,
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    policies: Vec<RawNamedPolicy>,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    auth: RawAuth,
    decision_log: Option<RawDecisionLog>,
    hardware: Option<RawHardware>,
}

/// `[hardware]`: the local machine's cost profile, for `switchyard replay`'s break-even.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    name: Option<String>,
    price_usd: Option<f64>,
    months: Option<f64>,
    watts: Option<f64>,
    usd_per_kwh: Option<f64>,
    hours_per_day: Option<f64>,
    tokens_per_s: Option<f64>,
}

/// `[decision_log]`: one JSONL line per request for `switchyard replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecisionLog {
    path: PathBuf,
    max_mb: Option<u64>,
    keep: Option<u32>,
    #[serde(default)]
    include_content: bool,
}

/// Client API keys (`[[auth.keys]]`): each maps to a tenant. Only digests are stored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    keys: Vec<RawClientKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientKey {
    tenant: String,
    /// sha256 hex of the key (`printf %s "$KEY" | sha256sum`).
    key_sha256: String,
}

/// A scoped policy besides the default one (`[[policies]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamedPolicy {
    name: String,
    path: PathBuf,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_env: Option<String>,
    watch: Option<bool>,
    debounce_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    daily_budget_usd: Option<f64>,
    monthly_budget_usd: Option<f64>,
    hard_cap_usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    header_read_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Option<String>,
    path: Option<PathBuf>,
    static_targets: Option<Vec<String>>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    fallback_targets: Option<Vec<String>>,
    deadline_ms: Option<u64>,
    outer_timeout_ms: Option<u64>,
    memory_limit_mb: Option<usize>,
    cache_dir: Option<PathBuf>,
    warm_instances: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    kind: ConnectorKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    context_window: Option<u32>,
    usd_per_mtok_in: Option<f64>,
    usd_per_mtok_out: Option<f64>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    /// Retries of this backend (connect errors, timeouts, 429, 5xx) before the next target.
    retries: Option<u32>,
    /// Base of the jittered exponential backoff between retries.
    retry_backoff_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `local` for an OpenAI-compatible server on your own hardware (vLLM, Ollama).
    locality: Option<crate::domain::BackendKind>,
    model_path: Option<PathBuf>,
    device: Option<String>,
    queue_capacity: Option<usize>,
    threads: Option<usize>,
}

// ---------------------------------------------------------------- validated types

/// Wire protocol of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    Openai,
    OpenaiCompatible,
    Anthropic,
    Gemini,
    Local,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub policy: PolicyConfig,
    pub backends: Vec<BackendConfig>,
    /// Spend ledger database file.
    pub ledger_path: PathBuf,
    /// Budgets by tenant.
    pub tenants: BTreeMap<String, crate::ledger::Budget>,
    pub admin: AdminConfig,
    /// Client API keys by sha256 hex digest → tenant; empty leaves the API open.
    pub client_keys: BTreeMap<String, String>,
    /// The decision log; off unless configured.
    pub decision_log: Option<crate::decision_log::DecisionLogConfig>,
    /// Local hardware cost profile (`[hardware]`; unset keys take the RTX 4090 values).
    pub hardware: Option<crate::hardware::HardwareProfile>,
}

/// Live-policy administration.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Env var holding the admin API's bearer token (the API is closed while it is unset).
    pub token_env: String,
    /// Watch policy files and the config file and reload on change.
    pub watch: bool,
    pub debounce: Duration,
}

/// A scoped policy (`[[policies]]`): decides requests for its model aliases or tenants.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedPolicy {
    pub name: String,
    pub path: PathBuf,
    pub params: BTreeMap<String, String>,
    pub models: Vec<String>,
    pub tenants: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
}

/// How decisions are made.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Name of the default policy (default: the component's file stem).
    pub name: Option<String>,
    pub source: PolicySource,
    pub params: BTreeMap<String, String>,
    /// Targets used when the policy fails (trap, timeout, bad decision).
    pub fallback_targets: Vec<String>,
    /// Epoch deadline of one decision.
    pub deadline: Duration,
    /// Limit on a whole policy call, host calls included.
    pub outer_timeout: Duration,
    pub memory_limit_bytes: usize,
    /// Compiled-component cache; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Idle instances kept per policy for reuse (0: a fresh instance per decision). Only
    /// for policies that keep no state between requests; large Python/JS guests gain most.
    pub warm_instances: usize,
    /// Scoped policies besides the default one.
    pub scoped: Vec<NamedPolicy>,
}

/// Where the routing rule comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySource {
    /// A policy component (`.wasm`) on disk.
    Wasm(PathBuf),
    /// A fixed ordered target list (no policy component).
    Static(Vec<String>),
}

/// Per-backend upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub total: Duration,
}

/// Retries of one backend before the dispatcher moves on to the next target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub retries: u32,
    /// Base of the exponential backoff; each wait is jittered to 0.5–1.5× of it.
    pub backoff: Duration,
}

/// One configured backend.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub kind: ConnectorKind,
    pub base_url: String,
    /// Name of the env var that holds the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Models served; the first is the default.
    pub models: Vec<String>,
    pub context_window: u32,
    pub usd_per_mtok_in: f64,
    pub usd_per_mtok_out: f64,
    pub timeouts: Timeouts,
    pub retry: Retry,
    pub labels: BTreeMap<String, String>,
    /// What policies see: `local` keeps data on hardware you run.
    pub locality: crate::domain::BackendKind,
    pub local: Option<LocalBackendConfig>,
}

/// Settings only the local backend has.
#[derive(Debug, Clone)]
pub struct LocalBackendConfig {
    pub model_path: PathBuf,
    pub device: String,
    pub queue_capacity: usize,
    pub threads: Option<usize>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        validate(raw)
    }

    /// The configuration `switchyard serve` runs without a file: the local model, the
    /// hybrid policy, and a cloud connector for each provider whose key env var is set.
    pub fn embedded_default(
        model_path: PathBuf,
        policy_path: PathBuf,
        env_set: impl Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        let mut backends = vec![RawBackend::new("local", ConnectorKind::Local)];
        backends[0].models = vec!["smollm2-135m-instruct".to_owned()];
        backends[0].context_window = Some(8192);
        backends[0].model_path = Some(model_path);
        let clouds = [
            (
                "openai",
                ConnectorKind::Openai,
                defaults::OPENAI_KEY_ENV,
                ["gpt-4o-mini", "gpt-4o"],
            ),
            (
                "anthropic",
                ConnectorKind::Anthropic,
                defaults::ANTHROPIC_KEY_ENV,
                ["claude-sonnet-4-5", "claude-haiku-4-5"],
            ),
            (
                "gemini",
                ConnectorKind::Gemini,
                defaults::GEMINI_KEY_ENV,
                ["gemini-2.0-flash", "gemini-2.5-flash"],
            ),
        ];
        for (name, kind, env, models) in clouds {
            if env_set(env) {
                let mut b = RawBackend::new(name, kind);
                b.models = models.iter().map(|m| (*m).to_owned()).collect();
                b.api_key_env = Some(env.to_owned());
                backends.push(b);
            }
        }
        let shipped_policy = policy_path == Path::new(defaults::POLICY_PATH);
        let raw = RawConfig {
            server: RawServer::default(),
            policy: RawPolicy {
                path: Some(policy_path),
                fallback_targets: Some(vec!["local".to_owned()]),
                warm_instances: shipped_policy.then_some(defaults::EMBEDDED_WARM_INSTANCES),
                ..RawPolicy::default()
            },
            backends,
            ledger: RawLedger::default(),
            tenants: BTreeMap::new(),
            policies: Vec::new(),
            admin: RawAdmin::default(),
            auth: RawAuth::default(),
            decision_log: None,
            hardware: None,
        };
        validate(raw)
    }

    /// The backend with this name.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
}

impl RawBackend {
    fn new(name: &str, kind: ConnectorKind) -> Self {
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

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let listen_text = raw.server.listen.as_deref().unwrap_or(defaults::LISTEN);
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|e| invalid("server.listen", format!("{listen_text:?}: {e}")))?;
    let max_body_bytes = raw
        .server
        .max_body_bytes
        .unwrap_or(defaults::MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(invalid("server.max_body_bytes", "must be positive"));
    }
    let server = ServerConfig {
        listen,
        max_body_bytes,
        header_read_timeout: Duration::from_millis(
            raw.server
                .header_read_timeout_ms
                .unwrap_or(defaults::HEADER_READ_TIMEOUT_MS),
        ),
    };

    let mut backends = Vec::with_capacity(raw.backends.len());
    let mut names = BTreeSet::new();
    for (i, b) in raw.backends.into_iter().enumerate() {
        let key = format!("backends[{i}]");
        let backend = validate_backend(&key, b)?;
        if !names.insert(backend.name.clone()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("duplicate backend name {:?}", backend.name),
            ));
        }
        backends.push(backend);
    }
    if backends.is_empty() {
        return Err(invalid("backends", "at least one backend is required"));
    }

    let check_names = |key: &str, list: &[String]| -> Result<(), ConfigError> {
        for (i, n) in list.iter().enumerate() {
            if !names.contains(n) {
                return Err(invalid(
                    format!("{key}[{i}]"),
                    format!("unknown backend {n:?}"),
                ));
            }
        }
        Ok(())
    };
    let source = match (raw.policy.path, raw.policy.static_targets) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "policy",
                "set either `path` or `static_targets`, not both",
            ));
        }
        (Some(path), None) => PolicySource::Wasm(path),
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(invalid("policy.static_targets", "must not be empty"));
            }
            check_names("policy.static_targets", &list)?;
            PolicySource::Static(list)
        }
        (None, None) => PolicySource::Wasm(PathBuf::from(defaults::POLICY_PATH)),
    };
    let fallback_targets = match raw.policy.fallback_targets {
        Some(list) => {
            check_names("policy.fallback_targets", &list)?;
            list
        }
        None => backends
            .first()
            .map(|b| vec![b.name.clone()])
            .unwrap_or_default(),
    };
    let deadline = Duration::from_millis(
        raw.policy
            .deadline_ms
            .unwrap_or(defaults::POLICY_DEADLINE_MS),
    );
    let outer_timeout = Duration::from_millis(
        raw.policy
            .outer_timeout_ms
            .unwrap_or(defaults::POLICY_OUTER_TIMEOUT_MS),
    );
    if deadline.is_zero() || outer_timeout < deadline {
        return Err(invalid(
            "policy.outer_timeout_ms",
            "deadline_ms must be > 0 and outer_timeout_ms >= deadline_ms",
        ));
    }
    let scoped = validate_scoped(raw.policies, raw.policy.name.as_deref())?;
    let mut client_keys = BTreeMap::new();
    for (i, k) in raw.auth.keys.into_iter().enumerate() {
        let digest = k.key_sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid(
                format!("auth.keys[{i}].key_sha256"),
                "must be 64 hex digits (the sha256 of the key)",
            ));
        }
        if k.tenant.is_empty() {
            return Err(invalid(
                format!("auth.keys[{i}].tenant"),
                "must not be empty",
            ));
        }
        if client_keys.insert(digest, k.tenant).is_some() {
            return Err(invalid(format!("auth.keys[{i}]"), "duplicate key"));
        }
    }
    if matches!(source, PolicySource::Static(_)) && !scoped.is_empty() {
        return Err(invalid(
            "policies",
            "scoped policies need the default [policy] to be a component (`path`), not static_targets",
        ));
    }
    let memory_mb = raw
        .policy
        .memory_limit_mb
        .unwrap_or(defaults::POLICY_MEMORY_MB);
    if !(1..=4096).contains(&memory_mb) {
        return Err(invalid("policy.memory_limit_mb", "must be in 1..=4096"));
    }
    let mut tenants = BTreeMap::new();
    for (name, t) in raw.tenants {
        for (field, v) in [
            ("daily_budget_usd", t.daily_budget_usd),
            ("monthly_budget_usd", t.monthly_budget_usd),
            ("hard_cap_usd", t.hard_cap_usd),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(invalid(
                    format!("tenants.{name}.{field}"),
                    "must be a non-negative number",
                ));
            }
        }
        tenants.insert(
            name,
            crate::ledger::Budget {
                daily_usd: t.daily_budget_usd,
                monthly_usd: t.monthly_budget_usd,
                hard_cap_usd: t.hard_cap_usd,
            },
        );
    }
    let hardware = raw.hardware.map(hardware_profile).transpose()?;
    Ok(Config {
        hardware,
        ledger_path: raw
            .ledger
            .path
            .unwrap_or_else(|| PathBuf::from(defaults::LEDGER_PATH)),
        tenants,
        server,
        client_keys,
        decision_log: raw
            .decision_log
            .map(|d| crate::decision_log::DecisionLogConfig {
                path: d.path,
                max_bytes: d.max_mb.unwrap_or(defaults::DECISION_LOG_MAX_MB).max(1) << 20,
                keep: d.keep.unwrap_or(defaults::DECISION_LOG_KEEP),
                include_content: d.include_content,
            }),
        admin: AdminConfig {
            token_env: raw
                .admin
                .token_env
                .unwrap_or_else(|| defaults::ADMIN_TOKEN_ENV.to_owned()),
            watch: raw.admin.watch.unwrap_or(true),
            debounce: Duration::from_millis(
                raw.admin.debounce_ms.unwrap_or(defaults::WATCH_DEBOUNCE_MS),
            ),
        },
        policy: PolicyConfig {
            name: raw.policy.name,
            source,
            scoped,
            params: raw.policy.params,
            fallback_targets,
            deadline,
            outer_timeout,
            memory_limit_bytes: memory_mb << 20,
            warm_instances: raw.policy.warm_instances.unwrap_or(0).min(1024),
            cache_dir: raw
                .policy
                .cache_dir
                .or_else(|| defaults::policy_cache_dir(|v| std::env::var(v).ok())),
        },
        backends,
    })
}

fn validate_scoped(
    raw: Vec<RawNamedPolicy>,
    default_name: Option<&str>,
) -> Result<Vec<NamedPolicy>, ConfigError> {
    let mut names: BTreeSet<String> = default_name.map(str::to_owned).into_iter().collect();
    let mut out = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("policies[{i}]");
        let ok_name = !p.name.is_empty()
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(invalid(
                format!("{key}.name"),
                "must be non-empty letters, digits, '-' or '_'",
            ));
        }
        if !names.insert(p.name.clone()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("duplicate policy name {:?}", p.name),
            ));
        }
        if p.models.is_empty() && p.tenants.is_empty() {
            return Err(invalid(
                key,
                "a scoped policy needs `models` (aliases) or `tenants` to apply to",
            ));
        }
        if p.models.iter().any(|m| m == "auto") {
            return Err(invalid(
                format!("{key}.models"),
                "`auto` belongs to the default [policy]",
            ));
        }
        out.push(NamedPolicy {
            name: p.name,
            path: p.path,
            params: p.params,
            models: p.models,
            tenants: p.tenants,
        });
    }
    Ok(out)
}

fn validate_backend(key: &str, b: RawBackend) -> Result<BackendConfig, ConfigError> {
    if b.name.is_empty()
        || !b
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid(
            format!("{key}.name"),
            "must be non-empty ASCII letters, digits, '-', '_' or '.'",
        ));
    }
    let key = format!("backends.{}", b.name);
    if b.models.is_empty() {
        return Err(invalid(
            format!("{key}.models"),
            "at least one model is required",
        ));
    }
    let base_url = match (b.kind, b.base_url) {
        (ConnectorKind::Local, Some(_)) => {
            return Err(invalid(
                format!("{key}.base_url"),
                "not used by a local backend",
            ));
        }
        (ConnectorKind::Local, None) => String::new(),
        (ConnectorKind::OpenaiCompatible, None) => {
            return Err(invalid(
                format!("{key}.base_url"),
                "required for kind = \"openai_compatible\"",
            ));
        }
        (_, Some(url)) => url,
        (ConnectorKind::Openai, None) => defaults::OPENAI_BASE_URL.to_owned(),
        (ConnectorKind::Anthropic, None) => defaults::ANTHROPIC_BASE_URL.to_owned(),
        (ConnectorKind::Gemini, None) => defaults::GEMINI_BASE_URL.to_owned(),
    };
    if b.kind != ConnectorKind::Local {
        let ok = base_url.starts_with("http://") || base_url.starts_with("https://");
        if !ok || reqwest::Url::parse(&base_url).is_err() {
            return Err(invalid(
                format!("{key}.base_url"),
                format!("{base_url:?} is not an http(s) URL"),
            ));
        }
    }
    let base_url = base_url.trim_end_matches('/').to_owned();
    let api_key_env = match (b.kind, b.api_key_env) {
        (ConnectorKind::Local, Some(_)) => {
            return Err(invalid(
                format!("{key}.api_key_env"),
                "not used by a local backend",
            ));
        }
        (ConnectorKind::Openai, None) => Some(defaults::OPENAI_KEY_ENV.to_owned()),
        (ConnectorKind::Anthropic, None) => Some(defaults::ANTHROPIC_KEY_ENV.to_owned()),
        (ConnectorKind::Gemini, None) => Some(defaults::GEMINI_KEY_ENV.to_owned()),
        (_, env) => env,
    };
    let card = b.models.first().and_then(|m| defaults::model_card(m));
    let (card_in, card_out, card_ctx) = match (b.kind, card) {
        (ConnectorKind::Local, _) => (0.0, 0.0, 8192),
        (_, Some(card)) => card,
        (_, None) => (0.0, 0.0, defaults::CONTEXT_WINDOW),
    };
    let usd_per_mtok_in = b.usd_per_mtok_in.unwrap_or(card_in);
    let usd_per_mtok_out = b.usd_per_mtok_out.unwrap_or(card_out);
    for (k, v) in [
        ("usd_per_mtok_in", usd_per_mtok_in),
        ("usd_per_mtok_out", usd_per_mtok_out),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(invalid(
                format!("{key}.{k}"),
                "must be a non-negative number",
            ));
        }
    }
    let timeouts = Timeouts {
        connect: Duration::from_millis(
            b.connect_timeout_ms.unwrap_or(defaults::CONNECT_TIMEOUT_MS),
        ),
        first_byte: Duration::from_millis(
            b.first_byte_timeout_ms
                .unwrap_or(defaults::FIRST_BYTE_TIMEOUT_MS),
        ),
        total: Duration::from_millis(b.total_timeout_ms.unwrap_or(defaults::TOTAL_TIMEOUT_MS)),
    };
    let local = if b.kind == ConnectorKind::Local {
        let model_path = b
            .model_path
            .ok_or_else(|| invalid(format!("{key}.model_path"), "required for kind = \"local\""))?;
        Some(LocalBackendConfig {
            model_path,
            device: b
                .device
                .unwrap_or_else(|| defaults::LOCAL_DEVICE.to_owned()),
            queue_capacity: b.queue_capacity.unwrap_or(defaults::LOCAL_QUEUE_CAPACITY),
            threads: b.threads,
        })
    } else {
        for (field, set) in [
            ("model_path", b.model_path.is_some()),
            ("device", b.device.is_some()),
            ("queue_capacity", b.queue_capacity.is_some()),
            ("threads", b.threads.is_some()),
        ] {
            if set {
                return Err(invalid(
                    format!("{key}.{field}"),
                    "only used by a local backend",
                ));
            }
        }
        None
    };
    let locality = match (b.kind, b.locality) {
        (ConnectorKind::Local, _) => crate::domain::BackendKind::Local,
        (ConnectorKind::OpenaiCompatible, Some(l)) => l,
        (_, Some(_)) => {
            return Err(invalid(
                format!("{key}.locality"),
                "only an openai_compatible backend can set it",
            ));
        }
        (_, None) => crate::domain::BackendKind::Cloud,
    };
    Ok(BackendConfig {
        name: b.name,
        kind: b.kind,
        base_url,
        api_key_env,
        models: b.models,
        context_window: b.context_window.unwrap_or(card_ctx),
        usd_per_mtok_in,
        usd_per_mtok_out,
        timeouts,
        retry: Retry {
            retries: b.retries.unwrap_or(0).min(defaults::MAX_RETRIES),
            backoff: Duration::from_millis(
                b.retry_backoff_ms.unwrap_or(defaults::RETRY_BACKOFF_MS),
            ),
        },
        labels: b.labels,
        locality,
        local,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config_and_fills_defaults() {
        let cfg = Config::parse(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [policy]
            static_targets = ["groq", "openai"]
            [[backends]]
            name = "openai"
            kind = "openai"
            models = ["gpt-4o"]
            [[backends]]
            name = "groq"
            kind = "openai_compatible"
            base_url = "http://127.0.0.1:9/v1/"
            api_key_env = "GROQ_KEY"
            models = ["llama-3.1-8b"]
            usd_per_mtok_in = 0.05
            "#,
        )
        .unwrap();
        let openai = cfg.backend("openai").unwrap();
        assert_eq!(openai.base_url, defaults::OPENAI_BASE_URL);
        assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(
            (openai.usd_per_mtok_in, openai.usd_per_mtok_out),
            (2.5, 10.0)
        );
        let groq = cfg.backend("groq").unwrap();
        assert_eq!(groq.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(groq.usd_per_mtok_in, 0.05);
        assert_eq!(
            cfg.policy.source,
            PolicySource::Static(vec!["groq".into(), "openai".into()])
        );
        assert_eq!(cfg.policy.fallback_targets, vec!["openai".to_owned()]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Config::parse("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");

        let err = Config::parse(
            "[policy]\nstatic_targets=[\"nope\"]\n[[backends]]\nname=\"a\"\nkind=\"openai\"\nmodels=[\"m\"]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("policy.static_targets[0]"),
            "{err}"
        );

        let err =
            Config::parse("[[backends]]\nname=\"c\"\nkind=\"openai_compatible\"\nmodels=[\"m\"]\n")
                .unwrap_err();
        assert!(err.to_string().contains("backends.c.base_url"), "{err}");
    }

    #[test]
    fn embedded_default_adds_clouds_whose_key_is_set() {
        let cfg = Config::embedded_default("m.gguf".into(), "p.wasm".into(), |v| {
            v == "ANTHROPIC_API_KEY"
        })
        .unwrap();
        let names: Vec<_> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["local", "anthropic"]);
        assert_eq!(cfg.policy.source, PolicySource::Wasm("p.wasm".into()));
        assert_eq!(
            cfg.policy.warm_instances, 0,
            "a policy of the user's: fresh instances"
        );
        let shipped =
            Config::embedded_default("m.gguf".into(), defaults::POLICY_PATH.into(), |_| false)
                .unwrap();
        assert_eq!(
            shipped.policy.warm_instances,
            defaults::EMBEDDED_WARM_INSTANCES
        );
    }

    #[test]
    fn hardware_profile_for_replay() {
        let base =
            "[[backends]]\nname=\"l\"\nkind=\"local\"\nmodel_path=\"m.gguf\"\nmodels=[\"m\"]\n";
        let cfg = Config::parse(&format!(
            "[hardware]\nname = \"A100 box\"\nprice_usd = 9000\nmonths = 24\nwatts = 300\n{base}"
        ))
        .unwrap();
        let hw = cfg.hardware.unwrap();
        assert_eq!(
            (hw.name.as_str(), hw.price_usd, hw.months),
            ("A100 box", 9000.0, 24.0)
        );
        assert_eq!((hw.watts, hw.usd_per_kwh, hw.assumed), (300.0, 0.15, false));
        assert!(Config::parse(base).unwrap().hardware.is_none());
        for (bad, key) in [
            ("months = 0", "hardware.months"),
            ("hours_per_day = 30", "hardware.hours_per_day"),
            ("watts = -5", "hardware.watts"),
        ] {
            let err = Config::parse(&format!("[hardware]\n{bad}\n{base}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
        let err = Config::parse(&format!("[hardware]\nvolts = 3\n{base}")).unwrap_err();
        assert!(err.to_string().contains("volts"), "{err}");
    }

    #[test]
    fn scoped_policies_locality_and_admin() {
        let cfg = Config::parse(
            r#"
            [policy]
            path = "hybrid.wasm"
            deadline_ms = 10
            [[policies]]
            name = "eu"
            path = "privacy.wasm"
            models = ["auto-private"]
            tenants = ["acme"]
            [admin]
            token_env = "MY_ADMIN"
            debounce_ms = 20
            [[backends]]
            name = "vllm"
            kind = "openai_compatible"
            locality = "local"
            base_url = "http://10.0.0.5:8000/v1"
            models = ["qwen"]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.policy.scoped.len(), 1);
        assert_eq!(cfg.policy.scoped[0].models, ["auto-private"]);
        assert_eq!(cfg.policy.deadline, Duration::from_millis(10));
        assert_eq!(cfg.admin.token_env, "MY_ADMIN");
        assert_eq!(cfg.admin.debounce, Duration::from_millis(20));
        assert_eq!(cfg.backends[0].locality, crate::domain::BackendKind::Local);

        let err = Config::parse(
            "[[policies]]\nname=\"x\"\npath=\"x.wasm\"\n[[backends]]\nname=\"a\"\nkind=\"openai\"\nmodels=[\"m\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("policies[0]"), "{err}");

        let err = Config::parse(
            "[[backends]]\nname=\"a\"\nkind=\"openai\"\nlocality=\"local\"\nmodels=[\"m\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("backends.a.locality"), "{err}");

        let err = Config::parse(
            "[policy]\ndeadline_ms = 100\nouter_timeout_ms = 10\n[[backends]]\nname=\"a\"\nkind=\"openai\"\nmodels=[\"m\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("outer_timeout_ms"), "{err}");
    }
}
