//! `switchyard serve` against hostile clients (issue 15): a connection flood of silent
//! uploads, huge and countless tenant names, a policy answering thousands of distinct
//! reasons, and client text with newlines and megabytes in it. Each test reproduces the
//! attack and asserts the bound; figures go to stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod gateway_support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gateway_support::{Gateway, built_policy, free_port, scratch, serve_command};
use serde_json::{Value, json};
use switchyard::ledger::{Budget, Ledger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A gateway deciding with the misbehave test guest (normal decision: `local` first)
/// between two mock upstreams, with `extra` appended to its config.
async fn gateway(name: &str, extra: &str) -> (Gateway, tempfile::TempDir) {
    let dir = scratch(name);
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let config =
        gateway_support::write_config(dir.path(), &built_policy("misbehave"), local, cloud, extra);
    (Gateway::start(&config).await, dir)
}

async fn chat(client: &reqwest::Client, gw: &Gateway, body: &Value) -> (u16, Value) {
    let response = client
        .post(gw.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sequential requests on `client` (one kept-alive connection) for `period`, a few
/// milliseconds apart: successes and the sorted latencies.
async fn sequential(
    client: &reqwest::Client,
    gw: &Gateway,
    period: Duration,
) -> (usize, Vec<Duration>) {
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let mut ok = 0;
    let mut times = Vec::new();
    let until = Instant::now() + period;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            client
                .post(gw.url("/v1/chat/completions"))
                .json(&body)
                .send(),
        )
        .await;
        if let Ok(Ok(r)) = sent
            && r.status() == 200
            && r.bytes().await.is_ok()
        {
            ok += 1;
        }
        times.push(started.elapsed());
    }
    times.sort();
    (ok, times)
}

/// How one silent attacker connection ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ended {
    /// Closed before it was given time to upload (over the connection cap).
    AtOnce,
    /// Closed by the server after the body deadline.
    Deadline,
    /// Still open when the attacker gave up on it.
    StillOpen,
}

/// An attacker connection: headers announcing a 1,000-byte body, one byte of it, then
/// silence until the server closes the connection.
async fn silent_upload(gw: std::net::SocketAddr) -> Option<(Ended, Duration)> {
    let started = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(gw).await.ok()?;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\
                content-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
    let wrote = sock.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut buf)).await;
    let elapsed = started.elapsed();
    let ended = match read {
        Err(_) => Ended::StillOpen,
        Ok(_) if wrote.is_err() || elapsed < Duration::from_millis(500) => Ended::AtOnce,
        Ok(_) => Ended::Deadline,
    };
    Some((ended, elapsed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_of_silent_uploads_leaves_other_clients_served() {
    const CAP: usize = 64;
    const ATTACKERS: usize = 4 * CAP;
    let extra = format!(
        "[server]\nmax_connections = {CAP}\nheader_read_timeout_ms = 2000\nbody_read_timeout_ms = 1500\n"
    );
    let (gw, _dir) = gateway("flood", &extra).await;
    let client = reqwest::Client::new();
    let (quiet_ok, quiet) = sequential(&client, &gw, Duration::from_secs(2)).await;
    assert_eq!(quiet_ok, quiet.len());

    // The flood: ATTACKERS silent uploads at all times, each replaced when it ends.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = gw.addr;
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            let mut ended = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                while running.len() < ATTACKERS {
                    // At most ~500 new connections a second: a flood, not a busy loop
                    // of the test itself on a 2-core machine.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.spawn(silent_upload(addr));
                }
                if let Some(Ok(Some(end))) = running.join_next().await {
                    ended.push(end);
                }
            }
            while let Some(Ok(end)) = running.join_next().await {
                ended.extend(end);
            }
            ended
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Several body deadlines long: the attacker's slots are freed and retaken meanwhile.
    let (attack_ok, attacked) = sequential(&client, &gw, Duration::from_secs(6)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ended = flood.await.unwrap();

    let at_once = ended.iter().filter(|e| e.0 == Ended::AtOnce).count();
    let by_deadline: Vec<Duration> = ended
        .iter()
        .filter(|e| e.0 == Ended::Deadline)
        .map(|e| e.1)
        .collect();
    let still_open = ended.iter().filter(|e| e.0 == Ended::StillOpen).count();
    let longest = by_deadline.iter().max().copied().unwrap_or_default();
    eprintln!(
        "flood: quiet p50 {:?} p99 {:?} ({quiet_ok} ok); under {ATTACKERS} silent uploads (cap \
         {CAP}) p50 {:?} p99 {:?}, {attack_ok}/{} ok; attacker connections: {} ended, {at_once} \
         closed at once, {} by the body deadline (longest {longest:?}), {still_open} still open",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&attacked, 0.5),
        percentile(&attacked, 0.99),
        attacked.len(),
        ended.len(),
        by_deadline.len(),
    );
    assert!(
        attacked.len() >= 100,
        "only {} requests sent",
        attacked.len()
    );
    assert!(
        attack_ok * 100 >= attacked.len() * 99,
        "{attack_ok}/{} served",
        attacked.len()
    );
    assert!(
        by_deadline.len() >= 2 * CAP,
        "silent uploads must be closed by the body deadline: {ended:?}"
    );
    assert!(
        longest < Duration::from_secs(10),
        "a silent upload held its connection for {longest:?}"
    );
    assert_eq!(still_open, 0, "silent uploads still open after 20 s");
    assert!(
        at_once > 0,
        "connections past the cap must be closed at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_countless_tenant_names_are_refused_and_bounded() {
    const CAP: usize = 50;
    let (gw, dir) = gateway("tenants", &format!("[auth]\nmax_tenants = {CAP}\n")).await;
    let client = reqwest::Client::new();
    let hello = |user: &str| json!({"model": "auto", "user": user, "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..20 {
        assert_eq!(chat(&client, &gw, &hello("warmup")).await.0, 200);
    }
    let pid = gw.child.id();
    let quiet = rss_kib(pid);

    // 300 distinct 300 KB names: refused, never echoed.
    for i in 0..300 {
        let name = format!("{i}-{}", "n".repeat(300 << 10));
        let (status, body) = chat(&client, &gw, &hello(&name)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_tenant");
        assert!(body.to_string().len() < 1000);
    }
    let bad_header = client
        .post(gw.url("/v1/chat/completions"))
        .header("x-switchyard-tenant", "a b")
        .json(&hello("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_header.status(), 400);

    // Valid but countless: past the cap, refused.
    let mut served = 0;
    for i in 0..(4 * CAP) {
        let (status, body) = chat(&client, &gw, &hello(&format!("tenant-{i}"))).await;
        match status {
            200 => served += 1,
            403 => assert_eq!(body["error"]["code"], "tenant_limit"),
            other => panic!("{other}: {body}"),
        }
    }
    let after = rss_kib(pid);
    eprintln!(
        "tenants: RSS {quiet} KiB quiet, {after} KiB after 300 × 300 KB names and {} \
         distinct names ({served} served, cap {CAP})",
        4 * CAP
    );
    assert!(
        served <= CAP,
        "{served} tenants served past the cap of {CAP}"
    );
    assert!(served >= CAP - 1, "only {served} served");
    assert!(after < 2 * quiet, "RSS grew from {quiet} to {after} KiB");
    drop(gw);
    let ledger = Ledger::inspect(
        &dir.path().join("ledger.db"),
        BTreeMap::new(),
        Budget::default(),
    )
    .unwrap();
    let tenants = ledger.tenants().unwrap();
    assert!(
        tenants.len() <= CAP + 1,
        "{} tenants in the ledger",
        tenants.len()
    );
    assert!(tenants.iter().all(|t| t.tenant.len() <= 64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_distinct_reasons_keep_metrics_bounded() {
    let (gw, _dir) = gateway("reasons", "").await;
    let client = reqwest::Client::new();
    for i in 0..3000 {
        let reason = format!("r{i}: {}", "detail ".repeat(i % 50));
        let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"misbehave": "echo-reason", "reason": reason}});
        assert_eq!(chat(&client, &gw, &body).await.0, 200);
    }
    let page = client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = page.lines().filter(|l| !l.starts_with('#')).count();
    let requests = page
        .lines()
        .filter(|l| l.starts_with("switchyard_requests_total{"))
        .count();
    eprintln!(
        "reasons: 3000 distinct reasons → /metrics {} bytes, {series} series, {requests} \
         switchyard_requests_total series",
        page.len()
    );
    assert!(page.len() < 100 << 10, "/metrics is {} bytes", page.len());
    assert!(requests <= 65, "{requests} request series");
    assert!(page.contains(r#"reason="other""#), "{page}");
    assert!(page.contains(r#"reason="r0""#), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_with_newlines_and_megabytes_cannot_flood_or_forge_log_lines() {
    let dir = scratch("logtext");
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let config =
        gateway_support::write_config(dir.path(), &built_policy("misbehave"), local, cloud, "");
    let log_path = dir.path().join("gateway.log");
    let addr = free_port();
    let child = serve_command(&config)
        .arg("--listen")
        .arg(addr.to_string())
        .env(
            "RUST_LOG",
            "info,switchyard=trace,hyper=trace,hyper_util=trace,axum=trace,reqwest=trace",
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let gw = Gateway { child, addr };
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !client
        .get(gw.url("/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(180), "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let forged = "\nFORGED 2026-01-01T00:00:00Z ERROR switchyard: forged line\r\n";
    let huge = format!("{forged}{}{forged}", "x".repeat(3 << 20));
    let msg = json!([{"role": "user", "content": "hi"}]);
    // Each attack with the status it must get: refused for what it is, or served.
    let attacks = [
        // Unknown model: quoted in the warning.
        (
            json!({"model": format!("auto{huge}"), "messages": msg}),
            404,
        ),
        // Tenant from `user`: refused.
        (json!({"model": "auto", "user": huge, "messages": msg}), 400),
        // A reason the policy echoes: logged with the completion.
        (
            json!({"model": "auto", "messages": msg,
                   "metadata": {"misbehave": "echo-reason", "reason": huge}}),
            200,
        ),
        // Labels.
        (
            json!({"model": "auto", "messages": msg, "metadata": {"team": huge}}),
            200,
        ),
    ];
    for (i, (body, expected)) in attacks.iter().enumerate() {
        for _ in 0..3 {
            let (status, reply) = chat(&client, &gw, body).await;
            assert_eq!(status, *expected, "attack {i}: {:.600}", reply.to_string());
        }
    }
    drop(gw);
    let log = std::fs::read(&log_path).unwrap();
    let log = String::from_utf8_lossy(&log);
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    eprintln!(
        "log: {} lines, {} bytes, longest line {longest} bytes after 12 requests with 3 MB values",
        log.lines().count(),
        log.len()
    );
    assert!(
        log.contains("request refused"),
        "the unknown model was not logged at all"
    );
    assert!(longest <= 16 << 10, "a log line of {longest} bytes");
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "forged line: {line:.200}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let (gw, _dir) = gateway("idle", "[server]\nheader_read_timeout_ms = 1000\n").await;
    let mut idle = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), idle.read_to_end(&mut rest)).await;
    eprintln!(
        "idle: keep-alive connection closed after {:?}",
        started.elapsed()
    );
    assert!(closed.is_ok(), "an idle keep-alive connection stayed open");
}
