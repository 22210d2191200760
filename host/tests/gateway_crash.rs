//! `kill -9` of `switchyard serve` during traffic: every request that was answered has its
//! committed ledger row after the crash, and a restart leaves no reservation open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use serde_json::{Value, json};

use gateway_support::{Gateway, scratch};
use switchyard::ledger::{Budget, Ledger};

/// An upstream that takes 100 ms per request, so requests are in flight at the kill.
async fn slow_upstream() -> SocketAddr {
    let handler = |body: String| async move {
        let body: Value = serde_json::from_str(&body).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        axum::Json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}
        }))
    };
    let app = axum::Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A gateway config in `dir` routing everything to `upstream` ($1/$2 per Mtok), with its
/// ledger beside it: (config path, ledger path).
fn gateway_config(dir: &std::path::Path, upstream: SocketAddr) -> (PathBuf, PathBuf) {
    let ledger_path = dir.join("ledger.db");
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [policy]
            static_targets = ["up"]
            [ledger]
            path = "{ledger}"
            [[backends]]
            name = "up"
            kind = "openai_compatible"
            base_url = "http://{upstream}/v1"
            models = ["m"]
            usd_per_mtok_in = 1.0
            usd_per_mtok_out = 2.0
            "#,
            ledger = ledger_path.display()
        ),
    )
    .unwrap();
    (config, ledger_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_committed_row_and_restart_settles_open_reservations() {
    let scratch_dir = scratch("crash");
    let dir = scratch_dir.path();
    let upstream = slow_upstream().await;
    let (config, ledger_path) = gateway_config(dir, upstream);
    let mut gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    // A request every 5 ms for ~1.2 s; the kill lands at ~0.6 s.
    for _ in 0..240 {
        let (client, answered, url) = (
            client.clone(),
            answered.clone(),
            gateway.url("/v1/chat/completions"),
        );
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("x-switchyard-tenant", "acme")
                .json(&json!({"model": "m", "max_tokens": 1000,
                              "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await;
            if let Ok(r) = response
                && r.status() == 200
            {
                let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                answered.lock().unwrap().push(id);
            }
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        if tasks.len() == 120 {
            gateway.child.kill().unwrap(); // SIGKILL
            gateway.child.wait().unwrap();
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(!answered.is_empty(), "no request finished before the kill");

    // After the crash, before any restart: every answered request's row is committed
    // (rows are committed within milliseconds of the reservation, long before this 100 ms
    // upstream answers; the settlement is written behind, so the last few may still be
    // reserved).
    {
        let ledger = Ledger::inspect(&ledger_path, BTreeMap::new(), Budget::default()).unwrap();
        for id in &answered {
            let state = ledger.attempt_state(id, 0).unwrap();
            assert!(
                matches!(state.as_deref(), Some("settled" | "reserved")),
                "{id}: {state:?}"
            );
        }
        let open: u64 = ledger
            .tenants()
            .unwrap()
            .iter()
            .map(|t| t.open_reservations)
            .sum();
        assert!(
            open > 0,
            "the kill left no request in flight; the test proves nothing"
        );
    }

    // A restart settles what the crash left open; answered rows keep their cost.
    let restarted = Gateway::start(&config).await;
    drop(restarted);
    let ledger = Ledger::inspect(&ledger_path, BTreeMap::new(), Budget::default()).unwrap();
    let acme = ledger.tenants().unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].open_reservations, 0);
    assert!(acme[0].settled_attempts >= answered.len() as u64);
    for id in &answered {
        assert_eq!(
            ledger.attempt_state(id, 0).unwrap().as_deref(),
            Some("settled")
        );
    }
    // Each answered request cost 1000 × $1 + 1000 × $2 per Mtok = $0.003.
    assert!(acme[0].total_usd >= 0.003 * answered.len() as f64 - 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_and_flushes_the_ledger() {
    let scratch_dir = scratch("sigterm");
    let dir = scratch_dir.path();
    let upstream = slow_upstream().await;
    let (config, ledger_path) = gateway_config(dir, upstream);
    let mut gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), gateway.url("/v1/chat/completions"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("x-switchyard-tenant", "acme")
                    .json(&json!({"model": "m", "max_tokens": 1000,
                                  "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // The upstream takes 100 ms: stop the server while every request is in flight.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let pid = gateway.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut answered = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Ok(200)) {
            answered += 1;
        }
    }
    let exit = tokio::task::spawn_blocking(move || gateway.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
    assert_eq!(
        answered, 20,
        "requests in flight must be drained, not dropped"
    );

    // Without any restart (nothing recovered): every attempt is settled at its real cost.
    let ledger = Ledger::inspect(&ledger_path, BTreeMap::new(), Budget::default()).unwrap();
    let acme = &ledger.tenants().unwrap()[0];
    assert_eq!(acme.open_reservations, 0, "{acme:?}");
    assert_eq!(acme.settled_attempts, 20, "{acme:?}");
    // 1000 × $1 + 1000 × $2 per Mtok = $0.003 per request.
    assert!((acme.total_usd - 0.06).abs() < 1e-9, "{acme:?}");
}
