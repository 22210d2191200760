//! Prometheus metrics: installs the `metrics` recorder once per process and renders the
//! text exposition for `GET /metrics`. Metric names are `switchyard_*`.

use std::collections::HashSet;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("installing the Prometheus recorder: {0}")]
    Install(String),
}

/// Latency buckets, seconds (histograms instead of summaries).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Installs the global Prometheus recorder (idempotent).
pub fn install() -> Result<(), MetricsError> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| MetricsError::Install(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    let _ = HANDLE.set(handle);
    Ok(())
}

/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds. Without it the
/// exporter keeps every sample until the next scrape: memory grows without bound on a
/// gateway nobody scrapes. Runs on the current tokio runtime.
pub fn spawn_upkeep() {
    if let Some(handle) = HANDLE.get() {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

/// The exposition text, or `None` when no recorder is installed.
pub fn render() -> Option<String> {
    HANDLE.get().map(PrometheusHandle::render)
}

/// Distinct `reason` label values at most; a reason first seen after them is `other`.
const MAX_REASONS: usize = 64;
/// Longest `reason` label value.
const REASON_LEN: usize = 32;

/// Reason label values seen so far (at most [`MAX_REASONS`]).
static REASONS: LazyLock<RwLock<HashSet<String>>> = LazyLock::new(Default::default);

/// The `reason` label of a decision reason (free text from the policy): its first segment
/// (up to the first `:`, `+`, `(`, `,`, `;`, `=` or whitespace), at most [`REASON_LEN`]
/// characters of `A-Z a-z 0-9 _ - .` (others become `_`), and one of at most
/// [`MAX_REASONS`] distinct values, `other` past them.
fn reason_label(reason: &str) -> String {
    let segment = reason
        .split(|c: char| matches!(c, ':' | '+' | '(' | ',' | ';' | '=') || c.is_whitespace())
        .next()
        .unwrap_or_default();
    let label: String = segment
        .chars()
        .take(REASON_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let known = REASONS.read().unwrap_or_else(|p| p.into_inner());
    if known.contains(&label) {
        return label;
    }
    let full = known.len() >= MAX_REASONS;
    drop(known);
    if full {
        return "other".to_owned();
    }
    let mut known = REASONS.write().unwrap_or_else(|p| p.into_inner());
    if known.len() >= MAX_REASONS {
        return "other".to_owned();
    }
    known.insert(label.clone());
    label
}

/// One finished request.
pub fn request(
    backend: &str,
    policy: &str,
    reason: &str,
    status: u16,
    stream: bool,
    total: Duration,
) {
    let labels = [
        ("backend", backend.to_owned()),
        ("policy", policy.to_owned()),
        ("reason", reason_label(reason)),
        ("status", status.to_string()),
        ("stream", stream.to_string()),
    ];
    metrics::counter!("switchyard_requests_total", &labels).increment(1);
    metrics::histogram!("switchyard_request_duration_seconds", "backend" => backend.to_owned())
        .record(total.as_secs_f64());
}

/// Time to the first streamed token.
pub fn time_to_first_token(backend: &str, ttft: Duration) {
    metrics::histogram!("switchyard_time_to_first_token_seconds", "backend" => backend.to_owned())
        .record(ttft.as_secs_f64());
}

/// Policy decision time, and whether the policy failed (fallback used).
pub fn decision(policy: &str, elapsed: Duration, failed: bool) {
    metrics::histogram!("switchyard_policy_decision_seconds", "policy" => policy.to_owned())
        .record(elapsed.as_secs_f64());
    if failed {
        metrics::counter!("switchyard_policy_fallback_decisions_total", "policy" => policy.to_owned())
            .increment(1);
    }
}

/// The host removed non-local targets from a request it keeps local (`rule`: `tenant`,
/// `data_class` or `pii`); `refused` when no target was left.
pub fn privacy_override(rule: &'static str, refused: bool) {
    let outcome = if refused { "refused" } else { "filtered" };
    metrics::counter!("switchyard_privacy_overrides_total", "rule" => rule, "outcome" => outcome)
        .increment(1);
}

/// A request refused by its tenant's rate limit (`limit`: requests or tokens). Only
/// tenants named in the config have limits, so the tenant label is bounded.
pub fn rate_limited(tenant: &str, limit: &'static str) {
    metrics::counter!("switchyard_rate_limited_total", "tenant" => tenant.to_owned(), "limit" => limit)
        .increment(1);
}

/// Tokens and cost of a completion.
pub fn usage(backend: &str, prompt: u32, completion: u32, cost_usd: f64) {
    metrics::counter!("switchyard_tokens_total", "backend" => backend.to_owned(), "kind" => "prompt")
        .increment(u64::from(prompt));
    metrics::counter!("switchyard_tokens_total", "backend" => backend.to_owned(), "kind" => "completion")
        .increment(u64::from(completion));
    metrics::gauge!("switchyard_cost_usd_total", "backend" => backend.to_owned())
        .increment(cost_usd);
}

/// One retry of `backend` after a retryable failure.
pub fn retry(backend: &str) {
    metrics::counter!("switchyard_retries_total", "backend" => backend.to_owned()).increment(1);
}

/// A target failed and the next one was tried.
pub fn fallback(from: &str) {
    metrics::counter!("switchyard_fallbacks_total", "from" => from.to_owned()).increment(1);
}

/// Breaker state of a backend: 0 closed, 1 open, 2 half-open.
pub fn breaker(backend: &str, state: f64) {
    metrics::gauge!("switchyard_breaker_state", "backend" => backend.to_owned()).set(state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_labels_are_first_segments_from_a_bounded_set() {
        assert_eq!(reason_label("pii:email+budget:ok"), "pii");
        assert_eq!(reason_label("simple:chat"), "simple");
        assert_eq!(reason_label("weird/name\nmore"), "weird_name");
        assert_eq!(reason_label(&"x".repeat(1000)).len(), REASON_LEN);
        for i in 0..(2 * MAX_REASONS) {
            let label = reason_label(&format!("r{i}: detail"));
            assert!(label == format!("r{i}") || label == "other", "{label}");
        }
        assert_eq!(reason_label("never-seen-before"), "other");
        assert_eq!(reason_label("pii: again"), "pii");
        assert!(REASONS.read().unwrap_or_else(|p| p.into_inner()).len() <= MAX_REASONS);
    }
}
