//! What the host tells a policy: the `HostState` trait and `StaticHost`, an in-memory
//! implementation for the CLI, tests and replay.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::{BackendKind, BackendStatus, ModelCapabilities, SpendStatus};
use crate::embeddings::{NoEmbeddings, TextScorer};

/// Live facts a policy may read through its host imports.
pub trait HostState: Send + Sync + 'static {
    fn backends(&self) -> Vec<BackendStatus>;
    /// Whether a backend is named `name` (each decision's targets are checked with it).
    fn has_backend(&self, name: &str) -> bool {
        self.backends().iter().any(|b| b.name == name)
    }
    fn spend(&self, scope: &str) -> SpendStatus;
    fn count_tokens(&self, text: &str) -> u32;
    /// PII in `text` (the `pii.detect` import). A host that has already scanned the
    /// request's messages may answer from that scan.
    fn detect_pii(&self, text: &str) -> Vec<policy_sdk::pii::PiiMatch> {
        super::pii::detect(text)
    }
    /// What the `embeddings` import reaches; by default no model ("no embedding model
    /// loaded").
    fn scorer(&self) -> &dyn TextScorer {
        &NoEmbeddings
    }
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A configurable in-memory host; `StaticHost::default()` holds the demo backend set.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticHost {
    pub backends: Vec<BackendStatus>,
    pub spend: BTreeMap<String, SpendStatus>,
    /// Fixed clock value; `None` reads the system clock.
    pub now_ms: Option<u64>,
}

impl Default for StaticHost {
    fn default() -> Self {
        Self {
            backends: demo_backends(),
            spend: BTreeMap::new(),
            now_ms: None,
        }
    }
}

fn backend(
    name: &str,
    kind: BackendKind,
    models: &[&str],
    price: (f64, f64),
    context_window: u32,
    latency: (f64, f64),
) -> BackendStatus {
    // A demo set: OpenAI takes everything, the local model text and JSON output
    // (constrained decoding), the others text only (as the SDKs' mock hosts have it).
    let capabilities = models
        .iter()
        .map(|m| {
            let card = crate::config::defaults::model_card(m).map_or(price, |c| (c.0, c.1));
            match kind {
                _ if name == "openai" => ModelCapabilities::full(m, context_window, card),
                BackendKind::Local => ModelCapabilities {
                    json_object: true,
                    json_schema: true,
                    ..ModelCapabilities::text_only(m, context_window, card)
                },
                BackendKind::Cloud => ModelCapabilities::text_only(m, context_window, card),
            }
        })
        .collect();
    BackendStatus {
        name: name.to_owned(),
        kind,
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        healthy: true,
        latency_p50_ms: latency.0,
        latency_p95_ms: latency.1,
        error_rate: 0.0,
        in_flight: 0,
        queue_depth: 0,
        usd_per_mtok_in: price.0,
        usd_per_mtok_out: price.1,
        context_window,
        labels: BTreeMap::new(),
        capabilities,
    }
}

/// The demo backend set from the team brief (also the default config's cloud names).
pub fn demo_backends() -> Vec<BackendStatus> {
    vec![
        backend(
            "local",
            BackendKind::Local,
            &["smollm2-135m-instruct"],
            (0.0, 0.0),
            8192,
            (400.0, 1200.0),
        ),
        backend(
            "openai",
            BackendKind::Cloud,
            &["gpt-4o", "gpt-4o-mini"],
            (2.5, 10.0),
            128_000,
            (700.0, 1500.0),
        ),
        backend(
            "anthropic",
            BackendKind::Cloud,
            &["claude-sonnet-4-5"],
            (3.0, 15.0),
            200_000,
            (900.0, 1800.0),
        ),
        backend(
            "gemini",
            BackendKind::Cloud,
            &["gemini-2.0-flash"],
            (0.10, 0.40),
            1_000_000,
            (500.0, 900.0),
        ),
    ]
}

impl HostState for StaticHost {
    fn backends(&self) -> Vec<BackendStatus> {
        self.backends.clone()
    }
    fn spend(&self, scope: &str) -> SpendStatus {
        let mut status = self.spend.get(scope).cloned().unwrap_or_default();
        status.scope = scope.to_owned();
        status
    }
    fn count_tokens(&self, text: &str) -> u32 {
        crate::domain::estimate_tokens(text)
    }
    fn now_ms(&self) -> u64 {
        match self.now_ms {
            Some(ms) => ms,
            None => {
                let clock = SystemTime::now().duration_since(UNIX_EPOCH);
                clock
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_set_and_spend_scope() {
        let host = StaticHost::default();
        let names: Vec<_> = host.backends().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["local", "openai", "anthropic", "gemini"]);
        assert_eq!(host.spend("acme").scope, "acme");
    }
}
