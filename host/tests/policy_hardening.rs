//! Hostile policies against the host's own limits (issue 15): a guest looping in a host
//! call that scales with its input is cut at the decision's deadline while other
//! policies keep deciding; a policy that keeps failing is quarantined and recovers after
//! the period; WASI gives guests fixed clocks and a random source that follows the
//! request id. Uses the `policies/testing/misbehave` guest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod policy_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use policy_support::{
    failures, fallback_decision, metrics, misbehave, request, require_policy, spec,
};
use switchyard::domain::Verdict;
use switchyard::policy::{
    EngineConfig, Evaluation, FailureKind, HostState, LoadedPolicy, PolicyEngine, QuarantineConfig,
    StaticHost,
};

const DEADLINE: Duration = Duration::from_millis(20);
/// Scheduling slack on a loaded 2-core machine (as in `policy_safety.rs`).
const SLACK: Duration = Duration::from_millis(10);

fn config() -> EngineConfig {
    EngineConfig {
        deadline: DEADLINE,
        outer_timeout: Duration::from_secs(2),
        max_instances: 16,
        ..EngineConfig::default()
    }
}

fn host() -> Arc<dyn HostState> {
    Arc::new(StaticHost::default())
}

fn load(engine: &PolicyEngine, name: &str) -> LoadedPolicy {
    engine
        .load(spec(name), &require_policy("misbehave"))
        .expect("misbehave.wasm loads")
}

fn reason(eval: &Evaluation) -> String {
    match &eval.verdict {
        Verdict::Route(d) => d.reason.clone(),
        Verdict::Reject(r) => format!("reject {}", r.status),
    }
}

fn kind(eval: &Evaluation) -> Option<FailureKind> {
    eval.failure.as_ref().map(|f| f.kind)
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

fn pii_loop(bytes: usize) -> switchyard::domain::PolicyRequest {
    let bytes = bytes.to_string();
    request(
        "pii-loop",
        "hi",
        &[("misbehave", "pii-loop"), ("flood-bytes", &bytes)],
    )
}

#[tokio::test]
async fn a_guest_looping_in_pii_detect_is_cut_at_its_deadline() {
    metrics();
    let engine = PolicyEngine::new(EngineConfig {
        quarantine: QuarantineConfig {
            failures: 0,
            ..QuarantineConfig::default()
        },
        ..config()
    })
    .unwrap();
    let policy = load(&engine, "pii-loop");
    let before = failures("pii-loop", "deadline");
    // 4 MB per call (the attack): more than the deadline's budget, refused at once.
    // 256 KB per call: let through while the time left covers it, then refused.
    for bytes in [4_000_000, 256 << 10] {
        let started = Instant::now();
        let eval = policy.decide(&pii_loop(bytes), host()).await;
        let took = started.elapsed();
        let failure = eval.failure.as_ref().expect("cut");
        assert_eq!(failure.kind, FailureKind::Deadline, "{failure}");
        assert_eq!(eval.verdict, Verdict::Route(fallback_decision()));
        println!(
            "pii.detect loop on {bytes} bytes: decision ended after {took:?} (deadline {DEADLINE:?})"
        );
        if bytes == 4_000_000 {
            assert!(failure.message.contains("pii.detect"), "{failure}");
            assert!(took < DEADLINE + SLACK, "took {took:?}");
        }
    }
    assert_eq!(failures("pii-loop", "deadline"), before + 2);
    assert_eq!(
        reason(&policy.decide(&misbehave("normal"), host()).await),
        "normal"
    );
}

/// Neighbour decision p99 quiet and while `attacker` loops in `pii.detect` (4 MB) on
/// another task, until it made `attacks` decisions; every neighbour decision must succeed.
async fn neighbour_p99(
    attacker: &LoadedPolicy,
    neighbour: &LoadedPolicy,
    attacks: u32,
) -> (Duration, Duration) {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let normal = misbehave("normal");
    let mut quiet = Vec::new();
    for _ in 0..300 {
        let eval = neighbour.decide(&normal, host()).await;
        assert_eq!(kind(&eval), None);
        quiet.push(eval.elapsed);
    }
    let (stop, made) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let attack = {
        let (attacker, stop, made) = (attacker.clone(), stop.clone(), made.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let eval = attacker.decide(&pii_loop(4_000_000), host()).await;
                assert!(eval.failure.is_some());
                made.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut attacked = Vec::new();
    while attacked.len() < 300 || made.load(Ordering::Relaxed) < attacks {
        let eval = neighbour.decide(&normal, host()).await;
        assert_eq!(kind(&eval), None, "{:?}", eval.failure);
        assert_eq!(reason(&eval), "normal");
        attacked.push(eval.elapsed);
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    attack.await.unwrap();
    (p99(quiet), p99(attacked))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbours_keep_deciding_while_one_policy_loops_in_host_calls() {
    for failures in [0, QuarantineConfig::default().failures] {
        let engine = PolicyEngine::new(EngineConfig {
            quarantine: QuarantineConfig {
                failures,
                ..QuarantineConfig::default()
            },
            ..config()
        })
        .unwrap();
        let attacker = load(&engine, &format!("pii-attacker-{failures}"));
        let neighbour = load(&engine, &format!("pii-neighbour-{failures}"));
        let (quiet, attacked) = neighbour_p99(&attacker, &neighbour, 60).await;
        println!(
            "neighbour decision p99 (quarantine after {failures} failures, 0 = off): quiet \
             {quiet:?}, during 60+ pii.detect-loop decisions {attacked:?}; attacker \
             quarantined: {}",
            attacker.quarantined()
        );
        assert_eq!(attacker.quarantined(), failures > 0);
    }
}

fn quarantining(failures: u32, period: Duration) -> EngineConfig {
    EngineConfig {
        quarantine: QuarantineConfig {
            failures,
            window: Duration::from_secs(60),
            period,
        },
        ..config()
    }
}

#[tokio::test]
async fn a_policy_that_keeps_failing_is_quarantined_then_probed_back() {
    metrics();
    let period = Duration::from_millis(300);
    let policy = load(
        &PolicyEngine::new(quarantining(3, period)).unwrap(),
        "quarantine",
    );

    // A single failure among successes never quarantines.
    assert_eq!(
        kind(&policy.decide(&misbehave("trap"), host()).await),
        Some(FailureKind::Trap)
    );
    for _ in 0..3 {
        assert_eq!(
            reason(&policy.decide(&misbehave("normal"), host()).await),
            "normal"
        );
    }
    assert!(!policy.quarantined());

    // A run of failures does, once they are at least 3 and outnumber the successes.
    for _ in 0..3 {
        assert!(!policy.quarantined());
        assert_eq!(
            kind(&policy.decide(&misbehave("trap"), host()).await),
            Some(FailureKind::Trap)
        );
    }
    assert!(policy.quarantined());
    let rendered = switchyard::metrics::render().unwrap();
    assert!(
        rendered.contains("switchyard_policy_quarantined{policy=\"quarantine\"} 1"),
        "{rendered}"
    );
    let before = failures("quarantine", "quarantined");
    // Quarantined: the fallback without running the guest, even for a good request.
    let eval = policy.decide(&misbehave("normal"), host()).await;
    assert_eq!(kind(&eval), Some(FailureKind::Quarantined));
    assert_eq!(eval.verdict, Verdict::Route(fallback_decision()));
    let eval = policy.decide_blocking(&misbehave("loop"), host());
    assert_eq!(
        kind(&eval),
        Some(FailureKind::Quarantined),
        "the loop never ran"
    );
    assert!(eval.elapsed < DEADLINE, "{:?}", eval.elapsed);
    assert_eq!(failures("quarantine", "quarantined"), before + 2);

    // After the period one probe runs; a failing probe starts another period.
    tokio::time::sleep(period + Duration::from_millis(50)).await;
    assert_eq!(
        kind(&policy.decide(&misbehave("trap"), host()).await),
        Some(FailureKind::Trap)
    );
    assert_eq!(
        kind(&policy.decide(&misbehave("normal"), host()).await),
        Some(FailureKind::Quarantined)
    );
    // A good probe releases it.
    tokio::time::sleep(period + Duration::from_millis(50)).await;
    assert_eq!(
        reason(&policy.decide(&misbehave("normal"), host()).await),
        "normal"
    );
    assert!(!policy.quarantined());
    assert_eq!(
        reason(&policy.decide(&misbehave("normal"), host()).await),
        "normal"
    );
    let rendered = switchyard::metrics::render().unwrap();
    assert!(
        rendered.contains("switchyard_policy_quarantined{policy=\"quarantine\"} 0"),
        "{rendered}"
    );
}

#[test]
fn quarantine_is_off_with_zero_failures() {
    let policy = load(
        &PolicyEngine::new(quarantining(0, Duration::from_secs(60))).unwrap(),
        "no-quarantine",
    );
    for _ in 0..30 {
        let eval = policy.decide_blocking(&misbehave("trap"), host());
        assert_eq!(kind(&eval), Some(FailureKind::Trap));
    }
    assert!(!policy.quarantined());
}

/// `wall_ms=W mono_ns=M random=R` from the guest's `wasi` mode, for request `id`.
fn wasi_reason(policy: &LoadedPolicy, id: &str) -> String {
    let eval = policy.decide_blocking(&request(id, "hi", &[("misbehave", "wasi")]), host());
    assert_eq!(kind(&eval), None, "{:?}", eval.failure);
    reason(&eval)
}

#[test]
fn wasi_clocks_stand_still_and_random_follows_the_request_id() {
    let engine = PolicyEngine::new(config()).unwrap();
    let fresh = load(&engine, "wasi");
    let first = wasi_reason(&fresh, "req-a");
    assert!(first.starts_with("wall_ms=0 mono_ns=0 random="), "{first}");
    assert_eq!(wasi_reason(&fresh, "req-a"), first, "same id, same random");
    let other = wasi_reason(&fresh, "req-b");
    assert_ne!(other, first, "another id, another random");
    assert!(other.starts_with("wall_ms=0 mono_ns=0 random="), "{other}");

    // A reused instance is reseeded for each request: the same answers.
    let warm = PolicyEngine::new(EngineConfig {
        warm_instances: 1,
        ..config()
    })
    .unwrap();
    let warm = load(&warm, "wasi-warm");
    for _ in 0..2 {
        assert_eq!(wasi_reason(&warm, "req-a"), first);
        assert_eq!(wasi_reason(&warm, "req-b"), other);
    }
    assert_eq!(warm.warm_instances(), 1);
}
