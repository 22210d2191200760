//! The dashboard's live stream under load: with a watcher on `/admin/events`, thousands of
//! requests all succeed and every decision reaches the watcher or is reported to it as
//! missed (`lagged`); the watcher is forgotten when it disconnects; an open stream does
//! not hold the gateway's shutdown. Prints the request rates with and without a watcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod gateway_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gateway_support::{ADMIN_TOKEN, Gateway, built_policy, scratch};
use serde_json::{Value, json};

const REQUESTS: usize = 2000;
const CONCURRENCY: usize = 16;

/// Sends [`REQUESTS`] chat requests, [`CONCURRENCY`] at a time; returns how many got a
/// 200 and the requests per second.
async fn load(gateway: &Gateway, client: &reqwest::Client) -> (usize, f64) {
    let url = gateway.url("/v1/chat/completions");
    let started = Instant::now();
    let ok = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let request = client
                .post(&url)
                .header(
                    "x-switchyard-tenant",
                    if i % 2 == 0 { "acme" } else { "globex" },
                )
                .json(&json!({"model": "auto", "max_tokens": 5,
                    "messages": [{"role": "user", "content": "Classify: fine"}]}));
            async move { request.send().await.is_ok_and(|r| r.status() == 200) }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|ok| futures_util::future::ready(*ok))
        .count()
        .await;
    (ok, REQUESTS as f64 / started.elapsed().as_secs_f64())
}

async fn watchers(gateway: &Gateway, client: &reqwest::Client) -> u64 {
    let overview: Value = client
        .get(gateway.url("/admin/overview"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    overview["watchers"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_reaches_the_watcher_or_is_counted_missed() {
    let scratch_dir = scratch("ui-feed");
    let dir = scratch_dir.path();
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let config = gateway_support::write_config(dir, &built_policy("latency"), local, cloud, "");
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();

    // No token, no stream.
    let refused = client
        .get(gateway.url("/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (ok, unwatched_rps) = load(&gateway, &client).await;
    assert_eq!(ok, REQUESTS);
    assert_eq!(watchers(&gateway, &client).await, 0);

    let events = client
        .get(gateway.url("/admin/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let received = Arc::new(AtomicU64::new(0));
    let missed = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let reader = {
        let (received, missed) = (received.clone(), missed.clone());
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut body = events.bytes_stream();
            let mut buffer = String::new();
            while let Some(chunk) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if block.starts_with("event: ready") {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    } else if block.starts_with("event: decision") {
                        let data = block
                            .lines()
                            .nth(1)
                            .unwrap()
                            .strip_prefix("data: ")
                            .unwrap();
                        let d: Value = serde_json::from_str(data).unwrap();
                        assert_eq!(d["status"], 200, "{d}");
                        received.fetch_add(1, Ordering::Relaxed);
                    } else if block.starts_with("event: lagged") {
                        let n = block
                            .lines()
                            .nth(1)
                            .unwrap()
                            .strip_prefix("data: ")
                            .unwrap();
                        missed.fetch_add(n.trim().parse::<u64>().unwrap(), Ordering::Relaxed);
                    }
                }
            }
        })
    };
    ready_rx.await.unwrap();
    assert_eq!(watchers(&gateway, &client).await, 1);

    let (ok, watched_rps) = load(&gateway, &client).await;
    assert_eq!(ok, REQUESTS);
    let start = Instant::now();
    let total = || received.load(Ordering::Relaxed) + missed.load(Ordering::Relaxed);
    while total() < REQUESTS as u64 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        total(),
        REQUESTS as u64,
        "received {} + missed {}",
        received.load(Ordering::Relaxed),
        missed.load(Ordering::Relaxed)
    );
    eprintln!(
        "{REQUESTS} requests at concurrency {CONCURRENCY}: {unwatched_rps:.0} req/s unwatched, \
         {watched_rps:.0} req/s watched; the watcher received {} and missed {}",
        received.load(Ordering::Relaxed),
        missed.load(Ordering::Relaxed)
    );

    // The watcher leaves: the gateway forgets it.
    reader.abort();
    let _ = reader.await;
    let start = Instant::now();
    while watchers(&gateway, &client).await != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the watcher was not dropped after disconnecting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Shutdown with a watcher connected: the stream ends, the drain (30 s) is not waited.
    let mut events = client
        .get(gateway.url("/admin/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    events.chunk().await.unwrap();
    let mut gateway = gateway;
    let pid = gateway.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let start = Instant::now();
    while gateway.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "an open dashboard stream held the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream ended with the gateway.
    while let Ok(Some(_)) = events.chunk().await {}
}
