//! Translation of OpenAI's chat API to Anthropic and Gemini against mock upstreams on
//! 127.0.0.1:0 that answer in each provider's own wire format (tool calls, JSON output,
//! logprobs, several candidates; JSON and streamed): what reaches the upstream is the
//! provider's shape of the client's request, and the client gets OpenAI's shapes
//! byte-for-byte (every key and `null` in OpenAI's order; `created` is the gateway's
//! clock). An OpenAI-compatible mock gets the same request whole. Oversized upstream
//! replies fail over to the next target.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use switchyard::config::Config;
use switchyard::dispatch::{Dispatcher, StaticTargets};
use switchyard::domain::estimate_tokens;
use switchyard::http::{self, AppState};

/// How a mock answers one request: status, content type, body.
type Script = dyn Fn(&str, &Value) -> (u16, &'static str, String) + Send + Sync;

struct Mock {
    script: Box<Script>,
    /// (path and query, body) of every request.
    seen: Mutex<Vec<(String, Value)>>,
}

impl Mock {
    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn mock_handler(State(mock): State<Arc<Mock>>, uri: Uri, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    mock.seen.lock().unwrap().push((path.clone(), body.clone()));
    let (status, content_type, text) = (mock.script)(&path, &body);
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .body(Body::from(text))
        .unwrap()
}

async fn spawn_mock(
    script: impl Fn(&str, &Value) -> (u16, &'static str, String) + Send + Sync + 'static,
) -> (SocketAddr, Arc<Mock>) {
    let mock = Arc::new(Mock {
        script: Box::new(script),
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

/// SSE text of `(event name, data)` pairs (Anthropic names its events; Gemini does not).
fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| {
            if name.is_empty() {
                format!("data: {data}\n\n")
            } else {
                format!("event: {name}\ndata: {data}\n\n")
            }
        })
        .collect()
}

/// A gateway whose static targets are `backends` (name, kind, model, upstream) in order.
async fn spawn_gateway(backends: &[(&str, &str, &str, SocketAddr)]) -> SocketAddr {
    gateway_support::capture_logs();
    let mut toml = format!(
        "[policy]\nstatic_targets = {:?}\n",
        backends.iter().map(|b| b.0).collect::<Vec<_>>()
    );
    for (name, kind, model, addr) in backends {
        let path = if *kind == "gemini" { "v1beta" } else { "v1" };
        toml.push_str(&format!(
            "[[backends]]\nname = {name:?}\nkind = {kind:?}\nmodels = [{model:?}]\n\
             base_url = \"http://{addr}/{path}\"\napi_key_env = \"TEST_KEY\"\n"
        ));
    }
    let config = Config::parse(&toml).unwrap();
    let env = |var: &str| (var == "TEST_KEY").then(|| "sk-test-translation-never-log".to_owned());
    let targets = backends.iter().map(|b| b.0.to_owned()).collect();
    let dispatcher = Dispatcher::from_config(
        &config,
        Arc::new(StaticTargets::new(targets)),
        BTreeMap::new(),
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

/// The `data:` payloads of an SSE body, asserting it ends with `[DONE]`.
fn data_lines(text: &str) -> Vec<String> {
    let data: Vec<String> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_owned)
        .collect();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    data[..data.len() - 1].to_vec()
}

/// `text` with its `"created":<n>` replaced by `"created":0` (the gateway's clock).
fn without_created(text: &str) -> String {
    let Some(at) = text.find("\"created\":") else {
        return text.to_owned();
    };
    let start = at + "\"created\":".len();
    let end = start
        + text[start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len() - start);
    format!("{}0{}", &text[..start], &text[end..])
}

const WEATHER_PARAMS: &str =
    r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;

/// A two-turn tool conversation's requests: turn 1 asks, turn 2 carries the call and
/// its result (`call_id` as the first reply named it).
fn tool_turn(model: &str, stream: bool, call_id: Option<&str>) -> Value {
    let params: Value = serde_json::from_str(WEATHER_PARAMS).unwrap();
    let mut messages = vec![
        json!({"role": "system", "content": "Use tools."}),
        json!({"role": "user", "content": "Weather in Paris?"}),
    ];
    if let Some(id) = call_id {
        messages.push(
            json!({"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        );
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": "sunny, 24 C"}));
    }
    json!({
        "model": model,
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Weather of a city", "parameters": params}}],
        "tool_choice": "auto",
        "temperature": 0.2,
        "stop": ["END"],
        "max_tokens": 300,
    })
}

// ------------------------------------------------------------------ Anthropic

const CLAUDE: &str = "claude-sonnet-4-5-20250929";

fn anthropic_script(path: &str, body: &Value) -> (u16, &'static str, String) {
    assert_eq!(path, "/v1/messages");
    let stream = body["stream"] == true;
    let json_mode = body["tool_choice"]["name"] == "json_tool_call";
    let answered = body["messages"].as_array().unwrap().iter().any(|m| {
        m["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
    });
    if !stream {
        let content = if json_mode {
            json!([{"type": "tool_use", "id": "toolu_01J", "name": "json_tool_call",
                "input": {"city": "Paris", "sunny": true}}])
        } else if answered {
            json!([{"type": "text", "text": "It is sunny in Paris."}])
        } else {
            json!([{"type": "text", "text": "I'll check."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"city": "Paris"}}])
        };
        let stop = if answered { "end_turn" } else { "tool_use" };
        let reply = json!({"id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant",
            "model": CLAUDE, "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 472, "output_tokens": 89}});
        return (200, "application/json", reply.to_string());
    }
    let start = json!({"type": "message_start", "message": {"id": "msg_01S", "type": "message",
        "role": "assistant", "content": [], "model": CLAUDE, "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 472, "output_tokens": 1}}});
    let mut events = vec![("message_start", start), ("ping", json!({"type": "ping"}))];
    let delta = |index: u32, delta: Value| {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    if json_mode {
        events.push(("content_block_start", json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_01J", "name": "json_tool_call", "input": {}}})));
        events.push(delta(
            0,
            json!({"type": "input_json_delta", "partial_json": ""}),
        ));
        events.push(delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}),
        ));
        events.push(delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "ris\"}"}),
        ));
    } else {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(delta(
            0,
            json!({"type": "text_delta", "text": "I'll check."}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather", "input": {}}}),
        ));
        events.push(delta(
            1,
            json!({"type": "input_json_delta", "partial_json": ""}),
        ));
        events.push(delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"city\": "}),
        ));
        events.push(delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "\"Paris\"}"}),
        ));
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 1}),
    ));
    events.push(("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 89}})));
    events.push(("message_stop", json!({"type": "message_stop"})));
    (200, "text/event-stream", sse(&events))
}

#[tokio::test]
async fn anthropic_tool_calls_round_trip_in_openai_shapes() {
    let (addr, mock) = spawn_mock(anthropic_script).await;
    let gw = spawn_gateway(&[("claude", "anthropic", CLAUDE, addr)]).await;

    // Turn 1: the tool call comes back as OpenAI's tool_calls, byte-for-byte.
    let resp = post(gw, &tool_turn("auto", false, None)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(
        without_created(&text),
        r#"{"id":"msg_01Aq9w938a90dw8q","object":"chat.completion","created":0,"model":"claude-sonnet-4-5-20250929","choices":[{"index":0,"message":{"role":"assistant","content":"I'll check.","refusal":null,"tool_calls":[{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":472,"completion_tokens":89,"total_tokens":561}}"#
    );
    let (_, sent) = &mock.seen()[0];
    let params: Value = serde_json::from_str(WEATHER_PARAMS).unwrap();
    assert_eq!(
        sent["tools"],
        json!([{"name": "get_weather", "description": "Weather of a city", "input_schema": params}])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
    assert_eq!(sent["system"], "Use tools.");
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["stop_sequences"], json!(["END"]));

    // Turn 2: the assistant's call and the tool result become tool_use / tool_result.
    let resp = post(
        gw,
        &tool_turn("auto", false, Some("toolu_01A09q90qw90lq917835lq9")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "It is sunny in Paris."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    let (_, sent) = &mock.seen()[1];
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result",
                "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "sunny, 24 C"}]}])
    );
}

#[tokio::test]
async fn anthropic_stream_becomes_openai_tool_call_chunks_with_usage_last() {
    let (addr, _) = spawn_mock(anthropic_script).await;
    let gw = spawn_gateway(&[("claude", "anthropic", CLAUDE, addr)]).await;
    let resp = post(gw, &tool_turn("auto", true, None)).await;
    assert_eq!(resp.status(), 200);
    let chunks: Vec<String> = data_lines(&resp.text().await.unwrap())
        .iter()
        .map(|c| without_created(c))
        .collect();
    let head = r#"{"id":"msg_01S","object":"chat.completion.chunk","created":0,"model":"claude-sonnet-4-5-20250929","choices":"#;
    let want: Vec<String> = [
        r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{"content":"I'll check."},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}"#,
        r#"[],"usage":{"prompt_tokens":472,"completion_tokens":89,"total_tokens":561}}"#,
    ]
    .iter()
    .map(|tail| format!("{head}{tail}"))
    .collect();
    assert_eq!(chunks, want);

    // A client that did not ask for usage gets no usage key and no usage chunk.
    let mut quiet = tool_turn("auto", true, None);
    quiet.as_object_mut().unwrap().remove("stream_options");
    let resp = post(gw, &quiet).await;
    let chunks = data_lines(&resp.text().await.unwrap());
    assert_eq!(chunks.len(), 6);
    assert!(chunks.iter().all(|c| !c.contains("usage")));
}

#[tokio::test]
async fn anthropic_json_output_is_a_forced_tool_call_returned_as_content() {
    let (addr, mock) = spawn_mock(anthropic_script).await;
    let gw = spawn_gateway(&[("claude", "anthropic", CLAUDE, addr)]).await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}});
    let resp = post(gw, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap(),
        json!({"city": "Paris", "sunny": true})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    let (_, sent) = &mock.seen()[0];
    assert_eq!(sent["tools"][0]["name"], "json_tool_call");
    assert_eq!(sent["tools"][0]["input_schema"], schema);
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "json_tool_call"})
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = post(gw, &streamed).await;
    let chunks: Vec<Value> = data_lines(&resp.text().await.unwrap())
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "{\"city\": \"Paris\"}");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none())
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
}

#[tokio::test]
async fn what_anthropic_cannot_honour_is_refused_before_any_call() {
    let (addr, mock) = spawn_mock(anthropic_script).await;
    let gw = spawn_gateway(&[("claude", "anthropic", CLAUDE, addr)]).await;
    let ask = |extra: Value| {
        let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (extra, field) in [
        (json!({"logprobs": true}), "`logprobs`"),
        (json!({"top_logprobs": 2}), "`top_logprobs`"),
        (json!({"seed": 3}), "`seed`"),
        (json!({"n": 2}), "`n`"),
        (json!({"frequency_penalty": 0.4}), "`frequency_penalty`"),
        (json!({"logit_bias": {"50256": -100}}), "`logit_bias`"),
    ] {
        let resp = post(gw, &ask(extra)).await;
        assert_eq!(resp.status(), 400, "{field}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_parameter");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains("\"claude\""),
            "{message}"
        );
    }
    assert!(mock.seen().is_empty(), "no call reached anthropic");
}

// ------------------------------------------------------------------ Gemini

const GEMINI: &str = "gemini-2.5-flash";

fn gemini_script(path: &str, body: &Value) -> (u16, &'static str, String) {
    let stream = path.ends_with(":streamGenerateContent?alt=sse");
    assert!(
        stream || path == format!("/v1beta/models/{GEMINI}:generateContent"),
        "{path}"
    );
    let answered = body["contents"].as_array().unwrap().iter().any(|c| {
        c["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.get("functionResponse").is_some())
    });
    let json_mode = body["generationConfig"]["responseMimeType"] == "application/json";
    let usage = json!({"promptTokenCount": 30, "candidatesTokenCount": 7, "totalTokenCount": 37});
    let logprobs = json!({"topCandidates": [
            {"candidates": [{"token": "{\"", "logProbability": -0.01}, {"token": "{", "logProbability": -4.6}]},
            {"candidates": [{"token": "ok", "logProbability": -0.2}]}],
        "chosenCandidates": [{"token": "{\"", "logProbability": -0.01}, {"token": "ok", "logProbability": -0.2}]});
    let candidates = if json_mode {
        let n = body["generationConfig"]["candidateCount"]
            .as_u64()
            .unwrap_or(1);
        (0..n)
            .map(|i| json!({"content": {"parts": [{"text": format!("{{\"ok\":{i}}}")}], "role": "model"},
                "finishReason": "STOP", "index": i, "avgLogprobs": -0.1, "logprobsResult": logprobs}))
            .collect()
    } else if answered {
        vec![
            json!({"content": {"parts": [{"text": "It is sunny in Paris."}], "role": "model"},
            "finishReason": "STOP", "index": 0}),
        ]
    } else {
        vec![
            json!({"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            "role": "model"}, "finishReason": "STOP", "index": 0}),
        ]
    };
    if !stream {
        let reply = json!({"candidates": candidates, "usageMetadata": usage,
            "modelVersion": GEMINI, "responseId": "resp-1"});
        return (200, "application/json", reply.to_string());
    }
    if answered || json_mode {
        let reply = json!({"candidates": candidates, "usageMetadata": usage,
            "modelVersion": GEMINI, "responseId": "resp-2"});
        return (200, "text/event-stream", sse(&[("", reply)]));
    }
    // The call comes whole in one chunk; a text chunk before it.
    let first = json!({"candidates": [{"content": {"parts": [{"text": "Checking."}], "role": "model"},
        "index": 0}], "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 2,
        "totalTokenCount": 32}, "modelVersion": GEMINI, "responseId": "resp-2"});
    let second = json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather",
        "args": {"city": "Paris"}}}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage, "modelVersion": GEMINI, "responseId": "resp-2"});
    (200, "text/event-stream", sse(&[("", first), ("", second)]))
}

#[tokio::test]
async fn gemini_function_calls_get_ids_and_results_find_their_function() {
    let (addr, mock) = spawn_mock(gemini_script).await;
    let gw = spawn_gateway(&[("gem", "gemini", GEMINI, addr)]).await;
    let resp = post(gw, &tool_turn("auto", false, None)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(
        without_created(&text),
        r#"{"id":"resp-1","object":"chat.completion","created":0,"model":"gemini-2.5-flash","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":30,"completion_tokens":7,"total_tokens":37}}"#
    );
    let (_, sent) = &mock.seen()[0];
    let params: Value = serde_json::from_str(WEATHER_PARAMS).unwrap();
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather",
            "description": "Weather of a city", "parametersJsonSchema": params}]}])
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        sent["generationConfig"],
        json!({"maxOutputTokens": 300, "temperature": 0.2, "stopSequences": ["END"]})
    );

    let resp = post(gw, &tool_turn("auto", false, Some("call_0"))).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "It is sunny in Paris."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let (_, sent) = &mock.seen()[1];
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                "response": {"content": "sunny, 24 C"}}}]}])
    );
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "Use tools."}]})
    );
}

#[tokio::test]
async fn gemini_stream_becomes_openai_chunks_with_usage_last() {
    let (addr, mock) = spawn_mock(gemini_script).await;
    let gw = spawn_gateway(&[("gem", "gemini", GEMINI, addr)]).await;
    let resp = post(gw, &tool_turn("auto", true, None)).await;
    assert_eq!(resp.status(), 200);
    let chunks: Vec<String> = data_lines(&resp.text().await.unwrap())
        .iter()
        .map(|c| without_created(c))
        .collect();
    let head = r#"{"id":"resp-2","object":"chat.completion.chunk","created":0,"model":"gemini-2.5-flash","choices":"#;
    let want: Vec<String> = [
        r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{"content":"Checking."},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}"#,
        r#"[],"usage":{"prompt_tokens":30,"completion_tokens":7,"total_tokens":37}}"#,
    ]
    .iter()
    .map(|tail| format!("{head}{tail}"))
    .collect();
    assert_eq!(chunks, want);
    assert_eq!(
        mock.seen()[0].0,
        format!("/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse")
    );
}

#[tokio::test]
async fn gemini_json_output_logprobs_and_several_choices() {
    let (addr, mock) = spawn_mock(gemini_script).await;
    let gw = spawn_gateway(&[("gem", "gemini", GEMINI, addr)]).await;
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {"type": "json_object"}, "n": 2, "logprobs": true, "top_logprobs": 2,
        "seed": 11, "presence_penalty": 0.5});
    let resp = post(gw, &body).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let logprobs = r#"{"content":[{"token":"{\"","logprob":-0.01,"bytes":[123,34],"top_logprobs":[{"token":"{\"","logprob":-0.01,"bytes":[123,34]},{"token":"{","logprob":-4.6,"bytes":[123]}]},{"token":"ok","logprob":-0.2,"bytes":[111,107],"top_logprobs":[{"token":"ok","logprob":-0.2,"bytes":[111,107]}]}],"refusal":null}"#;
    assert_eq!(
        without_created(&text),
        format!(
            r#"{{"id":"resp-1","object":"chat.completion","created":0,"model":"gemini-2.5-flash","choices":[{{"index":0,"message":{{"role":"assistant","content":"{{\"ok\":0}}","refusal":null}},"logprobs":{logprobs},"finish_reason":"stop"}},{{"index":1,"message":{{"role":"assistant","content":"{{\"ok\":1}}","refusal":null}},"logprobs":{logprobs},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":30,"completion_tokens":7,"total_tokens":37}}}}"#
        )
    );
    let (_, sent) = &mock.seen()[0];
    assert_eq!(
        sent["generationConfig"],
        json!({"seed": 11, "presencePenalty": 0.5, "candidateCount": 2,
            "responseMimeType": "application/json", "responseLogprobs": true, "logprobs": 2})
    );

    // Streamed: each choice opens, carries its text with its logprobs, and finishes.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = post(gw, &streamed).await;
    let chunks: Vec<Value> = data_lines(&resp.text().await.unwrap())
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    for index in [0, 1] {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0))
            .filter(|c| c["index"] == index)
            .collect();
        assert_eq!(mine.len(), 3, "{mine:?}");
        assert_eq!(mine[0]["delta"]["role"], "assistant");
        assert_eq!(mine[1]["delta"]["content"], format!("{{\"ok\":{index}}}"));
        assert_eq!(
            mine[1]["logprobs"],
            serde_json::from_str::<Value>(logprobs).unwrap()
        );
        assert_eq!(mine[2]["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn gemini_refuses_image_urls_it_would_have_to_fetch() {
    let (addr, mock) = spawn_mock(gemini_script).await;
    let gw = spawn_gateway(&[("gem", "gemini", GEMINI, addr)]).await;
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}]});
    let resp = post(gw, &body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_parameter");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("messages[0].content[1]") && message.contains("\"gem\""),
        "{message}"
    );
    assert!(mock.seen().is_empty());
    // The same image inline reaches Gemini as inlineData.
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}]});
    let resp = post(gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.seen()[0].1["contents"][0]["parts"][0],
        json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}})
    );
}

// ------------------------------------------------------------------ OpenAI and limits

#[tokio::test]
async fn an_openai_upstream_gets_the_same_tool_request_whole() {
    const REPLY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_x","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let (addr, mock) = spawn_mock(|_, _| (200, "application/json", REPLY.to_owned())).await;
    let gw = spawn_gateway(&[("oai", "openai", "gpt-4o-mini", addr)]).await;
    let request = tool_turn("auto", false, None);
    let resp = post(gw, &request).await;
    assert_eq!(resp.text().await.unwrap(), REPLY);
    let (_, sent) = &mock.seen()[0];
    let mut want = request.clone();
    want["model"] = json!("gpt-4o-mini");
    assert_eq!(sent, &want);
}

#[tokio::test]
async fn an_oversized_reply_fails_over_and_error_bodies_are_read_bounded() {
    // 33 MiB of valid JSON (a long string): over the 32 MiB cap.
    let huge = format!(
        r#"{{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}]}}"#,
        "a".repeat(33 * 1024 * 1024)
    );
    let (big, _) = spawn_mock(move |_, _| (200, "application/json", huge.clone())).await;
    let (anthropic, _) = spawn_mock(anthropic_script).await;
    let gw = spawn_gateway(&[
        ("big", "openai_compatible", "m", big),
        ("claude", "anthropic", CLAUDE, anthropic),
    ])
    .await;
    let plain = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(gw, &plain).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "claude");

    // The same without a content-length: 40 chunks of 1 MiB, cut off at the cap.
    let flood = axum::Router::new().fallback(|| async {
        let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024]));
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flood_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, flood).await.unwrap() });
    let gw = spawn_gateway(&[
        ("flood", "gemini", GEMINI, flood_addr),
        ("claude", "anthropic", CLAUDE, anthropic),
    ])
    .await;
    let resp = post(gw, &plain).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "claude");

    // A 500 with a 10 MiB body: the client gets the provider's error, cut short.
    let noisy = format!(
        r#"{{"error":{{"message":"boom","type":"server_error"}},"pad":"{}"}}"#,
        "b".repeat(10 * 1024 * 1024)
    );
    let (bad, _) = spawn_mock(move |_, _| (500, "application/json", noisy.clone())).await;
    let gw = spawn_gateway(&[("bad", "openai_compatible", "m", bad)]).await;
    let resp = post(gw, &plain).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.len() < 2000, "{message}");
}
