//! `complexity`: simple tasks to local models, complex ones to the cloud.
//!
//! The request is classified (the decision guide's *complexity-based routing*) by, in
//! order: the client's `task` label; the prompt length (`long_context_tokens` or more is
//! complex); keyword categories over the last user message — complex first: code,
//! reasoning, creative writing; then simple: classification, extraction, format
//! conversion, Q&A with provided context, summaries; else the `default` level.
//! Simple → local backends first, cloud fallbacks cheapest first. Complex → cloud
//! backends (config order, or cheapest first with `complex_order=price`), local last.
//! Backends that cannot hold the prompt are dropped; unhealthy ones go last; none
//! left → 503.
//!
//! Reasons: `simple:<task>` / `complex:<task>`. Labels: `complexity`, `task`,
//! `complexity-source` (`label`, `tokens`, `keyword`, `default`), `keyword`.
//! Parameters: see `README.md` and [`rules::Config`].

pub mod rules;

use policy_sdk::{Decision, Host, Policy, PolicyInfo, Rejection, Request, select};

use rules::Config;

/// The complexity policy.
#[derive(Debug)]
pub struct Complexity;

policy_sdk::export_policy!(Complexity);

impl Policy for Complexity {
    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "complexity",
            env!("CARGO_PKG_VERSION"),
            "simple tasks to local models first, complex ones to the cloud",
        )
    }

    fn route(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
        select::honour_request(host, request, decide(host, request))
    }
}

/// The policy's rules; [`Policy::route`] holds their decision to an explicit model.
fn decide(host: &dyn Host, request: &Request) -> Result<Decision, Rejection> {
    let cfg = Config::from_host(host);
    let class = rules::classify(host, request, &cfg);
    let backends = host.backends();
    let order = select::usable(
        rules::order(&backends, class.level, &cfg),
        request.prompt_tokens,
    );
    Ok(rules::labelled(
        select::decide(&order, &class.to_string())?,
        &class,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use policy_sdk::testing::MockHost;
    use policy_sdk::{BackendStatus, Message};
    use rules::{Level, contains_word, has_keyword, words_of};

    /// The case file `policy test` runs through the sandbox, natively on the mock host.
    #[test]
    fn case_file() {
        policy_sdk::cases::assert_cases::<Complexity>(include_str!("../cases.json"));
    }

    fn route(host: &MockHost, text: &str) -> Decision {
        Complexity::route(host, &Request::user(text)).unwrap()
    }

    #[test]
    fn simple_tasks_go_local_first_with_cheap_cloud_fallbacks() {
        let host = MockHost::new();
        for (text, task) in [
            (
                "Classify the sentiment: I love this product",
                "classification",
            ),
            (
                "Extract the dates from: met on May 3 and June 9",
                "extraction",
            ),
            ("Convert this list to JSON: a, b, c", "conversion"),
            ("Based on the text above, who signed the lease?", "qa"),
            ("Summarize this paragraph in one line.", "summary"),
        ] {
            let d = route(&host, text);
            assert_eq!(
                d.backends(),
                ["local", "gemini", "openai", "anthropic"],
                "{text}"
            );
            assert_eq!(d.reason, format!("simple:{task}"));
            assert_eq!(d.labels["complexity-source"], "keyword");
        }
    }

    #[test]
    fn complex_tasks_go_to_the_cloud_with_local_last() {
        let host = MockHost::new();
        for (text, task) in [
            ("Implement a lock-free queue in Rust", "code"),
            (
                "Why does the moon cause tides? Think step by step.",
                "reasoning",
            ),
            ("Write a short story about a lighthouse keeper", "creative"),
            ("Tell me about the history of Byzantium", "general"),
        ] {
            let d = route(&host, text);
            assert_eq!(
                d.backends(),
                ["openai", "anthropic", "gemini", "local"],
                "{text}"
            );
            assert_eq!(d.reason, format!("complex:{task}"));
        }
    }

    #[test]
    fn complex_wins_over_simple_when_both_match() {
        let d = route(&MockHost::new(), "Classify these and explain why each fits");
        assert_eq!(d.reason, "complex:reasoning");
        assert_eq!(d.labels["keyword"], "why");
    }

    #[test]
    fn long_prompts_are_complex_and_skip_a_small_local_window() {
        let req = Request::user("Classify this").prompt_tokens(9000);
        let d = Complexity::route(&MockHost::new(), &req).unwrap();
        assert_eq!(d.reason, "complex:long-context");
        assert_eq!(d.backends(), ["openai", "anthropic", "gemini"]);
        let host = MockHost::new().with_param("long_context_tokens", "100");
        let req = Request::user("Classify this").prompt_tokens(150);
        let d = Complexity::route(&host, &req).unwrap();
        assert_eq!(
            (d.reason.as_str(), d.backends()[3]),
            ("complex:long-context", "local")
        );
    }

    #[test]
    fn the_task_label_overrides() {
        let host = MockHost::new();
        let req = Request::user("Write a poem").with_label("task", "Classification");
        let d = Complexity::route(&host, &req).unwrap();
        assert_eq!(
            (d.reason.as_str(), d.labels["complexity-source"].as_str()),
            ("simple:classification", "label")
        );
        let req = Request::user("hi").with_label("task", "complex");
        assert_eq!(
            Complexity::route(&host, &req).unwrap().reason,
            "complex:client"
        );
        let req = Request::user("classify it").with_label("task", "mystery");
        assert_eq!(
            Complexity::route(&host, &req).unwrap().reason,
            "simple:classification"
        );
        assert!(host.logged("unknown task label"));
    }

    #[test]
    fn only_the_last_user_message_is_classified() {
        let req = Request::new(vec![
            Message::system("You are a coding assistant. Implement things."),
            Message::user("refactor my code"),
            Message::assistant("sure"),
            Message::user("actually, just translate this to German"),
        ]);
        let d = Complexity::route(&MockHost::new(), &req).unwrap();
        assert_eq!(d.reason, "simple:conversion");
    }

    #[test]
    fn params_change_keywords_default_and_order() {
        let host = MockHost::new()
            .with_param("classification_keywords", "triage")
            .with_param("default", "simple")
            .with_param("complex_order", "price");
        assert_eq!(
            route(&host, "triage this ticket").reason,
            "simple:classification"
        );
        assert_eq!(
            route(&host, "classify this ticket").reason,
            "simple:general"
        );
        let d = route(&host, "prove it");
        assert_eq!(d.backends(), ["gemini", "openai", "anthropic", "local"]);
        let host = MockHost::new()
            .with_param("cloud_backends", "anthropic,nope")
            .with_param("fallback_local", "false");
        assert_eq!(route(&host, "prove it").backends(), ["anthropic"]);
        let host = MockHost::new().with_param("fallback_cloud", "no");
        assert_eq!(route(&host, "classify it").backends(), ["local"]);
    }

    #[test]
    fn unhealthy_backends_go_last_and_nothing_usable_is_a_503() {
        let host = MockHost::new().unhealthy("local");
        assert_eq!(
            route(&host, "classify it").backends(),
            ["gemini", "openai", "anthropic", "local"]
        );
        let host = MockHost::new().with_backends(vec![BackendStatus::local("l", "m")]);
        let req = Request::user("x").prompt_tokens(10_000);
        let r = Complexity::route(&host, &req).unwrap_err();
        assert_eq!((r.status, r.message.contains("no backend")), (503, true));
    }

    #[test]
    fn word_matching() {
        assert!(contains_word("make a plan.", "plan"));
        assert!(!contains_word("the planet", "plan"));
        assert!(contains_word("see ```rust", "```"));
        assert!(contains_word("résumé code", "code"));
        assert!(!contains_word("anything", ""));
        assert_eq!(Level::Simple.as_str(), "simple");
        assert_eq!(Complexity::info().name, "complexity");
    }

    #[test]
    fn word_lookup_agrees_with_scanning() {
        let texts = [
            "make a plan. the planet's plan-b, code2 résumé",
            "step by step: debug the sql (c++) ```rust``` tl;dr",
            "",
            "plan",
        ];
        let keywords = [
            "plan",
            "planet",
            "b",
            "code",
            "code2",
            "résumé",
            "step by step",
            "c++",
            "```",
            "sql",
            "tl;dr",
            "",
            "rust",
            "debug",
            "s",
        ];
        for text in texts {
            let words = words_of(text);
            for k in keywords {
                assert_eq!(
                    has_keyword(text, &words, k),
                    contains_word(text, k),
                    "{k:?} in {text:?}"
                );
            }
        }
    }
}
