//! Anthropic Messages API connector (`POST {base_url}/messages`): the client's OpenAI
//! request translated (system prompt lifted out, image parts as image blocks, assistant
//! tool calls as `tool_use` and tool results as `tool_result` blocks, tools and tool
//! choice, JSON output as a forced tool call) and the reply translated back into OpenAI's
//! completion or chunks (`tool_use` blocks and `input_json_delta` events as tool calls).

use std::collections::HashMap;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::chat_input::{
    self, ChatInput, Image, Message, Part, Refuser, ResponseFormat, ToolChoice,
};
use super::chat_output::{self, ChunkWriter, Delta, OutChoice, OutToolCall};
use super::sse::SseEvent;
use super::upstream::{self, MAX_REPLY_BYTES, Step, Translate, reply_body, send, sse_events};
use super::{ApiKey, Backend, BackendError, ChatRequest, ChatResponse, ChatStream, Usage};
use crate::config::{BackendConfig, Timeouts};
use crate::domain::BackendKind;

/// API version header value.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; used when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The tool a JSON `response_format` becomes (as LiteLLM names it): its input is the reply.
const JSON_TOOL: &str = "json_tool_call";

/// The top-level fields this connector translates (their values are checked on reading).
const FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "modalities",
];

/// Connector for Anthropic's Messages API.
#[derive(Debug)]
pub struct Anthropic {
    name: String,
    models: Vec<String>,
    url: reqwest::Url,
    key: Option<ApiKey>,
    timeouts: Timeouts,
    client: reqwest::Client,
}

impl Anthropic {
    pub fn new(cfg: &BackendConfig, key: Option<ApiKey>) -> Result<Self, String> {
        Ok(Self {
            name: cfg.name.clone(),
            models: cfg.models.clone(),
            url: upstream::endpoint(&cfg.base_url, "messages")?,
            key,
            timeouts: cfg.timeouts,
            client: upstream::http_client(&cfg.timeouts).map_err(|e| e.to_string())?,
        })
    }

    /// The upstream body and the client's request as read, or the refusal.
    fn translate(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<(Value, ChatInput), BackendError> {
        let refuser = Refuser {
            backend: &self.name,
            connector: "anthropic",
        };
        super::fields::known_fields(request, &self.name, "anthropic", FIELDS)?;
        let input = chat_input::read(request, refuser)?;
        let body = wire_request(request, &input, stream, refuser)?;
        Ok((body, input))
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response, BackendError> {
        let body = serde_json::to_vec(body).map_err(|e| BackendError::Protocol(e.to_string()))?;
        let mut builder = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", API_VERSION)
            .body(body);
        if let Some(key) = &self.key {
            builder = builder.header("x-api-key", key.expose());
        }
        send(builder, self.timeouts.first_byte).await
    }
}

/// Anthropic stop reason → OpenAI finish reason (a JSON reply's forced tool call is a stop).
fn finish_reason(stop: &str, json_mode: bool) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if json_mode => "stop",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

impl Backend for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> BackendKind {
        BackendKind::Cloud
    }
    fn models(&self) -> &[String] {
        &self.models
    }

    fn check(&self, request: &ChatRequest) -> Result<(), BackendError> {
        self.translate(request, false).map(|_| ())
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
        async move {
            let (body, input) = self.translate(&request, false)?;
            let response = self.post(&body).await?;
            let body = reply_body(response, MAX_REPLY_BYTES).await?;
            let wire: WireResponse = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("bad message JSON: {e}")))?;
            let json_mode = input.response_format.is_some();
            let mut choice = OutChoice {
                finish_reason: finish_reason(
                    wire.stop_reason.as_deref().unwrap_or("end_turn"),
                    json_mode,
                )
                .to_owned(),
                ..OutChoice::default()
            };
            for block in wire.content {
                match block {
                    WireBlock::Text { text } => choice.text.push_str(&text),
                    WireBlock::ToolUse { name, input, .. } if json_mode && name == JSON_TOOL => {
                        choice.text.push_str(&input.to_string());
                    }
                    WireBlock::ToolUse { id, name, input } => choice.tool_calls.push(OutToolCall {
                        id,
                        name,
                        arguments: input.to_string(),
                    }),
                    WireBlock::Other => {}
                }
            }
            let usage = Usage {
                prompt_tokens: wire.usage.input_tokens,
                completion_tokens: wire.usage.output_tokens,
            };
            let id = wire.id.unwrap_or_else(chat_output::fresh_id);
            Ok(chat_output::completion(
                &id,
                wire.model.unwrap_or(request.model),
                &[choice],
                usage,
            ))
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let (body, input) = self.translate(&request, true)?;
            let response = self.post(&body).await?;
            let translator = StreamTranslator {
                writer: None,
                model: request.model,
                include_usage: input.include_usage,
                json_mode: input.response_format.is_some(),
                input_tokens: 0,
                output_tokens: 0,
                blocks: HashMap::new(),
                tool_calls: 0,
            };
            Ok(sse_events(response.bytes_stream(), translator))
        }
        .boxed()
    }
}

/// The upstream body for `input`.
fn wire_request(
    request: &ChatRequest,
    input: &ChatInput,
    stream: bool,
    refuser: Refuser<'_>,
) -> Result<Value, BackendError> {
    if input.n != 1 {
        return Err(refuser.unsupported(&format!("`n` = {} (only 1)", input.n)));
    }
    if input.presence_penalty.is_some() {
        return Err(refuser.unsupported("the request field `presence_penalty`"));
    }
    if input.frequency_penalty.is_some() {
        return Err(refuser.unsupported("the request field `frequency_penalty`"));
    }
    let mut system: Vec<&str> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &input.messages {
        let (role, blocks): (&'static str, Vec<Value>) = match message {
            Message::System(text) => {
                system.push(text);
                continue;
            }
            Message::User(parts) => ("user", parts.iter().map(user_block).collect()),
            Message::Assistant { text, tool_calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() || tool_calls.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                blocks.extend(tool_calls.iter().map(|c| {
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
                }));
                ("assistant", blocks)
            }
            Message::ToolResult {
                call_id, content, ..
            } => (
                "user",
                vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": content})],
            ),
        };
        // Anthropic alternates roles: consecutive messages of one role become one.
        match messages.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, blocks)| {
            // A lone text block goes as plain string content.
            if let [only] = blocks.as_slice()
                && only["type"] == "text"
            {
                json!({"role": role, "content": only["text"]})
            } else {
                json!({"role": role, "content": blocks})
            }
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    // Anthropic's range is 0..=1; OpenAI's is 0..=2.
    if let Some(t) = request.temperature {
        body["temperature"] = chat_input::decimal(t.clamp(0.0, 1.0));
    }
    if let Some(p) = request.top_p {
        body["top_p"] = chat_input::decimal(p);
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    if stream {
        body["stream"] = json!(true);
    }
    if !input.tools.is_empty() {
        body["tools"] = input
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    tool["description"] = json!(d);
                }
                tool
            })
            .collect();
    }
    let mut choice = input.tool_choice.as_ref().map(|c| match c {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
    });
    if let Some(format) = &input.response_format {
        if !input.tools.is_empty() {
            return Err(refuser.unsupported(
                "`response_format` together with `tools` (JSON output is a forced tool call here)",
            ));
        }
        let schema = match format {
            ResponseFormat::JsonObject => json!({"type": "object", "additionalProperties": true}),
            ResponseFormat::JsonSchema(schema) => {
                if schema.get("type").is_some_and(|t| t != "object") {
                    return Err(refuser.unsupported(
                        "`response_format.json_schema.schema` whose root is not an object",
                    ));
                }
                schema.clone()
            }
        };
        body["tools"] = json!([{"name": JSON_TOOL,
            "description": "Respond with a JSON object that matches this schema.",
            "input_schema": schema}]);
        choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
    }
    if !input.parallel_tool_calls && !input.tools.is_empty() {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = choice {
        body["tool_choice"] = choice;
    }
    Ok(body)
}

fn user_block(part: &Part) -> Value {
    match part {
        Part::Text(text) => json!({"type": "text", "text": text}),
        Part::Image(Image::Inline { media_type, data }) => json!({"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}}),
        Part::Image(Image::Url(url)) => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
    }
}

/// What an Anthropic content block of a stream is, by its index.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    /// A tool call: its index among the reply's tool calls.
    ToolCall(u32),
    /// The forced JSON tool call: its input is the reply's text.
    Json,
    /// Thinking and other blocks the client does not see.
    Hidden,
}

/// Anthropic's stream events → OpenAI chunks.
struct StreamTranslator {
    /// Made at `message_start` (its id and model).
    writer: Option<ChunkWriter>,
    model: String,
    include_usage: bool,
    json_mode: bool,
    input_tokens: u32,
    output_tokens: u32,
    blocks: HashMap<u32, Block>,
    tool_calls: u32,
}

impl StreamTranslator {
    fn writer(&mut self) -> &ChunkWriter {
        let (model, include_usage) = (&self.model, self.include_usage);
        self.writer.get_or_insert_with(|| {
            ChunkWriter::new(chat_output::fresh_id(), model.clone(), include_usage)
        })
    }
}

impl Translate for StreamTranslator {
    fn event(&mut self, ev: &SseEvent) -> Result<Step, BackendError> {
        let parsed: WireEvent = serde_json::from_str(&ev.data)
            .map_err(|e| BackendError::Protocol(format!("bad stream event: {e}")))?;
        Ok(Step::More(match parsed {
            WireEvent::MessageStart { message } => {
                self.input_tokens = message.usage.input_tokens;
                self.output_tokens = message.usage.output_tokens;
                let writer = ChunkWriter::new(
                    message.id.unwrap_or_else(chat_output::fresh_id),
                    message.model.unwrap_or_else(|| self.model.clone()),
                    self.include_usage,
                );
                let opening = writer.delta(0, Delta::opening(), None);
                self.writer = Some(writer);
                vec![opening]
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let (block, out) = match content_block {
                    WireBlock::Text { text } => {
                        let out = (!text.is_empty())
                            .then(|| self.writer().delta(0, Delta::text(&text), None));
                        (Block::Text, out)
                    }
                    WireBlock::ToolUse { name, .. } if self.json_mode && name == JSON_TOOL => {
                        (Block::Json, None)
                    }
                    WireBlock::ToolUse { id, name, .. } => {
                        let k = self.tool_calls;
                        self.tool_calls += 1;
                        let out =
                            self.writer()
                                .delta(0, Delta::tool_call_start(k, &id, &name, ""), None);
                        (Block::ToolCall(k), Some(out))
                    }
                    WireBlock::Other => (Block::Hidden, None),
                };
                self.blocks.insert(index, block);
                out.into_iter().collect()
            }
            WireEvent::ContentBlockDelta { index, delta } => {
                let block = self.blocks.get(&index).copied().unwrap_or(Block::Hidden);
                let out = match (block, delta) {
                    (Block::Text, WireDelta::TextDelta { text })
                    | (Block::Json, WireDelta::InputJsonDelta { partial_json: text }) => {
                        (!text.is_empty()).then(|| self.writer().delta(0, Delta::text(&text), None))
                    }
                    (Block::ToolCall(k), WireDelta::InputJsonDelta { partial_json }) => {
                        (!partial_json.is_empty()).then(|| {
                            self.writer().delta(
                                0,
                                Delta::tool_call_arguments(k, &partial_json),
                                None,
                            )
                        })
                    }
                    _ => None,
                };
                out.into_iter().collect()
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.output_tokens = usage.output_tokens;
                    self.input_tokens = self.input_tokens.max(usage.input_tokens);
                }
                match delta.stop_reason {
                    Some(stop) => {
                        let reason = finish_reason(&stop, self.json_mode);
                        vec![self.writer().finish(0, reason)]
                    }
                    None => Vec::new(),
                }
            }
            WireEvent::MessageStop => {
                let usage = Usage {
                    prompt_tokens: self.input_tokens,
                    completion_tokens: self.output_tokens,
                };
                return Ok(Step::End(self.writer().usage(usage).into()));
            }
            WireEvent::Error { error } => {
                let status = match error.kind.as_str() {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    _ => 502,
                };
                return Err(BackendError::Status {
                    status,
                    message: error.message,
                    retry_after_s: None,
                    provider: Some(Box::new(super::ProviderError {
                        kind: Some(error.kind),
                        code: None,
                    })),
                });
            }
            WireEvent::Other => Vec::new(),
        }))
    }
}

// ---------------------------------------------------------------- wire types

#[derive(Deserialize)]
struct WireResponse {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStartMessage {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backends::{Passthrough, StreamEvent};
    use crate::domain::{ChatMessage, Role};

    fn request(fields: Value, messages: Value) -> ChatRequest {
        let (Value::Object(fields), Value::Array(messages)) = (fields, messages) else {
            panic!("an object and a list")
        };
        let domain: Vec<ChatMessage> = messages
            .iter()
            .map(|_| ChatMessage {
                role: Role::User,
                content: String::new(),
            })
            .collect();
        ChatRequest {
            model: "claude-sonnet-4-5".into(),
            messages: domain.into(),
            max_tokens: None,
            temperature: Some(1.5),
            top_p: None,
            stop: vec!["END".into()],
            seed: None,
            passthrough: Passthrough {
                fields: Arc::new(fields),
                messages: Some(messages.into()),
            },
        }
    }

    fn backend() -> Anthropic {
        let cfg = crate::config::Config::parse(
            "[policy]\nstatic_targets = [\"claude\"]\n[[backends]]\nname = \"claude\"\n\
             kind = \"anthropic\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"c\"]\n",
        )
        .unwrap();
        Anthropic::new(&cfg.backends[0], None).unwrap()
    }

    #[test]
    fn system_messages_are_lifted_and_temperature_clamped() {
        let msg = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let req = ChatRequest {
            messages: vec![msg(Role::System, "be brief"), msg(Role::User, "hi")].into(),
            passthrough: Default::default(),
            ..request(json!({}), json!([]))
        };
        let (v, _) = backend().translate(&req, false).unwrap();
        assert_eq!(
            v,
            json!({"model":"claude-sonnet-4-5","max_tokens":4096,"system":"be brief",
                "messages":[{"role":"user","content":"hi"}],"temperature":1.0,
                "stop_sequences":["END"]})
        );
    }

    #[test]
    fn a_tool_conversation_becomes_content_blocks() {
        let req = request(
            json!({"tools": [{"type": "function", "function": {"name": "w", "description": "d",
                    "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}}],
                "tool_choice": "required", "parallel_tool_calls": false}),
            json!([{"role": "user", "content": [{"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"P\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"L\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "rain"}]),
        );
        let (v, _) = backend().translate(&req, false).unwrap();
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "see"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"c": "L"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"}]}])
        );
        assert_eq!(
            v["tools"],
            json!([{"name": "w", "description": "d",
                "input_schema": {"type": "object", "properties": {"c": {"type": "string"}}}}])
        );
        assert_eq!(
            v["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn json_output_is_a_forced_tool_call_and_the_rest_is_refused_by_name() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let req = request(
            json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "w", "schema": {"type": "object", "properties": {}}}}}),
            user.clone(),
        );
        let (v, _) = backend().translate(&req, false).unwrap();
        assert_eq!(v["tools"][0]["name"], JSON_TOOL);
        assert_eq!(
            v["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(v["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
        for (fields, named) in [
            (json!({"logprobs": true}), "`logprobs`"),
            (json!({"seed": 1}), "`seed`"),
            (json!({"n": 2}), "`n`"),
            (json!({"presence_penalty": 0.5}), "`presence_penalty`"),
            (json!({"x_vendor": 1}), "`x_vendor`"),
        ] {
            match backend().check(&request(fields, user.clone())) {
                Err(BackendError::Unsupported(m)) => {
                    assert!(m.contains(named) && m.contains("\"claude\""), "{m}")
                }
                other => panic!("{named}: {other:?}"),
            }
        }
        assert!(
            backend()
                .check(&request(json!({"presence_penalty": 0, "n": 1}), user))
                .is_ok()
        );
    }

    fn run(translator: &mut StreamTranslator, events: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        for data in events {
            let step = translator
                .event(&SseEvent {
                    event: None,
                    data: (*data).into(),
                })
                .unwrap();
            let (Step::More(evs) | Step::End(evs)) = step;
            for ev in evs {
                if let StreamEvent::Chunk { json, .. } = ev {
                    out.push(serde_json::from_str(&json).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn tool_use_events_become_tool_call_deltas() {
        let mut t = StreamTranslator {
            writer: None,
            model: "c".into(),
            include_usage: false,
            json_mode: false,
            input_tokens: 0,
            output_tokens: 0,
            blocks: HashMap::new(),
            tool_calls: 0,
        };
        let chunks = run(
            &mut t,
            &[
                r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-x","usage":{"input_tokens":9,"output_tokens":1}}}"#,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"w","input":{}}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"c\":"}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"P\"}"}}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":20}}"#,
                r#"{"type":"message_stop"}"#,
            ],
        );
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0).map(|c| &c["delta"]))
            .collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": "", "refusal": null}),
                &json!({"content": "Let me check."}),
                &json!({"tool_calls": [{"index": 0, "id": "toolu_9", "type": "function",
                    "function": {"name": "w", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"c\":"}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"P\"}"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert!(
            chunks
                .iter()
                .all(|c| c["id"] == "msg_1" && c["model"] == "claude-x")
        );
        let last = chunks.last().unwrap();
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29})
        );
    }
}
