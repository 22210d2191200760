//! Privacy enforced by the host, end to end: `switchyard serve` with the `misbehave` guest
//! (traps, loops past its deadline, returns bad decisions on request) as the default
//! policy, `complexity` (complex tasks to the cloud first) for the model `auto-complex`,
//! a fallback that names the cloud first, and mock upstreams that count what reaches
//! them. A `local_only` tenant's request, a `restricted` data class's, and a request in
//! which the host finds PII after the policy failed never reach the cloud mock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use gateway_support::{Gateway, built_policy, scratch};

/// A mock OpenAI-compatible upstream that counts the requests reaching it and answers
/// 503 while `down` is set.
#[derive(Default)]
struct Mock {
    requests: AtomicU32,
    down: AtomicBool,
}

impl Mock {
    fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn spawn_mock(reply: &'static str) -> (SocketAddr, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let state = mock.clone();
    let handler = move |body: String| {
        let state = state.clone();
        async move {
            state.requests.fetch_add(1, Ordering::SeqCst);
            if state.down.load(Ordering::SeqCst) {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
            }
            let body: Value = serde_json::from_str(&body).unwrap();
            axum::Json(json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            }))
            .into_response()
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, mock)
}

/// What the gateway answered: status, the `x-switchyard-reason` and `-backend` headers
/// (empty when absent) and the body.
struct Answer {
    status: u16,
    reason: String,
    backend: String,
    /// `x-switchyard-policy`: the version that decided.
    policy: String,
    body: Value,
}

/// A chat completion for `model` as `tenant`, with `x-switchyard-NAME` labels.
async fn ask(
    gateway: &Gateway,
    model: &str,
    tenant: &str,
    text: &str,
    labels: &[(&str, &str)],
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .header("x-switchyard-tenant", tenant);
    for (name, value) in labels {
        request = request.header(format!("x-switchyard-{name}"), *value);
    }
    let response = request
        .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, reason, backend, policy) = (
        response.status().as_u16(),
        header("x-switchyard-reason"),
        header("x-switchyard-backend"),
        header("x-switchyard-policy"),
    );
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        reason,
        backend,
        policy,
        body,
    }
}

/// The privacy rules, the complexity policy for `auto-complex` and the decision log.
fn extra(log: &std::path::Path) -> String {
    format!(
        r#"
        [[policies]]
        name = "complexity"
        path = "{complexity}"
        models = ["auto-complex"]
        [tenants.hospital]
        local_only = true
        [tenants.acme]
        [privacy.data_classes]
        restricted = "local_only"
        [decision_log]
        path = "{log}"
        "#,
        complexity = built_policy("complexity").display(),
        log = log.display(),
    )
}

/// Writes the config with `fallback_targets = FALLBACK` in place of the support's.
fn config(
    dir: &std::path::Path,
    local: SocketAddr,
    cloud: SocketAddr,
    fallback: &str,
) -> std::path::PathBuf {
    let path = gateway_support::write_config(
        dir,
        &built_policy("misbehave"),
        local,
        cloud,
        &extra(&dir.join("decisions.jsonl")),
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        r#"fallback_targets = ["local"]"#,
        &format!("fallback_targets = {fallback}"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

const COMPLEX: &str = "Implement a lock-free queue in Rust and prove it is linearizable.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_requests_reach_no_cloud_backend_in_any_fault() {
    let scratch_dir = scratch("privacy");
    let dir = scratch_dir.path();
    let (local_addr, local) = spawn_mock("from local").await;
    let (cloud_addr, cloud) = spawn_mock("from cloud").await;
    // The fallback names the cloud first: without the host's rules a fault sends there.
    let gateway = Gateway::start(&config(
        dir,
        local_addr,
        cloud_addr,
        r#"["openai", "local"]"#,
    ))
    .await;
    let restricted = [("data-class", "Restricted")];

    // The setup sends ordinary requests to the cloud: the complexity policy for a complex
    // task, the fallback for a trapping policy.
    let a = ask(&gateway, "auto-complex", "acme", COMPLEX, &[]).await;
    assert_eq!(
        (a.status, a.backend.as_str()),
        (200, "openai"),
        "{}",
        a.body
    );
    let a = ask(&gateway, "auto", "acme", "hi", &[("misbehave", "trap")]).await;
    assert_eq!(
        (a.status, a.backend.as_str()),
        (200, "openai"),
        "{}",
        a.body
    );
    assert_eq!(cloud.requests(), 2);

    // The policy picks the cloud: the host keeps the request local.
    let a = ask(&gateway, "auto-complex", "hospital", COMPLEX, &[]).await;
    assert_eq!((a.status, a.backend.as_str()), (200, "local"), "{}", a.body);
    assert!(
        a.reason.starts_with("host:privacy:tenant ("),
        "{}",
        a.reason
    );
    let a = ask(&gateway, "auto-complex", "acme", COMPLEX, &restricted).await;
    assert_eq!((a.status, a.backend.as_str()), (200, "local"), "{}", a.body);
    assert!(
        a.reason.starts_with("host:privacy:data_class ("),
        "{}",
        a.reason
    );

    // The policy traps, loops past its deadline, errors (a status outside 400..=599, an
    // unknown backend): the fallback's cloud target is removed.
    for mode in ["trap", "loop", "bad-status", "unknown-backend"] {
        let mut labels = vec![("misbehave", mode)];
        let a = ask(&gateway, "auto", "hospital", "hi", &labels).await;
        assert_eq!(
            (a.status, a.backend.as_str()),
            (200, "local"),
            "{mode}: {}",
            a.body
        );
        assert_eq!(a.reason, "host:privacy:tenant (fallback)", "{mode}");
        labels.extend(restricted);
        let a = ask(&gateway, "auto", "acme", "hi", &labels).await;
        assert_eq!(
            (a.status, a.backend.as_str()),
            (200, "local"),
            "{mode}: {}",
            a.body
        );
        assert_eq!(a.reason, "host:privacy:data_class (fallback)", "{mode}");
    }

    // PII the host finds in a failed policy's request keeps its fallback local.
    let a = ask(
        &gateway,
        "auto",
        "acme",
        "reach me at bob@example.com",
        &[("misbehave", "trap")],
    )
    .await;
    assert_eq!((a.status, a.backend.as_str()), (200, "local"), "{}", a.body);
    assert_eq!(a.reason, "host:privacy:pii (fallback)");
    assert_eq!(
        cloud.requests(),
        2,
        "a private request reached the cloud mock"
    );

    // The local backend down: 503 with the reason, and still nothing to the cloud.
    local.down.store(true, Ordering::SeqCst);
    let before = local.requests();
    for (model, tenant, labels) in [
        ("auto-complex", "hospital", vec![]),
        ("auto", "hospital", vec![("misbehave", "trap")]),
        (
            "auto",
            "acme",
            vec![("misbehave", "loop"), ("data-class", "restricted")],
        ),
    ] {
        let a = ask(&gateway, model, tenant, COMPLEX, &labels).await;
        assert_eq!(a.status, 503, "{model} {tenant}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "local_only", "{}", a.body);
        // The refusal names the policy version that decided (or whose fallback applied).
        assert!(a.policy.contains('@'), "{model} {tenant}: {:?}", a.policy);
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("must stay on local backends"), "{message}");
    }
    assert_eq!(local.requests() - before, 3, "the local backend was tried");
    assert_eq!(
        cloud.requests(),
        2,
        "a private request reached the cloud mock"
    );
    local.down.store(false, Ordering::SeqCst);

    // The decision log and the metrics record the host's override.
    let log = dir.join("decisions.jsonl");
    let mut overrides = Vec::new();
    for _ in 0..100 {
        overrides = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|r| r["host_override"].as_str().map(str::to_owned))
            .collect();
        if overrides.len() >= 14 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(overrides.len(), 14, "{overrides:?}");
    assert!(
        overrides.contains(&"host:privacy:pii removed 1 non-local target(s)".to_owned()),
        "{overrides:?}"
    );
    let metrics = reqwest::get(gateway.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_privacy_overrides_total")
                && l.contains(r#"rule="tenant""#)
                && l.contains(r#"outcome="filtered""#)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_fallback_answers_503_when_the_policy_fails() {
    let scratch_dir = scratch("privacy-reject");
    let dir = scratch_dir.path();
    let (local_addr, local) = spawn_mock("from local").await;
    let (cloud_addr, cloud) = spawn_mock("from cloud").await;
    let gateway = Gateway::start(&config(dir, local_addr, cloud_addr, r#""reject""#)).await;

    for mode in ["trap", "loop", "bad-status"] {
        let a = ask(&gateway, "auto", "acme", "hi", &[("misbehave", mode)]).await;
        assert_eq!(a.status, 503, "{mode}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "policy_failed", "{}", a.body);
    }
    assert_eq!((local.requests(), cloud.requests()), (0, 0));
    // A policy that works still routes.
    let a = ask(&gateway, "auto", "acme", "hi", &[]).await;
    assert_eq!((a.status, a.backend.as_str()), (200, "local"), "{}", a.body);
}
