//! Gateway configuration: TOML → raw serde types (`deny_unknown_fields`, `raw.rs`) →
//! validated section by section (`validate.rs`) → a [`Config`]. Every default lives in
//! [`defaults`]; secrets are only ever named (env vars). This file owns the validated
//! types and the entry points (`load`, `parse`, `embedded_default`).

pub mod defaults;
mod limits;
mod raw;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use limits::{ConnLimits, Tenancy, UnknownTenant};
use raw::{
    RawAdmin, RawAuth, RawBackend, RawConfig, RawFallback, RawLedger, RawPolicy, RawPrivacy,
    RawServer,
};
use validate::{invalid, validate};

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
    /// Spend ledger database file (SQLite; unused with `ledger_url`).
    pub ledger_path: PathBuf,
    /// The PostgreSQL ledger replicas share (`[ledger] url`), instead of the file.
    pub ledger_url: Option<crate::ledger::PostgresUrl>,
    /// What requests get while the ledger cannot write its database (`[ledger] when_down`).
    pub ledger_when_down: crate::ledger::WhenDown,
    /// Budgets by tenant.
    pub tenants: BTreeMap<String, crate::ledger::Budget>,
    /// Rate limits by tenant (only tenants that set one).
    pub rate_limits: BTreeMap<String, crate::ledger::RateLimit>,
    pub admin: AdminConfig,
    /// Client API keys by sha256 hex digest → tenant; empty leaves the API open.
    pub client_keys: BTreeMap<String, String>,
    /// Which tenant names are admitted (`[auth] unknown_tenant`, `max_tenants`).
    pub tenancy: Tenancy,
    /// The decision log; off unless configured.
    pub decision_log: Option<crate::decision_log::DecisionLogConfig>,
    /// Local hardware cost profile (`[hardware]`; unset keys take the RTX 4090 values).
    pub hardware: Option<crate::hardware::HardwareProfile>,
    /// Requests the host keeps on local backends, whatever a policy decides.
    pub privacy: PrivacyConfig,
    /// Classifiers policies score text with (`[classifiers]`: name → `router.bin` written
    /// by `switchyard train router`).
    pub classifiers: BTreeMap<String, PathBuf>,
    /// The local embedding model (`[embeddings]`), for policies and `/v1/embeddings`.
    pub embeddings: Option<EmbeddingsConfig>,
}

/// `[embeddings]`: where the all-MiniLM-L6-v2 files are and how many threads run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsConfig {
    pub model_dir: PathBuf,
    /// Threads for its matmuls; one per core when unset.
    pub threads: Option<usize>,
}

/// Host-enforced privacy (`[tenants.NAME] local_only`, `[privacy]`): requests of these
/// tenants or data classes only ever go to backends whose locality is local.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacyConfig {
    /// Tenants whose every request stays local.
    pub local_only_tenants: BTreeSet<String>,
    /// Client label naming a request's data class.
    pub data_class_label: String,
    /// Data classes (lowercase; the label's value is compared case-insensitively) that stay
    /// local.
    pub local_only_classes: BTreeSet<String>,
}

/// What a failed policy's request gets (`policy.fallback_targets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// These backends, in order.
    Targets(Vec<String>),
    /// Refused with 503 (`fallback_targets = "reject"`).
    Reject,
}

impl Fallback {
    /// The fallback backends; none for [`Fallback::Reject`].
    pub fn targets(&self) -> &[String] {
        match self {
            Self::Targets(list) => list,
            Self::Reject => &[],
        }
    }
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
    /// Connection cap and client read timeouts.
    pub conn: ConnLimits,
}

/// How decisions are made.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Name of the default policy (default: the component's file stem).
    pub name: Option<String>,
    pub source: PolicySource,
    pub params: BTreeMap<String, String>,
    /// What a request gets when the policy fails (trap, timeout, bad decision).
    pub fallback: Fallback,
    /// Epoch deadline of one decision.
    pub deadline: Duration,
    /// ... of a large component (see [`crate::policy::LARGE_GUEST_BYTES`]): `deadline_ms`
    /// when set, else 50 ms.
    pub large_guest_deadline: Duration,
    /// Limit on a whole policy call, host calls included.
    pub outer_timeout: Duration,
    pub memory_limit_bytes: usize,
    /// Compiled-component cache; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Idle instances kept per policy for reuse (0: a fresh instance per decision). Only
    /// for policies that keep no state between requests; large Python/JS guests gain most.
    pub warm_instances: usize,
    /// Most targets one decision may name (more is a policy failure, `over_limit`).
    pub max_targets: usize,
    /// When a policy that keeps failing is quarantined, and for how long.
    pub quarantine: crate::policy::QuarantineConfig,
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
                fallback_targets: Some(RawFallback::Targets(vec!["local".to_owned()])),
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
            privacy: RawPrivacy::default(),
            classifiers: BTreeMap::new(),
            embeddings: None,
        };
        validate(raw)
    }

    /// The backend with this name.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
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
        assert_eq!(
            cfg.policy.fallback,
            Fallback::Targets(vec!["openai".to_owned()])
        );
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
    fn privacy_rules_and_a_reject_fallback() {
        let base =
            "[[backends]]\nname=\"l\"\nkind=\"local\"\nmodel_path=\"m.gguf\"\nmodels=[\"m\"]\n";
        let cfg = Config::parse(&format!(
            r#"
            [policy]
            fallback_targets = "reject"
            [tenants.hospital]
            local_only = true
            [tenants.acme]
            hard_cap_usd = 5
            local_only = false
            [privacy]
            data_class_label = "sensitivity"
            [privacy.data_classes]
            Restricted = "local_only"
            phi = "local_only"
            {base}"#
        ))
        .unwrap();
        assert_eq!(cfg.policy.fallback, Fallback::Reject);
        assert!(cfg.policy.fallback.targets().is_empty());
        assert_eq!(
            cfg.privacy,
            PrivacyConfig {
                local_only_tenants: ["hospital".to_owned()].into(),
                data_class_label: "sensitivity".to_owned(),
                local_only_classes: ["phi".to_owned(), "restricted".to_owned()].into(),
            }
        );
        let plain = Config::parse(base).unwrap();
        assert_eq!(plain.privacy.data_class_label, "data-class");
        assert!(plain.privacy.local_only_classes.is_empty());
        assert_eq!(plain.policy.fallback, Fallback::Targets(vec!["l".into()]));
        for (bad, key) in [
            (
                "[policy]\nfallback_targets = \"drop\"",
                "policy.fallback_targets",
            ),
            (
                "[privacy.data_classes]\nrestricted = \"cloud\"",
                "privacy.data_classes.restricted",
            ),
            (
                "[privacy.data_classes]\nRestricted = \"local_only\"\nrestricted = \"local_only\"",
                "privacy.data_classes.restricted",
            ),
            (
                "[privacy.data_classes]\n\"a b\" = \"local_only\"",
                "privacy.data_classes.a b",
            ),
            (
                "[privacy]\ndata_class_label = \"\"",
                "privacy.data_class_label",
            ),
            ("[privacy]\nlabel = \"x\"", "label"),
            ("[tenants.x]\nlocal_only = \"yes\"", "local_only"),
        ] {
            let err = Config::parse(&format!("{bad}\n{base}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
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

    #[test]
    fn decision_cap_and_quarantine_keys() {
        let backend = "[[backends]]\nname=\"a\"\nkind=\"openai\"\nmodels=[\"m\"]\n";
        let cfg = Config::parse(backend).unwrap();
        assert_eq!(cfg.policy.max_targets, 16);
        assert_eq!(
            cfg.policy.quarantine,
            crate::policy::QuarantineConfig::default()
        );

        let cfg = Config::parse(&format!(
            "[policy]\nmax_targets = 4\nquarantine_failures = 0\nquarantine_window_ms = 500\nquarantine_ms = 2000\n{backend}"
        ))
        .unwrap();
        assert_eq!(cfg.policy.max_targets, 4);
        assert_eq!(
            cfg.policy.quarantine,
            crate::policy::QuarantineConfig {
                failures: 0,
                window: Duration::from_millis(500),
                period: Duration::from_secs(2),
            }
        );

        for (bad, key) in [
            ("max_targets = 0", "policy.max_targets"),
            ("max_targets = 100000", "policy.max_targets"),
            ("quarantine_ms = 0", "policy.quarantine_ms"),
            ("quarantine_window_ms = 0", "policy.quarantine_window_ms"),
        ] {
            let err = Config::parse(&format!("[policy]\n{bad}\n{backend}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }
}
