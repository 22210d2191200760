//! [`GatewayHost`]: what the gateway tells a policy through its host imports: live backend
//! status, spend and budgets, token counts.

use std::sync::Arc;

use crate::backends::instrumented::Instrumented;
use crate::domain::{BackendStatus, SpendStatus};
use crate::embeddings::{NoEmbeddings, TextScorer};
use crate::ledger::Ledger;

/// Counts prompt tokens for the policy.
pub type TokenCounter = Arc<dyn Fn(&str) -> u32 + Send + Sync>;

/// The gateway's live state as policies read it.
pub struct GatewayHost {
    pub(super) backends: Vec<Arc<Instrumented>>,
    pub(super) tokens: TokenCounter,
    pub(super) ledger: Option<Arc<Ledger>>,
    /// Embeddings and classifiers (`embeddings` import); [`NoEmbeddings`] by default.
    pub(super) scorer: Arc<dyn TextScorer>,
}

impl std::fmt::Debug for GatewayHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHost")
            .field("backends", &self.backends.len())
            .finish_non_exhaustive()
    }
}

impl GatewayHost {
    pub fn backends(&self) -> Vec<BackendStatus> {
        self.backends.iter().map(|b| b.status()).collect()
    }
    /// Whether a backend is named `name` (without rendering every status).
    pub fn has_backend(&self, name: &str) -> bool {
        self.backends.iter().any(|b| b.name() == name)
    }
    /// The backends that serve `model` (by its exact name), in name order: empty for an
    /// alias such as `auto`.
    pub fn serving(&self, model: &str) -> Vec<&str> {
        self.backends
            .iter()
            .filter(|b| b.backend().models().iter().any(|m| m == model))
            .map(|b| b.name())
            .collect()
    }
    /// Spend and budgets of `scope` (a tenant); zero when no ledger is configured.
    pub fn spend(&self, scope: &str) -> SpendStatus {
        match &self.ledger {
            None => SpendStatus {
                scope: scope.to_owned(),
                ..SpendStatus::default()
            },
            Some(ledger) => ledger.status(scope),
        }
    }
    pub fn count_tokens(&self, text: &str) -> u32 {
        (self.tokens)(text)
    }
    /// What a policy's `embeddings` calls reach.
    pub fn scorer(&self) -> &dyn TextScorer {
        &*self.scorer
    }
    /// The scorer of a host without an embedding model.
    pub(super) fn no_scorer() -> Arc<dyn TextScorer> {
        Arc::new(NoEmbeddings)
    }
}
