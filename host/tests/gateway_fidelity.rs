//! OpenAI API fidelity against mock upstreams on 127.0.0.1:0: the whole chat request
//! (tools, response format, logprobs, unknown fields, content parts, tool messages)
//! reaches an OpenAI-compatible upstream unchanged and its tool calls and logprobs come
//! back byte-for-byte, JSON and streamed; Anthropic, Gemini and local targets refuse what
//! they cannot honour before any call (or the request goes to a target that can; their
//! translations are tested in gateway_translation.rs);
//! explicit models; upstream error semantics; OpenAI-shaped errors for unknown routes.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use switchyard::backends::Backend;
use switchyard::backends::local::LocalBackend;
use switchyard::config::Config;
use switchyard::dispatch::{Dispatcher, StaticTargets};
use switchyard::domain::estimate_tokens;
use switchyard::http::{self, AppState};

/// An OpenAI completion with a tool call, logprobs and a refusal field, exactly as the
/// upstream sends it (key order and spacing included).
const TOOL_REPLY: &str = r#"{"id":"chatcmpl-up1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":{"content":[{"token":"get","logprob":-0.0012,"bytes":[103,101,116],"top_logprobs":[{"token":"get","logprob":-0.0012,"bytes":[103,101,116]}]}],"refusal":null},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":50,"completion_tokens":12,"total_tokens":62},"service_tier":"default"}"#;

/// A streamed tool call in OpenAI's chunk shape, logprobs on each chunk, usage last.
const TOOL_CHUNKS: &[&str] = &[
    r#"{"id":"chatcmpl-up2","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-up2","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"logprobs":{"content":[{"token":"{\"","logprob":-0.5,"bytes":[123,34],"top_logprobs":[]}],"refusal":null},"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-up2","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-up2","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}"#,
    r#"{"id":"chatcmpl-up2","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":12,"total_tokens":62}}"#,
];

/// What a mock upstream answers.
#[derive(Clone, Copy)]
enum Mode {
    /// OpenAI: [`TOOL_REPLY`] or [`TOOL_CHUNKS`].
    OpenAi,
    /// Anthropic's message format (text).
    Anthropic,
    /// This status with an OpenAI-shaped error body carrying a type and code.
    Status(u16),
    /// 302 to another place.
    Redirect,
    /// 429 with `Retry-After: 7`.
    RateLimited,
}

struct Mock {
    mode: Mode,
    seen: Mutex<Vec<Value>>,
}

impl Mock {
    fn bodies(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

async fn mock_handler(State(mock): State<Arc<Mock>>, _uri: Uri, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    mock.seen.lock().unwrap().push(body.clone());
    let json = |text: String| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(text))
            .unwrap()
    };
    match mock.mode {
        Mode::OpenAi if body["stream"] == true => {
            let mut text: String = TOOL_CHUNKS
                .iter()
                .map(|c| format!("data: {c}\n\n"))
                .collect();
            text.push_str("data: [DONE]\n\n");
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(text))
                .unwrap()
        }
        Mode::OpenAi => json(TOOL_REPLY.to_owned()),
        Mode::Anthropic => json(
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": "from anthropic"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 3}})
            .to_string(),
        ),
        Mode::Status(code) => {
            let mut r = json(
                json!({"error": {"message": format!("mock says {code}"),
                    "type": "invalid_request_error", "code": "context_length_exceeded", "param": null}})
                .to_string(),
            );
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            r
        }
        Mode::Redirect => (
            StatusCode::FOUND,
            [("location", "http://127.0.0.1:9/elsewhere")],
        )
            .into_response(),
        Mode::RateLimited => {
            let mut r = json(
                json!({"error": {"message": "slow down", "type": "rate_limit_exceeded",
                    "code": "rate_limit_exceeded"}})
                .to_string(),
            );
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            r
        }
    }
}

async fn spawn_mock(mode: Mode) -> (SocketAddr, Arc<Mock>) {
    let mock = Arc::new(Mock {
        mode,
        seen: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(mock_handler)
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, mock)
}

/// One backend of a test gateway.
struct Upstream {
    name: &'static str,
    kind: &'static str,
    model: &'static str,
    /// `None`: a local backend (its model not loaded).
    addr: Option<SocketAddr>,
}

fn up(name: &'static str, kind: &'static str, model: &'static str, addr: SocketAddr) -> Upstream {
    Upstream {
        name,
        kind,
        model,
        addr: Some(addr),
    }
}

/// A gateway over `upstreams` with `static_targets` in the given order.
async fn spawn_gateway(upstreams: &[Upstream]) -> SocketAddr {
    gateway_support::capture_logs();
    let mut toml = format!(
        "[policy]\nstatic_targets = {:?}\n",
        upstreams.iter().map(|u| u.name).collect::<Vec<_>>()
    );
    let mut local: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
    for u in upstreams {
        toml.push_str(&format!(
            "[[backends]]\nname = {:?}\nkind = {:?}\nmodels = [{:?}]\n",
            u.name, u.kind, u.model
        ));
        match u.addr {
            Some(addr) => {
                let path = if u.kind == "gemini" { "v1beta" } else { "v1" };
                toml.push_str(&format!(
                    "base_url = \"http://{addr}/{path}\"\napi_key_env = \"TEST_KEY\"\n"
                ));
            }
            None => {
                toml.push_str("model_path = \"models/absent.gguf\"\n");
                local.insert(
                    u.name.to_owned(),
                    Arc::new(LocalBackend::new(
                        u.name.to_owned(),
                        vec![u.model.to_owned()],
                        Err("not loaded in this test".to_owned()),
                    )),
                );
            }
        }
    }
    let config = Config::parse(&toml).unwrap();
    let env = |var: &str| (var == "TEST_KEY").then(|| "sk-test-fidelity-never-log-me".to_owned());
    let targets = upstreams.iter().map(|u| u.name.to_owned()).collect();
    let dispatcher = Dispatcher::from_config(
        &config,
        Arc::new(StaticTargets::new(targets)),
        local,
        Arc::new(estimate_tokens),
        &env,
    )
    .unwrap();
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
        config.server.conn,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    addr
}

async fn post(gw: SocketAddr, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{gw}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A function-calling request with every kind of field: tools, tool choice, JSON mode,
/// logprobs, a field this gateway has never heard of, an image part, an assistant tool
/// call and its tool result.
fn tool_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You call tools."},
            {"role": "user", "name": "alice", "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "locate", "arguments": "{\"photo\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Paris"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": true}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "logprobs": true,
        "top_logprobs": 1,
        "temperature": 0.3,
        "seed": 42,
        "frequency_penalty": 0.5,
        "x_vendor_extension": {"nested": [1, 2, {"k": "v"}]}
    })
}

/// The request as the upstream must see it: the client's, with only `model` and
/// `stream` (and, streamed, `stream_options.include_usage`) set by the gateway.
fn expected_upstream_body(client: &Value, model: &str, stream: bool) -> Value {
    let mut want = client.clone();
    want["model"] = json!(model);
    want["stream"] = json!(stream);
    if stream {
        want["stream_options"] = json!({"include_usage": true});
    }
    want
}

#[tokio::test]
async fn the_whole_request_reaches_an_openai_compatible_upstream_and_its_reply_comes_back_unchanged()
 {
    let (addr, mock) = spawn_mock(Mode::OpenAi).await;
    let gw = spawn_gateway(&[up("oai", "openai_compatible", "gpt-4o-mini", addr)]).await;
    let request = tool_request("auto", false);
    let resp = post(gw, &request).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-model"], "gpt-4o-mini");
    assert_eq!(resp.headers()["content-type"], "application/json");
    // Tool calls, logprobs, refusal, finish_reason `tool_calls`: the upstream's bytes.
    assert_eq!(resp.text().await.unwrap(), TOOL_REPLY);
    assert_eq!(
        mock.bodies(),
        [expected_upstream_body(&request, "gpt-4o-mini", false)]
    );
}

#[tokio::test]
async fn streamed_tool_call_chunks_pass_through_unchanged() {
    let (addr, mock) = spawn_mock(Mode::OpenAi).await;
    let gw = spawn_gateway(&[up("oai", "openai_compatible", "gpt-4o-mini", addr)]).await;
    let request = tool_request("gpt-4o-mini", true);
    let resp = post(gw, &request).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-model"], "gpt-4o-mini");
    let text = resp.text().await.unwrap();
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect();
    // The client did not ask for usage: the gateway's usage chunk is not passed on.
    let mut want: Vec<&str> = TOOL_CHUNKS[..TOOL_CHUNKS.len() - 1].to_vec();
    want.push("[DONE]");
    assert_eq!(data, want);
    assert_eq!(
        mock.bodies(),
        [expected_upstream_body(&request, "gpt-4o-mini", true)]
    );

    // Asked for, it comes last, before [DONE], as the upstream sent it.
    let mut request = request;
    request["stream_options"] = json!({"include_usage": true});
    let text = post(gw, &request).await.text().await.unwrap();
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect();
    let mut want: Vec<&str> = TOOL_CHUNKS.to_vec();
    want.push("[DONE]");
    assert_eq!(data, want);
}

/// The error message of a refused request.
async fn refusal(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn translating_connectors_refuse_what_they_cannot_honour_before_any_call() {
    let (anthropic_addr, anthropic) = spawn_mock(Mode::Anthropic).await;
    let (gemini_addr, gemini) = spawn_mock(Mode::OpenAi).await;
    let plain = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let with = |key: &str, value: Value| {
        let mut b = plain.clone();
        b[key] = value;
        b
    };
    // (request, what the refusal names, the backends that refuse it)
    let all: &[&str] = &["claude", "gem", "small"];
    let cases = [
        (
            with("tools", tool_request("auto", false)["tools"].clone()),
            "`tools`",
            &["small"][..],
        ),
        (
            with("tool_choice", json!("required")),
            "`tool_choice`",
            &["small"][..],
        ),
        (
            with(
                "response_format",
                json!({"type": "grammar", "grammar": "root ::= x"}),
            ),
            "`response_format` of type \"grammar\"",
            all,
        ),
        (
            with("logprobs", json!(true)),
            "`logprobs`",
            &["claude", "small"][..],
        ),
        (with("n", json!(2)), "`n`", &["claude", "small"][..]),
        (
            with("x_vendor_extension", json!(1)),
            "`x_vendor_extension`",
            all,
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [{"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]),
            ),
            "messages[0].content[1]",
            &["gem", "small"][..],
        ),
        (
            with("messages", tool_request("auto", false)["messages"].clone()),
            "messages[1].name",
            all,
        ),
    ];
    let gateways = [
        (
            "claude",
            spawn_gateway(&[up(
                "claude",
                "anthropic",
                "claude-haiku-4-5",
                anthropic_addr,
            )])
            .await,
        ),
        (
            "gem",
            spawn_gateway(&[up("gem", "gemini", "gemini-2.0-flash", gemini_addr)]).await,
        ),
        (
            "small",
            spawn_gateway(&[Upstream {
                name: "small",
                kind: "local",
                model: "smollm2-135m-instruct",
                addr: None,
            }])
            .await,
        ),
    ];
    for (backend, gw) in gateways {
        for (body, field, refusing) in &cases {
            if !refusing.contains(&backend) {
                continue;
            }
            let (status, message, code) = refusal(post(gw, body).await).await;
            assert_eq!(status, 400, "{backend} {field}: {message}");
            assert_eq!(code, "unsupported_parameter", "{backend} {field}");
            assert!(
                message.contains(field) && message.contains(&format!("{backend:?}")),
                "{backend}: {message} should name {field} and the backend"
            );
        }
    }
    assert!(anthropic.bodies().is_empty(), "no call reached anthropic");
    assert!(gemini.bodies().is_empty(), "no call reached gemini");
    // Neutral values ask for nothing and pass; a plain request is served.
    let gw = spawn_gateway(&[up(
        "claude",
        "anthropic",
        "claude-haiku-4-5",
        anthropic_addr,
    )])
    .await;
    let neutral = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
        "tools": [], "logprobs": false, "n": 1, "response_format": null});
    assert_eq!(post(gw, &neutral).await.status(), 200);
    assert_eq!(anthropic.bodies().len(), 1);
}

#[tokio::test]
async fn a_target_that_cannot_honour_the_request_is_skipped_for_one_that_can() {
    let (anthropic_addr, anthropic) = spawn_mock(Mode::Anthropic).await;
    let (openai_addr, openai) = spawn_mock(Mode::OpenAi).await;
    let gw = spawn_gateway(&[
        up("claude", "anthropic", "claude-haiku-4-5", anthropic_addr),
        up("oai", "openai_compatible", "gpt-4o-mini", openai_addr),
    ])
    .await;
    let resp = post(gw, &tool_request("auto", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "oai");
    assert_eq!(resp.text().await.unwrap(), TOOL_REPLY);
    assert!(anthropic.bodies().is_empty());
    assert_eq!(openai.bodies().len(), 1);
    // A plain request still goes to the first target.
    let plain = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(gw, &plain).await;
    assert_eq!(resp.headers()["x-switchyard-backend"], "claude");
    assert_eq!(anthropic.bodies().len(), 1);
}

#[tokio::test]
async fn an_explicit_model_is_answered_by_the_backend_serving_it() {
    let (anthropic_addr, anthropic) = spawn_mock(Mode::Anthropic).await;
    let (openai_addr, openai) = spawn_mock(Mode::OpenAi).await;
    let gw = spawn_gateway(&[
        up("oai", "openai_compatible", "gpt-4o-mini", openai_addr),
        up("claude", "anthropic", "claude-haiku-4-5", anthropic_addr),
    ])
    .await;
    let ask =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(gw, &ask("claude-haiku-4-5")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "claude");
    assert_eq!(resp.headers()["x-switchyard-model"], "claude-haiku-4-5");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "claude-haiku-4-5");
    assert!(openai.bodies().is_empty(), "gpt-4o-mini never answered it");
    assert_eq!(anthropic.bodies()[0]["model"], "claude-haiku-4-5");
    // `auto` is the routing rule's: the static list's first.
    let resp = post(gw, &ask("auto")).await;
    assert_eq!(resp.headers()["x-switchyard-model"], "gpt-4o-mini");
    // A model nobody serves is a clear 404.
    let (status, _, code) = refusal(post(gw, &ask("claude-opus-9")).await).await;
    assert_eq!((status, code.as_str()), (404, "model_not_found"));
}

#[tokio::test]
async fn auth_and_redirect_failures_fall_over_to_the_next_target() {
    for mode in [Mode::Status(401), Mode::Status(403), Mode::Redirect] {
        let (bad_addr, bad) = spawn_mock(mode).await;
        let (good_addr, good) = spawn_mock(Mode::OpenAi).await;
        let gw = spawn_gateway(&[
            up("bad", "openai_compatible", "m", bad_addr),
            up("good", "openai_compatible", "m", good_addr),
        ])
        .await;
        let resp = post(gw, &tool_request("auto", false)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-backend"], "good");
        assert_eq!((bad.bodies().len(), good.bodies().len()), (1, 1));
    }
}

#[tokio::test]
async fn the_last_targets_429_keeps_retry_after_and_provider_errors_keep_their_type() {
    let (failing_addr, _) = spawn_mock(Mode::Status(500)).await;
    let (limited_addr, _) = spawn_mock(Mode::RateLimited).await;
    let gw = spawn_gateway(&[
        up("a", "openai_compatible", "m", failing_addr),
        up("b", "openai_compatible", "m", limited_addr),
    ])
    .await;
    let plain = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(gw, &plain).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // The upstream's 400 keeps its error type and code.
    let (bad_addr, _) = spawn_mock(Mode::Status(400)).await;
    let gw = spawn_gateway(&[up("a", "openai_compatible", "m", bad_addr)]).await;
    let resp = post(gw, &plain).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mock says 400")
    );
}

#[tokio::test]
async fn unknown_methods_and_routes_get_openai_shaped_errors() {
    let (addr, _) = spawn_mock(Mode::OpenAi).await;
    let gw = spawn_gateway(&[up("oai", "openai_compatible", "m", addr)]).await;
    let client = reqwest::Client::new();
    for (method, path, status, code) in [
        (
            reqwest::Method::GET,
            "/v1/chat/completions",
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/models",
            405,
            "method_not_allowed",
        ),
        (reqwest::Method::GET, "/v1/nope", 404, "not_found"),
    ] {
        let resp = client
            .request(method.clone(), format!("http://{gw}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}
