//! The sandbox against a hostile guest (`policies/testing/misbehave`): an infinite loop is
//! stopped by the epoch deadline, unbounded allocation by the memory cap, a panic is a
//! trap, bad outputs are refused, flooding the host imports runs out of hostcall fuel.
//! Every one yields the spec's fallback decision with the failure recorded (and counted in
//! `switchyard_policy_failures_total`), and the next request is served normally.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod policy_support;

use std::sync::Arc;
use std::time::Duration;

use policy_support::{failures, fallback_decision, metrics, misbehave, require_policy, spec};
use switchyard::domain::Verdict;
use switchyard::policy::{
    EngineConfig, Evaluation, FailureKind, HostState, LoadedPolicy, PolicyEngine, StaticHost,
};

/// Guest-call deadline used here: long enough that 2× is meaningful on a loaded 2-core box.
const DEADLINE: Duration = Duration::from_millis(20);
/// Scheduling slack on top of 2× the deadline: instantiation (~0.1 ms), spawning the blocking
/// task, the epoch ticker's 1 ms granularity and the OS handing two busy cores around.
const SLACK: Duration = Duration::from_millis(10);
const MEMORY_CAP: usize = 32 << 20;

fn config() -> EngineConfig {
    EngineConfig {
        deadline: DEADLINE,
        // Far above the deadline, so the epoch deadline is what stops a runaway guest.
        outer_timeout: Duration::from_secs(2),
        memory_limit_bytes: MEMORY_CAP,
        max_instances: 16,
        ..EngineConfig::default()
    }
}

/// The misbehave guest under a spec named `name` (so each test owns its metric series).
fn policy(name: &str) -> LoadedPolicy {
    policy_with(name, config())
}

fn policy_with(name: &str, config: EngineConfig) -> LoadedPolicy {
    let engine = PolicyEngine::new(config).expect("engine");
    engine
        .load(spec(name), &require_policy("misbehave"))
        .expect("misbehave.wasm loads")
}

fn host() -> Arc<dyn HostState> {
    Arc::new(StaticHost::default())
}

fn assert_normal(eval: &Evaluation) {
    assert!(
        eval.failure.is_none(),
        "unexpected failure: {:?}",
        eval.failure
    );
    let Verdict::Route(decision) = &eval.verdict else {
        panic!("expected a route, got {:?}", eval.verdict);
    };
    let backends: Vec<_> = decision
        .targets
        .iter()
        .map(|t| t.backend.as_str())
        .collect();
    assert_eq!(backends, ["local", "openai"]);
    assert_eq!(decision.reason, "normal");
}

/// Asserts `eval` is the fallback with a failure of `kind`; returns the failure message.
fn assert_fallback(eval: &Evaluation, kind: FailureKind) -> String {
    let failure = eval.failure.as_ref().expect("a recorded failure");
    assert_eq!(failure.kind, kind, "{failure}");
    assert_eq!(eval.verdict, Verdict::Route(fallback_decision()));
    failure.message.clone()
}

/// Runs `mode`, checks the fallback, the counter, and that the next request is normal.
async fn misbehaves(mode: &str, kind: FailureKind) -> (Evaluation, String) {
    misbehaves_with(mode, kind, config()).await
}

/// A deadline long enough that only the limit under test can stop the guest (paging in
/// tens of MiB on a loaded VM can take longer than 20 ms).
fn patient() -> EngineConfig {
    EngineConfig {
        deadline: Duration::from_secs(1),
        ..config()
    }
}

async fn misbehaves_with(
    mode: &str,
    kind: FailureKind,
    config: EngineConfig,
) -> (Evaluation, String) {
    metrics();
    let name = format!("misbehave-{mode}");
    let policy = policy_with(&name, config);
    assert_normal(&policy.decide(&misbehave("warm-up"), host()).await);
    let before = failures(&name, kind.as_str());

    let eval = policy.decide(&misbehave(mode), host()).await;
    let message = assert_fallback(&eval, kind);
    assert_eq!(failures(&name, kind.as_str()), before + 1);

    assert_normal(&policy.decide(&misbehave("normal"), host()).await);
    assert_eq!(failures(&name, kind.as_str()), before + 1);
    (eval, message)
}

#[tokio::test]
async fn infinite_loop_is_stopped_within_twice_the_deadline() {
    let (eval, message) = misbehaves("loop", FailureKind::Deadline).await;
    assert!(message.contains("interrupt"), "{message}");
    let bound = DEADLINE * 2 + SLACK;
    assert!(
        eval.elapsed < bound,
        "loop ran {:?}, over 2×{DEADLINE:?} + {SLACK:?}",
        eval.elapsed
    );
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    let (_, message) = misbehaves_with("alloc", FailureKind::Memory, patient()).await;
    assert!(message.contains("growing memory"), "{message}");
}

#[tokio::test]
async fn a_loop_after_an_idle_spell_still_meets_the_deadline() {
    let policy = policy("misbehave-idle-loop");
    assert_normal(&policy.decide(&misbehave("warm-up"), host()).await);
    // Long enough for the epoch ticker to go to sleep; the next guest must wake it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let eval = policy.decide(&misbehave("loop"), host()).await;
    assert_fallback(&eval, FailureKind::Deadline);
    let bound = DEADLINE * 2 + SLACK;
    assert!(eval.elapsed < bound, "loop ran {:?}", eval.elapsed);
}

#[tokio::test]
async fn panic_is_a_trap() {
    // After the warm-up this decision runs on the runtime thread, where the guest's write
    // of its panic message (a WASI call that blocks on tokio) cannot run: it is retried on
    // a blocking thread, and only the trap counts as a failure.
    let (_, message) = misbehaves("trap", FailureKind::Trap).await;
    assert!(message.contains("unreachable"), "{message}");
}

#[tokio::test]
async fn unknown_backend_is_refused() {
    let (_, message) = misbehaves("unknown-backend", FailureKind::UnknownBackend).await;
    assert!(message.contains("no-such-backend"), "{message}");
}

#[tokio::test]
async fn empty_targets_are_refused() {
    misbehaves("empty-targets", FailureKind::EmptyTargets).await;
}

#[tokio::test]
async fn rejection_status_outside_4xx_5xx_is_refused() {
    let (_, message) = misbehaves("bad-status", FailureKind::BadStatus).await;
    assert!(message.contains("99"), "{message}");
}

#[tokio::test]
async fn flooding_the_host_runs_out_of_hostcall_fuel() {
    let (_, message) = misbehaves_with("flood", FailureKind::Trap, patient()).await;
    assert!(message.contains("hostcalls"), "{message}");
}

#[tokio::test]
async fn flood_under_the_fuel_limit_is_stopped_by_the_deadline() {
    // 64 KiB strings fit in the fuel, so the guest keeps calling the host until the
    // epoch deadline interrupts it on return to guest code.
    let policy = policy("flood-small");
    let request = policy_support::request(
        "flood-small",
        "hi",
        &[("misbehave", "flood"), ("flood-bytes", "65536")],
    );
    let eval = policy.decide(&request, host()).await;
    assert_fallback(&eval, FailureKind::Deadline);
    assert_normal(&policy.decide(&misbehave("normal"), host()).await);
}

#[tokio::test]
async fn outer_timeout_gives_the_fallback() {
    // A deadline longer than the outer timeout: the outer timeout answers first.
    let policy = policy_with(
        "outer-timeout",
        EngineConfig {
            deadline: Duration::from_millis(400),
            outer_timeout: Duration::from_millis(30),
            ..config()
        },
    );
    let eval = policy.decide(&misbehave("loop"), host()).await;
    assert_fallback(&eval, FailureKind::Timeout);
    assert_normal(&policy.decide(&misbehave("normal"), host()).await);
}

#[tokio::test]
async fn misbehaving_requests_in_parallel_do_not_disturb_normal_ones() {
    let policy = policy_with("parallel", patient());
    let modes = ["loop", "alloc", "trap", "flood", "normal", "normal"];
    let runs = modes.iter().map(|mode| {
        let policy = policy.clone();
        let request = misbehave(mode);
        tokio::spawn(async move { policy.decide(&request, host()).await })
    });
    let mut results = Vec::new();
    for run in runs {
        results.push(run.await.unwrap());
    }
    for (mode, eval) in modes.iter().zip(&results) {
        match *mode {
            "normal" => assert_normal(eval),
            "loop" => drop(assert_fallback(eval, FailureKind::Deadline)),
            "alloc" => drop(assert_fallback(eval, FailureKind::Memory)),
            _ => drop(assert_fallback(eval, FailureKind::Trap)),
        }
    }
}

#[test]
fn blocking_decisions_match_async_ones() {
    let policy = policy("blocking");
    let eval = policy.decide_blocking(&misbehave("loop"), host());
    assert_fallback(&eval, FailureKind::Deadline);
    assert_normal(&policy.decide_blocking(&misbehave("normal"), host()));
    assert_fallback(
        &policy.decide_blocking(&misbehave("empty-targets"), host()),
        FailureKind::EmptyTargets,
    );
}

fn reason(eval: &Evaluation) -> String {
    reason_of(&eval.verdict)
}

fn reason_of(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Route(d) => d.reason.clone(),
        Verdict::Reject(r) => format!("reject {}", r.status),
    }
}

#[test]
fn fresh_store_per_decision_by_default() {
    let policy = policy("fresh");
    for _ in 0..3 {
        let eval = policy.decide_blocking(&misbehave("count"), host());
        assert_eq!(
            reason(&eval),
            "count:1",
            "every decision sees a new instance"
        );
    }
    assert_eq!(policy.warm_instances(), 0);
}

#[test]
fn warm_pool_reuses_only_instances_that_answered_well() {
    let policy = policy_with(
        "warm",
        EngineConfig {
            warm_instances: 1,
            ..config()
        },
    );
    let count = misbehave("count");
    assert_eq!(reason(&policy.decide_blocking(&count, host())), "count:1");
    assert_eq!(policy.warm_instances(), 1);
    assert_eq!(reason(&policy.decide_blocking(&count, host())), "count:2");

    // A bad output is refused and that instance is dropped; so is one that hit the deadline.
    for (mode, kind) in [
        ("empty-targets", FailureKind::EmptyTargets),
        ("loop", FailureKind::Deadline),
    ] {
        let eval = policy.decide_blocking(&misbehave(mode), host());
        assert_fallback(&eval, kind);
        assert_eq!(policy.warm_instances(), 0, "{mode}");
        assert_eq!(reason(&policy.decide_blocking(&count, host())), "count:1");
        assert_eq!(policy.warm_instances(), 1);
    }

    // Another spec over the same component never shares instances.
    let mut other_spec = spec("warm-other");
    other_spec.params.insert("k".into(), "v".into());
    let other = policy.with_spec(other_spec);
    assert_eq!(reason(&other.decide_blocking(&count, host())), "count:1");
    assert_eq!(reason(&policy.decide_blocking(&count, host())), "count:2");
}

#[tokio::test]
async fn sleeping_on_a_wasi_timer_traps_instead_of_blocking_the_host() {
    // Without the guard the guest's one-hour sleep would block a host thread (the epoch
    // cannot interrupt host code) and the outer timeout would report `timeout`.
    let (_, message) = misbehaves("sleep", FailureKind::Trap).await;
    assert!(message.contains("may not sleep"), "{message}");
}

#[tokio::test]
async fn the_warm_check_names_the_cases_of_a_policy_that_keeps_state() {
    use switchyard::policy::cases::{self, CaseFile};
    let file = CaseFile::parse(
        r#"{"cases": [
            {"name": "counts", "request": {"messages": [{"role": "user", "content": "hi"}],
                                           "labels": {"misbehave": "count"}}},
            {"name": "plain", "request": {"messages": [{"role": "user", "content": "hi"}]}}
        ]}"#,
    )
    .unwrap();
    let fresh = cases::run(&policy_with("warm-check", config()), &file).await;
    assert!(fresh.iter().all(|r| r.passed()), "{fresh:?}");
    assert_eq!(reason_of(&fresh[0].verdict), "count:1");

    let reused = policy_with(
        "warm-check",
        EngineConfig {
            warm_instances: 1,
            ..config()
        },
    );
    let differences = cases::warm_differences(&reused, &file, &fresh).await;
    // The counter survives into later decisions of the reused instance; the plain
    // decision does not depend on it.
    assert!(!differences.is_empty());
    assert!(
        differences.iter().all(|d| d.starts_with("counts (")),
        "{differences:?}"
    );
}
