//! The client's OpenAI chat request read into what a translating connector (Anthropic,
//! Gemini) maps onto its provider: messages with text and image parts, assistant tool
//! calls and tool results, tools, tool choice, response format, logprobs, penalties, `n`.
//! A part or value with no reading is refused by name ([`BackendError::Unsupported`]);
//! malformed input (arguments that are not JSON, a tool result for no call) is the
//! client's error ([`BackendError::InvalidRequest`]).

use serde_json::{Map, Value};

use super::fields::{neutral, unsupported};
use super::{BackendError, ChatRequest};
use crate::domain::Role;

/// One part of a user message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    Image(Image),
}

/// An image part: inline bytes (a `data:` URL) or a URL the provider fetches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Image {
    Inline { media_type: String, data: String },
    Url(String),
}

/// One tool call of an assistant message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments, parsed (a JSON object).
    pub arguments: Value,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// `system` and `developer` messages.
    System(String),
    User(Vec<Part>),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// A `tool` message: the result of the call `call_id`, whose function `name` is found
    /// in an earlier assistant message (`None` when no assistant message made that call).
    ToolResult {
        call_id: String,
        name: Option<String>,
        content: String,
    },
}

/// A function tool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (an empty object schema when the client gave none).
    pub parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

/// `response_format` asking for JSON (`text` asks for nothing).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ResponseFormat {
    JsonObject,
    /// The schema of `json_schema.schema`.
    JsonSchema(Value),
}

/// Everything of the client's request a translating connector maps, beyond the typed
/// fields of [`ChatRequest`] (temperature, top_p, stop, seed, max_tokens).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatInput {
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `parallel_tool_calls` (OpenAI's default: true).
    pub parallel_tool_calls: bool,
    pub response_format: Option<ResponseFormat>,
    pub n: u32,
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    /// Non-zero penalties only (zero asks for nothing).
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// `stream_options.include_usage`: every chunk carries `usage` (null until the last).
    pub include_usage: bool,
}

/// Who refuses: the backend and its connector kind, for the messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refuser<'a> {
    pub backend: &'a str,
    pub connector: &'static str,
}

impl Refuser<'_> {
    /// [`BackendError::Unsupported`] naming `what`.
    pub fn unsupported(&self, what: &str) -> BackendError {
        unsupported(self.backend, self.connector, what)
    }
}

/// An `f32` sampling setting as the JSON number the client wrote (`0.2`, not the
/// `0.20000000298023224` a widening cast gives).
pub(crate) fn decimal(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

fn invalid(what: String) -> BackendError {
    BackendError::InvalidRequest(what)
}

/// Reads the client's request (its messages as sent when the gateway kept them, else the
/// domain messages' text).
pub(crate) fn read(request: &ChatRequest, refuser: Refuser<'_>) -> Result<ChatInput, BackendError> {
    let fields = &*request.passthrough.fields;
    let messages = match &request.passthrough.messages {
        Some(raw) if raw.len() == request.messages.len() => raw_messages(raw, refuser)?,
        _ => request
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| match m.role {
                Role::System => Ok(Message::System(m.content.clone())),
                Role::User => Ok(Message::User(vec![Part::Text(m.content.clone())])),
                Role::Assistant => Ok(Message::Assistant {
                    text: m.content.clone(),
                    tool_calls: Vec::new(),
                }),
                Role::Tool => Err(refuser.unsupported(&format!(
                    "`messages[{i}]` (a `tool` message without its call id)"
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(modalities) = fields.get("modalities")
        && !neutral(modalities)
        && *modalities != Value::from(vec!["text"])
    {
        return Err(refuser.unsupported(&format!("`modalities` = {modalities} (only [\"text\"])")));
    }
    let number = |key: &str| fields.get(key).and_then(Value::as_f64);
    let penalty = |key: &str| number(key).filter(|p| *p != 0.0);
    Ok(ChatInput {
        messages,
        tools: tools(fields.get("tools"), refuser)?,
        tool_choice: tool_choice(fields.get("tool_choice"), refuser)?,
        parallel_tool_calls: fields.get("parallel_tool_calls") != Some(&Value::Bool(false)),
        response_format: response_format(fields.get("response_format"), refuser)?,
        n: fields
            .get("n")
            .and_then(Value::as_u64)
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        logprobs: fields.get("logprobs") == Some(&Value::Bool(true)),
        top_logprobs: fields
            .get("top_logprobs")
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        presence_penalty: penalty("presence_penalty"),
        frequency_penalty: penalty("frequency_penalty"),
        include_usage: fields
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            == Some(&Value::Bool(true)),
    })
}

fn tools(value: Option<&Value>, refuser: Refuser<'_>) -> Result<Vec<Tool>, BackendError> {
    let Some(list) = value.filter(|v| !neutral(v)) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("`tools` must be a list".into()))?;
    list.iter()
        .enumerate()
        .map(|(i, tool)| {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or("?");
            if kind != "function" {
                return Err(refuser.unsupported(&format!("`tools[{i}]` (a {kind:?} tool)")));
            }
            let function = tool
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid(format!("`tools[{i}].function` is missing")))?;
            for key in function.keys() {
                if !["name", "description", "parameters", "strict"].contains(&key.as_str())
                    && !neutral(&function[key])
                {
                    return Err(refuser.unsupported(&format!("`tools[{i}].function.{key}`")));
                }
            }
            if function.get("strict") == Some(&Value::Bool(true)) {
                return Err(refuser.unsupported(&format!(
                    "`tools[{i}].function.strict` (schema-enforced arguments)"
                )));
            }
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("`tools[{i}].function.name` is missing")))?;
            Ok(Tool {
                name: name.to_owned(),
                description: function
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: match function.get("parameters") {
                    Some(p @ Value::Object(o)) if !o.is_empty() => p.clone(),
                    _ => serde_json::json!({"type": "object", "properties": {}}),
                },
            })
        })
        .collect()
}

fn tool_choice(
    value: Option<&Value>,
    refuser: Refuser<'_>,
) -> Result<Option<ToolChoice>, BackendError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let choice = match value {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(invalid(format!("unknown `tool_choice` {other:?}"))),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("`tool_choice.function.name` is missing".into()))?;
            ToolChoice::Function(name.to_owned())
        }
        other => {
            let kind = other.get("type").and_then(Value::as_str).unwrap_or("?");
            return Err(refuser.unsupported(&format!("`tool_choice` of type {kind:?}")));
        }
    };
    Ok(Some(choice))
}

fn response_format(
    value: Option<&Value>,
    refuser: Refuser<'_>,
) -> Result<Option<ResponseFormat>, BackendError> {
    let Some(value) = value.filter(|v| !neutral(v)) else {
        return Ok(None);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let spec = value.get("json_schema");
            if spec.and_then(|s| s.get("strict")) == Some(&Value::Bool(true)) {
                return Err(refuser
                    .unsupported("`response_format.json_schema.strict` (schema-enforced output)"));
            }
            let schema = spec
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            Ok(Some(ResponseFormat::JsonSchema(schema)))
        }
        other => Err(refuser.unsupported(&format!(
            "`response_format` of type {:?}",
            other.unwrap_or("?")
        ))),
    }
}

/// The text of a `content` that may only hold text (a string or text parts).
fn text_content(
    content: Option<&Value>,
    at: &str,
    refuser: Refuser<'_>,
) -> Result<String, BackendError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (kind, _) => {
                        return Err(refuser.unsupported(&format!(
                            "`{at}.content[{j}]` (a {:?} part here)",
                            kind.unwrap_or("?")
                        )));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(invalid(format!(
            "`{at}.content` must be a string or a list"
        ))),
    }
}

fn user_parts(
    content: Option<&Value>,
    at: &str,
    refuser: Refuser<'_>,
) -> Result<Vec<Part>, BackendError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(invalid(format!(
                "`{at}.content` must be a string or a list"
            )));
        }
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| match part.get("type").and_then(Value::as_str) {
            Some("text") => part
                .get("text")
                .and_then(Value::as_str)
                .map(|t| Part::Text(t.to_owned()))
                .ok_or_else(|| invalid(format!("`{at}.content[{j}].text` is missing"))),
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(format!("`{at}.content[{j}].image_url.url` is missing"))
                    })?;
                image(url, &format!("{at}.content[{j}]"), refuser).map(Part::Image)
            }
            kind => Err(refuser.unsupported(&format!(
                "`{at}.content[{j}]` (a {:?} part)",
                kind.unwrap_or("?")
            ))),
        })
        .collect()
}

/// An image URL: `data:<type>;base64,<data>` inline, `http(s)://` as a URL.
fn image(url: &str, at: &str, refuser: Refuser<'_>) -> Result<Image, BackendError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid(format!("`{at}`: a data URL without data")))?;
        let media_type = meta.strip_suffix(";base64").ok_or_else(|| {
            refuser.unsupported(&format!("`{at}` (a data URL that is not base64)"))
        })?;
        return Ok(Image::Inline {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Image::Url(url.to_owned()));
    }
    Err(refuser.unsupported(&format!(
        "`{at}` (an image URL that is neither data: nor http(s):)"
    )))
}

fn raw_messages(raw: &[Value], refuser: Refuser<'_>) -> Result<Vec<Message>, BackendError> {
    let mut out: Vec<Message> = Vec::with_capacity(raw.len());
    for (i, message) in raw.iter().enumerate() {
        let at = format!("messages[{i}]");
        let message = message
            .as_object()
            .ok_or_else(|| invalid(format!("`{at}` must be an object")))?;
        let role = message.get("role").and_then(Value::as_str).unwrap_or("?");
        let keys: &[&str] = match role {
            "assistant" => &["role", "content", "tool_calls"],
            "tool" => &["role", "content", "tool_call_id"],
            _ => &["role", "content"],
        };
        refuse_other_keys(message, keys, &at, refuser)?;
        let content = message.get("content");
        out.push(match role {
            "system" | "developer" => Message::System(text_content(content, &at, refuser)?),
            "user" => Message::User(user_parts(content, &at, refuser)?),
            "assistant" => Message::Assistant {
                text: text_content(content, &at, refuser)?,
                tool_calls: tool_calls(message.get("tool_calls"), &at)?,
            },
            "tool" => {
                let call_id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("`{at}.tool_call_id` is missing")))?;
                let name = out.iter().rev().find_map(|m| match m {
                    Message::Assistant { tool_calls, .. } => tool_calls
                        .iter()
                        .find(|c| c.id == call_id)
                        .map(|c| c.name.clone()),
                    _ => None,
                });
                Message::ToolResult {
                    call_id: call_id.to_owned(),
                    name,
                    content: text_content(content, &at, refuser)?,
                }
            }
            other => return Err(refuser.unsupported(&format!("`{at}` (role {other:?})"))),
        });
    }
    Ok(out)
}

fn refuse_other_keys(
    message: &Map<String, Value>,
    keys: &[&str],
    at: &str,
    refuser: Refuser<'_>,
) -> Result<(), BackendError> {
    let mut names: Vec<&String> = message.keys().collect();
    names.sort();
    match names
        .into_iter()
        .find(|k| !keys.contains(&k.as_str()) && !neutral(&message[k.as_str()]))
    {
        Some(key) => Err(refuser.unsupported(&format!("`{at}.{key}`"))),
        None => Ok(()),
    }
}

fn tool_calls(value: Option<&Value>, at: &str) -> Result<Vec<ToolCall>, BackendError> {
    let Some(Value::Array(list)) = value else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(k, call)| {
            let here = format!("{at}.tool_calls[{k}]");
            let text = |key: &str| {
                call.get(key)
                    .or_else(|| call.get("function").and_then(|f| f.get(key)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("`{here}` has no {key}")))
            };
            let arguments = text("arguments")?;
            let arguments = if arguments.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                serde_json::from_str(arguments)
                    .map_err(|e| invalid(format!("`{here}.function.arguments` is not JSON: {e}")))?
            };
            if !arguments.is_object() {
                return Err(invalid(format!(
                    "`{here}.function.arguments` must be a JSON object"
                )));
            }
            Ok(ToolCall {
                id: text("id")?.to_owned(),
                name: text("name")?.to_owned(),
                arguments,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::backends::Passthrough;
    use crate::domain::ChatMessage;

    const REFUSER: Refuser<'static> = Refuser {
        backend: "b",
        connector: "anthropic",
    };

    fn request(fields: Value, messages: Value) -> ChatRequest {
        let Value::Object(fields) = fields else {
            panic!("fields must be an object")
        };
        let Value::Array(messages) = messages else {
            panic!("messages must be a list")
        };
        let domain: Vec<ChatMessage> = messages
            .iter()
            .map(|_| ChatMessage {
                role: Role::User,
                content: String::new(),
            })
            .collect();
        ChatRequest {
            model: "m".into(),
            messages: domain.into(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            seed: None,
            passthrough: Passthrough {
                fields: Arc::new(fields),
                messages: Some(messages.into()),
            },
        }
    }

    #[test]
    fn a_tool_conversation_is_read_whole() {
        let r = request(
            json!({"tools": [{"type": "function", "function": {"name": "w",
                "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}}],
                "tool_choice": "required", "parallel_tool_calls": false,
                "response_format": {"type": "json_object"}, "n": 2, "logprobs": true,
                "top_logprobs": 3, "presence_penalty": 0, "frequency_penalty": 0.5,
                "stream_options": {"include_usage": true}}),
            json!([{"role": "developer", "content": [{"type": "text", "text": "sys"}]},
                {"role": "user", "content": [{"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
                {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"P\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sunny"}]}]),
        );
        let input = read(&r, REFUSER).unwrap();
        assert_eq!(
            input.messages,
            vec![
                Message::System("sys".into()),
                Message::User(vec![
                    Part::Text("see".into()),
                    Part::Image(Image::Inline {
                        media_type: "image/png".into(),
                        data: "AAAA".into()
                    }),
                    Part::Image(Image::Url("https://x.test/a.png".into())),
                ]),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "w".into(),
                        arguments: json!({"c": "P"})
                    }]
                },
                Message::ToolResult {
                    call_id: "c1".into(),
                    name: Some("w".into()),
                    content: "sunny".into()
                },
            ]
        );
        assert_eq!(input.tools[0].name, "w");
        assert_eq!(input.tool_choice, Some(ToolChoice::Required));
        assert!(!input.parallel_tool_calls);
        assert_eq!(input.response_format, Some(ResponseFormat::JsonObject));
        assert_eq!(
            (input.n, input.logprobs, input.top_logprobs),
            (2, true, Some(3))
        );
        assert_eq!(input.presence_penalty, None);
        assert_eq!(input.frequency_penalty, Some(0.5));
        assert!(input.include_usage);
    }

    #[test]
    fn what_has_no_reading_is_refused_by_name() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let refused =
            |fields: Value, messages: Value| match read(&request(fields, messages), REFUSER) {
                Err(BackendError::Unsupported(m)) => m,
                other => panic!("expected a refusal, got {other:?}"),
            };
        let m = refused(
            json!({"tools": [{"type": "function", "function": {"name": "w", "strict": true}}]}),
            user.clone(),
        );
        assert!(m.contains("tools[0].function.strict"), "{m}");
        let m = refused(
            json!({"tools": [{"type": "custom", "custom": {}}]}),
            user.clone(),
        );
        assert!(m.contains("tools[0]"), "{m}");
        let m = refused(json!({"modalities": ["text", "audio"]}), user.clone());
        assert!(m.contains("modalities"), "{m}");
        let m = refused(
            json!({"response_format": {"type": "grammar"}}),
            user.clone(),
        );
        assert!(m.contains("response_format"), "{m}");
        let m = refused(
            json!({}),
            json!([{"role": "user", "name": "al", "content": "hi"}]),
        );
        assert!(m.contains("messages[0].name"), "{m}");
        let m = refused(
            json!({}),
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
        );
        assert!(m.contains("messages[0].content[0]"), "{m}");
        let m = refused(
            json!({}),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
        );
        assert!(m.contains("messages[0].content[0]"), "{m}");
    }

    #[test]
    fn malformed_tool_calls_are_the_clients_error() {
        let r = request(
            json!({}),
            json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "w", "arguments": "{not json"}}]}]),
        );
        assert!(matches!(
            read(&r, REFUSER),
            Err(BackendError::InvalidRequest(_))
        ));
    }
}
