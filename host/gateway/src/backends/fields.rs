//! Which top-level fields of a client's OpenAI chat request a translating connector
//! (Anthropic, Gemini, local) honours, and the refusal that names what it cannot: a request
//! is refused by name before any upstream call, never dropped silently. Local takes text
//! messages only ([`text_only`]); Anthropic and Gemini read the rest in `chat_input`.

use serde_json::Value;

use super::{BackendError, ChatRequest};

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
