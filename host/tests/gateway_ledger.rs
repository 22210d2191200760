//! Spend ledger through the gateway: hard cap under 100 concurrent requests, settlement
//! of streamed requests, spend surviving a restart, and a tenant's token rate limit.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use serde_json::{Value, json};

use switchyard::config::Config;
use switchyard::dispatch::{Dispatcher, StaticTargets};
use switchyard::domain::estimate_tokens;
use switchyard::http::{self, AppState};
use switchyard::ledger::{Budget, Ledger, RateLimit};

/// OpenAI-compatible mock that bills exactly `max_tokens` completion tokens, no prompt.
async fn spawn_mock() -> SocketAddr {
    async fn handler(body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let body: Value = serde_json::from_str(&body).unwrap();
        let n = body["max_tokens"].as_u64().unwrap();
        if body["stream"] == true {
            let chunk =
                json!({"choices":[{"index":0,"delta":{"content":"hey"},"finish_reason":"stop"}]});
            let usage = json!({"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":n}});
            let text = format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
            return ([("content-type", "text/event-stream")], text).into_response();
        }
        // A little latency so requests overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        axum::Json(
            json!({"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":0,"completion_tokens":n}}),
        )
        .into_response()
    }
    let app = axum::Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn spawn_gateway(upstream: SocketAddr, ledger: Arc<Ledger>) -> SocketAddr {
    gateway_support::capture_logs();
    let config = Config::parse(&format!(
        r#"
        [policy]
        static_targets = ["up"]
        [[backends]]
        name = "up"
        kind = "openai_compatible"
        base_url = "http://{upstream}/v1"
        models = ["m"]
        usd_per_mtok_in = 1.0
        usd_per_mtok_out = 2.0
        "#
    ))
    .unwrap();
    let dispatcher = Dispatcher::from_config(
        &config,
        Arc::new(StaticTargets::new(vec!["up".into()])),
        BTreeMap::new(),
        Arc::new(estimate_tokens),
        &|_: &str| None,
    )
    .unwrap()
    .with_ledger(ledger);
    let app = http::router(AppState {
        dispatcher: Arc::new(dispatcher),
        max_body_bytes: 1 << 20,
        client_keys: Default::default(),
        tenants: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(
        listener,
        app,
        switchyard::config::ConnLimits::default(),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    addr
}

fn budgets(cap: f64) -> BTreeMap<String, Budget> {
    let mut b = BTreeMap::new();
    b.insert(
        "acme".to_owned(),
        Budget {
            daily_usd: None,
            monthly_usd: None,
            hard_cap_usd: Some(cap),
        },
    );
    b
}

/// 5000 completion tokens at $2/Mtok = $0.01 per request.
fn request(stream: bool) -> Value {
    json!({"model":"auto","max_tokens":5000,"stream":stream,
           "messages":[{"role":"user","content":"hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_cap_holds_under_100_concurrent_requests() {
    let ledger = Arc::new(Ledger::in_memory(budgets(0.10), Budget::default()).unwrap());
    let gw = spawn_gateway(spawn_mock().await, ledger.clone()).await;
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let resp = client
                    .post(format!("http://{gw}/v1/chat/completions"))
                    .header("x-switchyard-tenant", "acme")
                    .json(&request(false))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => assert_eq!(body["error"]["code"], "budget_exceeded"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(admitted <= 10, "admitted {admitted}");
    assert!(admitted >= 1);
    ledger.flush().unwrap();
    let spend = ledger.status("acme");
    assert!(spend.month_usd <= 0.10 + 1e-9, "{spend:?}");
    let t = &ledger.tenants().unwrap()[0];
    assert_eq!(t.settled_attempts, admitted);
    assert_eq!(t.open_reservations, 0);
}

#[tokio::test]
async fn streamed_requests_are_settled_and_spend_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let upstream = spawn_mock().await;
    {
        let ledger = Arc::new(Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap());
        let gw = spawn_gateway(upstream, ledger.clone()).await;
        let client = reqwest::Client::new();
        for stream in [false, true] {
            let resp = client
                .post(format!("http://{gw}/v1/chat/completions"))
                .header("x-switchyard-tenant", "acme")
                .json(&request(stream))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap();
        }
        // The stream's reservation settles when the server drops the finished stream.
        let mut settled = false;
        for _ in 0..100 {
            let t = &ledger.tenants().unwrap()[0];
            if t.open_reservations == 0 && t.settled_attempts == 2 {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(settled, "{:?}", ledger.tenants().unwrap());
    }
    let reopened = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
    let t = &reopened.tenants().unwrap()[0];
    assert_eq!(t.tenant, "acme");
    assert!((t.total_usd - 0.02).abs() < 1e-9, "{t:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_token_rate_limit_refuses_with_retry_after_and_spares_other_tenants() {
    let limits = BTreeMap::from([(
        "acme".to_owned(),
        RateLimit {
            requests_per_minute: None,
            tokens_per_minute: Some(1000),
        },
    )]);
    let ledger = Ledger::in_memory(BTreeMap::new(), Budget::default())
        .unwrap()
        .with_rate_limits(limits);
    let gw = spawn_gateway(spawn_mock().await, Arc::new(ledger)).await;
    let client = reqwest::Client::new();
    let send = |tenant: &'static str| {
        client
            .post(format!("http://{gw}/v1/chat/completions"))
            .header("x-switchyard-tenant", tenant)
            .json(&json!({"model":"auto","max_tokens":400,
                          "messages":[{"role":"user","content":"hi"}]}))
            .send()
    };
    // Each request is charged its prompt and its 400-token limit: two fit in 1000.
    for _ in 0..2 {
        assert_eq!(send("acme").await.unwrap().status(), 200);
    }
    let refused = send("acme").await.unwrap();
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 1000 tokens a minute: the ~200 tokens over take ~12 s to drain.
    assert!((10..=15).contains(&wait), "Retry-After {wait}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "tokens");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000 tokens per minute"),
        "{body}"
    );
    assert_eq!(send("globex").await.unwrap().status(), 200);
}
