//! `latency`: the fastest healthy backend first.
//!
//! Keeps the backends whose context window holds the prompt plus the completion (the
//! client's `max_tokens`, else `completion_tokens`), orders them by p95 latency (ties:
//! error rate, then in-flight plus queued requests), and puts degraded ones last, in the
//! same order: unhealthy, error rate above `max_error_rate`, or p95 above `max_p95_ms`.
//! None fit → 503.
//!
//! Reason: `latency:p95`. Labels: `p95-ms` (of the first target), `latency-degraded`
//! (`true` when even the first target is degraded). Parameters: see `README.md`.

use policy_sdk::{BackendStatus, Decision, Host, Policy, PolicyInfo, Rejection, Request, select};

/// The latency policy.
#[derive(Debug)]
pub struct Latency;

policy_sdk::export_policy!(Latency);

impl Policy for Latency {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "latency",
            env!("CARGO_PKG_VERSION"),
            "fastest healthy backend first, by p95 latency",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        select::honour_request(host, request, decide(host, request))
    }
}

/// The policy's rules; [`Policy::route`] holds their decision to an explicit model.
fn decide(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
    let max_error_rate = host.param_f64("max_error_rate", 0.5);
    let max_p95_ms = host.param_f64("max_p95_ms", f64::INFINITY);
    let reserve = host.param_u32("completion_tokens", 0);
    let needed = request
        .prompt_tokens
        .saturating_add(request.max_tokens.unwrap_or(reserve));
    let backends = host.backends();
    let degraded = |b: &BackendStatus| {
        !b.healthy || b.error_rate > max_error_rate || b.latency_p95_ms > max_p95_ms
    };
    let (mut good, mut slow): (Vec<&BackendStatus>, Vec<&BackendStatus>) = backends
        .iter()
        .filter(|b| b.fits(needed))
        .partition(|b| !degraded(b));
    good.sort_by(|a, b| select::compare_latency(a, b));
    slow.sort_by(|a, b| select::compare_latency(a, b));
    let first_degraded = good.is_empty();
    let order = [good, slow].concat();
    let Some(first) = order.first() else {
        return Err(Rejection::unavailable(format!(
            "no backend can hold {needed} tokens (prompt plus completion)"
        )));
    };
    let p95 = format!("{:.0}", first.latency_p95_ms);
    let d = select::decide(&order, "latency:p95")?.label("p95-ms", p95);
    Ok(if first_degraded {
        d.label("latency-degraded", "true")
    } else {
        d
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use policy_sdk::testing::MockHost;

    /// The case file `policy test` runs through the sandbox, natively on the mock host.
    #[test]
    fn case_file() {
        policy_sdk::cases::assert_cases::<Latency>(include_str!("../cases.json"));
    }

    fn route(host: &MockHost, request: &Request) -> Result<Decision, Rejection> {
        Latency::route(host, request)
    }

    #[test]
    fn sorted_by_p95() {
        let d = route(&MockHost::new(), &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["gemini", "local", "openai", "anthropic"]);
        assert_eq!(d.reason, "latency:p95");
        assert_eq!(d.labels["p95-ms"], "900");
        assert!(!d.labels.contains_key("latency-degraded"));
    }

    #[test]
    fn ties_break_on_error_rate_then_load() {
        let host = MockHost::new()
            .update_backend("local", |b| b.latency_p95_ms = 900.0)
            .update_backend("gemini", |b| b.error_rate = 0.1)
            .update_backend("openai", |b| {
                b.latency_p95_ms = 900.0;
                b.in_flight = 3;
            });
        let d = route(&host, &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["local", "openai", "gemini", "anthropic"]);
    }

    #[test]
    fn degraded_backends_go_last() {
        let host = MockHost::new()
            .unhealthy("gemini")
            .update_backend("local", |b| b.error_rate = 0.9);
        let d = route(&host, &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["openai", "anthropic", "gemini", "local"]);
        let host = MockHost::new().with_param("max_p95_ms", "1000");
        let d = route(&host, &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["gemini", "local", "openai", "anthropic"]);
        let host = MockHost::new().with_param("max_p95_ms", "100");
        let d = route(&host, &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["gemini", "local", "openai", "anthropic"]);
        assert_eq!(d.labels["latency-degraded"], "true");
    }

    #[test]
    fn the_window_must_hold_prompt_plus_completion() {
        let req = Request::user("hi").prompt_tokens(8000).max_tokens(500);
        let d = route(&MockHost::new(), &req).unwrap();
        assert_eq!(d.backends(), ["gemini", "openai", "anthropic"]);
        let host = MockHost::new().with_param("completion_tokens", "500");
        let d = route(&host, &Request::user("hi").prompt_tokens(8000)).unwrap();
        assert!(!d.backends().contains(&"local"));
        let r = route(
            &MockHost::new(),
            &Request::user("x").prompt_tokens(u32::MAX).max_tokens(9),
        );
        let r = r.unwrap_err();
        assert_eq!((r.status, r.message.contains("no backend")), (503, true));
        assert_eq!(Latency::info().name, "latency");
    }
}
