//! Gateway tests against mock OpenAI-compatible upstreams on 127.0.0.1:0: JSON and SSE,
//! failover, errors, headers, the listener's header-read timeout; and `/v1/embeddings` on
//! the local embedding model.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use switchyard::config::Config;
use switchyard::dispatch::{Dispatcher, StaticTargets};
use switchyard::domain::estimate_tokens;
use switchyard::http::{self, AppState};

const KEY_A: &str = "sk-test-key-AAAA-never-log-me";
const KEY_B: &str = "sk-test-key-BBBB-never-log-me";

/// What a mock upstream does with each request.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Ok,
    Status(u16),
    /// `status` for the first `n` requests, then Ok.
    FailFirst(u16, usize),
    /// SSE stream that sends two deltas and then drops the connection.
    BrokenStream,
}

#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    auth: Vec<String>,
}

struct Mock {
    mode: Mode,
    reply: &'static str,
    seen: Mutex<Seen>,
}

async fn mock_handler(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap();
    {
        let mut seen = mock.seen.lock().unwrap();
        seen.auth.push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        );
        seen.bodies.push(body.clone());
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    let seen_count = mock.seen.lock().unwrap().bodies.len();
    let mode = match mock.mode {
        Mode::FailFirst(code, n) if seen_count <= n => Mode::Status(code),
        Mode::FailFirst(..) => Mode::Ok,
        other => other,
    };
    match mode {
        Mode::Status(code) => {
            let mut r = (
                StatusCode::from_u16(code).unwrap(),
                axum::Json(json!({"error":{"message":format!("mock says {code}"),"type":"server_error"}})),
            )
                .into_response();
            if code == 429 {
                r.headers_mut().insert("retry-after", "1".parse().unwrap());
            }
            r
        }
        Mode::Ok if !stream => axum::Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": mock.reply},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000}
        }))
        .into_response(),
        Mode::Ok | Mode::BrokenStream | Mode::FailFirst(..) => {
            let model = body["model"].as_str().unwrap().to_owned();
            let chunk = |delta: Value, finish: Value| {
                format!(
                    "data: {}\n\n",
                    json!({"id":"c","object":"chat.completion.chunk","created":1,"model":model,
                           "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
                )
            };
            let mut parts = vec![
                chunk(json!({"role":"assistant","content":""}), Value::Null),
                chunk(json!({"content":"Hel"}), Value::Null),
                chunk(json!({"content":"lo"}), Value::Null),
            ];
            let broken = matches!(mode, Mode::BrokenStream);
            if !broken {
                parts.push(chunk(json!({}), json!("stop")));
                parts.push(format!(
                    "data: {}\n\n",
                    json!({"id":"c","object":"chat.completion.chunk","created":1,"model":model,"choices":[],
                           "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}})
                ));
                parts.push("data: [DONE]\n\n".to_owned());
            }
            use futures_util::StreamExt;
            let items = futures_util::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
            // Let the first chunks reach the gateway, then reset the connection.
            let reset = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(std::io::Error::other("reset"))
            })
            .take(usize::from(broken));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(items.chain(reset)))
                .unwrap()
        }
    }
}

async fn spawn_mock(mode: Mode, reply: &'static str) -> (SocketAddr, Arc<Mock>) {
    let mock = Arc::new(Mock {
        mode,
        reply,
        seen: Mutex::new(Seen::default()),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(mock_handler))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, mock)
}

/// Starts a gateway with two OpenAI-compatible backends `a` (primary) and `b`.
async fn spawn_gateway(a: SocketAddr, b: SocketAddr, extra_server: &str) -> SocketAddr {
    spawn_gateway_with(a, b, extra_server, "").await
}

/// `extra_a`: more settings of backend `a`.
async fn spawn_gateway_with(
    a: SocketAddr,
    b: SocketAddr,
    extra_server: &str,
    extra_a: &str,
) -> SocketAddr {
    gateway_support::capture_logs();
    let toml = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        max_body_bytes = 4096
        {extra_server}
        [policy]
        static_targets = ["a", "b"]
        [[backends]]
        name = "a"
        kind = "openai_compatible"
        base_url = "http://{a}/v1"
        api_key_env = "TEST_KEY_A"
        models = ["gpt-4o"]
        first_byte_timeout_ms = 2000
        {extra_a}
        [[backends]]
        name = "b"
        kind = "openai_compatible"
        base_url = "http://{b}/v1"
        api_key_env = "TEST_KEY_B"
        models = ["model-b"]
        usd_per_mtok_in = 1.0
        usd_per_mtok_out = 2.0
        "#
    );
    let config = Config::parse(&toml).unwrap();
    let env = |var: &str| match var {
        "TEST_KEY_A" => Some(KEY_A.to_owned()),
        "TEST_KEY_B" => Some(KEY_B.to_owned()),
        _ => None,
    };
    let dispatcher = Dispatcher::from_config(
        &config,
        Arc::new(StaticTargets::new(vec!["a".into(), "b".into()])),
        BTreeMap::new(),
        Arc::new(estimate_tokens),
        &env,
    )
    .unwrap();
    let app = http::router(AppState {
        dispatcher: Arc::new(dispatcher),
        max_body_bytes: config.server.max_body_bytes,
        client_keys: Arc::new(config.client_keys.clone()),
        tenants: Arc::new(http::tenants::TenantGate::new(&config)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(
        listener,
        app,
        config.server.conn,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    addr
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
           "stream": stream, "stream_options": {"include_usage": true}, "max_tokens": 50})
}

async fn post_chat(gw: SocketAddr, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{gw}/v1/chat/completions"))
        .header("x-switchyard-tenant", "acme")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Data payloads of an SSE body.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn completion_from_primary_with_headers_usage_and_cost() {
    let (a, mock_a) = spawn_mock(Mode::Ok, "from a").await;
    let (b, mock_b) = spawn_mock(Mode::Ok, "from b").await;
    let gw = spawn_gateway(a, b, "").await;
    let resp = post_chat(gw, &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-switchyard-backend"], "a");
    assert_eq!(h["x-switchyard-policy"], "static@config");
    assert_eq!(h["x-switchyard-reason"], "static route");
    // gpt-4o list price: 1000 in * 2.5 + 2000 out * 10 per Mtok.
    let cost: f64 = h["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((cost - 0.0225).abs() < 1e-9, "{cost}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "from a");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 3000);

    let seen = mock_a.seen.lock().unwrap();
    assert_eq!(seen.auth, vec![format!("Bearer {KEY_A}")]);
    assert_eq!(seen.bodies[0]["model"], "gpt-4o");
    assert_eq!(seen.bodies[0]["max_tokens"], 50);
    assert_eq!(seen.bodies[0]["messages"][0]["content"], "hi");
    assert!(mock_b.seen.lock().unwrap().bodies.is_empty());
}

#[tokio::test]
async fn client_api_keys_authenticate_and_fix_the_tenant() {
    use sha2::Digest;
    let (a, _mock_a) = spawn_mock(Mode::Ok, "from a").await;
    let (b, _mock_b) = spawn_mock(Mode::Ok, "from b").await;
    let digest = hex::encode(sha2::Sha256::digest(b"client-key-globex-never-log-me"));
    let auth = format!("[[auth.keys]]\ntenant = \"globex\"\nkey_sha256 = \"{digest}\"\n");
    let gw = spawn_gateway(a, b, &auth).await;
    let client = reqwest::Client::new();
    let url = format!("http://{gw}/v1/chat/completions");

    let resp = post_chat(gw, &chat_body(false)).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let wrong = client
        .post(&url)
        .bearer_auth("client-key-other-never-log-me")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let models = client
        .get(format!("http://{gw}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);

    // The key's tenant wins over a tenant header.
    let ok = client
        .post(&url)
        .bearer_auth("client-key-globex-never-log-me")
        .header("x-switchyard-tenant", "acme")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-switchyard-tenant"], "globex");
}

#[tokio::test]
async fn retries_with_backoff_before_failing_over() {
    let (a, mock_a) = spawn_mock(Mode::FailFirst(503, 2), "from a").await;
    let (b, mock_b) = spawn_mock(Mode::Ok, "from b").await;
    let gw = spawn_gateway_with(a, b, "", "retries = 2\nretry_backoff_ms = 20").await;
    let started = std::time::Instant::now();
    let resp = post_chat(gw, &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "a");
    assert_eq!(mock_a.seen.lock().unwrap().bodies.len(), 3);
    assert!(mock_b.seen.lock().unwrap().bodies.is_empty());
    // Two jittered waits of at least 0.5 × 20 ms and 0.5 × 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(30));

    // A client error is the client's problem: no retry, no failover.
    let (a, mock_a) = spawn_mock(Mode::Status(400), "from a").await;
    let (b, _mock_b) = spawn_mock(Mode::Ok, "from b").await;
    let gw = spawn_gateway_with(a, b, "", "retries = 3\nretry_backoff_ms = 1").await;
    let resp = post_chat(gw, &chat_body(false)).await;
    assert_eq!(resp.status(), 400, "a client error is not retried");
    assert_eq!(mock_a.seen.lock().unwrap().bodies.len(), 1);
}

#[tokio::test]
async fn fails_over_on_5xx_and_429_but_not_on_400() {
    for code in [500u16, 503, 429] {
        let (a, mock_a) = spawn_mock(Mode::Status(code), "").await;
        let (b, _) = spawn_mock(Mode::Ok, "from b").await;
        let gw = spawn_gateway(a, b, "").await;
        let resp = post_chat(gw, &chat_body(false)).await;
        assert_eq!(resp.status(), 200, "primary {code}");
        assert_eq!(resp.headers()["x-switchyard-backend"], "b");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "from b");
        assert_eq!(mock_a.seen.lock().unwrap().bodies.len(), 1);
    }

    let (a, _) = spawn_mock(Mode::Status(400), "").await;
    let (b, mock_b) = spawn_mock(Mode::Ok, "from b").await;
    let gw = spawn_gateway(a, b, "").await;
    let resp = post_chat(gw, &chat_body(false)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mock says 400")
    );
    assert!(mock_b.seen.lock().unwrap().bodies.is_empty());
}

#[tokio::test]
async fn all_targets_failing_is_502_naming_each_attempt_without_keys() {
    let (a, _) = spawn_mock(Mode::Status(500), "").await;
    // Nothing listens on b: connect refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = closed.local_addr().unwrap();
    drop(closed);
    let gw = spawn_gateway(a, b, "").await;
    let resp = post_chat(gw, &chat_body(false)).await;
    assert_eq!(resp.status(), 502);
    // The failure names the policy version that decided, and the request's id.
    assert_eq!(resp.headers()["x-switchyard-policy"], "static@config");
    let id = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("chatcmpl-"), "{id}");
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "all_targets_failed");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("a: upstream returned 500"), "{msg}");
    assert!(msg.contains("b: connect failed"), "{msg}");
    assert!(!text.contains(KEY_A) && !text.contains(KEY_B));
}

#[tokio::test]
async fn streams_sse_with_usage_and_done() {
    let (a, mock_a) = spawn_mock(Mode::Ok, "").await;
    let (b, _) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "").await;
    let resp = post_chat(gw, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-switchyard-backend"], "a");
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 5);
    assert_eq!(usage["completion_tokens"], 2);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
    // Upstream was asked to stream, with usage.
    let seen = mock_a.seen.lock().unwrap();
    assert_eq!(seen.bodies[0]["stream"], true);
    assert_eq!(seen.bodies[0]["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_chunk() {
    let (a, _) = spawn_mock(Mode::Ok, "").await;
    let (b, _) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "").await;
    let body =
        json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let data = sse_data(&post_chat(gw, &body).await.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.iter().all(|d| !d.contains("\"usage\"")));
}

#[tokio::test]
async fn stream_fails_over_before_first_byte() {
    let (a, _) = spawn_mock(Mode::Status(503), "").await;
    let (b, _) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "").await;
    let resp = post_chat(gw, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "b");
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn stream_breaking_midway_ends_with_an_error_event_and_no_done() {
    let (a, _) = spawn_mock(Mode::BrokenStream, "").await;
    let (b, mock_b) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "").await;
    let resp = post_chat(gw, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(&resp.text().await.unwrap());
    assert!(!data.contains(&"[DONE]".to_owned()), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted");
    // Bytes already reached the client: no failover.
    assert!(mock_b.seen.lock().unwrap().bodies.is_empty());
}

#[tokio::test]
async fn client_errors_are_openai_shaped() {
    let (a, _) = spawn_mock(Mode::Ok, "").await;
    let (b, _) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "").await;
    let client = reqwest::Client::new();
    let url = format!("http://{gw}/v1/chat/completions");
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "invalid request body"),
        (
            r#"{"model":"auto"}"#.into(),
            400,
            "missing field `messages`",
        ),
        (
            r#"{"model":"auto","messages":[]}"#.into(),
            400,
            "must not be empty",
        ),
        (
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.into(),
            404,
            "not routable",
        ),
        (
            format!(
                r#"{{"model":"auto","messages":[{{"role":"user","content":"{}"}}]}}"#,
                "x".repeat(5000)
            ),
            413,
            "exceeds 4096 bytes",
        ),
    ];
    for (body, status, needle) in cases {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body:.60}");
        let err: Value = resp.json().await.unwrap();
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg}");
        assert!(err["error"]["type"].is_string());
    }
}

/// The ids `/v1/models` lists, in order.
async fn model_ids(gw: SocketAddr) -> Vec<String> {
    let models: Value = reqwest::get(format!("http://{gw}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn models_health_and_ready() {
    let (a, _) = spawn_mock(Mode::Ok, "").await;
    let (b, _) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "").await;
    assert_eq!(model_ids(gw).await, ["auto", "gpt-4o", "model-b"]);
    assert_eq!(
        reqwest::get(format!("http://{gw}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = reqwest::get(format!("http://{gw}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn concrete_model_is_sent_to_the_backend_serving_it() {
    let (a, mock_a) = spawn_mock(Mode::Ok, "from a").await;
    let (b, mock_b) = spawn_mock(Mode::Ok, "from b").await;
    let gw = spawn_gateway(a, b, "").await;
    let messages = json!([{"role": "developer", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}]);
    let body = json!({"model": "model-b", "messages": messages});
    let resp = post_chat(gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "b");
    assert_eq!(resp.headers()["x-switchyard-model"], "model-b");
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["model"], "model-b");
    // The static list puts a first, but a does not serve model-b: it is never asked.
    assert!(mock_a.seen.lock().unwrap().bodies.is_empty());
    let seen = mock_b.seen.lock().unwrap();
    assert_eq!(seen.bodies[0]["model"], "model-b");
    // The messages reach the OpenAI-compatible upstream as the client sent them.
    assert_eq!(seen.bodies[0]["messages"], messages);
}

#[tokio::test]
async fn slow_header_client_is_disconnected() {
    let (a, _) = spawn_mock(Mode::Ok, "").await;
    let (b, _) = spawn_mock(Mode::Ok, "").await;
    let gw = spawn_gateway(a, b, "header_read_timeout_ms = 300").await;
    let mut sock = tokio::net::TcpStream::connect(gw).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // Trickle a header slower than the timeout allows; the server must close.
    let trickle = async {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaa" {
            if sock.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = Vec::new();
        sock.read_to_end(&mut buf).await.map(|_| buf)
    };
    let result = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    let closed = match result {
        Ok(Ok(buf)) => !String::from_utf8_lossy(&buf).contains("200 OK"),
        Ok(Err(_)) => true,
        Err(_) => false,
    };
    assert!(closed, "connection was not closed by the header timeout");
}

#[tokio::test]
async fn metrics_endpoint_reports_requests_fallbacks_and_breakers() {
    switchyard::metrics::install().unwrap();
    let (a, _) = spawn_mock(Mode::Status(500), "").await;
    let (b, _) = spawn_mock(Mode::Ok, "from b").await;
    let gw = spawn_gateway(a, b, "").await;
    assert_eq!(post_chat(gw, &chat_body(false)).await.status(), 200);
    let resp = reqwest::get(format!("http://{gw}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("switchyard_requests_total{"), "{text}");
    assert!(text.contains(r#"backend="b""#), "{text}");
    assert!(
        text.contains(r#"switchyard_fallbacks_total{from="a"}"#),
        "{text}"
    );
    assert!(text.contains("switchyard_breaker_state{"), "{text}");
    assert!(
        text.contains("switchyard_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("switchyard_tokens_total{"), "{text}");
}

/// The embedding model's reference outputs (sentence-transformers), committed with the
/// local engine's parity test.
fn embedding_fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/local/tests/fixtures/embed/minilm.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

async fn post_embeddings(gw: SocketAddr, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{gw}/v1/embeddings"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_endpoint_serves_the_local_model_in_openai_shape() {
    let (a, _) = spawn_mock(Mode::Ok, "unused").await;
    let (b, _) = spawn_mock(Mode::Ok, "unused").await;
    let model_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/all-minilm-l6-v2");
    let embeddings = format!("[embeddings]\nmodel_dir = \"{model_dir}\"\nthreads = 2\n");
    let gw = spawn_gateway(a, b, &embeddings).await;
    let fixtures = embedding_fixtures();
    let texts: Vec<&str> = fixtures["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let (picked, expected): (Vec<&str>, Vec<Vec<f32>>) = [1usize, 2, 3]
        .iter()
        .map(|&i| {
            let want = fixtures["embeddings"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            (texts[i], want)
        })
        .unzip();

    let (status, body) =
        post_embeddings(gw, &json!({"model": "all-minilm-l6-v2", "input": picked})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-minilm-l6-v2");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), picked.len());
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        let got: Vec<f32> = data[i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), 384);
        let c = cosine(&got, want);
        assert!(c >= 0.999, "{:?}: cosine {c}", picked[i]);
    }
    let tokens: u64 = [1usize, 2, 3]
        .iter()
        .map(|&i| fixtures["token_counts"][i].as_u64().unwrap())
        .sum();
    assert_eq!(body["usage"]["prompt_tokens"], tokens);

    // base64: little-endian f32, what the OpenAI SDKs request by default.
    let (status, body) = post_embeddings(
        gw,
        &json!({"model": "all-minilm-l6-v2", "input": picked[0], "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(cosine(&got, &expected[0]) >= 0.999);

    for (bad, status, code) in [
        (
            json!({"model": "text-embedding-3-small", "input": "x"}),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            json!({"model": "all-minilm-l6-v2", "input": [[1, 2, 3]]}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"model": "all-minilm-l6-v2", "input": []}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "int8"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 64}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (json!({"input": "x"}), StatusCode::BAD_REQUEST, ""),
        (
            json!({"model": "all-minilm-l6-v2"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
    ] {
        let (got, body) = post_embeddings(gw, &bad).await;
        assert_eq!(got, status, "{bad} -> {body}");
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], code, "{body}");
        }
    }

    let ids = model_ids(gw).await;
    assert!(ids.contains(&"all-minilm-l6-v2".to_owned()), "{ids:?}");

    // Without [embeddings] the endpoint says there is no model.
    let plain = spawn_gateway(a, b, "").await;
    let (status, body) =
        post_embeddings(plain, &json!({"model": "all-minilm-l6-v2", "input": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[embeddings]"),
        "{body}"
    );
}
