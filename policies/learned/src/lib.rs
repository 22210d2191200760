//! `learned`: a router trained on labelled traffic decides which prompts the local model
//! would get wrong and sends only those to the cloud (the decision guide's
//! complexity-based routing, learned instead of keyword lists).
//!
//! The host scores the last user message with the classifier it loaded as `classifier`
//! (`switchyard train router` writes one; `[classifiers]` in the host config loads it). A
//! router's score is the prompt's rank among the prompts it was trained on (0.0..=1.0), so
//! `strong_share` is the share of traffic, like the training traffic, that goes to the
//! cloud: a prompt ranked at or above `1 - strong_share` goes cloud first (cheapest first,
//! local last), the rest local first (cloud fallbacks cheapest first). When the host
//! cannot score (no classifier loaded), requests go local first and the reason says so.
//! Backends that cannot hold the prompt are dropped; unhealthy ones go last.
//!
//! Reasons: `strong:learned`, `weak:learned`, `weak:unscored`. Labels: `router-score`,
//! `strong-share`. Parameters: `classifier` (default `router`), `strong_share` (default
//! 0.5, clamped to 0..=1), `local_backends` / `cloud_backends` (names; default by kind).

use policy_sdk::{
    BackendStatus, Decision, Host, LogLevel, Policy, PolicyInfo, Rejection, Request, select,
};

/// The learned-router policy.
#[derive(Debug)]
pub struct Learned;

policy_sdk::export_policy!(Learned);

/// Share of traffic sent to the cloud when `strong_share` is unset.
const DEFAULT_STRONG_SHARE: f64 = 0.5;

impl Policy for Learned {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "learned",
            env!("CARGO_PKG_VERSION"),
            "a trained router sends the prompts the local model would get wrong to the cloud",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        select::honour_request(host, request, decide(host, request))
    }
}

/// Where the router sends a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Cloud first: the local model would likely get it wrong.
    Strong(f64),
    /// Local first.
    Weak(f64),
    /// The host could not score it: local first.
    Unscored,
}

fn decide(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
    let share = host
        .param_f64("strong_share", DEFAULT_STRONG_SHARE)
        .clamp(0.0, 1.0);
    let verdict = verdict(host, request, share);
    let backends = host.backends();
    let local = named_or(host, &backends, "local_backends", BackendStatus::is_local);
    let mut cloud = named_or(host, &backends, "cloud_backends", BackendStatus::is_cloud);
    select::sort_by_price(&mut cloud);
    let (order, reason) = match verdict {
        Verdict::Strong(_) => ([cloud, local].concat(), "strong:learned"),
        Verdict::Weak(_) => ([local, cloud].concat(), "weak:learned"),
        Verdict::Unscored => ([local, cloud].concat(), "weak:unscored"),
    };
    let decision = select::decide(&select::usable(order, request.prompt_tokens), reason)?
        .label("strong-share", format!("{share}"));
    Ok(match verdict {
        Verdict::Strong(score) | Verdict::Weak(score) => {
            decision.label("router-score", format!("{score:.4}"))
        }
        Verdict::Unscored => decision,
    })
}

fn verdict(host: &dyn Host, request: &Request, share: f64) -> Verdict {
    let classifier = host.param_or("classifier", "router");
    match host.score(&classifier, request.last_user_text()) {
        Ok(score) if score.is_finite() => {
            if share > 0.0 && score >= 1.0 - share {
                Verdict::Strong(score)
            } else {
                Verdict::Weak(score)
            }
        }
        Ok(_) => Verdict::Unscored,
        Err(error) => {
            host.log(
                LogLevel::Warn,
                "router classifier unavailable; routing local first",
                &[("classifier", &classifier), ("error", &error)],
            );
            Verdict::Unscored
        }
    }
}

/// The backends named by parameter `key`, else those `of_kind` in config order.
fn named_or<'a>(
    host: &dyn Host,
    backends: &'a [BackendStatus],
    key: &str,
    of_kind: fn(&BackendStatus) -> bool,
) -> Vec<&'a BackendStatus> {
    match host.param_list(key) {
        Some(names) => select::named(backends, &names),
        None => backends.iter().filter(|b| of_kind(b)).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use policy_sdk::testing::MockHost;

    /// The case file `policy test` runs through the sandbox, natively on the mock host.
    #[test]
    fn case_file() {
        policy_sdk::cases::assert_cases::<Learned>(include_str!("../cases.json"));
    }

    /// A fake router: prompts that mention "prove" rank high, the rest low.
    fn router(classifier: &str, text: &str) -> Result<f64, String> {
        match classifier {
            "router" if text.contains("prove") => Ok(0.9),
            "router" => Ok(0.2),
            other => Err(format!("no classifier {other}")),
        }
    }

    fn route(host: &MockHost, text: &str) -> Decision {
        Learned::route(host, &Request::user(text)).unwrap()
    }

    #[test]
    fn high_ranked_prompts_go_to_the_cheapest_cloud_first() {
        let host = MockHost::new().with_score(router);
        let d = route(&host, "prove that there are infinitely many primes");
        assert_eq!(d.reason, "strong:learned");
        assert_eq!(d.backends(), ["gemini", "openai", "anthropic", "local"]);
        assert_eq!(d.labels.get("router-score").unwrap(), "0.9000");
        assert_eq!(d.labels.get("strong-share").unwrap(), "0.5");
    }

    #[test]
    fn low_ranked_prompts_go_local_first() {
        let host = MockHost::new().with_score(router);
        let d = route(&host, "what is the capital of France?");
        assert_eq!(d.reason, "weak:learned");
        assert_eq!(d.backends(), ["local", "gemini", "openai", "anthropic"]);
    }

    #[test]
    fn strong_share_moves_the_cut() {
        let all = MockHost::new()
            .with_score(router)
            .with_param("strong_share", "0.85");
        assert_eq!(route(&all, "capital of France?").reason, "strong:learned");
        let none = MockHost::new()
            .with_score(router)
            .with_param("strong_share", "0");
        assert_eq!(route(&none, "prove it").reason, "weak:learned");
        let clamped = MockHost::new()
            .with_score(router)
            .with_param("strong_share", "7");
        assert_eq!(route(&clamped, "hello").reason, "strong:learned");
    }

    #[test]
    fn without_a_classifier_requests_go_local_first() {
        let host = MockHost::new();
        let d = route(&host, "prove it");
        assert_eq!(d.reason, "weak:unscored");
        assert_eq!(d.backends()[0], "local");
        assert!(!d.labels.contains_key("router-score"));
        let other = MockHost::new()
            .with_score(router)
            .with_param("classifier", "missing");
        assert_eq!(route(&other, "prove it").reason, "weak:unscored");
    }

    #[test]
    fn named_backends_replace_the_kinds() {
        let host = MockHost::new()
            .with_score(router)
            .with_param("cloud_backends", "anthropic")
            .with_param("local_backends", "local");
        assert_eq!(route(&host, "prove it").backends(), ["anthropic", "local"]);
    }
}
