//! `switchyard serve` as a process with a real policy component (the JS keyword policy
//! built by `bash policies/build.sh`) routing between a local-locality and a cloud mock
//! upstream; and the startup errors for a missing or broken policy file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use gateway_support::{Gateway, built_policy, free_port, label, scratch, serve_command};

const KEYWORD_PARAMS: &str = r#"
[policy.params]
local_keywords = "summarize,classify"
cloud_keywords = "implement,prove"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_component_routes_each_request_and_names_itself() {
    let policy = built_policy("keyword");
    let dir = scratch("routes");
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let config = gateway_support::write_config(&dir, &policy, local, cloud, KEYWORD_PARAMS);
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();

    let (status, headers, body) = gateway
        .chat(&client, "Summarize this paragraph please.", "acme")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-backend"], "local");
    assert_eq!(body["choices"][0]["message"]["content"], "from local");
    assert_eq!(
        headers["x-switchyard-policy"].to_str().unwrap(),
        label("keyword", &policy)
    );
    let reason = headers["x-switchyard-reason"].to_str().unwrap();
    assert!(reason.contains("keyword:local"), "{reason}");

    let (status, headers, body) = gateway
        .chat(&client, "Implement a B-tree in Rust.", "acme")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-backend"], "openai");
    assert_eq!(body["choices"][0]["message"]["content"], "from cloud");
    let cost: f64 = headers["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (cost - (10.0 * 2.5 + 5.0 * 10.0) / 1e6).abs() < 1e-9,
        "{cost}"
    );

    // The compiled component was written to the cache for the next start.
    let cached = std::fs::read_dir(gateway_support::cache_dir())
        .unwrap()
        .count();
    assert!(cached >= 1, "no compiled component cached");
}

#[tokio::test]
async fn missing_or_broken_policy_stops_startup_with_a_clear_error() {
    let dir = scratch("broken-start");
    let addr = free_port();

    let missing = dir.join("nope.wasm");
    let config = gateway_support::write_config(&dir, &missing, addr, addr, "");
    let out = serve_command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nope.wasm"), "{stderr}");
    assert!(stderr.contains("policies/build.sh"), "{stderr}");

    let truncated = dir.join("truncated.wasm");
    let bytes = std::fs::read(built_policy("keyword")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let config = gateway_support::write_config(&dir, &truncated, addr, addr, "");
    let out = serve_command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("truncated.wasm"), "{stderr}");
}
