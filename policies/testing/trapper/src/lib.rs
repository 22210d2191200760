//! Test guest: a well-formed policy that traps on every request. The gateway's prepare
//! step (smoke decision) must refuse it, so it never goes live.

use policy_sdk::{Decision, Host, Policy, PolicyInfo, Rejection, Request};

/// Traps in `route`.
pub struct Trapper;

impl Policy for Trapper {
    fn info() -> PolicyInfo {
        PolicyInfo::new("trapper", "0.1.0", "traps on every request (test guest)")
    }

    fn route(_host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        // A guest bug the host must contain: an out-of-bounds index traps.
        let empty: Vec<u8> = Vec::new();
        let at = request.messages.len() + 7;
        Ok(Decision::to(empty[at].to_string()))
    }
}

policy_sdk::export_policy!(Trapper);
