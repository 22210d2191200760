//! Three `switchyard serve` replicas on one PostgreSQL ledger (a real server the test
//! starts): a hard cap holds across them under 300 concurrent requests and the ledger
//! total equals what the clients were told they cost; a `kill -9` of one replica mid-
//! traffic loses no committed row, and its open reservations are settled by the others;
//! a tenant's rate limit holds across the three; the database stopped for 10 s gives each
//! `[ledger] when_down` behaviour and full recovery; a policy version uploaded to one
//! replica (or rolled back on one) is served by all, and survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;
#[path = "../gateway/tests/support/pg_server.rs"]
mod pg_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::{Value, json};

use gateway_support::{Gateway, built_policy, cache_dir, label, scratch, spawn_upstream};
use pg_server::PgServer;
use switchyard::ledger::{Budget, Ledger, PostgresUrl};

/// An upstream that bills exactly `max_tokens` completion tokens (1 without) and no
/// prompt, after `delay_ms`.
async fn upstream(delay_ms: u64) -> SocketAddr {
    let handler = move |body: String| async move {
        let body: Value = serde_json::from_str(&body).unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        axum::Json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0,
                      "completion_tokens": body["max_tokens"].as_u64().unwrap_or(1)}
        }))
    };
    let app = axum::Router::new().route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A config for every replica: the ledger at `url`, `acme` capped at `cap`, everything
/// routed to `upstream` at $0 in and $2 per Mtok out (5000 tokens: exactly $0.01).
fn config(dir: &Path, url: &str, upstream: SocketAddr, cap: f64) -> PathBuf {
    config_with(dir, url, upstream, &format!("hard_cap_usd = {cap}"), "")
}

/// [`config`] with `acme`'s section set to `tenant` and `ledger` added to `[ledger]`.
fn config_with(dir: &Path, url: &str, upstream: SocketAddr, tenant: &str, ledger: &str) -> PathBuf {
    let path = dir.join("switchyard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [policy]
            static_targets = ["up"]
            [ledger]
            url = "{url}"
            {ledger}
            [tenants.acme]
            {tenant}
            [[backends]]
            name = "up"
            kind = "openai_compatible"
            base_url = "http://{upstream}/v1"
            models = ["m"]
            usd_per_mtok_in = 0.0
            usd_per_mtok_out = 2.0
            "#
        ),
    )
    .unwrap();
    path
}

/// One $0.01 request; (status, request id, cost header).
async fn request(client: &reqwest::Client, gateway: SocketAddr) -> (u16, String, f64) {
    let response = client
        .post(format!("http://{gateway}/v1/chat/completions"))
        .header("x-switchyard-tenant", "acme")
        .json(&json!({"model": "m", "max_tokens": 5000,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await;
    let Ok(response) = response else {
        return (0, String::new(), 0.0);
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("x-request-id");
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        let id = format!("{id} {body}");
        return (status, id, 0.0);
    }
    let cost = header("x-switchyard-cost-usd").parse().unwrap_or(0.0);
    (status, id, cost)
}

fn inspect(url: &str) -> Ledger {
    Ledger::inspect_postgres(
        &PostgresUrl::parse(url, None).unwrap(),
        BTreeMap::new(),
        Budget::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_cap_holds_across_three_replicas() {
    let server = PgServer::start();
    let url = server.database("ledger");
    let dir = scratch("pg-cap");
    let config = config(dir.path(), &url, upstream(20).await, 1.0);
    let gateways = [
        Gateway::start(&config).await,
        Gateway::start(&config).await,
        Gateway::start(&config).await,
    ];
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (client, addr) = (client.clone(), gateways[i % 3].addr);
            tokio::spawn(async move { request(&client, addr).await })
        })
        .collect();
    let (mut admitted, mut billed) = (0u64, 0.0);
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, id, cost) = task.await.unwrap();
        assert!(
            status != 200 || ids.insert(id.clone()),
            "request id {id} twice"
        );
        match status {
            200 => {
                admitted += 1;
                billed += cost;
            }
            429 => assert!(id.contains("budget_exceeded"), "{id}"),
            other => panic!("unexpected status {other}"),
        }
    }
    // 100 × $0.01 is exactly the $1.00 cap: no more can pass it, on any replica.
    assert!(admitted <= 100, "{admitted} admitted past the cap");
    assert_eq!(
        admitted, 100,
        "the cap admits exactly 100 requests of $0.01"
    );
    // Settlements are written behind (within milliseconds); the replicas are killed
    // only after they landed.
    let ledger = inspect(&url);
    let start = Instant::now();
    let tenants = loop {
        let tenants = ledger.tenants().unwrap();
        if tenants[0].open_reservations == 0 {
            break tenants;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{tenants:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(gateways);
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].settled_attempts, admitted);
    assert!(
        (tenants[0].total_usd - billed).abs() < 1e-9,
        "ledger ${} vs clients' cost headers ${billed}",
        tenants[0].total_usd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_replica_loses_no_row_and_the_others_settle_its_reservations() {
    let server = PgServer::start();
    let url = server.database("ledger");
    let dir = scratch("pg-kill");
    // A cap far away: each reservation is committed before its upstream call.
    let config = config(dir.path(), &url, upstream(100).await, 1000.0);
    let mut gateways = vec![
        Gateway::start(&config).await,
        Gateway::start(&config).await,
        Gateway::start(&config).await,
    ];
    let addrs: Vec<SocketAddr> = gateways.iter().map(|g| g.addr).collect();
    let client = reqwest::Client::new();
    let answered = Arc::new(Mutex::new(Vec::<(String, f64)>::new()));
    let mut tasks = Vec::new();
    // A request every 5 ms for ~1.2 s; replica 0 is killed at ~0.6 s.
    for i in 0..240 {
        let (client, answered, addr) = (client.clone(), answered.clone(), addrs[i % 3]);
        tasks.push(tokio::spawn(async move {
            let (status, id, cost) = request(&client, addr).await;
            if status == 200 {
                answered.lock().unwrap().push((id, cost));
            }
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        if i == 120 {
            gateways[0].child.kill().unwrap(); // SIGKILL
            gateways[0].child.wait().unwrap();
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 100, "only {} answered", answered.len());

    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed_open = || async {
        db.query_one(
            "SELECT COUNT(*) FROM attempts WHERE state = 'reserved'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    assert!(
        killed_open().await > 0,
        "the kill left no request in flight; the test proves nothing"
    );
    // The others notice the expired lease (5 s) and settle what it left open.
    let start = Instant::now();
    while killed_open().await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the dead replica's reservations were never settled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every answered request has its row, settled at what the client was told (or, for
    // the dead replica's last window, at its estimate: the same $0.01 here).
    for (id, cost) in &answered {
        let rows = db
            .query(
                "SELECT state, cost_nanos FROM attempts WHERE request_id = $1",
                &[id],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{id}: {} rows", rows.len());
        let state: String = rows[0].get(0);
        let nanos: Option<i64> = rows[0].get(1);
        assert_eq!(state, "settled", "{id}");
        assert_eq!(nanos, Some((cost * 1e9).round() as i64), "{id}");
    }
    let recovered: i64 = db
        .query_one("SELECT COUNT(*) FROM attempts WHERE recovered", &[])
        .await
        .unwrap()
        .get(0);
    assert!(recovered > 0, "nothing was recovered");
    // The survivors still serve, and the totals agree with the rows.
    let (status, ..) = request(&client, addrs[1]).await;
    assert_eq!(status, 200);
    // Its settlement is written behind, within milliseconds.
    let start = Instant::now();
    while killed_open().await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "settlement never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = &inspect(&url).tenants().unwrap()[0];
    let month: i64 = db
        .query_one(
            "SELECT COALESCE(SUM(nanos), 0)::bigint FROM month_totals",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(t.open_reservations, 0);
    assert!(
        (t.total_usd - month as f64 / 1e9).abs() < 1e-9,
        "{t:?} vs {month}"
    );
    drop(gateways);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_across_three_replicas() {
    let server = PgServer::start();
    let url = server.database("ledger");
    let dir = scratch("pg-rate");
    let config = config_with(
        dir.path(),
        &url,
        upstream(5).await,
        "requests_per_minute = 60\n[tenants.globex]",
        "",
    );
    let gateways = [
        Gateway::start(&config).await,
        Gateway::start(&config).await,
        Gateway::start(&config).await,
    ];
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..150)
        .map(|i| {
            let (client, addr) = (client.clone(), gateways[i % 3].addr);
            tokio::spawn(async move { request(&client, addr).await })
        })
        .collect();
    let mut admitted = 0u64;
    for task in tasks {
        let (status, body, _) = task.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => assert!(body.contains("rate_limit_exceeded"), "{body}"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    // A minute's allowance at once, then one more per second that passed.
    let elapsed = started.elapsed().as_secs();
    assert!(
        (60..=60 + elapsed + 1).contains(&admitted),
        "{admitted} admitted in {elapsed} s against 60 per minute on three replicas"
    );
    // The next refusal says when to come back, on whichever replica.
    let (status, headers, body) = gateways[2].chat(&client, "hi", "acme").await;
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(body["error"]["type"], "requests");
    // Another tenant is not limited.
    let (status, _, body) = gateways[0].chat(&client, "hi", "globex").await;
    assert_eq!(status, 200, "{body}");
    drop(gateways);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_down_for_10_s_refuses_or_serves_as_configured_then_recovers() {
    let server = PgServer::start();
    let upstream = upstream(5).await;
    let (refuse_url, serve_url) = (server.database("refuse"), server.database("serve"));
    let (refuse_dir, serve_dir) = (scratch("pg-down-refuse"), scratch("pg-down-serve"));
    let cap = "hard_cap_usd = 1000";
    let refusing = Gateway::start(&config_with(
        refuse_dir.path(),
        &refuse_url,
        upstream,
        cap,
        "",
    ))
    .await;
    let serving = Gateway::start(&config_with(
        serve_dir.path(),
        &serve_url,
        upstream,
        cap,
        r#"when_down = "serve""#,
    ))
    .await;
    let client = reqwest::Client::new();
    // (phase, refusing's status, serving's status and cost): 0 before, 1 down, 2 after.
    let mut seen: Vec<(u8, u16, u16, String, f64)> = Vec::new();
    let started = Instant::now();
    let mut phase = 0u8;
    while started.elapsed() < Duration::from_secs(18) {
        let elapsed = started.elapsed();
        if phase == 0 && elapsed > Duration::from_secs(2) {
            server.stop();
            phase = 1;
        } else if phase == 1 && elapsed > Duration::from_secs(12) {
            server.start_again();
            phase = 2;
        }
        let (refused, _, _) = request(&client, refusing.addr).await;
        let (served, id, cost) = request(&client, serving.addr).await;
        seen.push((phase, refused, served, id, cost));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during: Vec<_> = seen.iter().filter(|s| s.0 == 1).collect();
    assert!(during.len() > 20, "{} requests while down", during.len());
    // Refuse: 503 while the database is down (once the replica noticed), 200 again after.
    assert!(
        during.iter().filter(|s| s.1 == 503).count() > during.len() / 2,
        "{:?}",
        during.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    assert!(seen.iter().all(|s| matches!(s.1, 200 | 503)));
    let last = &seen[seen.len() - 10..];
    assert!(last.iter().all(|s| s.1 == 200), "refusing did not recover");
    // Serve: every request answered, down or not.
    let failed: Vec<_> = seen.iter().filter(|s| s.2 != 200).collect();
    assert!(failed.is_empty(), "serving failed: {failed:?}");
    // Nothing lost: once the held rows are committed the database has every answered
    // request, settled at what its client was told.
    let ledger = inspect(&serve_url);
    let answered = seen.len() as u64;
    let billed: f64 = seen.iter().map(|s| s.4).sum();
    let wait = Instant::now();
    let tenant = loop {
        let tenants = ledger.tenants().unwrap();
        if let Some(t) = tenants.first()
            && t.settled_attempts == answered
            && t.open_reservations == 0
        {
            break t.clone();
        }
        assert!(
            wait.elapsed() < Duration::from_secs(20),
            "{tenants:?}, {answered} answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        (tenant.total_usd - billed).abs() < 1e-9,
        "ledger ${} vs clients' ${billed}",
        tenant.total_usd
    );
}

/// A config deciding with the component at `policy` (slot `live`), both backends mock
/// upstreams, on the ledger at `url`.
fn policy_config(dir: &Path, url: &str, policy: &Path, upstream: SocketAddr) -> PathBuf {
    let path = dir.join("switchyard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [policy]
            path = "{policy}"
            cache_dir = "{cache}"
            fallback_targets = ["local"]
            deadline_ms = 50
            outer_timeout_ms = 500
            [admin]
            watch = false
            [ledger]
            url = "{url}"
            [[backends]]
            name = "local"
            kind = "openai_compatible"
            locality = "local"
            base_url = "http://{upstream}/v1"
            models = ["small"]
            [[backends]]
            name = "openai"
            kind = "openai_compatible"
            base_url = "http://{upstream}/v1"
            models = ["big"]
            "#,
            policy = policy.display(),
            cache = cache_dir().display(),
        ),
    )
    .unwrap();
    path
}

/// Waits until every gateway answers with policy `want`; returns how long it took.
async fn all_serve(gateways: &[&Gateway], client: &reqwest::Client, want: &str) -> Duration {
    let start = Instant::now();
    for gateway in gateways {
        loop {
            let (status, headers, body) = gateway.chat(client, "hi", "acme").await;
            assert_eq!(status, 200, "{body}");
            if headers["x-switchyard-policy"] == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} never served {want}",
                gateway.addr
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    start.elapsed()
}

/// Each replica's `/admin/policies` entry for slot `live`.
async fn live_slot(gateway: &Gateway, client: &reqwest::Client) -> Value {
    let list: Value = client
        .get(gateway.url("/admin/policies"))
        .bearer_auth(gateway_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["policies"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::print_stdout)]
async fn policy_versions_reach_every_replica_and_survive_a_restart() {
    let server = PgServer::start();
    let url = server.database("ledger");
    let dir = scratch("pg-policies");
    let (first, second) = (built_policy("latency"), built_policy("complexity"));
    let live = dir.path().join("live.wasm");
    std::fs::copy(&first, &live).unwrap();
    let config = policy_config(dir.path(), &url, &live, spawn_upstream("ok").await);
    let mut gateways = vec![
        Gateway::start(&config).await,
        Gateway::start(&config).await,
        Gateway::start(&config).await,
    ];
    let client = reqwest::Client::new();
    let (label_first, label_second) = (label("live", &first), label("live", &second));
    all_serve(&gateways.iter().collect::<Vec<_>>(), &client, &label_first).await;

    // An upload on replica 0 is served by replicas 1 and 2.
    let (status, body) = gateways[0]
        .admin(
            &client,
            "/admin/policies/live/versions?wait=true",
            std::fs::read(&second).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let took = all_serve(&[&gateways[1], &gateways[2]], &client, &label_second).await;
    println!("an upload reached the other two replicas in {took:?}");

    // A broken upload is refused where it was made, and no replica changes.
    let (status, body) = gateways[1]
        .admin(
            &client,
            "/admin/policies/live/versions?wait=true",
            b"\0asm junk".to_vec(),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for gateway in &gateways {
        let slot = live_slot(gateway, &client).await;
        assert_eq!(slot["live"]["policy"], label_second.as_str(), "{slot}");
    }

    // A restarted replica takes the shared version, not its file.
    gateways.remove(1);
    gateways.push(Gateway::start(&config).await);
    all_serve(&[&gateways[2]], &client, &label_second).await;
    let slot = live_slot(&gateways[2], &client).await;
    assert_eq!(slot["live"]["origin"], "replica", "{slot}");

    // A rollback on one replica is served by all.
    let (status, body) = gateways[1]
        .admin(&client, "/admin/policies/live/rollback", Vec::new())
        .await;
    assert_eq!(status, 200, "{body}");
    let took = all_serve(&gateways.iter().collect::<Vec<_>>(), &client, &label_first).await;
    println!("a rollback reached every replica in {took:?}");
    for gateway in &gateways {
        assert!(
            live_slot(gateway, &client).await["last_error"].is_null(),
            "a replica reported an error"
        );
    }
}
