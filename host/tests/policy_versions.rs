//! Contract versions side by side: the `hybrid` policy as built from main before contract
//! 0.2 (`fixtures/policies-v0.1/hybrid.wasm`, `switchyard:policy@0.1.0`) and as built from
//! this tree (`switchyard:policy@0.2.0`, by `bash policies/build.sh rust`) serve real
//! requests in one gateway, under two model aliases; `switchyard policy check` names the
//! contract each was built against.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::path::PathBuf;

use gateway_support::{Gateway, built_policy, label, scratch};
use serde_json::json;

/// The 0.1.0 component (see `fixtures/policies-v0.1/README.md`).
fn v0_1_hybrid() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/policies-v0.1/hybrid.wasm"
    ))
}

fn policy_check(path: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["policy", "check"])
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn policy_check_names_each_components_contract() {
    let old = policy_check(&v0_1_hybrid());
    assert!(old.contains("contract: switchyard:policy@0.1.0"), "{old}");
    let new = policy_check(&built_policy("hybrid"));
    assert!(new.contains("contract: switchyard:policy@0.2.0"), "{new}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_and_a_0_2_policy_serve_side_by_side() {
    let old = v0_1_hybrid();
    let new = built_policy("hybrid");
    let dir = scratch("versions");
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let extra = format!(
        r#"
        [[policies]]
        name = "hybrid-v2"
        path = "{}"
        models = ["auto-v2"]
        "#,
        new.display()
    );
    let config = gateway_support::write_config(dir.path(), &old, local, cloud, &extra);
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();

    let ask = |model: &'static str, body: serde_json::Value| {
        let client = client.clone();
        let url = gateway.url("/v1/chat/completions");
        async move {
            let mut body = body;
            body["model"] = json!(model);
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, headers, body)
        }
    };
    let simple = json!({"messages": [{"role": "user", "content": "Classify the sentiment: I love this product"}]});
    let complex = json!({"messages": [{"role": "user",
        "content": "Implement a B-tree in Rust with deletion"}]});
    // With tools: the 0.1 policy cannot see them; the 0.2 one does (both backends here
    // are OpenAI-compatible, so both can serve them and the decision is unchanged).
    let tools = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]});

    for (model, file, name) in [("auto", &old, "hybrid"), ("auto-v2", &new, "hybrid-v2")] {
        for body in [&simple, &complex, &tools] {
            let (status, headers, reply) = ask(model, body.clone()).await;
            assert_eq!(status, 200, "{model}: {reply}");
            assert_eq!(
                headers["x-switchyard-policy"].to_str().unwrap(),
                label(name, file),
                "{model}"
            );
            let reason = headers["x-switchyard-reason"].to_str().unwrap();
            assert!(reason.starts_with("complexity:"), "{model}: {reason}");
        }
        let (_, headers, reply) = ask(model, simple.clone()).await;
        assert_eq!(headers["x-switchyard-backend"], "local", "{model}");
        assert_eq!(reply["choices"][0]["message"]["content"], "from local");
        let (_, headers, reply) = ask(model, complex.clone()).await;
        assert_eq!(headers["x-switchyard-backend"], "openai", "{model}");
        assert_eq!(reply["choices"][0]["message"]["content"], "from cloud");
    }
}
