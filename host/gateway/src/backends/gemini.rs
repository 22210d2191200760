//! Google Gemini connector (`models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`): the client's OpenAI request translated (roles and
//! system instruction, inline images, assistant tool calls as `functionCall` and tool
//! results as `functionResponse` parts, tools and `toolConfig`, JSON output, penalties,
//! seed, `n`, logprobs) and each candidate translated back into an OpenAI choice (its
//! function calls as tool calls with ids `call_<n>`, its logprobs in OpenAI's shape). The
//! key travels in `x-goog-api-key`, never in the URL.

use base64::Engine;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::chat_input::{
    self, ChatInput, Image, Message, Part, Refuser, ResponseFormat, ToolChoice,
};
use super::chat_output::{
    self, ChunkWriter, Delta, Logprobs, OutChoice, OutToolCall, TokenLogprob, TopLogprob,
};
use super::sse::SseEvent;
use super::upstream::{self, MAX_REPLY_BYTES, Step, Translate, reply_body, send, sse_events};
use super::{
    ApiKey, Backend, BackendError, ChatRequest, ChatResponse, ChatStream, EmbedRequest,
    EmbedResponse, StreamEvent, Usage,
};
use crate::config::{BackendConfig, Timeouts};
use crate::domain::BackendKind;

/// The top-level fields this connector translates (their values are checked on reading).
const FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "modalities",
];

/// Connector for the Gemini API.
#[derive(Debug)]
pub struct Gemini {
    name: String,
    models: Vec<String>,
    base_url: String,
    key: Option<ApiKey>,
    timeouts: Timeouts,
    client: reqwest::Client,
}

impl Gemini {
    pub fn new(cfg: &BackendConfig, key: Option<ApiKey>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            name: cfg.name.clone(),
            models: cfg.models.clone(),
            base_url: cfg.base_url.clone(),
            key,
            timeouts: cfg.timeouts,
            client: upstream::http_client(&cfg.timeouts)?,
        })
    }

    /// The upstream body and the client's request as read, or the refusal.
    fn translate(&self, request: &ChatRequest) -> Result<(Value, ChatInput), BackendError> {
        let refuser = Refuser {
            backend: &self.name,
            connector: "gemini",
        };
        super::fields::known_fields(request, &self.name, "gemini", FIELDS)?;
        let input = chat_input::read(request, refuser)?;
        let body = wire_request(request, &input, refuser)?;
        Ok((body, input))
    }

    /// `POST {base_url}/models/{model}:{method}` with `body`.
    async fn post(
        &self,
        model: &str,
        method: &str,
        body: &Value,
    ) -> Result<reqwest::Response, BackendError> {
        if model.is_empty()
            || !model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(BackendError::InvalidRequest(format!(
                "model name {model:?} is not valid for Gemini"
            )));
        }
        let url = format!("{}/models/{model}:{method}", self.base_url);
        let body = serde_json::to_vec(body).map_err(|e| BackendError::Protocol(e.to_string()))?;
        let mut builder = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            builder = builder.header("x-goog-api-key", key.expose());
        }
        send(builder, self.timeouts.first_byte).await
    }
}

/// Gemini finish reason → OpenAI finish reason (`tool_calls` when the candidate called).
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called => "tool_calls",
        _ => "stop",
    }
}

impl Backend for Gemini {
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
        self.translate(request).map(|_| ())
    }

    fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
        async move {
            let (body, _) = self.translate(&request)?;
            let response = self.post(&request.model, "generateContent", &body).await?;
            let body = reply_body(response, MAX_REPLY_BYTES).await?;
            let wire: WireResponse = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("bad generateContent JSON: {e}")))?;
            if wire.candidates.is_empty() {
                return Err(BackendError::Protocol(
                    "response has no candidates (prompt blocked?)".into(),
                ));
            }
            let mut calls = 0;
            let mut choices: Vec<(u32, OutChoice)> = wire
                .candidates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let index = c.index.unwrap_or(u32::try_from(i).unwrap_or(u32::MAX));
                    let mut choice = OutChoice::default();
                    for part in c.parts() {
                        if let Some(text) = part.visible_text() {
                            choice.text.push_str(text);
                        }
                        if let Some(call) = &part.function_call {
                            choice.tool_calls.push(call.out(&mut calls));
                        }
                    }
                    choice.logprobs = c.logprobs_result.as_ref().map(WireLogprobs::openai);
                    choice.finish_reason = finish_reason(
                        c.finish_reason.as_deref().unwrap_or("STOP"),
                        !choice.tool_calls.is_empty(),
                    )
                    .to_owned();
                    (index, choice)
                })
                .collect();
            choices.sort_by_key(|(i, _)| *i);
            let choices: Vec<OutChoice> = choices.into_iter().map(|(_, c)| c).collect();
            let usage = wire.usage_metadata.map(Usage::from).unwrap_or_default();
            let id = wire.response_id.unwrap_or_else(chat_output::fresh_id);
            Ok(chat_output::completion(
                &id,
                wire.model_version.unwrap_or(request.model),
                &choices,
                usage,
            ))
        }
        .boxed()
    }

    fn chat_stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
        async move {
            let (body, input) = self.translate(&request)?;
            let response = self
                .post(&request.model, "streamGenerateContent?alt=sse", &body)
                .await?;
            let translator = StreamTranslator {
                writer: None,
                model: request.model,
                include_usage: input.include_usage,
                choices: Vec::new(),
                calls: 0,
                usage: Usage::default(),
            };
            Ok(sse_events(response.bytes_stream(), translator))
        }
        .boxed()
    }

    /// `batchEmbedContents`, one request per input text; the reply in OpenAI's shape.
    /// Gemini reports no token count: usage is the gateway's estimate.
    fn embed(&self, request: EmbedRequest) -> BoxFuture<'_, Result<EmbedResponse, BackendError>> {
        async move {
            let (body, texts, base64) = embed_request(&self.name, &request)?;
            let response = self
                .post(&request.model, "batchEmbedContents", &body)
                .await?;
            let reply = reply_body(response, MAX_REPLY_BYTES).await?;
            let wire: WireEmbeddings = serde_json::from_slice(&reply)
                .map_err(|e| BackendError::Protocol(format!("bad batchEmbedContents JSON: {e}")))?;
            if wire.embeddings.len() != texts.len() {
                return Err(BackendError::Protocol(format!(
                    "{} embeddings for {} inputs",
                    wire.embeddings.len(),
                    texts.len()
                )));
            }
            let prompt_tokens = texts
                .iter()
                .map(|t| crate::domain::estimate_tokens(t))
                .fold(0u32, u32::saturating_add);
            let data: Vec<Value> = wire
                .embeddings
                .iter()
                .enumerate()
                .map(|(index, e)| {
                    let embedding = if base64 {
                        let bytes: Vec<u8> =
                            e.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        json!(e.values)
                    };
                    json!({"object": "embedding", "index": index, "embedding": embedding})
                })
                .collect();
            let body = json!({
                "object": "list", "data": data, "model": request.model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            });
            Ok(EmbedResponse {
                body: serde_json::to_vec(&body)
                    .map_err(|e| BackendError::Protocol(e.to_string()))?
                    .into(),
                prompt_tokens,
            })
        }
        .boxed()
    }
}

/// `batchEmbedContents`'s reply.
#[derive(Deserialize)]
struct WireEmbeddings {
    #[serde(default)]
    embeddings: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}

/// The `batchEmbedContents` body for an OpenAI embeddings request, its texts, and whether
/// the client asked for base64; a field Gemini cannot honour is refused by name.
fn embed_request(
    backend: &str,
    request: &EmbedRequest,
) -> Result<(Value, Vec<String>, bool), BackendError> {
    let refuse = |what: &str| Err(super::fields::unsupported(backend, "gemini", what));
    let mut base64 = false;
    let mut dimensions = None;
    let mut texts = Vec::new();
    let mut names: Vec<&String> = request.fields.keys().collect();
    names.sort();
    for name in names {
        let value = &request.fields[name];
        match name.as_str() {
            "input" => match value {
                Value::String(text) => texts.push(text.clone()),
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    texts.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => return refuse("`input` that is not a string or a list of strings"),
            },
            "encoding_format" => match value.as_str() {
                Some("float") | None => {}
                Some("base64") => base64 = true,
                Some(_) => return refuse("`encoding_format` other than float or base64"),
            },
            "dimensions" => dimensions = value.as_u64(),
            "user" => {}
            _ if super::fields::neutral(value) => {}
            other => return refuse(&format!("the request field `{other}`")),
        }
    }
    if texts.is_empty() {
        return Err(BackendError::InvalidRequest("`input` is empty".into()));
    }
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut one = json!({
                "model": format!("models/{}", request.model),
                "content": {"parts": [{"text": text}]},
            });
            if let Some(d) = dimensions {
                one["outputDimensionality"] = json!(d);
            }
            one
        })
        .collect();
    Ok((json!({ "requests": requests }), texts, base64))
}

/// The upstream body for `input`.
fn wire_request(
    request: &ChatRequest,
    input: &ChatInput,
    refuser: Refuser<'_>,
) -> Result<Value, BackendError> {
    if !input.parallel_tool_calls && !input.tools.is_empty() {
        return Err(refuser.unsupported(
            "`parallel_tool_calls` = false (Gemini may always call several functions)",
        ));
    }
    let mut system: Vec<&str> = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in input.messages.iter().enumerate() {
        let (role, parts): (&'static str, Vec<Value>) = match message {
            Message::System(text) => {
                system.push(text);
                continue;
            }
            Message::User(parts) => (
                "user",
                parts
                    .iter()
                    .enumerate()
                    .map(|(j, p)| user_part(p, i, j, refuser))
                    .collect::<Result<_, _>>()?,
            ),
            Message::Assistant { text, tool_calls } => {
                let mut parts = Vec::new();
                if !text.is_empty() || tool_calls.is_empty() {
                    parts.push(json!({"text": text}));
                }
                parts.extend(
                    tool_calls
                        .iter()
                        .map(|c| json!({"functionCall": {"name": c.name, "args": c.arguments}})),
                );
                ("model", parts)
            }
            Message::ToolResult {
                call_id,
                name,
                content,
            } => {
                let name = name.as_deref().ok_or_else(|| {
                    BackendError::InvalidRequest(format!(
                        "`messages[{i}]`: no earlier assistant message made the tool call \
                         {call_id:?} (Gemini needs its function name)"
                    ))
                })?;
                let response = match serde_json::from_str::<Value>(content) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => json!({"content": content}),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
        };
        // Consecutive messages of one role (parallel tool results) become one content.
        match contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    let mut body = json!({
        "contents": contents
            .into_iter()
            .map(|(role, parts)| json!({"role": role, "parts": parts}))
            .collect::<Vec<_>>(),
    });
    if !system.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": system.join("\n\n")}]});
    }
    if !input.tools.is_empty() {
        let declarations: Vec<Value> = input
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name, "parametersJsonSchema": t.parameters});
                if let Some(description) = &t.description {
                    d["description"] = json!(description);
                }
                d
            })
            .collect();
        body["tools"] = json!([{"functionDeclarations": declarations}]);
    }
    if let Some(choice) = &input.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body["toolConfig"] = json!({"functionCallingConfig": config});
    }
    let mut config = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.to_owned(), value);
        }
    };
    set("maxOutputTokens", request.max_tokens.map(Value::from));
    set("temperature", request.temperature.map(chat_input::decimal));
    set("topP", request.top_p.map(chat_input::decimal));
    set(
        "stopSequences",
        (!request.stop.is_empty()).then(|| json!(request.stop)),
    );
    set("seed", request.seed.map(Value::from));
    set("presencePenalty", input.presence_penalty.map(Value::from));
    set("frequencyPenalty", input.frequency_penalty.map(Value::from));
    set(
        "candidateCount",
        (input.n != 1).then(|| Value::from(input.n)),
    );
    if let Some(format) = &input.response_format {
        set("responseMimeType", Some(json!("application/json")));
        if let ResponseFormat::JsonSchema(schema) = format {
            set("responseJsonSchema", Some(schema.clone()));
        }
    }
    if input.logprobs {
        set("responseLogprobs", Some(json!(true)));
        set("logprobs", input.top_logprobs.map(Value::from));
    }
    body["generationConfig"] = Value::Object(config);
    Ok(body)
}

fn user_part(part: &Part, i: usize, j: usize, refuser: Refuser<'_>) -> Result<Value, BackendError> {
    match part {
        Part::Text(text) => Ok(json!({"text": text})),
        Part::Image(Image::Inline { media_type, data }) => {
            Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}))
        }
        // Gemini would need the gateway to fetch it: no arbitrary fetches (SSRF).
        Part::Image(Image::Url(_)) => Err(refuser.unsupported(&format!(
            "`messages[{i}].content[{j}]` (an image by http(s) URL: send it as a data: URL)"
        ))),
    }
}

/// Gemini's stream → OpenAI chunks. Gemini has no end marker: the body's end flushes
/// the usage.
struct StreamTranslator {
    /// Made at the first event (its `responseId` and `modelVersion`).
    writer: Option<ChunkWriter>,
    model: String,
    include_usage: bool,
    /// Per choice index: (opened, tool calls so far, finished).
    choices: Vec<(bool, u32, bool)>,
    /// Tool calls of the whole reply (ids `call_<n>`).
    calls: u32,
    usage: Usage,
}

impl Translate for StreamTranslator {
    fn event(&mut self, ev: &SseEvent) -> Result<Step, BackendError> {
        let wire: WireResponse = serde_json::from_str(&ev.data)
            .map_err(|e| BackendError::Protocol(format!("bad stream chunk: {e}")))?;
        if let Some(err) = wire.error {
            let provider = upstream::provider_error(ev.data.as_bytes()).map(Box::new);
            return Err(BackendError::Status {
                status: err.code.unwrap_or(502),
                message: err.message.unwrap_or_else(|| "error in stream".into()),
                retry_after_s: None,
                provider,
            });
        }
        let writer = self.writer.get_or_insert_with(|| {
            ChunkWriter::new(
                wire.response_id
                    .clone()
                    .unwrap_or_else(chat_output::fresh_id),
                wire.model_version
                    .clone()
                    .unwrap_or_else(|| self.model.clone()),
                self.include_usage,
            )
        });
        let mut out = Vec::new();
        for candidate in &wire.candidates {
            let index = candidate.index.unwrap_or(0);
            let slot = usize::try_from(index).unwrap_or(usize::MAX).min(1024);
            if self.choices.len() <= slot {
                self.choices.resize(slot + 1, (false, 0, false));
            }
            let (opened, tool_calls, finished) = &mut self.choices[slot];
            if !*opened {
                *opened = true;
                out.push(writer.delta(index, Delta::opening(), None));
            }
            let logprobs = candidate.logprobs_result.as_ref().map(WireLogprobs::openai);
            let mut logprobs = logprobs.as_ref();
            for part in candidate.parts() {
                if let Some(text) = part.visible_text().filter(|t| !t.is_empty()) {
                    out.push(writer.delta(index, Delta::text(text), logprobs.take()));
                }
                if let Some(call) = &part.function_call {
                    let call = call.out(&mut self.calls);
                    let k = *tool_calls;
                    *tool_calls += 1;
                    out.push(writer.delta(
                        index,
                        Delta::tool_call_start(k, &call.id, &call.name, &call.arguments),
                        None,
                    ));
                }
            }
            if let Some(reason) = &candidate.finish_reason
                && !*finished
            {
                *finished = true;
                out.push(writer.finish(index, finish_reason(reason, *tool_calls > 0)));
            }
        }
        if let Some(usage) = wire.usage_metadata {
            self.usage = usage.into();
        }
        Ok(Step::More(out))
    }

    fn end_of_body(&mut self) -> Result<Vec<StreamEvent>, BackendError> {
        let writer = self.writer.get_or_insert_with(|| {
            ChunkWriter::new(
                chat_output::fresh_id(),
                self.model.clone(),
                self.include_usage,
            )
        });
        Ok(writer.usage(self.usage).into())
    }
}

// ---------------------------------------------------------------- wire types

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    response_id: Option<String>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireContentIn>,
    finish_reason: Option<String>,
    index: Option<u32>,
    logprobs_result: Option<WireLogprobs>,
}

impl WireCandidate {
    fn parts(&self) -> &[WirePartIn] {
        self.content.as_ref().map_or(&[], |c| &c.parts)
    }
}

#[derive(Deserialize)]
struct WireContentIn {
    #[serde(default)]
    parts: Vec<WirePartIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePartIn {
    text: Option<String>,
    /// A thought summary (asked for with `includeThoughts`): not the answer.
    #[serde(default)]
    thought: bool,
    function_call: Option<WireFunctionCall>,
}

impl WirePartIn {
    fn visible_text(&self) -> Option<&str> {
        self.text.as_deref().filter(|_| !self.thought)
    }
}

#[derive(Deserialize)]
struct WireFunctionCall {
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

impl WireFunctionCall {
    /// The OpenAI tool call: Gemini's id when it gives one, else `call_<n>` (`n` counts
    /// the reply's calls).
    fn out(&self, calls: &mut u32) -> OutToolCall {
        let n = *calls;
        *calls += 1;
        OutToolCall {
            id: self.id.clone().unwrap_or_else(|| format!("call_{n}")),
            name: self.name.clone(),
            arguments: self
                .args
                .as_ref()
                .map_or_else(|| "{}".to_owned(), Value::to_string),
        }
    }
}

/// `logprobsResult`: per generated token, the chosen one and the top alternatives.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogprobs {
    #[serde(default)]
    top_candidates: Vec<WireTopCandidates>,
    #[serde(default)]
    chosen_candidates: Vec<WireTokenLogprob>,
}

#[derive(Deserialize)]
struct WireTopCandidates {
    #[serde(default)]
    candidates: Vec<WireTokenLogprob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTokenLogprob {
    #[serde(default)]
    token: String,
    #[serde(default)]
    log_probability: f64,
}

impl WireLogprobs {
    /// OpenAI's `logprobs`: per chosen token, its alternatives at the same step.
    fn openai(&self) -> Logprobs {
        let content = self
            .chosen_candidates
            .iter()
            .enumerate()
            .map(|(i, chosen)| TokenLogprob {
                token: chosen.token.clone(),
                logprob: chosen.log_probability,
                bytes: chosen.token.as_bytes().to_vec(),
                top_logprobs: self
                    .top_candidates
                    .get(i)
                    .map(|top| {
                        top.candidates
                            .iter()
                            .map(|t| TopLogprob {
                                token: t.token.clone(),
                                logprob: t.log_probability,
                                bytes: t.token.as_bytes().to_vec(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Logprobs {
            content,
            refusal: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u32,
    #[serde(default)]
    candidates_token_count: u32,
    /// Thinking tokens: billed as output.
    #[serde(default)]
    thoughts_token_count: u32,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<u16>,
    message: Option<String>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u
                .candidates_token_count
                .saturating_add(u.thoughts_token_count),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backends::Passthrough;
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
            model: "gemini-2.0-flash".into(),
            messages: domain.into(),
            max_tokens: Some(10),
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: None,
            passthrough: Passthrough {
                fields: Arc::new(fields),
                messages: Some(messages.into()),
            },
        }
    }

    fn backend() -> Gemini {
        let cfg = crate::config::Config::parse(
            "[policy]\nstatic_targets = [\"gem\"]\n[[backends]]\nname = \"gem\"\n\
             kind = \"gemini\"\nbase_url = \"http://127.0.0.1:9/v1beta\"\nmodels = [\"g\"]\n",
        )
        .unwrap();
        Gemini::new(&cfg.backends[0], None).unwrap()
    }

    #[test]
    fn request_uses_gemini_roles_and_system_instruction() {
        let msg = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let req = ChatRequest {
            messages: vec![
                msg(Role::System, "be brief"),
                msg(Role::User, "hi"),
                msg(Role::Assistant, "hello"),
                msg(Role::User, "again"),
            ]
            .into(),
            passthrough: Default::default(),
            ..request(json!({}), json!([]))
        };
        let (v, _) = backend().translate(&req).unwrap();
        assert_eq!(
            v,
            json!({"contents":[{"role":"user","parts":[{"text":"hi"}]},
                {"role":"model","parts":[{"text":"hello"}]},{"role":"user","parts":[{"text":"again"}]}],
                "systemInstruction":{"parts":[{"text":"be brief"}]},
                "generationConfig":{"maxOutputTokens":10}})
        );
    }

    #[test]
    fn tools_results_and_generation_settings_are_translated() {
        let base = request(
            json!({"tools": [{"type": "function", "function": {"name": "w",
                    "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}}],
                "tool_choice": {"type": "function", "function": {"name": "w"}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "x",
                    "schema": {"type": "object", "additionalProperties": false}}},
                "n": 2, "logprobs": true, "top_logprobs": 3, "presence_penalty": 0.25,
                "frequency_penalty": 0.5, "seed": 7}),
            json!([{"role": "user", "content": [{"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"P\"}"}},
                    {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"L\"}"}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"rain\":true}"}]),
        );
        // The gateway reads `seed` into the typed field.
        let req = ChatRequest {
            seed: Some(7),
            ..base
        };
        let (v, _) = backend().translate(&req).unwrap();
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "see"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {"c": "P"}}},
                    {"functionCall": {"name": "w", "args": {"c": "L"}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "w", "response": {"content": "sunny"}}},
                    {"functionResponse": {"name": "w", "response": {"rain": true}}}]}])
        );
        assert_eq!(
            v["tools"],
            json!([{"functionDeclarations": [{"name": "w",
                "parametersJsonSchema": {"type": "object", "properties": {"c": {"type": "string"}}}}]}])
        );
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}})
        );
        assert_eq!(
            v["generationConfig"],
            json!({"maxOutputTokens": 10, "seed": 7, "presencePenalty": 0.25,
                "frequencyPenalty": 0.5, "candidateCount": 2,
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "additionalProperties": false},
                "responseLogprobs": true, "logprobs": 3})
        );
    }

    #[test]
    fn what_gemini_cannot_do_is_refused_by_name() {
        let refused =
            |fields: Value, messages: Value| match backend().check(&request(fields, messages)) {
                Err(BackendError::Unsupported(m)) => m,
                other => panic!("expected a refusal, got {other:?}"),
            };
        let user = json!([{"role": "user", "content": "hi"}]);
        let m = refused(
            json!({}),
            json!([{"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "http://169.254.169.254/latest"}}]}]),
        );
        assert!(
            m.contains("messages[0].content[0]") && m.contains("\"gem\""),
            "{m}"
        );
        let m = refused(
            json!({"parallel_tool_calls": false,
                "tools": [{"type": "function", "function": {"name": "w"}}]}),
            user.clone(),
        );
        assert!(m.contains("parallel_tool_calls"), "{m}");
        let m = refused(json!({"logit_bias": {"1": 2}}), user);
        assert!(m.contains("logit_bias"), "{m}");
        // A tool result for a call nobody made is the client's error.
        let r = request(
            json!({}),
            json!([{"role": "tool", "tool_call_id": "x", "content": "1"}]),
        );
        assert!(matches!(
            backend().check(&r),
            Err(BackendError::InvalidRequest(_))
        ));
    }

    #[test]
    fn streamed_function_calls_get_ids_and_usage_comes_last() {
        let mut t = StreamTranslator {
            writer: None,
            model: "g".into(),
            include_usage: true,
            choices: Vec::new(),
            calls: 0,
            usage: Usage::default(),
        };
        let step = t
            .event(&SseEvent {
                event: None,
                data: r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"},
                    {"functionCall":{"name":"w","args":{"c":"P"}}}]},"finishReason":"STOP","index":0}],
                    "usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":4,"thoughtsTokenCount":2},
                    "modelVersion":"gemini-x","responseId":"r1"}"#
                    .into(),
            })
            .unwrap();
        let Step::More(mut events) = step else {
            panic!("no end marker in Gemini streams")
        };
        events.extend(t.end_of_body().unwrap());
        let chunks: Vec<Value> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk { json, .. } => Some(serde_json::from_str(json).unwrap()),
                _ => None,
            })
            .collect();
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0).map(|c| &c["delta"]))
            .collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": "", "refusal": null}),
                &json!({"content": "ok"}),
                &json!({"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
                    "function": {"name": "w", "arguments": "{\"c\":\"P\"}"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
        assert!(
            chunks
                .iter()
                .all(|c| c["id"] == "r1" && c["model"] == "gemini-x")
        );
        assert_eq!(
            chunks[4]["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11})
        );
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Usage(Usage {
                prompt_tokens: 5,
                completion_tokens: 6
            }))
        );
    }

    #[test]
    fn finish_reasons_map_to_openai() {
        assert_eq!(finish_reason("STOP", false), "stop");
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        assert_eq!(finish_reason("SAFETY", false), "content_filter");
    }
}
