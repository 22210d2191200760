//! Decisions over the size caps (the memory-amplification attack: thousands of targets
//! with a big replacement message) are policy failures of kind `over_limit`: the fallback
//! is used, the failure counted, and the process's memory stays within 2× its quiet
//! figure. Alone in its test binary so no other test's memory blurs the figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod policy_support;

use std::sync::Arc;
use std::time::Duration;

use policy_support::{failures, fallback_decision, metrics, request, require_policy, spec};
use switchyard::domain::Verdict;
use switchyard::policy::{
    EngineConfig, FailureKind, HostState, PolicyEngine, QuarantineConfig, StaticHost,
};

/// Resident set of this process (kB), from /proc.
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn huge(targets: usize, message_bytes: usize) -> switchyard::domain::PolicyRequest {
    let (t, m) = (targets.to_string(), message_bytes.to_string());
    request(
        "huge",
        "hi",
        &[
            ("misbehave", "huge"),
            ("targets", &t),
            ("message-bytes", &m),
        ],
    )
}

#[tokio::test]
async fn huge_decisions_are_over_limit_and_memory_stays_bounded() {
    metrics();
    let engine = PolicyEngine::new(EngineConfig {
        // Generous: what is under test is the size cap, not the time the guest takes.
        deadline: Duration::from_secs(2),
        outer_timeout: Duration::from_secs(4),
        max_instances: 8,
        // Every decision here fails on purpose: none may be skipped by a quarantine.
        quarantine: QuarantineConfig {
            failures: 0,
            ..QuarantineConfig::default()
        },
        ..EngineConfig::default()
    })
    .unwrap();
    let policy = engine
        .load(spec("huge-decisions"), &require_policy("misbehave"))
        .unwrap();
    let host: Arc<dyn HostState> = Arc::new(StaticHost::default());

    // The largest legal decision passes: 16 targets and 1 MiB of replacement messages.
    let eval = policy.decide(&huge(16, 1 << 20), host.clone()).await;
    assert!(eval.failure.is_none(), "{:?}", eval.failure);
    let Verdict::Route(decision) = &eval.verdict else {
        panic!("{:?}", eval.verdict)
    };
    assert_eq!(decision.targets.len(), 16);
    drop(eval);
    let quiet = rss_kb();

    let before = failures("huge-decisions", "over_limit");
    let attacks = [(2_000, 100_000, 40), (10_000, 400_000, 10)];
    let mut runs = 0;
    for (targets, bytes, times) in attacks {
        for _ in 0..times {
            let eval = policy.decide(&huge(targets, bytes), host.clone()).await;
            let failure = eval.failure.as_ref().expect("over a cap");
            assert_eq!(failure.kind, FailureKind::OverLimit, "{failure}");
            assert!(failure.message.contains("targets"), "{failure}");
            assert_eq!(eval.verdict, Verdict::Route(fallback_decision()));
            runs += 1;
        }
    }
    // Over the message cap alone, and over the reason and label caps.
    for labels in [
        &[("targets", "2"), ("message-bytes", "2000000")][..],
        &[
            ("targets", "2"),
            ("message-bytes", "0"),
            ("reason-bytes", "5000"),
        ],
        &[
            ("targets", "2"),
            ("message-bytes", "0"),
            ("label-count", "500"),
        ],
    ] {
        let mut all = vec![("misbehave", "huge")];
        all.extend_from_slice(labels);
        let eval = policy
            .decide(&request("huge", "hi", &all), host.clone())
            .await;
        let failure = eval.failure.as_ref().expect("over a cap");
        assert_eq!(
            failure.kind,
            FailureKind::OverLimit,
            "{labels:?}: {failure}"
        );
        runs += 1;
    }
    assert_eq!(failures("huge-decisions", "over_limit"), before + runs);

    let after = rss_kb();
    println!(
        "RSS quiet {} MB, after {runs} over-cap decisions (40 × 2,000 targets × 100 KB, \
         10 × 10,000 × 400 KB, 3 more) {} MB",
        quiet / 1024,
        after / 1024
    );
    assert!(
        after <= quiet * 2,
        "RSS grew from {quiet} kB to {after} kB, over 2× the quiet figure"
    );
}
