//! `privacy`: personal data never leaves private backends.
//!
//! A request whose client label `data-class` names a restricted class, or whose messages
//! hold PII (emails, phones, card numbers, SSNs, IBANs, IP addresses, API keys — the
//! host's detector), goes to local backends only (plus cloud backends the operator
//! trusts by label), healthy ones first; with no healthy local backend able to hold the
//! prompt it is refused with 503, never sent to the cloud. With `mode=redact`, PII is
//! replaced by placeholders (`[EMAIL]`, ...) and the rewritten request may use any
//! backend; restricted data classes stay local. Clear requests pass through: local
//! first, then cloud (or `order=cloud-first`).
//!
//! Reasons: `restricted:<class>`, `pii:<kind>`, `pii-redacted:<kind>`, `clear`.
//! Labels: `privacy` = `local-only` | `redacted` | `clear`, `pii-kinds`.
//! Parameters: see `README.md` and [`rules::Config`].

pub mod rules;

use policy_sdk::{BackendStatus, Decision, Host, Policy, PolicyInfo, Rejection, Request, select};

use rules::{Config, Verdict};

/// The privacy policy.
#[derive(Debug)]
pub struct Privacy;

policy_sdk::export_policy!(Privacy);

impl Policy for Privacy {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "privacy",
            env!("CARGO_PKG_VERSION"),
            "PII and restricted data classes stay on local backends (or are redacted)",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        select::honour_request(host, request, decide(host, request))
    }
}

/// The policy's rules; [`Policy::route`] holds their decision to an explicit model.
fn decide(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
    let cfg = Config::from_host(host);
    let backends = host.backends();
    match rules::assess(host, request, &cfg) {
        Verdict::Private { reason, kinds } => {
            let d = rules::route_private(&backends, request, &cfg, &reason)?
                .label("privacy", "local-only");
            Ok(rules::with_pii_kinds(d, &kinds))
        }
        Verdict::Redacted { messages, kinds } => {
            let reason = format!(
                "pii-redacted:{}",
                kinds.first().map_or("unknown", |k| k.as_str())
            );
            let order = pass_through(host, &backends, request);
            let d = select::decide(&order, &reason)?
                .rewrite(messages)
                .label("privacy", "redacted");
            Ok(rules::with_pii_kinds(d, &kinds))
        }
        Verdict::Clear => {
            let order = pass_through(host, &backends, request);
            Ok(select::decide(&order, "clear")?.label("privacy", "clear"))
        }
    }
}

/// Every backend that can hold the prompt: local then cloud (`order=cloud-first`:
/// cloud then local), healthy first.
fn pass_through<'a>(
    host: &dyn Host,
    backends: &'a [BackendStatus],
    request: &Request,
) -> Vec<&'a BackendStatus> {
    let (local, cloud): (Vec<&BackendStatus>, Vec<&BackendStatus>) =
        backends.iter().partition(|b| b.is_local());
    let order = if host.param_or("order", "local-first") == "cloud-first" {
        [cloud, local].concat()
    } else {
        [local, cloud].concat()
    };
    select::usable(order, request.prompt_tokens)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use policy_sdk::testing::MockHost;
    use policy_sdk::{BackendStatus, Message, PiiKind, PiiMatch};

    /// The case file `policy test` runs through the sandbox, natively on the mock host.
    #[test]
    fn case_file() {
        policy_sdk::cases::assert_cases::<Privacy>(include_str!("../cases.json"));
    }

    fn route(host: &MockHost, request: &Request) -> Result<Decision, Rejection> {
        Privacy::route(host, request)
    }

    #[test]
    fn clear_requests_pass_through_local_first() {
        let d = route(&MockHost::new(), &Request::user("what is 2+2?")).unwrap();
        assert_eq!(d.backends(), ["local", "openai", "anthropic", "gemini"]);
        assert_eq!(d.reason, "clear");
        assert_eq!(d.messages, None);
        let host = MockHost::new().with_param("order", "cloud-first");
        let d = route(&host, &Request::user("hi")).unwrap();
        assert_eq!(d.backends(), ["openai", "anthropic", "gemini", "local"]);
    }

    #[test]
    fn pii_stays_local() {
        let req = Request::user("email bob@example.com about the invoice");
        let d = route(&MockHost::new(), &req).unwrap();
        assert_eq!(d.backends(), ["local"]);
        assert_eq!(d.reason, "pii:email");
        assert_eq!(d.labels["privacy"], "local-only");
        assert_eq!(d.labels["pii-kinds"], "email");
    }

    #[test]
    fn pii_in_any_message_counts() {
        let req = Request::new(vec![
            Message::system("customer card 4111 1111 1111 1111"),
            Message::user("summarize the account"),
        ]);
        let d = route(&MockHost::new(), &req).unwrap();
        assert_eq!(
            (d.backends(), d.reason.as_str()),
            (vec!["local"], "pii:credit-card")
        );
    }

    #[test]
    fn restricted_class_stays_local() {
        for class in ["restricted", "PHI", " confidential "] {
            let req = Request::user("quarterly numbers").with_label("data-class", class);
            let d = route(&MockHost::new(), &req).unwrap();
            assert_eq!(d.backends(), ["local"]);
            assert!(d.reason.starts_with("restricted:"), "{}", d.reason);
        }
        let req = Request::user("quarterly numbers").with_label("data-class", "public");
        assert_eq!(route(&MockHost::new(), &req).unwrap().reason, "clear");
    }

    #[test]
    fn configurable_classes_and_label() {
        let host = MockHost::new()
            .with_param("restricted_classes", "secret")
            .with_param("data_class_label", "sensitivity");
        let req = Request::user("x").with_label("sensitivity", "secret");
        assert_eq!(route(&host, &req).unwrap().reason, "restricted:secret");
        let req = Request::user("x").with_label("data-class", "restricted");
        assert_eq!(route(&host, &req).unwrap().reason, "clear");
    }

    #[test]
    fn no_healthy_local_backend_is_a_503_never_the_cloud() {
        let req = Request::user("call me at (555) 123-4567");
        let host = MockHost::new().unhealthy("local");
        let r = route(&host, &req).unwrap_err();
        assert_eq!(r.status, 503);
        assert!(r.message.contains("pii:phone"));
        let host = MockHost::new().without_backend("local");
        assert_eq!(route(&host, &req).unwrap_err().status, 503);
        // The prompt does not fit the local window.
        let big = Request::user("mail a@b.io").prompt_tokens(9000);
        assert_eq!(route(&MockHost::new(), &big).unwrap_err().status, 503);
    }

    #[test]
    fn unhealthy_local_goes_behind_a_healthy_one() {
        let host = MockHost::new()
            .unhealthy("local")
            .with_backend(BackendStatus::local("edge", "m"));
        let d = route(&host, &Request::user("mail a@b.io")).unwrap();
        assert_eq!(d.backends(), ["edge", "local"]);
    }

    #[test]
    fn trusted_cloud_backends_count_as_private() {
        let host = MockHost::new()
            .update_backend("anthropic", |b| {
                b.labels.insert("hipaa".into(), "true".into());
            })
            .with_param("trusted_label", "hipaa");
        let req = Request::user("x").with_label("data-class", "phi");
        let d = route(&host, &req).unwrap();
        assert_eq!(d.backends(), ["local", "anthropic"]);
    }

    #[test]
    fn redact_mode_rewrites_and_allows_the_cloud() {
        let host = MockHost::new().with_param("mode", "redact");
        let req = Request::new(vec![
            Message::system("You help support agents."),
            Message::user("Reply to jane@corp.example, phone +44 20 7946 0958."),
        ]);
        let d = route(&host, &req).unwrap();
        assert_eq!(d.backends(), ["local", "openai", "anthropic", "gemini"]);
        assert_eq!(d.reason, "pii-redacted:email");
        assert_eq!(d.labels["privacy"], "redacted");
        assert_eq!(d.labels["pii-kinds"], "email,phone");
        let messages = d.messages.unwrap();
        assert_eq!(messages[0], req.messages[0]);
        assert_eq!(messages[1].content, "Reply to [EMAIL], phone [PHONE].");
        // Restricted data stays local even in redact mode.
        let req = Request::user("a@b.io").with_label("data-class", "restricted");
        assert_eq!(route(&host, &req).unwrap().backends(), ["local"]);
    }

    #[test]
    fn bad_spans_from_the_host_keep_the_request_local() {
        fn bogus(_: &str) -> Vec<PiiMatch> {
            vec![PiiMatch {
                kind: PiiKind::Email,
                start: 3,
                end: 999,
            }]
        }
        let host = MockHost::new().with_param("mode", "redact").with_pii(bogus);
        let d = route(&host, &Request::user("héllo")).unwrap();
        assert_eq!(
            (d.backends(), d.reason.as_str()),
            (vec!["local"], "pii:email")
        );
        assert_eq!(rules::redact("héllo", &bogus("")), None);
        let inside_char = [PiiMatch {
            kind: PiiKind::Email,
            start: 2,
            end: 3,
        }];
        assert_eq!(rules::redact("héllo", &inside_char), None);
    }

    #[test]
    fn pii_kinds_param_filters_findings() {
        let host = MockHost::new().with_param("pii_kinds", "email");
        let d = route(&host, &Request::user("server 10.0.0.1 is down")).unwrap();
        assert_eq!(d.reason, "clear");
        assert_eq!(rules::placeholder(PiiKind::CreditCard), "[CREDIT_CARD]");
    }

    #[test]
    fn unknown_mode_warns_and_stays_local() {
        let host = MockHost::new().with_param("mode", "yolo");
        let d = route(&host, &Request::user("a@b.io")).unwrap();
        assert_eq!(d.backends(), ["local"]);
        assert!(host.logged("unknown privacy mode"));
    }

    #[test]
    fn no_backend_at_all_is_a_503() {
        let host = MockHost::new().with_backends(Vec::new());
        assert_eq!(route(&host, &Request::user("hi")).unwrap_err().status, 503);
        assert_eq!(Privacy::info().name, "privacy");
    }
}
