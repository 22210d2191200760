//! Host-enforced privacy: which requests must stay on local backends (a `local_only`
//! tenant, a local-only data class, PII the host finds in a request that falls back) and
//! the step that removes every other backend from a plan's targets, whoever chose them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::attempt::PlannedTarget;
use crate::config::PrivacyConfig;
use crate::domain::{BackendKind, ChatMessage};

/// Prompts longer than this (bytes) are scanned for PII on a blocking thread, not on
/// the async thread serving other requests.
const INLINE_SCAN_BYTES: usize = 64 * 1024;

/// Why a request must stay on local backends. Every name in it comes from the config,
/// never from the client or the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LocalOnly {
    /// `[tenants.NAME] local_only = true`.
    Tenant(String),
    /// `[privacy.data_classes] NAME = "local_only"` (the configured spelling, lowercase).
    DataClass(String),
    /// The policy failed (or named no target) and the host found PII in the request.
    Pii,
}

impl LocalOnly {
    /// The rule's kind: a metric label and the `host:privacy:KIND` reason.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Tenant(_) => "tenant",
            Self::DataClass(_) => "data_class",
            Self::Pii => "pii",
        }
    }
}

impl std::fmt::Display for LocalOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tenant(t) => write!(f, "tenant {t} is local_only"),
            Self::DataClass(c) => write!(f, "data class {c} is local_only"),
            Self::Pii => f.write_str("the policy failed and the request holds PII"),
        }
    }
}

/// The configured rules, checked once per request.
#[derive(Debug, Default)]
pub(super) struct PrivacyRules {
    config: PrivacyConfig,
}

impl PrivacyRules {
    pub(super) fn new(config: PrivacyConfig) -> Self {
        Self { config }
    }

    /// The rule that keeps a request of `tenant` with `labels` local, if any: its tenant
    /// first, then its data class (the label's value, trimmed, case-insensitive).
    pub(super) fn rule_for(
        &self,
        tenant: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<LocalOnly> {
        if self.config.local_only_tenants.contains(tenant) {
            return Some(LocalOnly::Tenant(tenant.to_owned()));
        }
        if self.config.local_only_classes.is_empty() {
            return None;
        }
        let class = labels.get(&self.config.data_class_label)?.trim();
        self.config
            .local_only_classes
            .iter()
            .find(|c| c.eq_ignore_ascii_case(class))
            .map(|c| LocalOnly::DataClass(c.clone()))
    }
}

/// Whether `target` keeps data on hardware the operator runs: the local engine, or an
/// OpenAI-compatible server configured `locality = "local"`.
pub(super) fn is_local(target: &PlannedTarget) -> bool {
    target.backend.backend.backend().kind() == BackendKind::Local
}

/// Removes every non-local target; returns how many were removed.
pub(super) fn keep_local(targets: &mut Vec<PlannedTarget>) -> usize {
    let before = targets.len();
    targets.retain(is_local);
    before - targets.len()
}

/// Whether the host's PII detector (the one behind the policies' `pii.detect`) finds
/// anything in `messages`; long prompts are scanned on a blocking thread.
pub(super) async fn pii_found(messages: &Arc<[ChatMessage]>) -> bool {
    let scan = |messages: &[ChatMessage]| {
        messages
            .iter()
            .any(|m| !policy_sdk::pii::detect(&m.content).is_empty())
    };
    let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
    if bytes <= INLINE_SCAN_BYTES {
        return scan(messages);
    }
    let shared = messages.clone();
    // A scan that cannot finish (the runtime shutting down) counts as PII found: the
    // request then stays local.
    tokio::task::spawn_blocking(move || scan(&shared))
        .await
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::Role;

    fn rules() -> PrivacyRules {
        PrivacyRules::new(PrivacyConfig {
            local_only_tenants: ["hospital".to_owned()].into(),
            data_class_label: "data-class".to_owned(),
            local_only_classes: ["restricted".to_owned()].into(),
        })
    }

    #[test]
    fn tenants_and_data_classes_pick_their_rule() {
        let none = BTreeMap::new();
        let label = |v: &str| BTreeMap::from([("data-class".to_owned(), v.to_owned())]);
        let r = rules();
        assert_eq!(
            r.rule_for("hospital", &none),
            Some(LocalOnly::Tenant("hospital".into()))
        );
        assert_eq!(r.rule_for("acme", &none), None);
        assert_eq!(
            r.rule_for("acme", &label(" Restricted ")),
            Some(LocalOnly::DataClass("restricted".into()))
        );
        assert_eq!(r.rule_for("acme", &label("public")), None);
        let other_key = BTreeMap::from([("class".to_owned(), "restricted".to_owned())]);
        assert_eq!(r.rule_for("acme", &other_key), None);
        assert_eq!(PrivacyRules::default().rule_for("hospital", &none), None);
    }

    #[tokio::test]
    async fn pii_is_found_in_short_and_long_prompts() {
        let msgs = |text: String| -> Arc<[ChatMessage]> {
            vec![ChatMessage {
                role: Role::User,
                content: text,
            }]
            .into()
        };
        assert!(pii_found(&msgs("mail bob@example.com".into())).await);
        assert!(!pii_found(&msgs("nothing here".into())).await);
        let long = format!("{} ssn 123-45-6789", "word ".repeat(20_000));
        assert!(long.len() > INLINE_SCAN_BYTES);
        assert!(pii_found(&msgs(long)).await);
        assert!(!pii_found(&msgs("word ".repeat(20_000))).await);
    }
}
