//! `cost`: spend less as a tenant's budget runs out.
//!
//! Reads the tenant's spend against its daily and monthly budgets (the larger fraction
//! counts; the decision guide's *cost-based routing*). Under `soft_threshold` (80 %):
//! normal order, premium cloud first (config order), local last. Past it: cloud
//! cheapest first, then local (or local first with `soft_mode=local-first`), and
//! completions capped at `soft_max_tokens`. At 100 % of a budget: local backends only
//! (429 when none is healthy). At the monthly hard cap: 429. Backends that cannot hold
//! the prompt are dropped, unhealthy ones go last; none left → 503.
//!
//! Reasons: `budget:none`, `budget:<tier>:<pct>pct` (tiers `ok`, `soft`, `exhausted`).
//! Labels: `budget-tier`, `budget-pct`. Parameters: see `README.md` and
//! [`rules::Config`].

pub mod rules;

use policy_sdk::{Decision, Host, Policy, PolicyInfo, Rejection, Request, select};

use rules::{Config, Tier};

/// The cost policy.
#[derive(Debug)]
pub struct Cost;

policy_sdk::export_policy!(Cost);

impl Policy for Cost {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "cost",
            env!("CARGO_PKG_VERSION"),
            "cheaper backends as the tenant's budget runs out; local only past it",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        select::honour_request(host, request, decide(host, request))
    }
}

/// The policy's rules; [`Policy::route`] holds their decision to an explicit model.
fn decide(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
    let cfg = Config::from_host(host);
    let budget = rules::assess(host, request, &cfg)?;
    let backends = host.backends();
    let order = select::usable(
        rules::order(&backends, request, &budget, &cfg),
        request.prompt_tokens,
    );
    if budget.tier == Tier::Exhausted && !order.iter().any(|b| b.healthy) {
        return Err(rules::exhausted(&budget));
    }
    let mut d = select::decide(&order, &budget.reason())?;
    if budget.tier == Tier::Soft && cfg.soft_max_tokens > 0 {
        d = d.cap_tokens(cfg.soft_max_tokens);
    }
    Ok(rules::labelled(d, &budget))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use policy_sdk::SpendStatus;
    use policy_sdk::testing::MockHost;

    /// The case file `policy test` runs through the sandbox, natively on the mock host.
    #[test]
    fn case_file() {
        policy_sdk::cases::assert_cases::<Cost>(include_str!("../cases.json"));
    }

    fn host_at(today: f64, month: f64) -> MockHost {
        MockHost::new().with_spend(
            SpendStatus::new("acme")
                .spent(today, month)
                .daily_budget(10.0)
                .monthly_budget(200.0)
                .hard_cap(300.0),
        )
    }

    fn route(host: &MockHost) -> Result<Decision, Rejection> {
        Cost::route(host, &Request::user("hello").tenant("acme"))
    }

    #[test]
    fn a_cloud_call_that_would_overrun_the_budget_is_left_out() {
        // $9.99 of $10 spent today: 0.01 left. 1000 prompt + 512 expected completion tokens
        // cost $0.0076 on openai and $0.0107 on anthropic; gemini is cheaper still.
        let host = host_at(9.99, 50.0);
        let request = Request::user("hi").tenant("acme").prompt_tokens(1000);
        let d = Cost::route(&host, &request).unwrap();
        assert!(!d.backends().contains(&"anthropic"), "{:?}", d.backends());
        assert!(d.backends().contains(&"openai"), "{:?}", d.backends());
        // With a larger max_tokens, openai no longer fits either.
        let d = Cost::route(&host, &request.max_tokens(2000)).unwrap();
        assert!(!d.backends().contains(&"openai"), "{:?}", d.backends());
        assert!(!d.backends().contains(&"anthropic"));
    }

    #[test]
    fn no_budget_is_normal_order() {
        let d = Cost::route(&MockHost::new(), &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["openai", "anthropic", "gemini", "local"]);
        assert_eq!(d.reason, "budget:none");
        assert_eq!(d.labels["budget-tier"], "none");
        assert!(!d.labels.contains_key("budget-pct"));
        assert_eq!(d.max_tokens, None);
    }

    #[test]
    fn under_the_soft_threshold_premium_cloud_first() {
        let d = route(&host_at(5.0, 20.0)).unwrap();
        assert_eq!(d.backends(), ["openai", "anthropic", "gemini", "local"]);
        assert_eq!(d.reason, "budget:ok:50pct");
        assert_eq!(d.labels["budget-pct"], "50");
    }

    #[test]
    fn past_the_soft_threshold_cheaper_first_and_capped() {
        let d = route(&host_at(8.5, 20.0)).unwrap();
        assert_eq!(d.backends(), ["gemini", "openai", "anthropic", "local"]);
        assert_eq!(d.reason, "budget:soft:85pct");
        assert_eq!(d.max_tokens, Some(512));
        // The monthly fraction counts too.
        let d = route(&host_at(0.0, 170.0)).unwrap();
        assert_eq!(d.reason, "budget:soft:85pct");
    }

    #[test]
    fn soft_mode_and_threshold_params() {
        let host = host_at(6.0, 0.0)
            .with_param("soft_threshold", "0.5")
            .with_param("soft_mode", "local-first")
            .with_param("soft_max_tokens", "0");
        let d = route(&host).unwrap();
        assert_eq!(d.backends(), ["local", "gemini", "openai", "anthropic"]);
        assert_eq!(d.max_tokens, None);
        let host = host_at(9.0, 0.0).with_param("soft_mode", "bogus");
        assert_eq!(route(&host).unwrap().backends()[0], "gemini");
        assert!(host.logged("unknown soft_mode"));
    }

    #[test]
    fn past_the_budget_local_only() {
        let d = route(&host_at(10.5, 20.0)).unwrap();
        assert_eq!(d.backends(), ["local"]);
        assert_eq!(d.reason, "budget:exhausted:105pct");
        let r = route(&host_at(10.5, 20.0).unhealthy("local")).unwrap_err();
        assert_eq!(r.status, 429);
        assert!(r.message.contains("acme"), "{}", r.message);
        let big = Request::user("x").tenant("acme").prompt_tokens(9000);
        assert_eq!(
            Cost::route(&host_at(11.0, 0.0), &big).unwrap_err().status,
            429
        );
    }

    #[test]
    fn percent_is_floored_without_float_noise() {
        let at = |f: f64| rules::Budget {
            tier: Tier::Ok,
            fraction: Some(f),
            spend: SpendStatus::new("x"),
        };
        assert_eq!(at(0.29).percent(), Some(29));
        assert_eq!(at(0.999).percent(), Some(99));
        assert_eq!(at(f64::NAN).percent(), Some(0));
        assert_eq!(at(1e300).percent(), Some(u32::MAX));
    }

    #[test]
    fn the_hard_cap_rejects() {
        let r = route(&host_at(0.0, 300.0)).unwrap_err();
        assert_eq!(r.status, 429);
        assert!(r.message.contains("hard cap"));
    }

    #[test]
    fn scope_param_and_nothing_usable() {
        let host = host_at(9.0, 0.0).with_param("scope", "acme");
        let d = Cost::route(&host, &Request::user("x").tenant("other")).unwrap();
        assert_eq!(d.labels["budget-tier"], "soft");
        let huge = Request::user("x").prompt_tokens(2_000_000);
        assert_eq!(
            Cost::route(&MockHost::new(), &huge).unwrap_err().status,
            503
        );
        assert_eq!(Cost::info().name, "cost");
    }
}
