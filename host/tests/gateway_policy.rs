//! `switchyard serve` as a process with a real policy component (the JS keyword policy
//! built by `bash policies/build.sh`) routing between a local-locality and a cloud mock
//! upstream; the `learned` policy with the shipped trained router; and the startup errors
//! for a missing or broken policy or classifier file.

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
    let scratch_dir = scratch("routes");
    let dir = scratch_dir.path();
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let config = gateway_support::write_config(dir, &policy, local, cloud, KEYWORD_PARAMS);
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

/// The shipped router, trained by `switchyard train router` on the routing data.
fn shipped_router() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/learned/router.bin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_policy_sends_what_the_trained_router_ranks_high_to_the_cloud() {
    let router_path = shipped_router();
    let router = switchyard::router_model::RouterModel::load(&router_path).unwrap();
    let hard = "Let p = (1, 2, 5, 4)(2, 3) in S_5. Find the index of <p> in S_5.\nA. 8\nB. 2\nC. 24\nD. 120\nAnswer:";
    let easy = "Which of these is a primary colour?\nA. Red\nB. Pink\nC. Teal\nD. Grey\nAnswer:";
    let (hard_rank, easy_rank) = (router.rank_text(hard), router.rank_text(easy));
    assert!(hard_rank > easy_rank, "{hard_rank} vs {easy_rank}");
    // A strong share whose cut falls between the two prompts' ranks.
    let share = 1.0 - (hard_rank + easy_rank) / 2.0;

    let policy = built_policy("learned");
    let scratch_dir = scratch("learned");
    let dir = scratch_dir.path();
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let extra = format!(
        "[policy.params]\nstrong_share = \"{share}\"\n[classifiers]\nrouter = \"{}\"\n",
        router_path.display()
    );
    let config = gateway_support::write_config(dir, &policy, local, cloud, &extra);
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    for (text, backend, reason) in [
        (hard, "openai", "strong:learned"),
        (easy, "local", "weak:learned"),
    ] {
        let (status, headers, body) = gateway.chat(&client, text, "acme").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-switchyard-backend"], backend, "{text}");
        assert_eq!(headers["x-switchyard-reason"], reason, "{text}");
    }

    // Without the classifier the policy says so and stays local first.
    let config = gateway_support::write_config(dir, &policy, local, cloud, "");
    let gateway = Gateway::start(&config).await;
    let (status, headers, body) = gateway.chat(&client, hard, "acme").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-backend"], "local");
    assert_eq!(headers["x-switchyard-reason"], "weak:unscored");

    // A classifier file that is missing stops startup and is named.
    let missing = dir.join("no-router.bin");
    let extra = format!("[classifiers]\nrouter = \"{}\"\n", missing.display());
    let config = gateway_support::write_config(dir, &policy, local, cloud, &extra);
    let out = serve_command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no-router.bin"), "{stderr}");
}

#[tokio::test]
async fn missing_or_broken_policy_stops_startup_with_a_clear_error() {
    let scratch_dir = scratch("broken-start");
    let dir = scratch_dir.path();
    let addr = free_port();

    let missing = dir.join("nope.wasm");
    let config = gateway_support::write_config(dir, &missing, addr, addr, "");
    let out = serve_command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nope.wasm"), "{stderr}");
    assert!(stderr.contains("policies/build.sh"), "{stderr}");

    let truncated = dir.join("truncated.wasm");
    let bytes = std::fs::read(built_policy("keyword")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let config = gateway_support::write_config(dir, &truncated, addr, addr, "");
    let out = serve_command(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("truncated.wasm"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_log_records_each_request_and_replays() {
    let policy = built_policy("keyword");
    let scratch_dir = scratch("decision-log");
    let dir = scratch_dir.path();
    let log = dir.join("decisions.jsonl");
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let extra = format!(
        "{KEYWORD_PARAMS}\n[decision_log]\npath = \"{}\"\n",
        log.display()
    );
    let config = gateway_support::write_config(dir, &policy, local, cloud, &extra);
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let (status, _, _) = gateway
        .chat(&client, "Summarize: mail bob@example.com", "acme")
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = gateway.chat(&client, "Implement a parser", "globex").await;
    assert_eq!(status, 200);
    let streamed = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "auto", "stream": true,
            "messages": [{"role": "user", "content": "Classify: fine"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let _ = streamed.text().await.unwrap();

    // The writer thread flushes after each batch.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_tenant = |t: &str| records.iter().find(|r| r["tenant"] == t).unwrap();
    let acme = by_tenant("acme");
    assert_eq!(acme["schema"], "switchyard.decision.v1");
    assert_eq!(acme["pii"], serde_json::json!(["email"]));
    assert_eq!(acme["backend"], "local");
    assert_eq!(acme["status"], 200);
    assert_eq!(acme["usage"]["completion_tokens"], 5);
    assert!(acme.get("messages").is_none(), "content is off by default");
    assert!(!lines.iter().any(|l| l.contains("bob@example.com")));
    assert_eq!(by_tenant("globex")["backend"], "openai");
    assert!((by_tenant("globex")["cost_usd"].as_f64().unwrap() - 7.5e-5).abs() < 1e-12);
    let stream = records.iter().find(|r| r["streaming"] == true).unwrap();
    assert_eq!(stream["status"], 200);
    assert!(stream["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // The log is a replay workload as it is.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["replay", "--json", "--policy"])
        .arg(&policy)
        .arg("--workload")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["workload"]["requests"], 3, "{report}");
}
