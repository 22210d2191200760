//! Glue between the policy runtime and the gateway: the gateway's live state as the
//! policy's host, and the `name@digest` label every response carries.

use sha2::{Digest, Sha256};

use super::{HostState, LoadedPolicy};
use crate::dispatch::GatewayHost;
use crate::domain::{BackendStatus, SpendStatus};

/// `name@short_digest` of a loaded policy.
pub fn policy_label(policy: &LoadedPolicy) -> String {
    format!("{}@{}", policy.name(), policy.short_digest())
}

/// sha256 hex of component bytes: the digest a loaded policy reports.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

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
}
