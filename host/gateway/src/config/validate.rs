//! Validation of the raw configuration, one function per section: each checks its
//! values, fills the defaults and names the offending key in its error; [`validate`]
//! calls them in order and assembles the [`Config`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{
    RawAdmin, RawAuth, RawBackend, RawConfig, RawDecisionLog, RawFallback, RawHardware, RawLedger,
    RawNamedPolicy, RawPolicy, RawPrivacy, RawServer, RawTenant,
};
use super::{
    AdminConfig, BackendConfig, Config, ConfigError, ConnectorKind, Fallback, LocalBackendConfig,
    NamedPolicy, PolicyConfig, PolicySource, PrivacyConfig, Retry, ServerConfig, Timeouts,
    defaults,
};
use crate::decision_log::DecisionLogConfig;
use crate::domain::BackendKind;
use crate::hardware::HardwareProfile;
use crate::ledger::{Budget, PostgresUrl, RateLimit, WhenDown};

/// Validates every section in order; the first error wins.
pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let server = server(raw.server)?;
    let backends = backends(raw.backends)?;
    let policy = policy(raw.policy, raw.policies, &backends)?;
    let tenancy = super::limits::tenancy(&raw.auth)?;
    let client_keys = auth(raw.auth)?;
    let privacy = privacy(raw.privacy, &raw.tenants)?;
    let rate_limits = rate_limits(&raw.tenants)?;
    let tenants = tenants(raw.tenants)?;
    let hardware = raw.hardware.map(hardware).transpose()?;
    let (ledger_path, ledger_url, ledger_when_down) = ledger(raw.ledger)?;
    Ok(Config {
        hardware,
        ledger_path,
        ledger_url,
        ledger_when_down,
        tenants,
        rate_limits,
        server,
        client_keys,
        tenancy,
        decision_log: raw.decision_log.map(decision_log),
        admin: admin(raw.admin),
        policy,
        backends,
        privacy,
        classifiers: classifiers(raw.classifiers)?,
        embeddings: raw.embeddings.map(embeddings).transpose()?,
    })
}

/// `[embeddings]`: a model directory and, when set, at least one thread.
fn embeddings(raw: super::raw::RawEmbeddings) -> Result<super::EmbeddingsConfig, ConfigError> {
    if raw.model_dir.as_os_str().is_empty() {
        return Err(invalid("embeddings.model_dir", "the path is empty"));
    }
    if raw.threads == Some(0) {
        return Err(invalid("embeddings.threads", "must be at least 1"));
    }
    Ok(super::EmbeddingsConfig {
        model_dir: raw.model_dir,
        threads: raw.threads,
    })
}

/// `[classifiers]`: each name non-blank, each path non-empty (the files load at start).
fn classifiers(raw: BTreeMap<String, PathBuf>) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    for (name, path) in &raw {
        if name.trim().is_empty() {
            return Err(invalid("classifiers", "a classifier name is blank"));
        }
        if path.as_os_str().is_empty() {
            return Err(invalid(format!("classifiers.{name}"), "the path is empty"));
        }
    }
    Ok(raw)
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `[server]`: the listen address, body limit and connection limits.
fn server(raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let listen_text = raw.listen.as_deref().unwrap_or(defaults::LISTEN);
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|e| invalid("server.listen", format!("{listen_text:?}: {e}")))?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(defaults::MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(invalid("server.max_body_bytes", "must be positive"));
    }
    Ok(ServerConfig {
        listen,
        max_body_bytes,
        conn: super::limits::conn_limits(&raw)?,
    })
}

/// `[[backends]]`: each backend, names unique, at least one.
fn backends(raw: Vec<RawBackend>) -> Result<Vec<BackendConfig>, ConfigError> {
    let mut backends = Vec::with_capacity(raw.len());
    let mut names = BTreeSet::new();
    for (i, b) in raw.into_iter().enumerate() {
        let key = format!("backends[{i}]");
        let backend = backend(&key, b)?;
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
    Ok(backends)
}

/// `[policy]` and its `[[policies]]`: the routing rule, fallback, limits and the scoped
/// policies; every target named must be a configured backend.
fn policy(
    raw: RawPolicy,
    scoped_raw: Vec<RawNamedPolicy>,
    backends: &[BackendConfig],
) -> Result<PolicyConfig, ConfigError> {
    let check_names = |key: &str, list: &[String]| -> Result<(), ConfigError> {
        for (i, n) in list.iter().enumerate() {
            if !backends.iter().any(|b| b.name == *n) {
                return Err(invalid(
                    format!("{key}[{i}]"),
                    format!("unknown backend {n:?}"),
                ));
            }
        }
        Ok(())
    };
    let source = match (raw.path, raw.static_targets) {
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
    let fallback = match raw.fallback_targets {
        Some(RawFallback::Targets(list)) => {
            check_names("policy.fallback_targets", &list)?;
            Fallback::Targets(list)
        }
        Some(RawFallback::Word(word)) if word == "reject" => Fallback::Reject,
        Some(RawFallback::Word(word)) => {
            return Err(invalid(
                "policy.fallback_targets",
                format!("{word:?}: must be a list of backend names or \"reject\""),
            ));
        }
        None => Fallback::Targets(
            backends
                .first()
                .map(|b| vec![b.name.clone()])
                .unwrap_or_default(),
        ),
    };
    let deadline = Duration::from_millis(raw.deadline_ms.unwrap_or(defaults::POLICY_DEADLINE_MS));
    let large_guest_deadline = Duration::from_millis(
        raw.deadline_ms
            .unwrap_or(defaults::POLICY_LARGE_GUEST_DEADLINE_MS),
    );
    let outer_timeout = Duration::from_millis(
        raw.outer_timeout_ms
            .unwrap_or(defaults::POLICY_OUTER_TIMEOUT_MS),
    );
    if deadline.is_zero() || outer_timeout < deadline {
        return Err(invalid(
            "policy.outer_timeout_ms",
            "deadline_ms must be > 0 and outer_timeout_ms >= deadline_ms",
        ));
    }
    let scoped = scoped(scoped_raw, raw.name.as_deref(), &source)?;
    let limits = crate::policy::DecisionLimits::default();
    let max_targets = raw.max_targets.unwrap_or(limits.max_targets);
    if !(1..=MAX_TARGETS_CAP).contains(&max_targets) {
        return Err(invalid(
            "policy.max_targets",
            format!("must be in 1..={MAX_TARGETS_CAP}"),
        ));
    }
    let quarantine = quarantine(
        raw.quarantine_failures,
        raw.quarantine_window_ms,
        raw.quarantine_ms,
    )?;
    let memory_mb = raw.memory_limit_mb.unwrap_or(defaults::POLICY_MEMORY_MB);
    if !(1..=4096).contains(&memory_mb) {
        return Err(invalid("policy.memory_limit_mb", "must be in 1..=4096"));
    }
    Ok(PolicyConfig {
        name: raw.name,
        source,
        scoped,
        params: raw.params,
        fallback,
        deadline,
        large_guest_deadline,
        outer_timeout,
        memory_limit_bytes: memory_mb << 20,
        warm_instances: raw.warm_instances.unwrap_or(0).min(1024),
        max_targets,
        quarantine,
        cache_dir: raw
            .cache_dir
            .or_else(|| defaults::policy_cache_dir(|v| std::env::var(v).ok())),
    })
}

/// Highest `policy.max_targets` accepted.
const MAX_TARGETS_CAP: usize = 256;
/// Longest quarantine window or period accepted (a day).
const MAX_QUARANTINE_MS: u64 = 86_400_000;

/// `policy.quarantine_failures` (0: off), `quarantine_window_ms`, `quarantine_ms`.
fn quarantine(
    failures: Option<u32>,
    window_ms: Option<u64>,
    period_ms: Option<u64>,
) -> Result<crate::policy::QuarantineConfig, ConfigError> {
    let default = crate::policy::QuarantineConfig::default();
    let ms = |key: &str, value: Option<u64>, default: Duration| match value {
        None => Ok(default),
        Some(v) if (1..=MAX_QUARANTINE_MS).contains(&v) => Ok(Duration::from_millis(v)),
        Some(_) => Err(invalid(
            format!("policy.{key}"),
            format!("must be in 1..={MAX_QUARANTINE_MS} (ms)"),
        )),
    };
    Ok(crate::policy::QuarantineConfig {
        failures: failures.unwrap_or(default.failures),
        window: ms("quarantine_window_ms", window_ms, default.window)?,
        period: ms("quarantine_ms", period_ms, default.period)?,
    })
}

/// `[[policies]]`: names unique (the default policy's too), each scoped to model aliases
/// or tenants, and only beside a component default policy.
fn scoped(
    raw: Vec<RawNamedPolicy>,
    default_name: Option<&str>,
    source: &PolicySource,
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
    if matches!(source, PolicySource::Static(_)) && !out.is_empty() {
        return Err(invalid(
            "policies",
            "scoped policies need the default [policy] to be a component (`path`), not static_targets",
        ));
    }
    Ok(out)
}

/// `[[auth.keys]]`: client key digests → tenant.
fn auth(raw: RawAuth) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut client_keys = BTreeMap::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
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
    Ok(client_keys)
}

/// `[tenants.*]`: budgets, each a non-negative number when set.
fn tenants(raw: BTreeMap<String, RawTenant>) -> Result<BTreeMap<String, Budget>, ConfigError> {
    let mut tenants = BTreeMap::new();
    for (name, t) in raw {
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
            Budget {
                daily_usd: t.daily_budget_usd,
                monthly_usd: t.monthly_budget_usd,
                hard_cap_usd: t.hard_cap_usd,
            },
        );
    }
    Ok(tenants)
}

/// `[tenants.*] requests_per_minute`, `tokens_per_minute`: each at least 1 when set.
fn rate_limits(
    raw: &BTreeMap<String, RawTenant>,
) -> Result<BTreeMap<String, RateLimit>, ConfigError> {
    let mut limits = BTreeMap::new();
    for (name, t) in raw {
        for (field, v) in [
            ("requests_per_minute", t.requests_per_minute),
            ("tokens_per_minute", t.tokens_per_minute),
        ] {
            if v == Some(0) {
                return Err(invalid(
                    format!("tenants.{name}.{field}"),
                    "must be at least 1 (leave it out for no limit)",
                ));
            }
        }
        let limit = RateLimit {
            requests_per_minute: t.requests_per_minute,
            tokens_per_minute: t.tokens_per_minute,
        };
        if limit.is_limited() {
            limits.insert(name.clone(), limit);
        }
    }
    Ok(limits)
}

/// `[privacy]` and `[tenants.NAME] local_only`: the tenants and data classes the host
/// keeps local. Class names are matched case-insensitively, so they are kept lowercase.
fn privacy(
    raw: RawPrivacy,
    tenants: &BTreeMap<String, RawTenant>,
) -> Result<PrivacyConfig, ConfigError> {
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    let data_class_label = raw
        .data_class_label
        .unwrap_or_else(|| defaults::DATA_CLASS_LABEL.to_owned());
    if !label_ok(&data_class_label) {
        return Err(invalid(
            "privacy.data_class_label",
            "must be 1-64 ASCII letters, digits, '-', '_' or '.'",
        ));
    }
    let mut local_only_classes = BTreeSet::new();
    for (class, rule) in raw.data_classes {
        let key = format!("privacy.data_classes.{class}");
        if !label_ok(&class) {
            return Err(invalid(
                key,
                "a data class must be 1-64 ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        if rule != "local_only" {
            return Err(invalid(
                key,
                format!("unknown rule {rule:?}; the one rule is \"local_only\""),
            ));
        }
        if !local_only_classes.insert(class.to_ascii_lowercase()) {
            return Err(invalid(
                key,
                "listed twice (data classes are case-insensitive)",
            ));
        }
    }
    Ok(PrivacyConfig {
        local_only_tenants: tenants
            .iter()
            .filter(|(_, t)| t.local_only == Some(true))
            .map(|(name, _)| name.clone())
            .collect(),
        data_class_label,
        local_only_classes,
    })
}

/// `[ledger]`: the spend database: a SQLite file (`path`) or a PostgreSQL URL (`url`).
fn ledger(raw: RawLedger) -> Result<(PathBuf, Option<PostgresUrl>, WhenDown), ConfigError> {
    let when_down = match raw.when_down.as_deref() {
        None | Some("refuse") => WhenDown::Refuse,
        Some("serve") => WhenDown::Serve,
        Some(other) => {
            return Err(invalid(
                "ledger.when_down",
                format!("{other:?}: expected \"refuse\" or \"serve\""),
            ));
        }
    };
    let url = match raw.url {
        Some(_) if raw.path.is_some() => {
            return Err(ConfigError::Invalid {
                key: "ledger".into(),
                message: "set `path` (SQLite) or `url` (PostgreSQL), not both".into(),
            });
        }
        Some(url) => Some(
            PostgresUrl::parse(&url, raw.tls_ca_file.as_deref()).map_err(|message| {
                ConfigError::Invalid {
                    key: "ledger.url".into(),
                    message,
                }
            })?,
        ),
        None if raw.tls_ca_file.is_some() => {
            return Err(invalid("ledger.tls_ca_file", "is only used with `url`"));
        }
        None => None,
    };
    let path = raw
        .path
        .unwrap_or_else(|| PathBuf::from(defaults::LEDGER_PATH));
    Ok((path, url, when_down))
}

/// `[admin]`: the admin token's env var and file watching.
fn admin(raw: RawAdmin) -> AdminConfig {
    AdminConfig {
        token_env: raw
            .token_env
            .unwrap_or_else(|| defaults::ADMIN_TOKEN_ENV.to_owned()),
        watch: raw.watch.unwrap_or(true),
        debounce: Duration::from_millis(raw.debounce_ms.unwrap_or(defaults::WATCH_DEBOUNCE_MS)),
    }
}

/// `[decision_log]`: the log file, its rotation and whether content is kept.
fn decision_log(raw: RawDecisionLog) -> DecisionLogConfig {
    DecisionLogConfig {
        path: raw.path,
        max_bytes: raw.max_mb.unwrap_or(defaults::DECISION_LOG_MAX_MB).max(1) << 20,
        keep: raw.keep.unwrap_or(defaults::DECISION_LOG_KEEP),
        include_content: raw.include_content,
    }
}

/// `[hardware]`: the RTX 4090 profile with the keys that are set replaced.
fn hardware(raw: RawHardware) -> Result<HardwareProfile, ConfigError> {
    let mut hw = HardwareProfile::rtx4090();
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

/// One `[[backends]]` entry: name, URL, key env var, prices, timeouts, retries and the
/// settings of its kind; errors name it `backends.NAME.KEY` once its name is known.
fn backend(key: &str, b: RawBackend) -> Result<BackendConfig, ConfigError> {
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
    let base_url = base_url(&key, b.kind, b.base_url)?;
    let api_key_env = api_key_env(&key, b.kind, b.api_key_env)?;
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
    let local = local(
        &key,
        b.kind,
        b.model_path,
        b.device,
        b.queue_capacity,
        b.threads,
    )?;
    let locality = locality(&key, b.kind, b.locality)?;
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

/// `backends.NAME.base_url`: the provider's default unless set; an http(s) URL for every
/// kind but local, which has none.
fn base_url(key: &str, kind: ConnectorKind, url: Option<String>) -> Result<String, ConfigError> {
    let base_url = match (kind, url) {
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
    if kind != ConnectorKind::Local {
        let ok = base_url.starts_with("http://") || base_url.starts_with("https://");
        if !ok || reqwest::Url::parse(&base_url).is_err() {
            return Err(invalid(
                format!("{key}.base_url"),
                format!("{base_url:?} is not an http(s) URL"),
            ));
        }
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

/// `backends.NAME.api_key_env`: the provider's env var unless set; none for local.
fn api_key_env(
    key: &str,
    kind: ConnectorKind,
    env: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (kind, env) {
        (ConnectorKind::Local, Some(_)) => Err(invalid(
            format!("{key}.api_key_env"),
            "not used by a local backend",
        )),
        (ConnectorKind::Openai, None) => Ok(Some(defaults::OPENAI_KEY_ENV.to_owned())),
        (ConnectorKind::Anthropic, None) => Ok(Some(defaults::ANTHROPIC_KEY_ENV.to_owned())),
        (ConnectorKind::Gemini, None) => Ok(Some(defaults::GEMINI_KEY_ENV.to_owned())),
        (_, env) => Ok(env),
    }
}

/// The local backend's own settings (`model_path` required); refused on any other kind.
fn local(
    key: &str,
    kind: ConnectorKind,
    model_path: Option<PathBuf>,
    device: Option<String>,
    queue_capacity: Option<usize>,
    threads: Option<usize>,
) -> Result<Option<LocalBackendConfig>, ConfigError> {
    if kind != ConnectorKind::Local {
        for (field, set) in [
            ("model_path", model_path.is_some()),
            ("device", device.is_some()),
            ("queue_capacity", queue_capacity.is_some()),
            ("threads", threads.is_some()),
        ] {
            if set {
                return Err(invalid(
                    format!("{key}.{field}"),
                    "only used by a local backend",
                ));
            }
        }
        return Ok(None);
    }
    let model_path = model_path
        .ok_or_else(|| invalid(format!("{key}.model_path"), "required for kind = \"local\""))?;
    Ok(Some(LocalBackendConfig {
        model_path,
        device: device.unwrap_or_else(|| defaults::LOCAL_DEVICE.to_owned()),
        queue_capacity: queue_capacity.unwrap_or(defaults::LOCAL_QUEUE_CAPACITY),
        threads,
    }))
}

/// `backends.NAME.locality`: local for kind local, settable only on openai_compatible,
/// else cloud.
fn locality(
    key: &str,
    kind: ConnectorKind,
    locality: Option<BackendKind>,
) -> Result<BackendKind, ConfigError> {
    match (kind, locality) {
        (ConnectorKind::Local, _) => Ok(BackendKind::Local),
        (ConnectorKind::OpenaiCompatible, Some(l)) => Ok(l),
        (_, Some(_)) => Err(invalid(
            format!("{key}.locality"),
            "only an openai_compatible backend can set it",
        )),
        (_, None) => Ok(BackendKind::Cloud),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::raw::RawClientKey;

    fn key(tenant: &str, key_sha256: &str) -> RawClientKey {
        RawClientKey {
            tenant: tenant.to_owned(),
            key_sha256: key_sha256.to_owned(),
        }
    }

    #[test]
    fn auth_keys_are_lowercased_digests_each_once() {
        let digest = "AB".repeat(32);
        let keys = auth(RawAuth {
            keys: vec![key("acme", &digest)],
            ..RawAuth::default()
        })
        .unwrap();
        assert_eq!(keys.get(&"ab".repeat(32)).map(String::as_str), Some("acme"));
        for (keys, path) in [
            (vec![key("acme", "abc")], "auth.keys[0].key_sha256"),
            (vec![key("", &digest)], "auth.keys[0].tenant"),
            (
                vec![key("a", &digest), key("b", &digest.to_ascii_lowercase())],
                "auth.keys[1]`",
            ),
        ] {
            let err = auth(RawAuth {
                keys,
                ..RawAuth::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains(path), "{err}");
        }
    }

    #[test]
    fn tenant_budgets_must_be_non_negative() {
        let raw = |hard_cap_usd| {
            BTreeMap::from([(
                "acme".to_owned(),
                RawTenant {
                    daily_budget_usd: Some(5.0),
                    monthly_budget_usd: None,
                    hard_cap_usd,
                    requests_per_minute: None,
                    tokens_per_minute: None,
                    local_only: None,
                },
            )])
        };
        let budgets = tenants(raw(Some(100.0))).unwrap();
        assert_eq!(budgets["acme"].daily_usd, Some(5.0));
        for bad in [-1.0, f64::NAN] {
            let err = tenants(raw(Some(bad))).unwrap_err();
            assert!(
                err.to_string().contains("tenants.acme.hard_cap_usd"),
                "{err}"
            );
        }
    }

    #[test]
    fn rate_limits_are_at_least_one_and_only_kept_when_set() {
        let raw = |requests_per_minute, tokens_per_minute| {
            BTreeMap::from([
                (
                    "acme".to_owned(),
                    RawTenant {
                        daily_budget_usd: None,
                        monthly_budget_usd: None,
                        hard_cap_usd: None,
                        requests_per_minute,
                        tokens_per_minute,
                        local_only: None,
                    },
                ),
                (
                    "free".to_owned(),
                    RawTenant {
                        daily_budget_usd: Some(1.0),
                        monthly_budget_usd: None,
                        hard_cap_usd: None,
                        requests_per_minute: None,
                        tokens_per_minute: None,
                        local_only: None,
                    },
                ),
            ])
        };
        let limits = rate_limits(&raw(Some(60), None)).unwrap();
        assert_eq!(limits.len(), 1, "only acme sets a limit");
        assert_eq!(limits["acme"].requests_per_minute, Some(60));
        let err = rate_limits(&raw(None, Some(0))).unwrap_err();
        assert!(
            err.to_string().contains("tenants.acme.tokens_per_minute"),
            "{err}"
        );
    }

    #[test]
    fn scoped_policies_need_a_component_default() {
        let eu = || RawNamedPolicy {
            name: "eu".to_owned(),
            path: "privacy.wasm".into(),
            params: BTreeMap::new(),
            models: Vec::new(),
            tenants: vec!["acme".to_owned()],
        };
        let wasm = PolicySource::Wasm("p.wasm".into());
        assert_eq!(scoped(vec![eu()], None, &wasm).unwrap().len(), 1);
        let err = scoped(vec![eu()], Some("eu"), &wasm).unwrap_err();
        assert!(err.to_string().contains("duplicate policy name"), "{err}");
        let static_targets = PolicySource::Static(vec!["a".to_owned()]);
        let err = scoped(vec![eu()], None, &static_targets).unwrap_err();
        assert!(err.to_string().contains("`policies`"), "{err}");
    }
}
