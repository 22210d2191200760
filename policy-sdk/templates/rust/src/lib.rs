//! __TITLE__: code requests go to the cheapest healthy cloud backend that fits, tenant
//! `legal` never leaves local backends, everything else runs local first.

use policy_sdk::{BackendStatus, Decision, Host, Policy, PolicyInfo, Rejection, Request, select};

/// Words that mark a request as programming work (param `code_keywords`, comma-separated).
const CODE_KEYWORDS: &str = "code,function,implement,refactor,debug,compile,bug,```";

pub struct Router;

impl Policy for Router {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "__TITLE__",
            "0.1.0",
            "code to the cheapest cloud; tenant legal stays local; the rest local first",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        let all = host.backends();
        let local: Vec<&BackendStatus> = all.iter().filter(|b| b.is_local()).collect();
        let mut cloud: Vec<&BackendStatus> = all.iter().filter(|b| b.is_cloud()).collect();
        select::sort_by_price(&mut cloud);
        let tokens = request.prompt_tokens;
        let decided = if request.tenant == host.param_or("local_only_tenant", "legal") {
            select::decide(&select::usable(local, tokens), "local-only-tenant")
        } else if is_code(host, request) {
            let order = select::usable([cloud, local].concat(), tokens);
            select::decide(&order, "code:cheapest-cloud")
        } else {
            let order = select::usable([local, cloud].concat(), tokens);
            select::decide(&order, "local-first")
        };
        select::honour_request(host, request, decided)
    }
}

/// Whether the last user message names one of the code keywords.
fn is_code(host: &dyn Host, request: &Request) -> bool {
    let text = request.last_user_text().to_lowercase();
    let keywords = policy_sdk::host::split_list(&host.param_or("code_keywords", CODE_KEYWORDS));
    keywords.iter().any(|k| text.contains(&k.to_lowercase()))
}

policy_sdk::export_policy!(Router);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::testing::MockHost;

    /// `cases.json` (what `switchyard policy test` runs through the sandbox), natively.
    #[test]
    fn case_file() {
        policy_sdk::cases::assert_cases::<Router>(include_str!("../cases.json"));
    }

    fn route(host: &MockHost, request: &Request) -> Decision {
        match Router::route(host, request) {
            Ok(decision) => decision,
            Err(rejection) => panic!("rejected: {}", rejection.message),
        }
    }

    #[test]
    fn code_goes_to_the_cheapest_cloud_backend() {
        let d = route(&MockHost::new(), &Request::user("Implement a binary search in Rust"));
        assert_eq!(d.backends()[0], "gemini");
        assert_eq!(d.reason, "code:cheapest-cloud");
    }

    #[test]
    fn legal_never_leaves_local_backends() {
        let request = Request::user("Implement a parser").tenant("legal");
        let d = route(&MockHost::new(), &request);
        assert_eq!(d.backends(), ["local"]);
    }

    #[test]
    fn everything_else_runs_local_first() {
        let d = route(&MockHost::new(), &Request::user("Summarise this memo"));
        assert_eq!(d.backends()[0], "local");
    }

    #[test]
    fn an_unhealthy_cloud_backend_goes_last() {
        let host = MockHost::new().unhealthy("gemini");
        let d = route(&host, &Request::user("fix this bug"));
        assert_eq!(d.backends().last(), Some(&"gemini"));
    }
}
