//! Gateway tests against mock Anthropic and Gemini upstreams on 127.0.0.1:0 that replay
//! fixtures in each provider's wire format (`tests/fixtures/`): request translation,
//! response and stream translation into OpenAI shapes, and failover on overload; and
//! `/v1/embeddings` routed by model to OpenAI-compatible and Gemini upstreams, billed in
//! the ledger.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use switchyard::config::Config;
use switchyard::dispatch::{Dispatcher, StaticTargets};
use switchyard::domain::estimate_tokens;
use switchyard::http::{self, AppState};
use switchyard::ledger::{Budget, Ledger};

const ANTHROPIC_KEY: &str = "sk-ant-test-ZZZZ-never-log-me";
const GEMINI_KEY: &str = "AIza-test-YYYY-never-log-me";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[derive(Default)]
struct Upstream {
    anthropic_overloaded: bool,
    seen: Mutex<Vec<(String, Value, HeaderMap)>>,
}

fn reply(body: String, sse: bool) -> Response {
    let ct = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    ([(axum::http::header::CONTENT_TYPE, ct)], body).into_response()
}

async fn anthropic(State(up): State<Arc<Upstream>>, headers: HeaderMap, body: String) -> Response {
    up.record("anthropic".into(), &body, &headers);
    let body: Value = serde_json::from_str(&body).unwrap();
    let stream = body["stream"].as_bool().unwrap_or(false);
    if headers.get("x-api-key").map(|v| v.to_str().unwrap()) != Some(ANTHROPIC_KEY)
        || headers.get("anthropic-version").is_none()
    {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    if up.anthropic_overloaded {
        return (
            StatusCode::from_u16(529).unwrap(),
            fixture("anthropic_overloaded.json"),
        )
            .into_response();
    }
    if stream {
        reply(fixture("anthropic_stream.sse"), true)
    } else {
        reply(fixture("anthropic_message.json"), false)
    }
}

async fn gemini(
    State(up): State<Arc<Upstream>>,
    Path(action): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    up.record(format!("gemini {action} {query:?}"), &body, &headers);
    if headers.get("x-goog-api-key").map(|v| v.to_str().unwrap()) != Some(GEMINI_KEY) {
        return (StatusCode::FORBIDDEN, "{}").into_response();
    }
    match (action.split_once(':').map(|(_, a)| a), query.as_deref()) {
        (Some("generateContent"), None) => reply(fixture("gemini_generate.json"), false),
        (Some("batchEmbedContents"), None) => reply(
            json!({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 0.0]}]}).to_string(),
            false,
        ),
        (Some("streamGenerateContent"), Some("alt=sse")) => {
            reply(fixture("gemini_stream.sse"), true)
        }
        _ => (StatusCode::NOT_FOUND, "{}").into_response(),
    }
}

/// OpenAI's embeddings reply, whatever was asked.
const OPENAI_EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAAPwAAgL4="}],"model":"text-embedding-3-small","usage":{"prompt_tokens":12,"total_tokens":12}}"#;

async fn openai_embeddings(
    State(up): State<Arc<Upstream>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    up.record("openai embeddings".into(), &body, &headers);
    reply(OPENAI_EMBEDDINGS.to_owned(), false)
}

impl Upstream {
    /// Keeps what a mock endpoint was sent.
    fn record(&self, what: String, body: &str, headers: &HeaderMap) {
        let body: Value = serde_json::from_str(body).unwrap();
        self.seen
            .lock()
            .unwrap()
            .push((what, body, headers.clone()));
    }
}

async fn spawn_upstream(anthropic_overloaded: bool) -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream {
        anthropic_overloaded,
        ..Upstream::default()
    });
    let app = axum::Router::new()
        .route("/v1/messages", post(anthropic))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1beta/models/{action}", post(gemini))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, up)
}

async fn spawn_gateway(up: SocketAddr, targets: &[&str]) -> SocketAddr {
    let toml = format!(
        r#"
        [policy]
        static_targets = {targets:?}
        [[backends]]
        name = "anthropic"
        kind = "anthropic"
        base_url = "http://{up}/v1"
        models = ["claude-sonnet-4-5"]
        [[backends]]
        name = "gemini"
        kind = "gemini"
        base_url = "http://{up}/v1beta"
        models = ["gemini-2.0-flash"]
        "#
    );
    spawn_gateway_with(&toml, targets, None).await
}

async fn spawn_gateway_with(
    toml: &str,
    targets: &[&str],
    ledger: Option<Arc<Ledger>>,
) -> SocketAddr {
    gateway_support::capture_logs();
    let config = Config::parse(toml).unwrap();
    let env = |var: &str| match var {
        "ANTHROPIC_API_KEY" => Some(ANTHROPIC_KEY.to_owned()),
        "GEMINI_API_KEY" => Some(GEMINI_KEY.to_owned()),
        _ => None,
    };
    let router = StaticTargets::new(targets.iter().map(|t| (*t).to_owned()).collect());
    let mut dispatcher = Dispatcher::from_config(
        &config,
        Arc::new(router),
        BTreeMap::new(),
        Arc::new(estimate_tokens),
        &env,
    )
    .unwrap();
    if let Some(ledger) = ledger {
        dispatcher = dispatcher.with_ledger(ledger);
    }
    let app = http::router(AppState {
        dispatcher: Arc::new(dispatcher),
        max_body_bytes: config.server.max_body_bytes,
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

fn body(stream: bool) -> Value {
    json!({"model": "auto", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
}

async fn post_chat(gw: SocketAddr, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{gw}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// (content, finish reasons, usage) of an SSE body, asserting it ends with [DONE].
fn collect_stream(text: &str) -> (String, Vec<String>, Value) {
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let finish = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_owned))
        .collect();
    (content, finish, chunks.last().unwrap()["usage"].clone())
}

#[tokio::test]
async fn anthropic_completion_is_translated_both_ways() {
    let (up, seen) = spawn_upstream(false).await;
    let gw = spawn_gateway(up, &["anthropic"]).await;
    let resp = post_chat(gw, &body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "anthropic");
    // claude-sonnet-4-5 list price $3/$15: 2095 in, 503 out.
    let cost: f64 = resp.headers()["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((cost - (2095.0 * 3.0 + 503.0 * 15.0) / 1e6).abs() < 1e-9);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hi! My name is Claude."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2095);
    assert_eq!(v["usage"]["completion_tokens"], 503);
    let seen = seen.seen.lock().unwrap();
    let sent = &seen[0].1;
    assert_eq!(sent["system"], "be brief");
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert!(sent["max_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn anthropic_stream_becomes_openai_chunks() {
    let (up, _) = spawn_upstream(false).await;
    let gw = spawn_gateway(up, &["anthropic"]).await;
    let resp = post_chat(gw, &body(true)).await;
    assert_eq!(resp.status(), 200);
    let (content, finish, usage) = collect_stream(&resp.text().await.unwrap());
    assert_eq!(content, "Hello!");
    assert_eq!(finish, ["length"]);
    assert_eq!(usage["prompt_tokens"], 25);
    assert_eq!(usage["completion_tokens"], 15);
}

#[tokio::test]
async fn gemini_completion_and_stream() {
    let (up, seen) = spawn_upstream(false).await;
    let gw = spawn_gateway(up, &["gemini"]).await;
    let resp = post_chat(gw, &body(false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    assert_eq!(v["usage"]["total_tokens"], 13);
    {
        let seen = seen.seen.lock().unwrap();
        assert_eq!(seen[0].0, "gemini gemini-2.0-flash:generateContent None");
        assert_eq!(
            seen[0].1["systemInstruction"]["parts"][0]["text"],
            "be brief"
        );
        assert_eq!(
            seen[0].1["contents"],
            json!([{"role": "user", "parts": [{"text": "hi"}]}])
        );
    }

    let resp = post_chat(gw, &body(true)).await;
    assert_eq!(resp.status(), 200);
    let (content, finish, usage) = collect_stream(&resp.text().await.unwrap());
    assert_eq!(content, "Hello there!");
    assert_eq!(finish, ["stop"]);
    assert_eq!(usage["completion_tokens"], 3);
}

#[tokio::test]
async fn anthropic_overload_fails_over_to_gemini_and_keys_stay_secret() {
    let (up, _) = spawn_upstream(true).await;
    let gw = spawn_gateway(up, &["anthropic", "gemini"]).await;
    for stream in [false, true] {
        let resp = post_chat(gw, &body(stream)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-backend"], "gemini");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(ANTHROPIC_KEY) && !text.contains(GEMINI_KEY));
    }
    // Only anthropic: 529 is a 5xx, every target failed → 502 naming the overload.
    let gw = spawn_gateway(up, &["anthropic"]).await;
    let resp = post_chat(gw, &body(false)).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded")
    );
}

async fn post_embeddings(gw: SocketAddr, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{gw}/v1/embeddings"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn embeddings_go_to_the_backend_serving_the_model_and_are_billed() {
    let (up, seen) = spawn_upstream(false).await;
    let dead = gateway_support::free_port();
    // "a-down" comes first by name and serves the model too: its failure is failed over.
    let toml = format!(
        r#"
        [policy]
        static_targets = ["oai"]
        [[backends]]
        name = "a-down"
        kind = "openai_compatible"
        base_url = "http://{dead}/v1"
        models = ["text-embedding-3-small"]
        [[backends]]
        name = "oai"
        kind = "openai_compatible"
        base_url = "http://{up}/v1"
        models = ["gpt-4o-mini", "text-embedding-3-small"]
        [[backends]]
        name = "gemini"
        kind = "gemini"
        base_url = "http://{up}/v1beta"
        models = ["gemini-2.0-flash", "gemini-embedding-001"]
        "#
    );
    let ledger = Arc::new(Ledger::in_memory(BTreeMap::new(), Budget::default()).unwrap());
    let gw = spawn_gateway_with(&toml, &["oai"], Some(ledger.clone())).await;

    // OpenAI-compatible: the body goes up as sent (model set), the reply comes back as sent.
    let asked = json!({"model": "text-embedding-3-small", "input": ["hello", "world"],
                       "encoding_format": "base64", "dimensions": 1, "user": "u1"});
    let resp = post_embeddings(gw, &asked).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "oai");
    let cost: f64 = resp.headers()["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((cost - 12.0 * 0.02 / 1e6).abs() < 1e-12, "{cost}");
    assert_eq!(resp.text().await.unwrap(), OPENAI_EMBEDDINGS);
    {
        let seen = seen.seen.lock().unwrap();
        let (what, body, _) = seen.last().unwrap();
        assert_eq!(what, "openai embeddings");
        assert_eq!(body, &asked);
    }
    // Billed to the tenant at the model's input price.
    let spent = ledger.status("u1").today_usd;
    assert!((spent - 12.0 * 0.02 / 1e6).abs() < 1e-9, "{spent}");

    // Gemini: translated to batchEmbedContents and back into OpenAI's shape.
    let resp = post_embeddings(
        gw,
        &json!({"model": "gemini-embedding-001", "input": ["hi there", "x"], "dimensions": 2}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "gemini");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "gemini-embedding-001");
    assert_eq!(
        body["data"][0],
        json!({"object": "embedding", "index": 0, "embedding": [0.5, -0.25]})
    );
    assert_eq!(body["data"][1]["embedding"], json!([1.0, 0.0]));
    let tokens = estimate_tokens("hi there") + estimate_tokens("x");
    assert_eq!(body["usage"]["prompt_tokens"], tokens);
    {
        let seen = seen.seen.lock().unwrap();
        let (what, sent, headers) = seen.last().unwrap();
        assert!(
            what.starts_with("gemini gemini-embedding-001:batchEmbedContents"),
            "{what}"
        );
        assert_eq!(headers["x-goog-api-key"], GEMINI_KEY);
        assert_eq!(
            sent["requests"][0],
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hi there"}]},
                   "outputDimensionality": 2})
        );
    }

    // What Gemini cannot honour is refused by name; an unknown model is a 404.
    let resp = post_embeddings(
        gw,
        &json!({"model": "gemini-embedding-001", "input": "x", "task_type": "clustering"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unsupported_parameter");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`task_type`"),
        "{err}"
    );
    let resp = post_embeddings(gw, &json!({"model": "nope", "input": "x"})).await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "model_not_found");
    // An empty input is the client's error, found before any upstream call.
    let resp = post_embeddings(gw, &json!({"model": "gpt-4o-mini", "input": []})).await;
    assert_eq!(resp.status(), 400);
}
