//! Which top-level fields of a client's OpenAI chat request a translating connector
//! (Anthropic, Gemini, local) honours, and the refusal that names what it cannot: a request
//! is refused by name before any upstream call, never dropped silently. Local takes text
//! messages and JSON output only ([`text_only`], `local.rs`); Anthropic and Gemini read the rest in `chat_input`.
//! From the same rules, what each configured model can do ([`capabilities`], what
//! contract 0.2 policies read).

use serde_json::Value;

use super::{BackendError, ChatRequest, Passthrough};
use crate::config::{BackendConfig, ConnectorKind, defaults};
use crate::domain::{ModelCapabilities, RequestNeeds, ResponseFormat};

/// What a client's request needs from the model that serves it, read from its OpenAI
/// body: the tools offered (by name), the `response_format` type, `logprobs`, image parts
/// and `n`. `explicit_model` is left false (the caller knows the backends).
pub fn needs(pass: &Passthrough) -> RequestNeeds {
    let field = |name: &str| pass.fields.get(name).filter(|v| !neutral(v));
    let tools = field("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .map(|t| {
                    let name = t.pointer("/function/name").or_else(|| t.get("name"));
                    name.and_then(Value::as_str).unwrap_or("").to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    let response_format = match field("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => ResponseFormat::JsonSchema,
        _ => ResponseFormat::Text,
    };
    let images = pass
        .messages
        .iter()
        .flat_map(|m| m.iter())
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("image_url"))
        .count();
    RequestNeeds {
        tools,
        response_format,
        logprobs: field("logprobs").is_some_and(|v| v.as_bool() != Some(false)),
        images: u32::try_from(images).unwrap_or(u32::MAX),
        n: field("n")
            .and_then(Value::as_u64)
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        explicit_model: false,
    }
}

/// What each model of a configured backend can do, one entry per model in order. OpenAI
/// and OpenAI-compatible connectors forward the request whole: every capability (the
/// upstream decides). Anthropic translates tools, JSON output and images, not `logprobs`
/// or `n` > 1; Gemini all of them (images as `data:` URLs); local takes text and JSON
/// output (constrained decoding) only. Context
/// window and prices: the backend's configured ones for its default model, the price
/// table's ([`defaults::model_card`]) for the others, else the backend's.
pub fn capabilities(cfg: &BackendConfig) -> Vec<ModelCapabilities> {
    cfg.models
        .iter()
        .enumerate()
        .map(|(i, model)| {
            let card = defaults::model_card(model).filter(|_| cfg.kind != ConnectorKind::Local);
            let (usd_in, usd_out, window) = match card {
                Some(card) if i > 0 => card,
                _ => (
                    cfg.usd_per_mtok_in,
                    cfg.usd_per_mtok_out,
                    cfg.context_window,
                ),
            };
            match cfg.kind {
                ConnectorKind::Openai | ConnectorKind::OpenaiCompatible => {
                    ModelCapabilities::full(model, window, (usd_in, usd_out))
                }
                ConnectorKind::Gemini => ModelCapabilities::full(model, window, (usd_in, usd_out)),
                ConnectorKind::Anthropic => ModelCapabilities {
                    logprobs: false,
                    multiple_choices: false,
                    ..ModelCapabilities::full(model, window, (usd_in, usd_out))
                },
                ConnectorKind::Local => ModelCapabilities {
                    json_object: true,
                    json_schema: true,
                    ..ModelCapabilities::text_only(model, window, (usd_in, usd_out))
                },
            }
        })
        .collect()
}

/// Top-level fields every connector honours: the gateway itself reads them (`user` and
/// `metadata` are routing inputs).
const GATEWAY_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "max_tokens",
    "max_completion_tokens",
];

/// Message keys a text-only connector honours.
const MESSAGE_KEYS: &[&str] = &["role", "content"];

/// A value that asks for nothing: `null`, `false`, an empty list or object. Clients (and
/// SDKs echoing a previous reply, e.g. `refusal: null`, `tool_calls: []`) send these.
pub(crate) fn neutral(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The refusal of `what` (a field, a value, a message part) by `backend`, a `connector`.
pub(crate) fn unsupported(backend: &str, connector: &str, what: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "backend {backend:?} ({connector}) cannot honour {what}: {connector} has no \
         equivalent (an OpenAI-compatible backend takes it as sent)"
    ))
}

/// `Ok` when every top-level field of `request` is one the gateway reads, one of `fields`
/// (which the connector translates), or neutral; otherwise the refusal naming the first
/// other field (in name order) and `backend`.
pub fn known_fields(
    request: &ChatRequest,
    backend: &str,
    connector: &str,
    fields: &[&str],
) -> Result<(), BackendError> {
    let pass = &request.passthrough;
    let mut names: Vec<&String> = pass.fields.keys().collect();
    names.sort();
    for name in names {
        if GATEWAY_FIELDS.contains(&name.as_str())
            || fields.contains(&name.as_str())
            || neutral(&pass.fields[name])
        {
            continue;
        }
        return Err(unsupported(
            backend,
            connector,
            &format!("the request field `{name}`"),
        ));
    }
    Ok(())
}

/// `Ok` when `request` asks only for what a connector that honours `fields` (besides the
/// gateway's, `n` = 1) and plain-text messages can do; otherwise
/// [`BackendError::Unsupported`] naming the first field it cannot, and `backend`.
pub fn text_only(
    request: &ChatRequest,
    backend: &str,
    connector: &str,
    fields: &[&str],
) -> Result<(), BackendError> {
    let refuse = |what: String| Err(unsupported(backend, connector, &what));
    let pass = &request.passthrough;
    if let Some(n) = pass.fields.get("n")
        && n.as_u64().is_some_and(|n| n != 1)
    {
        return refuse(format!("`n` = {n} (only 1)"));
    }
    let mut honoured = fields.to_vec();
    honoured.push("n");
    known_fields(request, backend, connector, &honoured)?;
    for (i, message) in pass.messages.iter().flat_map(|m| m.iter()).enumerate() {
        let Some(message) = message.as_object() else {
            continue;
        };
        if message.get("role").and_then(Value::as_str) == Some("tool") {
            return refuse(format!("`messages[{i}]` (a `tool` result message)"));
        }
        let mut keys: Vec<&String> = message.keys().collect();
        keys.sort();
        for key in keys {
            if !MESSAGE_KEYS.contains(&key.as_str()) && !neutral(&message[key]) {
                return refuse(format!("`messages[{i}].{key}`"));
            }
        }
        if let Some(parts) = message.get("content").and_then(Value::as_array) {
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("?");
                if kind != "text" {
                    return refuse(format!("`messages[{i}].content[{j}]` (a {kind:?} part)"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backends::Passthrough;

    fn request(fields: Value, messages: Value) -> ChatRequest {
        let Value::Object(fields) = fields else {
            panic!("fields must be an object")
        };
        let Value::Array(messages) = messages else {
            panic!("messages must be a list")
        };
        ChatRequest {
            model: "m".into(),
            messages: Arc::from(Vec::new()),
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

    fn refusal(r: &ChatRequest) -> String {
        match text_only(r, "claude", "anthropic", &["temperature"]) {
            Err(BackendError::Unsupported(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn needs_are_read_from_the_body() {
        let r = request(
            serde_json::json!({"tools": [{"type": "function", "function": {"name": "get_weather"}}],
                "response_format": {"type": "json_schema", "json_schema": {}}, "logprobs": true, "n": 3}),
            serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
        );
        let n = needs(&r.passthrough);
        assert_eq!(n.tools, ["get_weather"]);
        assert_eq!(n.response_format, ResponseFormat::JsonSchema);
        assert!(n.logprobs);
        assert_eq!((n.images, n.n), (1, 3));
        let plain = request(
            serde_json::json!({"tools": [], "logprobs": false, "response_format": {"type": "text"}}),
            serde_json::json!([{"role": "user", "content": "hi"}]),
        );
        assert_eq!(needs(&plain.passthrough), RequestNeeds::default());
    }

    #[test]
    fn plain_requests_and_neutral_values_pass() {
        let r = request(
            serde_json::json!({"temperature": 0.2, "n": 1, "user": "u", "logprobs": false,
                "tools": [], "response_format": null}),
            serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "x", "refusal": null, "tool_calls": []}]),
        );
        assert!(text_only(&r, "claude", "anthropic", &["temperature"]).is_ok());
    }

    #[test]
    fn fields_parts_and_tool_messages_are_refused_by_name() {
        let msg = serde_json::json!([{"role": "user", "content": "hi"}]);
        let m = refusal(&request(
            serde_json::json!({"tools": [{"type": "function"}]}),
            msg.clone(),
        ));
        assert!(
            m.contains("`tools`") && m.contains("\"claude\"") && m.contains("anthropic"),
            "{m}"
        );
        let m = refusal(&request(serde_json::json!({"seed": 3}), msg.clone()));
        assert!(m.contains("`seed`"), "{m}");
        let m = refusal(&request(serde_json::json!({"n": 2}), msg));
        assert!(m.contains("`n`"), "{m}");
        let m = refusal(&request(
            serde_json::json!({}),
            serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
        ));
        assert!(
            m.contains("messages[0].content[1]") && m.contains("image_url"),
            "{m}"
        );
        let m = refusal(&request(
            serde_json::json!({}),
            serde_json::json!([{"role": "user", "content": "q"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]}]),
        ));
        assert!(m.contains("messages[1].tool_calls"), "{m}");
        let m = refusal(&request(
            serde_json::json!({}),
            serde_json::json!([{"role": "tool", "tool_call_id": "c1", "content": "42"}]),
        ));
        assert!(m.contains("messages[0]") && m.contains("tool"), "{m}");
    }
}
