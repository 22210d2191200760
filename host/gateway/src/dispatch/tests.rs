//! The attempt loop and failover classification against scripted fake backends.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::*;
use crate::backends::{Backend, BackendError, StreamEvent};
use crate::domain::{BackendKind, Role};

/// What a scripted backend does on one call.
enum Step {
    Answer(&'static str),
    Fail(BackendError),
    /// A stream that never yields its first event.
    Silent,
}

/// A backend that plays its script, one step per call (the last step repeats).
struct Scripted {
    name: String,
    kind: BackendKind,
    models: Vec<String>,
    steps: Mutex<VecDeque<Step>>,
    calls: AtomicU32,
    last_request: Mutex<Option<ChatRequest>>,
}

impl Scripted {
    fn new(name: &str, steps: Vec<Step>) -> Arc<Self> {
        Self::of_kind(name, BackendKind::Cloud, steps)
    }

    /// A backend whose locality is local (the local engine, or a server on own hardware).
    fn local(name: &str, steps: Vec<Step>) -> Arc<Self> {
        Self::of_kind(name, BackendKind::Local, steps)
    }

    fn of_kind(name: &str, kind: BackendKind, steps: Vec<Step>) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            kind,
            models: vec![format!("{name}-model")],
            steps: Mutex::new(steps.into()),
            calls: AtomicU32::new(0),
            last_request: Mutex::new(None),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn step(&self, request: ChatRequest) -> Step {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last_request.lock().unwrap() = Some(request);
        let mut steps = self.steps.lock().unwrap();
        if steps.len() > 1 {
            return steps.pop_front().unwrap();
        }
        match steps.front().unwrap() {
            Step::Answer(t) => Step::Answer(t),
            Step::Fail(e) => Step::Fail(e.clone()),
            Step::Silent => Step::Silent,
        }
    }
}

impl Backend for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn models(&self) -> &[String] {
        &self.models
    }
    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
        let model = request.model.clone();
        let result = match self.step(request) {
            Step::Answer(text) => Ok(ChatResponse {
                model,
                content: text.to_owned(),
                finish_reason: "stop".to_owned(),
                usage: Usage {
                    prompt_tokens: 10,
                    completion_tokens: 5,
                },
                raw: None,
            }),
            Step::Fail(e) => Err(e),
            Step::Silent => Err(BackendError::Timeout("response headers")),
        };
        std::future::ready(result).boxed()
    }
    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        let result = match self.step(request) {
            Step::Answer(text) => Ok(futures_util::stream::iter([
                Ok(StreamEvent::Delta(text.to_owned())),
                Ok(StreamEvent::Finish("stop".to_owned())),
            ])
            .boxed()),
            Step::Fail(e) => Err(e),
            Step::Silent => Ok(futures_util::stream::pending().boxed()),
        };
        std::future::ready(result).boxed()
    }
}

fn status(code: u16) -> BackendError {
    BackendError::Status {
        status: code,
        message: format!("upstream said {code}"),
        retry_after_s: None,
        provider: None,
    }
}

/// A dispatcher over `backends` (each retried `retries` times without backoff) whose rule
/// routes to `targets` in order.
fn dispatcher(backends: &[&Arc<Scripted>], retries: u32, targets: &[&str]) -> Dispatcher {
    with_fallback(backends, retries, targets, &[])
}

/// [`dispatcher`] with `fallback` targets for decisions that name none.
fn with_fallback(
    backends: &[&Arc<Scripted>],
    retries: u32,
    targets: &[&str],
    fallback: &[&str],
) -> Dispatcher {
    let targets = targets.iter().map(|t| (*t).to_owned()).collect();
    with_rule(
        backends,
        retries,
        Arc::new(StaticTargets::new(targets)),
        Fallback::Targets(fallback.iter().map(|t| (*t).to_owned()).collect()),
    )
}

/// A dispatcher over `backends` deciding with `rule`.
fn with_rule(
    backends: &[&Arc<Scripted>],
    retries: u32,
    rule: Arc<dyn RoutingRule>,
    fallback: Fallback,
) -> Dispatcher {
    let list = backends
        .iter()
        .map(|b| DispatchBackend {
            backend: Arc::new(Instrumented::new(
                Arc::clone(b) as Arc<dyn crate::backends::Backend>,
                BackendFacts {
                    context_window: 8192,
                    usd_per_mtok_in: 1.0,
                    usd_per_mtok_out: 2.0,
                    labels: BTreeMap::new(),
                    capabilities: Vec::new(),
                },
            )),
            first_byte_timeout: Duration::from_millis(100),
            retry: Retry {
                retries,
                backoff: Duration::ZERO,
            },
        })
        .collect();
    Dispatcher::new(
        list,
        rule,
        fallback,
        Arc::new(crate::domain::estimate_tokens),
    )
}

fn request() -> ClientRequest {
    ClientRequest {
        model: "auto".to_owned(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: "hello".to_owned(),
        }]
        .into(),
        max_tokens: Some(16),
        temperature: None,
        top_p: None,
        stop: Vec::new(),
        seed: None,
        stream: false,
        tenant: "t".to_owned(),
        labels: BTreeMap::new(),
        passthrough: Default::default(),
    }
}

fn errors(attempts: &[Attempt]) -> Vec<(&str, Option<&AttemptError>)> {
    attempts
        .iter()
        .map(|a| (a.backend.as_str(), a.error.as_ref()))
        .collect()
}

#[tokio::test]
async fn a_server_error_fails_over_to_the_next_target() {
    let a = Scripted::new("a", vec![Step::Fail(status(503))]);
    let b = Scripted::new("b", vec![Step::Answer("from b")]);
    let d = dispatcher(&[&a, &b], 0, &["a", "b"]);
    let (routed, response) = d.complete(&request()).await.unwrap();
    assert_eq!(response.content, "from b");
    assert_eq!(
        (routed.backend.as_str(), routed.model.as_str()),
        ("b", "b-model")
    );
    assert_eq!(
        errors(&routed.attempts),
        [
            ("a", Some(&AttemptError::Backend(status(503)))),
            ("b", None)
        ]
    );
    assert_eq!((a.calls(), b.calls()), (1, 1));
    // The cost is the serving backend's: 10 in at $1/Mtok, 5 out at $2/Mtok.
    let cost = routed.cost_usd(&response.usage);
    assert!((cost - 20e-6).abs() < 1e-12, "{cost}");
}

#[tokio::test]
async fn the_clients_own_error_stops_at_the_first_target() {
    let a = Scripted::new("a", vec![Step::Fail(status(422))]);
    let b = Scripted::new("b", vec![Step::Answer("never")]);
    let d = dispatcher(&[&a, &b], 2, &["a", "b"]);
    let err = d.complete(&request()).await.unwrap_err().error;
    assert_eq!(
        err,
        DispatchError::Upstream {
            backend: "a".into(),
            status: 422,
            message: "upstream said 422".into(),
            retry_after_s: None,
            provider: None,
        }
    );
    assert_eq!((a.calls(), b.calls()), (1, 0));
}

#[tokio::test]
async fn retryable_errors_are_retried_on_the_same_target_first() {
    let a = Scripted::new(
        "a",
        vec![
            Step::Fail(status(429)),
            Step::Fail(BackendError::Connect("refused".into())),
            Step::Answer("third time"),
        ],
    );
    let b = Scripted::new("b", vec![Step::Answer("never")]);
    let d = dispatcher(&[&a, &b], 2, &["a", "b"]);
    let (routed, response) = d.complete(&request()).await.unwrap();
    assert_eq!(response.content, "third time");
    assert_eq!((a.calls(), b.calls()), (3, 0));
    assert_eq!(routed.attempts.len(), 3);
}

#[tokio::test]
async fn retries_run_out_then_the_next_target_serves() {
    let a = Scripted::new("a", vec![Step::Fail(status(500))]);
    let b = Scripted::new("b", vec![Step::Answer("b")]);
    let d = dispatcher(&[&a, &b], 2, &["a", "b"]);
    let (routed, _) = d.complete(&request()).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (3, 1));
    assert_eq!(routed.backend, "b");
}

#[tokio::test]
async fn an_unavailable_backend_is_not_retried() {
    let a = Scripted::new(
        "a",
        vec![Step::Fail(BackendError::Unavailable("queue full".into()))],
    );
    let b = Scripted::new("b", vec![Step::Answer("b")]);
    let d = dispatcher(&[&a, &b], 3, &["a", "b"]);
    d.complete(&request()).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

#[tokio::test]
async fn every_target_unavailable_is_503_and_any_other_failure_502() {
    let unavailable = || Step::Fail(BackendError::Unavailable("breaker open".into()));
    let a = Scripted::new("a", vec![unavailable()]);
    let b = Scripted::new("b", vec![unavailable()]);
    let err = dispatcher(&[&a, &b], 0, &["a", "b"])
        .complete(&request())
        .await
        .unwrap_err()
        .error;
    assert_eq!(err.status(), 503);
    let DispatchError::AllFailed { attempts, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        err.to_string(),
        "all targets failed: a: backend unavailable: breaker open; b: backend unavailable: breaker open"
    );

    let c = Scripted::new("c", vec![unavailable()]);
    let e = Scripted::new("e", vec![Step::Fail(status(502))]);
    let err = dispatcher(&[&c, &e], 0, &["c", "e"])
        .complete(&request())
        .await
        .unwrap_err()
        .error;
    assert_eq!(err.status(), 502);
}

#[tokio::test]
async fn a_prompt_no_target_can_hold_is_the_clients_400() {
    let small = || Step::Fail(BackendError::ContextExceeded("8192 tokens".into()));
    let a = Scripted::new("a", vec![small()]);
    let b = Scripted::new("b", vec![small()]);
    let err = dispatcher(&[&a, &b], 0, &["a", "nowhere", "b"])
        .complete(&request())
        .await
        .unwrap_err()
        .error;
    assert_eq!(
        err,
        DispatchError::Upstream {
            backend: "b".into(),
            status: 400,
            message: "8192 tokens".into(),
            retry_after_s: None,
            provider: None,
        }
    );
    // With a server error among them it is the gateway's failure, not the client's.
    let a = Scripted::new("a", vec![small()]);
    let b = Scripted::new("b", vec![Step::Fail(status(500))]);
    let c = Scripted::new("c", vec![small()]);
    let err = dispatcher(&[&a, &b, &c], 0, &["a", "b", "c"])
        .complete(&request())
        .await
        .unwrap_err()
        .error;
    assert_eq!(err.status(), 502);
}

#[tokio::test]
async fn unknown_targets_are_recorded_and_skipped() {
    let b = Scripted::new("b", vec![Step::Answer("b")]);
    let d = dispatcher(&[&b], 0, &["ghost", "b"]);
    let (routed, _) = d.complete(&request()).await.unwrap();
    assert_eq!(
        errors(&routed.attempts),
        [("ghost", Some(&AttemptError::UnknownBackend)), ("b", None)]
    );
    let err = dispatcher(&[&b], 0, &["ghost"])
        .complete(&request())
        .await
        .unwrap_err()
        .error;
    assert!(matches!(err, DispatchError::NoTargets { .. }), "{err:?}");
}

#[tokio::test]
async fn each_attempt_sends_its_targets_model_and_the_clients_fields() {
    let a = Scripted::new("a", vec![Step::Fail(status(503))]);
    let b = Scripted::new("b", vec![Step::Answer("b")]);
    let d = dispatcher(&[&a, &b], 0, &["a", "b"]);
    let mut req = request();
    req.stop = vec!["END".into()];
    req.seed = Some(7);
    d.complete(&req).await.unwrap();
    let sent_a = a.last_request.lock().unwrap().clone().unwrap();
    let sent_b = b.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        (sent_a.model.as_str(), sent_b.model.as_str()),
        ("a-model", "b-model")
    );
    assert_eq!(sent_b.messages, req.messages);
    assert_eq!(
        (sent_b.stop.clone(), sent_b.seed, sent_b.max_tokens),
        (req.stop, Some(7), Some(16))
    );
}

#[tokio::test]
async fn a_stream_fails_over_until_its_first_event() {
    let a = Scripted::new("a", vec![Step::Silent]);
    let b = Scripted::new("b", vec![Step::Answer("streamed")]);
    let d = dispatcher(&[&a, &b], 0, &["a", "b"]);
    let mut req = request();
    req.stream = true;
    let (routed, stream) = d.stream(&req).await.unwrap();
    assert_eq!(routed.backend, "b");
    assert_eq!(
        routed.attempts[0].error,
        Some(AttemptError::Backend(BackendError::Timeout(
            "first stream event"
        )))
    );
    let events: Vec<_> = stream.map(Result::unwrap).collect().await;
    assert_eq!(
        events,
        [
            StreamEvent::Delta("streamed".into()),
            StreamEvent::Finish("stop".into())
        ]
    );
}

#[tokio::test]
async fn ledger_reservations_are_settled_with_the_served_cost() {
    let ledger =
        Arc::new(Ledger::in_memory(BTreeMap::new(), crate::ledger::Budget::default()).unwrap());
    let a = Scripted::new("a", vec![Step::Fail(status(503))]);
    let b = Scripted::new("b", vec![Step::Answer("b")]);
    let d = dispatcher(&[&a, &b], 0, &["a", "b"]).with_ledger(ledger.clone());
    let (routed, _) = d.complete(&request()).await.unwrap();
    ledger.flush().unwrap();
    assert_eq!(
        ledger
            .attempt_state(&routed.request_id, 0)
            .unwrap()
            .as_deref(),
        Some("released")
    );
    assert_eq!(
        ledger
            .attempt_state(&routed.request_id, 1)
            .unwrap()
            .as_deref(),
        Some("settled")
    );
    let spent = ledger.status("t").today_usd;
    assert!((spent - 20e-6).abs() < 1e-9, "{spent}");
}

#[tokio::test]
async fn a_decision_without_targets_uses_the_fallback_targets() {
    let a = Scripted::new("a", vec![Step::Answer("a")]);
    let b = Scripted::new("b", vec![Step::Answer("from the fallback")]);
    let d = with_fallback(&[&a, &b], 0, &[], &["b"]);
    let (routed, response) = d.complete(&request()).await.unwrap();
    assert_eq!(
        (routed.backend.as_str(), response.content.as_str()),
        ("b", "from the fallback")
    );
    assert_eq!(a.calls(), 0);
}

/// A rule that decides `targets` (with `messages` as the decision's rewrite), or, with
/// `failure` set, fails the way a trapping policy does: its verdict is the policy's
/// fallback decision (here the cloud backend, reason `fallback`).
struct Decides {
    targets: Vec<String>,
    reason: &'static str,
    messages: Option<Vec<ChatMessage>>,
    failure: Option<&'static str>,
}

impl Decides {
    fn to(targets: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            reason: "policy:cloud-first",
            messages: None,
            failure: None,
        })
    }

    fn failing(kind: &'static str) -> Arc<Self> {
        Arc::new(Self {
            targets: vec!["cloud".to_owned()],
            reason: "fallback",
            messages: None,
            failure: Some(kind),
        })
    }
}

impl RoutingRule for Decides {
    fn label(&self) -> String {
        "decides@test".to_owned()
    }
    fn decide<'a>(
        &'a self,
        _request: &'a PolicyRequest,
        _host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation> {
        let mut decision = Decision::to_backends(&self.targets, self.reason);
        decision.messages = self.messages.clone();
        std::future::ready(RouteEvaluation {
            policy: self.label(),
            verdict: Verdict::Route(decision),
            failure: self.failure.map(str::to_owned),
            elapsed: Duration::ZERO,
        })
        .boxed()
    }
}

/// Privacy rules: tenant `hospital` is local_only, data class `restricted` too.
fn private(d: Dispatcher) -> Dispatcher {
    d.with_privacy(PrivacyConfig {
        local_only_tenants: ["hospital".to_owned()].into(),
        data_class_label: "data-class".to_owned(),
        local_only_classes: ["restricted".to_owned()].into(),
    })
}

fn fallback_to(targets: &[&str]) -> Fallback {
    Fallback::Targets(targets.iter().map(|t| (*t).to_owned()).collect())
}

fn of_tenant(tenant: &str) -> ClientRequest {
    ClientRequest {
        tenant: tenant.to_owned(),
        ..request()
    }
}

#[tokio::test]
async fn a_local_only_tenant_or_data_class_never_reaches_the_cloud_the_policy_picked() {
    let cloud = Scripted::new("cloud", vec![Step::Answer("from cloud")]);
    let local = Scripted::local("local", vec![Step::Answer("from local")]);
    let d = private(with_rule(
        &[&cloud, &local],
        0,
        Decides::to(&["cloud", "local"]),
        fallback_to(&["local"]),
    ));
    let restricted = ClientRequest {
        labels: BTreeMap::from([("data-class".to_owned(), "RESTRICTED".to_owned())]),
        passthrough: Default::default(),
        ..request()
    };
    for req in [of_tenant("hospital"), restricted] {
        let (routed, response) = d.complete(&req).await.unwrap();
        assert_eq!(response.content, "from local");
        assert!(
            routed.reason.starts_with("host:privacy:") && routed.reason.contains("cloud-first"),
            "{}",
            routed.reason
        );
        let streamed = ClientRequest {
            stream: true,
            ..req
        };
        let (routed, _) = d.stream(&streamed).await.unwrap();
        assert_eq!(routed.backend, "local");
    }
    assert_eq!(cloud.calls(), 0);
    // Any other request goes where the policy said.
    let (routed, _) = d.complete(&of_tenant("acme")).await.unwrap();
    assert_eq!(
        (routed.backend.as_str(), routed.reason.as_str()),
        ("cloud", "policy:cloud-first")
    );
}

#[tokio::test]
async fn a_local_only_request_with_no_local_target_left_is_refused() {
    let cloud = Scripted::new("cloud", vec![Step::Answer("from cloud")]);
    let local = Scripted::local("local", vec![Step::Answer("from local")]);
    let d = private(with_rule(
        &[&cloud, &local],
        0,
        Decides::to(&["cloud"]),
        fallback_to(&["local"]),
    ));
    let err = d.complete(&of_tenant("hospital")).await.unwrap_err().error;
    assert_eq!(err.status(), 503);
    assert_eq!(
        err.to_string(),
        "request must stay on local backends (tenant hospital is local_only) and no local \
         backend was among the targets"
    );
    assert_eq!((cloud.calls(), local.calls()), (0, 0));
}

#[tokio::test]
async fn a_local_only_request_whose_local_backend_is_down_gets_503_not_the_cloud() {
    let cloud = Scripted::new("cloud", vec![Step::Answer("from cloud")]);
    let local = Scripted::local(
        "local",
        vec![Step::Fail(BackendError::Connect("refused".into()))],
    );
    let d = private(with_rule(
        &[&cloud, &local],
        2,
        Decides::to(&["local", "cloud"]),
        fallback_to(&["cloud"]),
    ));
    let err = d.complete(&of_tenant("hospital")).await.unwrap_err().error;
    assert_eq!(err.status(), 503);
    let DispatchError::LocalOnly { attempts, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(attempts.len(), 3, "the local target is still retried");
    assert!(
        err.to_string().contains("no local backend served it"),
        "{err}"
    );
    assert_eq!((cloud.calls(), local.calls()), (0, 3));
}

#[tokio::test]
async fn a_failed_policys_fallback_is_held_to_the_same_rules() {
    let cloud = Scripted::new("cloud", vec![Step::Answer("from cloud")]);
    let local = Scripted::local("local", vec![Step::Answer("from local")]);
    for kind in ["trap", "timeout", "bad-decision"] {
        let d = private(with_rule(
            &[&cloud, &local],
            0,
            Decides::failing(kind),
            fallback_to(&["cloud", "local"]),
        ));
        let (routed, _) = d.complete(&of_tenant("hospital")).await.unwrap();
        assert_eq!(routed.backend, "local");
        assert_eq!(routed.policy_failure.as_deref(), Some(kind));
        assert_eq!(routed.reason, "host:privacy:tenant (fallback)");
    }
    assert_eq!(cloud.calls(), 0);
}

#[tokio::test]
async fn a_reject_fallback_refuses_a_failed_policys_request() {
    let cloud = Scripted::new("cloud", vec![Step::Answer("from cloud")]);
    let d = with_rule(&[&cloud], 0, Decides::failing("trap"), Fallback::Reject);
    let err = d.complete(&request()).await.unwrap_err().error;
    assert_eq!(
        err,
        DispatchError::PolicyFailed {
            policy: "decides@test".into()
        }
    );
    assert_eq!(err.status(), 503);
    assert_eq!(cloud.calls(), 0);
    // A policy that works is not affected.
    let d = with_rule(&[&cloud], 0, Decides::to(&["cloud"]), Fallback::Reject);
    d.complete(&request()).await.unwrap();
    assert_eq!(cloud.calls(), 1);
}

#[tokio::test]
async fn pii_the_host_finds_keeps_a_fallback_local() {
    let cloud = Scripted::new("cloud", vec![Step::Answer("from cloud")]);
    let local = Scripted::local("local", vec![Step::Answer("from local")]);
    let with_pii = ClientRequest {
        messages: vec![ChatMessage {
            role: Role::User,
            content: "my ssn is 123-45-6789".to_owned(),
        }]
        .into(),
        ..request()
    };
    let failing = with_rule(
        &[&cloud, &local],
        0,
        Decides::failing("trap"),
        fallback_to(&["cloud", "local"]),
    );
    let (routed, _) = failing.complete(&with_pii).await.unwrap();
    assert_eq!(
        (routed.backend.as_str(), routed.reason.as_str()),
        ("local", "host:privacy:pii (fallback)")
    );
    assert_eq!(cloud.calls(), 0);
    // Without PII the fallback is used as configured.
    let (routed, _) = failing.complete(&request()).await.unwrap();
    assert_eq!(routed.backend, "cloud");
    // PII with nothing but cloud fallbacks: refused.
    let cloud_only = with_rule(
        &[&cloud, &local],
        0,
        Decides::failing("trap"),
        fallback_to(&["cloud"]),
    );
    let err = cloud_only.complete(&with_pii).await.unwrap_err().error;
    assert!(matches!(err, DispatchError::LocalOnly { .. }), "{err:?}");
    // A working policy's decision is its own (its `pii.detect` import is its business).
    let working = with_rule(
        &[&cloud, &local],
        0,
        Decides::to(&["cloud"]),
        fallback_to(&["local"]),
    );
    let (routed, _) = working.complete(&with_pii).await.unwrap();
    assert_eq!(routed.backend, "cloud");
    assert_eq!(cloud.calls(), 2);
}

#[tokio::test]
async fn every_attempt_shares_the_request_messages_instead_of_copying_them() {
    let a = Scripted::new(
        "a",
        vec![Step::Fail(BackendError::Unavailable("queue full".into()))],
    );
    let b = Scripted::new("b", vec![Step::Fail(status(500)), Step::Answer("b")]);
    let d = dispatcher(&[&a, &b], 1, &["a", "b"]);
    let req = request();
    d.complete(&req).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (1, 2));
    let sent_a = a.last_request.lock().unwrap().clone().unwrap();
    let sent_b = b.last_request.lock().unwrap().clone().unwrap();
    assert!(Arc::ptr_eq(&sent_a.messages, &req.messages));
    assert!(Arc::ptr_eq(&sent_b.messages, &req.messages));

    // A decision's rewritten messages are moved into one shared list too.
    let rewritten = vec![ChatMessage {
        role: Role::User,
        content: "[redacted]".to_owned(),
    }];
    let rule = Arc::new(Decides {
        targets: vec!["a".to_owned(), "b".to_owned()],
        reason: "redacted",
        messages: Some(rewritten.clone()),
        failure: None,
    });
    let a = Scripted::new("a", vec![Step::Fail(status(503))]);
    let b = Scripted::new("b", vec![Step::Answer("b")]);
    with_rule(&[&a, &b], 0, rule, fallback_to(&[]))
        .complete(&req)
        .await
        .unwrap();
    let sent_a = a.last_request.lock().unwrap().clone().unwrap();
    let sent_b = b.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(&*sent_b.messages, rewritten.as_slice());
    assert!(Arc::ptr_eq(&sent_a.messages, &sent_b.messages));
}

#[test]
fn a_policy_rewrite_keeps_what_the_policy_does_not_see() {
    let msg = |role, content: &str| ChatMessage {
        role,
        content: content.to_owned(),
    };
    let raw = vec![
        serde_json::json!({"role": "user", "name": "alice", "content": [
            {"type": "text", "text": "mail bob@example.com"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}),
        serde_json::json!({"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
    ];
    let original = [
        msg(Role::User, "mail bob@example.com"),
        msg(Role::Assistant, ""),
    ];
    // The policy redacted the first message's text and left the tool call alone.
    let replaced = [msg(Role::User, "mail [EMAIL]"), msg(Role::Assistant, "")];
    let out = super::rewrite_raw(&raw, &original, &replaced).unwrap();
    assert_eq!(
        out[0],
        serde_json::json!({"role": "user", "name": "alice", "content": "mail [EMAIL]"})
    );
    assert_eq!(out[1], raw[1]);
    // A replacement of another shape is sent as the policy's text messages.
    assert_eq!(super::rewrite_raw(&raw, &original, &replaced[..1]), None);
    let roles_changed = [msg(Role::System, "x"), msg(Role::Assistant, "")];
    assert_eq!(super::rewrite_raw(&raw, &original, &roles_changed), None);
}
