//! The gateway's live state (backends, spend, tokenizer) as the host a policy reads
//! through its imports.

use crate::dispatch::GatewayHost;
use crate::domain::{BackendStatus, SpendStatus};
use crate::embeddings::TextScorer;
use crate::policy::HostState;

impl HostState for GatewayHost {
    fn backends(&self) -> Vec<BackendStatus> {
        GatewayHost::backends(self)
    }
    fn has_backend(&self, name: &str) -> bool {
        GatewayHost::has_backend(self, name)
    }
    fn spend(&self, scope: &str) -> SpendStatus {
        GatewayHost::spend(self, scope)
    }
    fn count_tokens(&self, text: &str) -> u32 {
        GatewayHost::count_tokens(self, text)
    }
    fn scorer(&self) -> &dyn TextScorer {
        GatewayHost::scorer(self)
    }
}
