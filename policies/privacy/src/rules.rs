//! The privacy stage: finds PII (host detector) and restricted data classes, and says
//! whether a request must stay on private backends, may leave redacted, or is clear.
//! Self-contained (only `policy_sdk`), so the `hybrid` policy compiles it in as well.

use policy_sdk::{
    BackendStatus, Decision, Host, Message, PiiKind, PiiMatch, Rejection, Request, select,
};

/// What to do when a request holds PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiMode {
    /// Keep the request on private backends.
    Local,
    /// Replace each finding with a placeholder such as `[EMAIL]`; the cloud may take it.
    Redact,
}

/// The stage's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Client label holding the data class (`data_class_label`, default `data-class`).
    pub label_key: String,
    /// Data classes that never leave private backends (`restricted_classes`, default
    /// `restricted,confidential,pii,phi`), lowercase.
    pub restricted: Vec<String>,
    /// `mode`: `local` (default) or `redact`.
    pub mode: PiiMode,
    /// PII kinds that count (`pii_kinds`, default all), by `PiiKind::as_str` name.
    pub kinds: Option<Vec<String>>,
    /// `trusted_label`: cloud backends whose operator label of this name is `true`
    /// (e.g. `hipaa`) count as private. Unset: only local backends are private.
    pub trusted_label: Option<String>,
}

impl Config {
    /// Reads the parameters (see the fields).
    pub fn from_host(host: &dyn Host) -> Self {
        let mode = match host.param_or("mode", "local").to_ascii_lowercase().as_str() {
            "redact" => PiiMode::Redact,
            "local" => PiiMode::Local,
            other => {
                host.log(
                    policy_sdk::LogLevel::Warn,
                    "unknown privacy mode, using local",
                    &[("mode", other)],
                );
                PiiMode::Local
            }
        };
        Self {
            label_key: host.param_or("data_class_label", "data-class"),
            restricted: lowercase(host.param_list_or(
                "restricted_classes",
                &["restricted", "confidential", "pii", "phi"],
            )),
            mode,
            kinds: host.param_list("pii_kinds").map(lowercase),
            trusted_label: host.param("trusted_label").filter(|l| !l.trim().is_empty()),
        }
    }

    fn counts(&self, kind: PiiKind) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind.as_str()))
    }

    /// True for a backend that private data may reach: local, or trusted by label.
    pub fn is_private(&self, backend: &BackendStatus) -> bool {
        backend.is_local()
            || self
                .trusted_label
                .as_deref()
                .is_some_and(|l| backend.label(l) == Some("true"))
    }
}

fn lowercase(list: Vec<String>) -> Vec<String> {
    list.into_iter().map(|s| s.to_ascii_lowercase()).collect()
}

/// The stage's finding.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing sensitive.
    Clear,
    /// Must stay on private backends; `reason` is `restricted:<class>` or `pii:<kind>`.
    Private { reason: String, kinds: Vec<PiiKind> },
    /// PII replaced by placeholders in `messages`; any backend may take them.
    Redacted {
        messages: Vec<Message>,
        kinds: Vec<PiiKind>,
    },
}

/// Assesses `request`: a restricted data class first, then PII in every message.
pub fn assess(host: &dyn Host, request: &Request, cfg: &Config) -> Verdict {
    if let Some(class) = request.label(&cfg.label_key) {
        let class = class.trim().to_ascii_lowercase();
        if cfg.restricted.contains(&class) {
            return Verdict::Private {
                reason: format!("restricted:{class}"),
                kinds: Vec::new(),
            };
        }
    }
    let found: Vec<Vec<PiiMatch>> = request
        .messages
        .iter()
        .map(|m| {
            let mut matches = host.detect_pii(&m.content);
            matches.retain(|f| cfg.counts(f.kind));
            matches
        })
        .collect();
    let mut kinds: Vec<PiiKind> = Vec::new();
    for f in found.iter().flatten() {
        if !kinds.contains(&f.kind) {
            kinds.push(f.kind);
        }
    }
    let Some(first) = kinds.first() else {
        return Verdict::Clear;
    };
    let private = Verdict::Private {
        reason: format!("pii:{}", first.as_str()),
        kinds: kinds.clone(),
    };
    if cfg.mode == PiiMode::Local {
        return private;
    }
    let redacted: Option<Vec<Message>> = request
        .messages
        .iter()
        .zip(&found)
        .map(|(m, f)| redact(&m.content, f).map(|content| Message::new(m.role, content)))
        .collect();
    // A span that does not fit the text cannot be redacted safely: keep it private.
    redacted.map_or(private, |messages| Verdict::Redacted { messages, kinds })
}

/// The placeholder that replaces a finding of `kind`, e.g. `[EMAIL]`, `[CREDIT_CARD]`.
pub fn placeholder(kind: PiiKind) -> String {
    format!("[{}]", kind.as_str().replace('-', "_").to_ascii_uppercase())
}

/// `text` with every finding replaced by its placeholder; `None` when a span is out of
/// order, out of bounds or not on character boundaries.
pub fn redact(text: &str, findings: &[PiiMatch]) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        if f.start < at || f.end < f.start {
            return None;
        }
        out.push_str(text.get(at..f.start)?);
        text.get(f.start..f.end)?;
        out.push_str(&placeholder(f.kind));
        at = f.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

/// Private backends only, those that can hold the prompt, healthy first; a 503 when
/// none of them is healthy (the request may not fall back to the cloud).
pub fn route_private(
    backends: &[BackendStatus],
    request: &Request,
    cfg: &Config,
    reason: &str,
) -> Result<Decision, Rejection> {
    let private = select::usable(
        backends.iter().filter(|b| cfg.is_private(b)).collect(),
        request.prompt_tokens,
    );
    if !private.iter().any(|b| b.healthy) {
        return Err(Rejection::unavailable(format!(
            "{reason}: no healthy local backend can hold the request, and it may not go to the cloud"
        )));
    }
    select::decide(&private, reason)
}

/// Adds the `pii-kinds` label (comma-joined kind names) when `kinds` is not empty.
pub fn with_pii_kinds(d: Decision, kinds: &[PiiKind]) -> Decision {
    if kinds.is_empty() {
        return d;
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    d.label("pii-kinds", names.join(","))
}
