//! `hybrid`: the gateway's default policy — privacy, then budget, then complexity.
//!
//! 1. **privacy** (as the `privacy` policy): a restricted data class or PII keeps the
//!    request on local backends (503 when no healthy one fits); with `mode=redact` PII is
//!    masked and the rewritten request goes on to the next stages.
//! 2. **budget** (as the `cost` policy): at the monthly hard cap → 429; at or past 100 %
//!    of a budget → local only (429 when no healthy local backend); past the soft
//!    threshold the complexity stage orders cloud backends cheapest first and completions
//!    are capped.
//! 3. **complexity** (as the `complexity` policy): simple tasks local first with cloud
//!    fallbacks, complex ones to the cloud with local last.
//!
//! Backends that cannot hold the prompt are dropped, unhealthy ones go last, and an empty
//! list is a 503. The reason names the deciding stage: `privacy:pii:email`,
//! `privacy:restricted:phi`, `budget:exhausted:104pct`, `complexity:simple:qa`
//! (`+budget:soft:85pct` when a soft budget shaped the order). Labels: `stage`, plus
//! each stage's own labels. `stages` (default `privacy,budget,complexity`) turns stages
//! off; every other parameter is the stage policies' own (see `README.md`).
//!
//! The stages are the other policies' rule modules compiled in by path, not crate
//! dependencies: `policies/build.sh` builds every policy in one cargo invocation, where
//! feature unification would link the other crates' `router` exports into this one.

#[path = "../../complexity/src/rules.rs"]
pub mod complexity;
#[path = "../../cost/src/rules.rs"]
pub mod cost;
#[path = "../../privacy/src/rules.rs"]
pub mod privacy;

use policy_sdk::{
    BackendStatus, Decision, Host, Message, PiiKind, Policy, PolicyInfo, Rejection, Request, select,
};

/// The hybrid policy.
#[derive(Debug)]
pub struct Hybrid;

policy_sdk::export_policy!(Hybrid);

impl Policy for Hybrid {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "hybrid",
            env!("CARGO_PKG_VERSION"),
            "privacy first, then budget, then complexity",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        select::honour_request(host, request, decide(host, request))
    }
}

/// The policy's rules; [`Policy::route`] holds their decision to an explicit model.
fn decide(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
    // Unset: every stage (the three `on` is asked about).
    let stages = host.param_list("stages");
    let on = |stage: &str| stages.as_ref().is_none_or(|l| l.iter().any(|s| s == stage));
    let backends = host.backends();

    // 1. Privacy.
    let mut redacted: Option<(Vec<Message>, Vec<PiiKind>)> = None;
    if on("privacy") {
        let cfg = privacy::Config::from_host(host);
        match privacy::assess(host, request, &cfg) {
            privacy::Verdict::Private { reason, kinds } => {
                let reason = format!("privacy:{reason}");
                let d = privacy::route_private(&backends, request, &cfg, &reason)?
                    .label("stage", "privacy")
                    .label("privacy", "local-only");
                return Ok(privacy::with_pii_kinds(d, &kinds));
            }
            privacy::Verdict::Redacted { messages, kinds } => {
                redacted = Some((messages, kinds));
            }
            privacy::Verdict::Clear => {}
        }
    }

    // 2. Budget.
    let budget = if on("budget") {
        let cfg = cost::Config::from_host(host);
        let budget = cost::assess(host, request, &cfg)?;
        if budget.tier == cost::Tier::Exhausted {
            let order = select::usable(
                cost::order(&backends, request, &budget, &cfg),
                request.prompt_tokens,
            );
            if !order.iter().any(|b| b.healthy) {
                return Err(cost::exhausted(&budget));
            }
            let d = select::decide(&order, &budget.reason())?.label("stage", "budget");
            return Ok(finish(cost::labelled(d, &budget), redacted));
        }
        Some((budget, cfg))
    } else {
        None
    };
    let soft = budget.as_ref().filter(|(b, _)| b.tier == cost::Tier::Soft);

    // 3. Complexity (or, with the stage off, every backend local first).
    let mut cfg = complexity::Config::from_host(host);
    if soft.is_some() {
        cfg.complex_order = complexity::CloudOrder::Price;
    }
    // Cloud backends this request would push over budget are out of the running.
    let backends: Vec<BackendStatus> = match &budget {
        Some((b, cost_cfg)) => backends
            .into_iter()
            .filter(|x| x.is_local() || cost::affordable(x, request, &b.spend, cost_cfg))
            .collect(),
        None => backends,
    };
    let mut d = if on("complexity") {
        let class = complexity::classify(host, request, &cfg);
        let order = usable(complexity::order(&backends, class.level, &cfg), request);
        let d = select::decide(&order, &format!("complexity:{class}"))?;
        complexity::labelled(d, &class).label("stage", "complexity")
    } else {
        let order = usable(
            complexity::order(&backends, complexity::Level::Simple, &cfg),
            request,
        );
        select::decide(&order, "default")?.label("stage", "default")
    };
    if let Some((b, cost_cfg)) = soft {
        d.reason = format!("{}+{}", d.reason, b.reason());
        if cost_cfg.soft_max_tokens > 0 {
            d = d.cap_tokens(cost_cfg.soft_max_tokens);
        }
    }
    if let Some((b, _)) = &budget {
        d = cost::labelled(d, b);
    }
    Ok(finish(d, redacted))
}

fn usable<'a>(order: Vec<&'a BackendStatus>, request: &Request) -> Vec<&'a BackendStatus> {
    select::usable(order, request.prompt_tokens)
}

/// Attaches the privacy outcome of a request that was not kept local.
fn finish(d: Decision, redacted: Option<(Vec<Message>, Vec<PiiKind>)>) -> Decision {
    match redacted {
        Some((messages, kinds)) => {
            privacy::with_pii_kinds(d.rewrite(messages).label("privacy", "redacted"), &kinds)
        }
        None => d.label("privacy", "clear"),
    }
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
        policy_sdk::cases::assert_cases::<Hybrid>(include_str!("../cases.json"));
    }

    fn route(host: &MockHost, request: &Request) -> Result<Decision, Rejection> {
        Hybrid::route(host, request)
    }

    fn soft_host() -> MockHost {
        MockHost::new().with_spend(SpendStatus::new("acme").spent(9.0, 0.0).daily_budget(10.0))
    }

    #[test]
    fn an_explicit_model_is_answered_by_the_backend_serving_it() {
        let host = MockHost::new();
        let model = host
            .backends()
            .into_iter()
            .find(|b| b.name == "anthropic")
            .and_then(|b| b.models.first().cloned())
            .unwrap();
        // A simple task would go local first; the client named anthropic's model.
        let mut req = Request::user("Classify the sentiment: I love this product");
        req.model = model.clone();
        let d = route(&host, &req).unwrap();
        assert_eq!(d.backends(), ["anthropic"]);
        assert_eq!(d.targets[0].model.as_deref(), Some(model.as_str()));
        // PII keeps it local: a clear refusal instead of another model's answer.
        let mut req = Request::user("email bob@example.com the plan");
        req.model = model;
        assert_eq!(route(&host, &req).unwrap_err().status, 403);
    }

    #[test]
    fn privacy_decides_first() {
        let req = Request::user("Implement a parser for bob@example.com's logs");
        let d = route(&MockHost::new(), &req).unwrap();
        assert_eq!(d.backends(), ["local"]);
        assert_eq!(d.reason, "privacy:pii:email");
        assert_eq!(
            (d.labels["stage"].as_str(), d.labels["pii-kinds"].as_str()),
            ("privacy", "email")
        );
        // Even a tenant past its budget: privacy decides (local is free anyway).
        let host = MockHost::new()
            .with_spend(SpendStatus::new("acme").spent(20.0, 0.0).daily_budget(10.0));
        let req = Request::user("x")
            .tenant("acme")
            .with_label("data-class", "phi");
        assert_eq!(route(&host, &req).unwrap().reason, "privacy:restricted:phi");
        let down = MockHost::new().unhealthy("local");
        assert_eq!(
            route(&down, &Request::user("ssn 123-45-6789"))
                .unwrap_err()
                .status,
            503
        );
    }

    #[test]
    fn budget_decides_second() {
        let host = MockHost::new().with_spend(
            SpendStatus::new("acme")
                .spent(10.4, 0.0)
                .daily_budget(10.0)
                .hard_cap(500.0),
        );
        let req = Request::user("Prove Fermat's little theorem").tenant("acme");
        let d = route(&host, &req).unwrap();
        assert_eq!(d.backends(), ["local"]);
        assert_eq!(d.reason, "budget:exhausted:104pct");
        assert_eq!(d.labels["stage"], "budget");
        assert_eq!(d.labels["privacy"], "clear");
        let r = route(&host.unhealthy("local"), &req).unwrap_err();
        assert_eq!(r.status, 429);
        let capped =
            MockHost::new().with_spend(SpendStatus::new("acme").spent(0.0, 500.0).hard_cap(500.0));
        assert_eq!(route(&capped, &req).unwrap_err().status, 429);
    }

    #[test]
    fn complexity_decides_last() {
        let host = MockHost::new();
        let d = route(&host, &Request::user("Classify the sentiment: great!")).unwrap();
        assert_eq!(d.backends(), ["local", "gemini", "openai", "anthropic"]);
        assert_eq!(d.reason, "complexity:simple:classification");
        assert_eq!(d.labels["stage"], "complexity");
        assert_eq!(d.labels["budget-tier"], "none");
        let d = route(
            &host,
            &Request::user("Write a function that merges two maps"),
        )
        .unwrap();
        assert_eq!(d.backends(), ["openai", "anthropic", "gemini", "local"]);
        assert_eq!(d.reason, "complexity:complex:code");
        assert_eq!(d.max_tokens, None);
    }

    #[test]
    fn a_soft_budget_makes_complex_requests_cheaper() {
        let req = Request::user("Write a function that merges two maps").tenant("acme");
        let d = route(&soft_host(), &req).unwrap();
        assert_eq!(d.backends(), ["gemini", "openai", "anthropic", "local"]);
        assert_eq!(d.reason, "complexity:complex:code+budget:soft:90pct");
        assert_eq!(d.max_tokens, Some(512));
        assert_eq!(d.labels["budget-tier"], "soft");
    }

    #[test]
    fn redacted_requests_go_through_the_other_stages() {
        let host = soft_host().with_param("mode", "redact");
        let req = Request::user("Classify this complaint from ann@corp.example").tenant("acme");
        let d = route(&host, &req).unwrap();
        assert_eq!(d.backends()[0], "local");
        assert_eq!(d.labels["privacy"], "redacted");
        assert_eq!(d.labels["pii-kinds"], "email");
        let text = &d.messages.unwrap()[0].content;
        assert_eq!(text, "Classify this complaint from [EMAIL]");
        let host = MockHost::new().with_param("mode", "redact");
        let req = Request::user("Implement retry logic; page ops at +1 415 555 0100 on failure");
        let d = route(&host, &req).unwrap();
        assert_eq!(d.reason, "complexity:complex:code");
        assert_eq!(
            d.messages.unwrap()[0].content,
            "Implement retry logic; page ops at [PHONE] on failure"
        );
    }

    #[test]
    fn stages_can_be_turned_off() {
        let host = MockHost::new().with_param("stages", "complexity");
        let d = route(&host, &Request::user("mail bob@example.com: prove it")).unwrap();
        assert_eq!(d.reason, "complexity:complex:reasoning");
        assert!(!d.labels.contains_key("budget-tier"));
        let host = MockHost::new().with_param("stages", "");
        let d = route(&host, &Request::user("prove it")).unwrap();
        assert_eq!((d.reason.as_str(), d.backends()[0]), ("default", "local"));
    }

    #[test]
    fn never_an_empty_or_unknown_target_list() {
        let host = MockHost::new().with_backends(Vec::new());
        assert_eq!(route(&host, &Request::user("hi")).unwrap_err().status, 503);
        let huge = Request::user("hi").prompt_tokens(u32::MAX);
        assert_eq!(route(&MockHost::new(), &huge).unwrap_err().status, 503);
        let host = MockHost::new().with_param("cloud_backends", "ghost");
        let d = route(&host, &Request::user("prove it")).unwrap();
        assert_eq!(d.backends(), ["local"]);
        assert_eq!(Hybrid::info().name, "hybrid");
    }
}
