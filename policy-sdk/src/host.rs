//! The `Host` trait (what a policy may ask the gateway, mirroring the WIT imports) with
//! typed parameter helpers, and the `Policy` trait a policy implements.

use std::str::FromStr;

use crate::backend::{BackendStatus, SpendStatus};
use crate::pii::PiiMatch;
use crate::types::{Decision, PolicyInfo, Rejection, Request};

/// What a host without an embedding model answers `embed` and `score` with.
pub const NO_EMBEDDING_MODEL: &str = "no embedding model loaded";

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Read-only host facts and services. In a component it is the WIT imports
/// (`WasmHost`); in native tests it is `testing::MockHost`.
pub trait Host {
    /// Every configured backend, in config order.
    fn backends(&self) -> Vec<BackendStatus>;
    /// PII findings in `text`, sorted by start, non-overlapping.
    fn detect_pii(&self, text: &str) -> Vec<PiiMatch>;
    /// Tokens in `text`, counted with the host's tokenizer.
    fn count_tokens(&self, text: &str) -> u32;
    /// Spend and budgets for `scope` (a tenant).
    fn spend(&self, scope: &str) -> SpendStatus;
    /// One policy parameter.
    fn param(&self, key: &str) -> Option<String>;
    /// Every policy parameter.
    fn params(&self) -> Vec<(String, String)>;
    /// Milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> u64;
    /// A structured log line.
    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]);
    /// The host's sentence embedding of `text` (all-MiniLM-L6-v2: 384 dims,
    /// L2-normalised); an error when the host has no embedding model.
    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let _ = text;
        Err(NO_EMBEDDING_MODEL.to_owned())
    }
    /// `text` scored 0.0..=1.0 by the classifier the host loaded as `classifier`.
    fn score(&self, classifier: &str, text: &str) -> Result<f64, String> {
        let _ = (classifier, text);
        Err(NO_EMBEDDING_MODEL.to_owned())
    }

    /// The backend named `name`.
    fn backend(&self, name: &str) -> Option<BackendStatus> {
        self.backends().into_iter().find(|b| b.name == name)
    }

    /// Parameter `key`, trimmed, or `default` when unset or blank.
    fn param_or(&self, key: &str, default: &str) -> String {
        match self.param(key) {
            Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
            _ => default.to_owned(),
        }
    }

    /// Parameter `key` parsed as a number; `default` when unset, and a warning log
    /// plus `default` when it does not parse or is not finite.
    fn param_f64(&self, key: &str, default: f64) -> f64 {
        match parse_param::<Self, f64>(self, key) {
            None => default,
            Some(Some(v)) if v.is_finite() => v,
            Some(_) => {
                warn_invalid(self, key);
                default
            }
        }
    }

    /// Parameter `key` parsed as a `u32` (see [`Host::param_f64`]).
    fn param_u32(&self, key: &str, default: u32) -> u32 {
        match parse_param::<Self, u32>(self, key) {
            None => default,
            Some(Some(v)) => v,
            Some(None) => {
                warn_invalid(self, key);
                default
            }
        }
    }

    /// Parameter `key` as a flag: `true/yes/on/1` or `false/no/off/0` (see [`Host::param_f64`]).
    fn param_bool(&self, key: &str, default: bool) -> bool {
        let Some(raw) = self.param(key) else {
            return default;
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "" => default,
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => {
                warn_invalid(self, key);
                default
            }
        }
    }

    /// Parameter `key` as a comma-separated list, items trimmed, blanks dropped;
    /// `None` when unset.
    fn param_list(&self, key: &str) -> Option<Vec<String>> {
        self.param(key).map(|v| split_list(&v))
    }

    /// [`Host::param_list`], or `default` when unset.
    fn param_list_or(&self, key: &str, default: &[&str]) -> Vec<String> {
        self.param_list(key)
            .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect())
    }
}

/// `None` when unset or blank, `Some(None)` when it does not parse, else `Some(Some(v))`.
fn parse_param<H: Host + ?Sized, T: FromStr>(host: &H, key: &str) -> Option<Option<T>> {
    match host.param(key) {
        Some(v) if !v.trim().is_empty() => Some(v.trim().parse().ok()),
        _ => None,
    }
}

fn warn_invalid<H: Host + ?Sized>(host: &H, key: &str) {
    let value = host.param(key).unwrap_or_default();
    host.log(
        LogLevel::Warn,
        "invalid policy parameter, using its default",
        &[("param", key), ("value", &value)],
    );
}

/// Splits a comma-separated list: items trimmed, blanks dropped.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The mock host's token estimate: UTF-8 bytes / 4, rounded up.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// A routing policy. Export it from a component with [`export_policy!`](crate::export_policy)
/// and test it natively with `testing::MockHost`.
pub trait Policy {
    /// Name, version and a one-line description.
    fn info() -> PolicyInfo;
    /// Decide where `request` goes, or refuse it. Must not panic.
    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection>;
}
