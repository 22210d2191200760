//! Hot reload against a running `switchyard serve`: policy files swapped under steady load
//! with broken files mixed in (no failed request, only valid versions ever answer), the
//! admin API (auth, upload, rollback), a canary split and shadow agreement counts.
//!
//! Versions: the Rust `latency` and `complexity` policies (the swap test: cheap decisions,
//! so 250 req/s does not saturate two cores), the JS `keyword` and Python `ab_split`
//! components (admin, canary, shadow) and the Rust `trapper`
//! test guest, built by `bash policies/build.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod gateway_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_support::{Gateway, built_policy, label, scratch, spawn_upstream, write_config};

/// The tests here measure and load a gateway each; one at a time keeps the load honest.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A component for another world: it exports a lone function and no router.
fn wrong_world() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (export "other" (func $f)))"#,
    )
    .unwrap()
}

/// Replaces `path` the way `mv` does: write a temp file, rename over.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Keyword params (the other versions ignore them) plus `extra` config.
fn params_config(extra: &str) -> String {
    format!(
        "{extra}\n[policy.params]\nlocal_keywords = \"summarize\"\ncloud_keywords = \"implement\"\n"
    )
}

/// Waits until a request is answered by `want` (polling), returns the time it took.
async fn wait_for_label(gateway: &Gateway, client: &reqwest::Client, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let (status, headers, _) = gateway.chat(client, "Summarize: hi", "probe").await;
        assert_eq!(status, 200);
        if headers["x-switchyard-policy"] == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{want} never became live"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The backend that served each scripted (text, tenant) request.
async fn first_targets(
    gateway: &Gateway,
    client: &reqwest::Client,
    script: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (text, tenant) in script {
        let (status, headers, _) = gateway.chat(client, text, tenant).await;
        assert_eq!(status, 200);
        out.push(headers["x-switchyard-backend"].to_str().unwrap().to_owned());
    }
    out
}

/// A gateway serving `policy` as `live`, file watching off (the admin API drives it).
async fn admin_gateway(name: &str, policy: &Path) -> Gateway {
    let scratch_dir = scratch(name);
    let dir = scratch_dir.path();
    let live = dir.join("live.wasm");
    replace(&live, &std::fs::read(policy).unwrap());
    let local = spawn_upstream("local").await;
    let cloud = spawn_upstream("cloud").await;
    let config = write_config(
        dir,
        &live,
        local,
        cloud,
        &params_config("[admin]\nwatch = false"),
    );
    Gateway::start(&config).await
}

struct Record {
    started: Instant,
    /// The gateway's request counter (from `x-request-id`): the order of decisions.
    seq: u128,
    status: u16,
    policy: String,
}

/// `chatcmpl-<process prefix><counter>` → a number ordered like the counter.
fn request_seq(headers: &reqwest::header::HeaderMap) -> u128 {
    let id = headers["x-request-id"].to_str().unwrap();
    u128::from_str_radix(id.trim_start_matches("chatcmpl-"), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_fail_no_request_and_broken_files_never_go_live() {
    let _serial = SERIAL.lock().await;
    let a = std::fs::read(built_policy("latency")).unwrap();
    let b = std::fs::read(built_policy("complexity")).unwrap();
    let trap = std::fs::read(built_policy("trapper")).unwrap();
    let (label_a, label_b) = (
        label("live", &built_policy("latency")),
        label("live", &built_policy("complexity")),
    );
    let scratch_dir = scratch("reload-load");
    let dir = scratch_dir.path();
    let live = dir.join("live.wasm");
    replace(&live, &b);
    let local = spawn_upstream("local").await;
    let cloud = spawn_upstream("cloud").await;
    let config = write_config(dir, &live, local, cloud, &params_config(""));
    let gateway = Arc::new(Gateway::start(&config).await);
    let client = reqwest::Client::new();
    // Compile both versions once (uncached compile), so the swaps below are cache hits.
    replace(&live, &a);
    let uncached = wait_for_label(&gateway, &client, &label_a).await;
    println!(
        "first swap to latency (compiled unless cached): {} ms",
        uncached.as_millis()
    );

    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let begin = Instant::now();
    // Open-loop load: a request every 4 ms (250/s), each on its own task, whatever the
    // latency of the ones before.
    let load = {
        let (gateway, client, records, stop) = (
            gateway.clone(),
            client.clone(),
            records.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            let mut tasks = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let (gateway, client, records) = (gateway.clone(), client.clone(), records.clone());
                tasks.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let text = if n.is_multiple_of(2) {
                        "Summarize: a"
                    } else {
                        "Implement: b"
                    };
                    let (status, headers, _) =
                        gateway.chat(&client, text, &format!("tenant-{n}")).await;
                    let policy = headers
                        .get("x-switchyard-policy")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    let seq = if status == 200 {
                        request_seq(&headers)
                    } else {
                        0
                    };
                    records.lock().unwrap().push(Record {
                        started,
                        seq,
                        status,
                        policy,
                    });
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };

    // 60 swaps: valid versions alternate, a broken file between each pair. Each valid
    // write is followed until a probe request is decided by it (the write → serving
    // time), so a slow machine stretches the test instead of failing it.
    let truncated = a[..a.len() / 2].to_vec();
    let broken: [(&str, Vec<u8>); 3] = [
        ("truncated", truncated),
        ("wrong world", wrong_world()),
        ("traps", trap),
    ];
    let mut latencies: Vec<Duration> = Vec::new();
    let mut current = label_a.clone();
    for i in 0..30 {
        let (_, bytes) = &broken[i % 3];
        std::fs::write(&live, bytes).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (bytes, next) = if current == label_a {
            (&b, label_b.clone())
        } else {
            (&a, label_a.clone())
        };
        replace(&live, bytes);
        latencies.push(wait_for_label(&gateway, &client, &next).await);
        current = next;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // At least 20 s of load in all.
    while begin.elapsed() < Duration::from_secs(21) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    let elapsed = begin.elapsed();
    let mut records = std::mem::take(&mut *records.lock().unwrap());
    records.sort_by_key(|r| r.started);

    let failed = records.iter().filter(|r| r.status != 200).count();
    let mut by_label: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        *by_label.entry(r.policy.as_str()).or_default() += 1;
    }
    println!(
        "{} requests in {:.1} s ({:.0}/s), {} failed, by policy {:?}",
        records.len(),
        elapsed.as_secs_f64(),
        records.len() as f64 / elapsed.as_secs_f64(),
        failed,
        by_label
    );
    assert_eq!(failed, 0, "requests failed during reloads");
    assert!(
        records.len() as f64 / elapsed.as_secs_f64() >= 200.0,
        "the load was under 200 requests/s; the test proves nothing"
    );
    for r in &records {
        assert!(
            r.policy == label_a || r.policy == label_b,
            "a response came from {:?}, not a valid version",
            r.policy
        );
    }

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "write → new version serving over {} cached swaps: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        pct(0.5).as_millis(),
        pct(0.99).as_millis(),
        pct(1.0).as_millis()
    );
    assert!(pct(0.5) < Duration::from_secs(1), "{latencies:?}");

    // In decision order the version changes exactly once per swap: no request is decided
    // by the old version after the new one has decided one.
    let mut by_seq: Vec<&Record> = records.iter().collect();
    by_seq.sort_by_key(|r| r.seq);
    let changes = by_seq
        .windows(2)
        .filter(|w| w[0].policy != w[1].policy)
        .count();
    assert_eq!(
        changes,
        latencies.len(),
        "the version flip-flopped between swaps"
    );

    // The broken files were reported, not served.
    let report = gateway.admin_report(&client).await;
    let slot = &report["policies"][0];
    assert!(slot["rejected_updates"].as_u64().unwrap() >= 20, "{slot}");
    assert!(slot["swaps"].as_u64().unwrap() >= 30, "{slot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_uploads_rolls_back_and_splits_canary_traffic() {
    let _serial = SERIAL.lock().await;
    let keyword = built_policy("keyword");
    let ab_split = built_policy("ab_split");
    let (label_a, label_b) = (label("live", &keyword), label("live", &ab_split));
    let gateway = admin_gateway("reload-admin", &keyword).await;
    let client = reqwest::Client::new();

    // No token, wrong token: 401.
    let r = client
        .get(gateway.url("/admin/policies"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(gateway.url("/admin/policies"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A broken upload is refused with the reason; the live version stays.
    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?wait=true",
            wrong_world(),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("world"),
        "{body}"
    );
    let (status, _) = gateway
        .admin(
            &client,
            "/admin/policies/nope/versions?wait=true",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(status, 404);

    // Upload B live, then roll back to A.
    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?wait=true",
            std::fs::read(&ab_split).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["to"], label_b.as_str());
    let (_, headers, _) = gateway.chat(&client, "Summarize: x", "acme").await;
    assert_eq!(headers["x-switchyard-policy"], label_b.as_str());
    let (status, body) = gateway
        .admin(&client, "/admin/policies/live/rollback", Vec::new())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["to"], label_a.as_str());
    let (_, headers, _) = gateway.chat(&client, "Summarize: x", "acme").await;
    assert_eq!(headers["x-switchyard-policy"], label_a.as_str());

    // Canary: B for 30 % of tenants, stable per tenant.
    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?mode=canary&percent=30&wait=true",
            std::fs::read(&ab_split).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let n = 2_000;
    let mut on_b = 0;
    for i in 0..n {
        let (status, headers, _) = gateway
            .chat(&client, "Summarize: x", &format!("t-{i}"))
            .await;
        assert_eq!(status, 200);
        if headers["x-switchyard-policy"] == label_b.as_str() {
            on_b += 1;
        }
    }
    let share = f64::from(on_b) / f64::from(n);
    println!(
        "canary 30 %: {on_b} of {n} requests on the candidate ({:.1} %)",
        share * 100.0
    );
    assert!((0.25..=0.35).contains(&share), "{share}");
    let first: Vec<_> = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (_, headers, _) = gateway.chat(&client, "Summarize: x", "t-7").await;
            seen.push(headers["x-switchyard-policy"].to_str().unwrap().to_owned());
        }
        seen
    };
    assert!(first.windows(2).all(|w| w[0] == w[1]), "{first:?}");

    // A shadow does not silently replace the running canary.
    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?mode=shadow&wait=true",
            std::fs::read(&keyword).unwrap(),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains("already has a canary candidate"),
        "{body}"
    );

    // Abort: everything back on A.
    let (status, _) = gateway
        .admin(&client, "/admin/policies/live/abort", Vec::new())
        .await;
    assert_eq!(status, 200);
    for i in 0..20 {
        let (_, headers, _) = gateway
            .chat(&client, "Summarize: x", &format!("t-{i}"))
            .await;
        assert_eq!(headers["x-switchyard-policy"], label_a.as_str());
    }
}

/// This policy's upload with `digest` in the admin report.
async fn upload_report(
    gateway: &Gateway,
    client: &reqwest::Client,
    digest: &str,
) -> serde_json::Value {
    let report = gateway.admin_report(client).await;
    let uploads = report["policies"][0]["uploads"].as_array().unwrap().clone();
    uploads
        .into_iter()
        .find(|u| u["digest"] == digest)
        .unwrap_or_else(|| panic!("no upload {digest} in {report}"))
}

/// Polls the upload with `digest` until it is finished: the stages seen, the last report.
async fn follow_upload(
    gateway: &Gateway,
    client: &reqwest::Client,
    digest: &str,
) -> (Vec<String>, serde_json::Value) {
    let started = Instant::now();
    let mut stages: Vec<String> = Vec::new();
    loop {
        let upload = upload_report(gateway, client, digest).await;
        let stage = upload["stage"].as_str().unwrap().to_owned();
        if stages.last() != Some(&stage) {
            stages.push(stage.clone());
        }
        if !["queued", "compiling", "testing"].contains(&stage.as_str()) {
            return (stages, upload);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "upload still {stage}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_answer_at_once_and_show_their_progress_until_live_or_failed() {
    let _serial = SERIAL.lock().await;
    let keyword = built_policy("keyword");
    let ab_split = built_policy("ab_split");
    let (label_a, label_b) = (label("live", &keyword), label("live", &ab_split));
    let gateway = admin_gateway("reload-background", &keyword).await;
    let client = reqwest::Client::new();
    let digest = |bytes: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };

    let (_, headers, _) = gateway.chat(&client, "Summarize: x", "acme").await;
    assert_eq!(headers["x-switchyard-policy"], label_a.as_str());

    // A new version: 202 at once, queued; the report follows it until it is live.
    let bytes = std::fs::read(&ab_split).unwrap();
    let (status, body) = gateway
        .admin(&client, "/admin/policies/live/versions", bytes.clone())
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["upload"]["stage"], "queued", "{body}");
    assert_eq!(body["upload"]["digest"], digest(&bytes).as_str(), "{body}");
    let (stages, upload) = follow_upload(&gateway, &client, &digest(&bytes)).await;
    println!(
        "background upload: stages {stages:?}, {} ms",
        upload["elapsed_ms"]
    );
    assert_eq!(upload["stage"], "live", "{upload}");
    assert_eq!(upload["outcome"]["to"], label_b.as_str(), "{upload}");
    let (_, headers, _) = gateway.chat(&client, "Summarize: x", "acme").await;
    assert_eq!(headers["x-switchyard-policy"], label_b.as_str());

    // The same bytes again: nothing to prepare, answered at once.
    let (status, body) = gateway
        .admin(&client, "/admin/policies/live/versions", bytes.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "unchanged", "{body}");

    // A broken component is accepted, then fails with its reason; the live version stays.
    let broken = wrong_world();
    let (status, body) = gateway
        .admin(&client, "/admin/policies/live/versions", broken.clone())
        .await;
    assert_eq!(status, 202, "{body}");
    let (_, upload) = follow_upload(&gateway, &client, &digest(&broken)).await;
    assert_eq!(upload["stage"], "failed", "{upload}");
    assert!(
        upload["error"].as_str().unwrap().contains("world"),
        "{upload}"
    );
    let (_, headers, _) = gateway.chat(&client, "Summarize: x", "acme").await;
    assert_eq!(headers["x-switchyard-policy"], label_b.as_str());

    // What can be refused at once still is: a bad canary percent, an unknown policy.
    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?mode=canary&percent=150",
            std::fs::read(&keyword).unwrap(),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = gateway
        .admin(&client, "/admin/policies/nope/versions", b"x".to_vec())
        .await;
    assert_eq!(status, 404);
}

/// The policy version that answers a plain request.
async fn serving(gateway: &Gateway, client: &reqwest::Client) -> String {
    let (status, headers, _) = gateway.chat(client, "Summarize: x", "acme").await;
    assert_eq!(status, 200);
    headers["x-switchyard-policy"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_outlives_a_restart_unless_the_file_changed_meanwhile() {
    let _serial = SERIAL.lock().await;
    let [a, b, c] = ["latency", "complexity", "keyword"].map(built_policy);
    let [label_a, label_b, label_c] = [&a, &b, &c].map(|p| label("live", p));
    let scratch_dir = scratch("reload-restart");
    let dir = scratch_dir.path();
    let live = dir.join("live.wasm");
    replace(&live, &std::fs::read(&a).unwrap());
    let local = spawn_upstream("local").await;
    let cloud = spawn_upstream("cloud").await;
    let config = write_config(
        dir,
        &live,
        local,
        cloud,
        &params_config("[admin]\nwatch = false"),
    );
    let client = reqwest::Client::new();
    // The file is A; B, then C are uploaded; a rollback makes B live again.
    let gateway = Gateway::start(&config).await;
    assert_eq!(serving(&gateway, &client).await, label_a);
    for version in [&b, &c] {
        let (status, body) = gateway
            .admin(
                &client,
                "/admin/policies/live/versions?wait=true",
                std::fs::read(version).unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = gateway
        .admin(&client, "/admin/policies/live/rollback", Vec::new())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serving(&gateway, &client).await, label_b);

    // A restart serves B, not the file.
    drop(gateway);
    let gateway = Gateway::start(&config).await;
    assert_eq!(serving(&gateway, &client).await, label_b);
    let report = gateway.admin_report(&client).await;
    assert_eq!(
        report["policies"][0]["live"]["origin"], "restored",
        "{report}"
    );

    // A new file deployed while the gateway was down wins over the saved state.
    drop(gateway);
    replace(&live, &std::fs::read(&c).unwrap());
    let gateway = Gateway::start(&config).await;
    assert_eq!(serving(&gateway, &client).await, label_c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_counts_agreements_and_disagreements() {
    let _serial = SERIAL.lock().await;
    let keyword = built_policy("keyword");
    let ab_split = built_policy("ab_split");
    let gateway = admin_gateway("reload-shadow", &keyword).await;
    let client = reqwest::Client::new();
    let script: Vec<(String, String)> = (0..40u32)
        .map(|i| {
            let text = if i.is_multiple_of(3) {
                "Implement: x"
            } else {
                "Summarize: x"
            };
            (text.to_owned(), format!("shadow-tenant-{}", i % 10))
        })
        .collect();
    // What each version does alone (both list both backends, so the first target decides
    // whether two decisions agree).
    let with_a = first_targets(&gateway, &client, &script).await;
    let (status, _) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?wait=true",
            std::fs::read(&ab_split).unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    let with_b = first_targets(&gateway, &client, &script).await;
    let (status, _) = gateway
        .admin(&client, "/admin/policies/live/rollback", Vec::new())
        .await;
    assert_eq!(status, 200);
    let expected_disagree = with_a.iter().zip(&with_b).filter(|(a, b)| a != b).count();
    assert!(expected_disagree > 0 && expected_disagree < script.len());

    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions?mode=shadow&wait=true",
            std::fs::read(&ab_split).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let live_again = first_targets(&gateway, &client, &script).await;
    assert_eq!(live_again, with_a, "the shadow must not act");

    let start = Instant::now();
    let candidate = loop {
        let report = gateway.admin_report(&client).await;
        let c = report["policies"][0]["candidate"].clone();
        if c["served"].as_u64() == Some(script.len() as u64) {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(candidate["mode"], "shadow");
    let count = |key: &str| candidate[key].as_u64().unwrap() as usize;
    // A decision where either side missed its deadline (a loaded machine) took its
    // fallback: counted apart, never as a disagreement.
    let (agree, disagree, fallbacks) = (count("agree"), count("disagree"), count("fallbacks"));
    assert_eq!(agree + disagree + fallbacks, script.len(), "{candidate}");
    assert!(disagree <= expected_disagree, "{candidate}");
    assert!(agree <= script.len() - expected_disagree, "{candidate}");
    assert!(fallbacks < script.len() / 4, "{candidate}");
    if fallbacks == 0 {
        assert_eq!(disagree, expected_disagree);
    }
    assert!(!candidate["samples"].as_array().unwrap().is_empty());
}
