//! `POST /v1/embeddings`: the host's local embedding model (all-MiniLM-L6-v2) in OpenAI's
//! shape, or, for a model a configured backend serves (OpenAI, OpenAI-compatible, Gemini),
//! that upstream's embeddings, billed to the tenant in the ledger. `input` is a string or a
//! list of strings; `encoding_format` `float` (default) or `base64` (little-endian f32,
//! what the OpenAI SDKs ask for). The local model runs off the async threads.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, AppState, authenticate, read_body};
use crate::dispatch::Embedded;

/// Most texts one request may embed (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// A request for the local model (its `model` already matched; other keys, such as `user`,
/// are ignored).
#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    /// Only 384 (the model's one size) is accepted.
    #[serde(default)]
    dimensions: Option<u64>,
}

pub(super) async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match serve(&state, &headers, body).await {
        Ok(Served::Local(body)) => axum::Json(body).into_response(),
        Ok(Served::Upstream(embedded)) => upstream_response(embedded),
        Err(e) => e.into_response(),
    }
}

/// Embeddings from the local model (its JSON) or from an upstream.
enum Served {
    Local(Value),
    Upstream(Embedded),
}

/// An upstream's embeddings as it sent them (OpenAI's shape), with the request's id, the
/// backend and the cost in headers, as a completion has.
fn upstream_response(embedded: Embedded) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        embedded.response.body,
    )
        .into_response();
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        headers.insert(HeaderName::from_static(name), super::header_value(value));
    };
    put("x-request-id", &embedded.request_id);
    put("x-switchyard-backend", &embedded.backend);
    put(
        "x-switchyard-cost-usd",
        &format!("{:.8}", embedded.cost_usd),
    );
    response
}

/// Sends the request's `fields` (all but `model`) to the backends serving `model`, billed
/// to the request's tenant.
async fn upstream(
    state: &AppState,
    headers: &HeaderMap,
    key_tenant: Option<String>,
    model: &str,
    fields: Map<String, Value>,
) -> Result<Served, ApiError> {
    let texts = inputs(fields.get("input").cloned().unwrap_or(Value::Null))?;
    let user = fields
        .get("user")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let tenant = match key_tenant {
        Some(tenant) => tenant,
        None => state
            .tenants
            .admit(super::routing_inputs(headers, user, None).0)
            .map_err(super::tenant_refused)?,
    };
    let tokens = texts
        .iter()
        .map(|t| crate::domain::estimate_tokens(t))
        .fold(0u32, u32::saturating_add);
    let embedded = state
        .dispatcher
        .embed(&tenant, model, fields, tokens)
        .await?;
    Ok(Served::Upstream(embedded))
}

async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Served, ApiError> {
    let body = read_body(state, body)?;
    let key_tenant = authenticate(state, headers)?;
    let invalid =
        |e: serde_json::Error| ApiError::invalid(format!("invalid embeddings request: {e}"));
    let mut fields: Map<String, Value> = serde_json::from_slice(&body).map_err(invalid)?;
    let Some(Value::String(asked)) = fields.get("model") else {
        return Err(ApiError::invalid("`model` must be a string"));
    };
    let scorer = state.dispatcher.text_scorer();
    let local = scorer.embedding_model().map(str::to_owned);
    let Some(model) = local.filter(|m| asked.eq_ignore_ascii_case(m)) else {
        if state.dispatcher.serves_model(asked) {
            let model = asked.clone();
            fields.remove("model");
            return upstream(state, headers, key_tenant, &model, fields).await;
        }
        let served_here = match scorer.embedding_model() {
            Some(local) => format!("embeddings are served by {local:?} and the backends' models"),
            None => "no backend serves it and this gateway has no local embedding model \
                     (configure [embeddings])"
                .to_owned(),
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model {:?} does not exist here; {served_here}",
                crate::log_text::sanitize(asked, super::LOG_VALUE_MAX)
            ),
        )
        .with_code("model_not_found"));
    };
    let request: EmbeddingsRequest =
        serde_json::from_value(Value::Object(fields)).map_err(invalid)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding_format must be \"float\" or \"base64\", not {:?}",
                crate::log_text::sanitize(other, super::LOG_VALUE_MAX)
            )));
        }
    };
    if let Some(d) = request.dimensions
        && d != 384
    {
        return Err(ApiError::invalid(format!(
            "{model} has 384 dimensions; dimensions={d} is not supported"
        )));
    }
    let texts = inputs(request.input)?;
    let batch = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        scorer.embed_batch(&refs)
    })
    .await
    .map_err(|e| internal(format!("embedding task failed: {e}")))?
    .map_err(internal)?;
    let data: Vec<Value> = batch
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector.as_ref())
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Served::Local(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": batch.tokens, "total_tokens": batch.tokens },
    })))
}

/// The texts of `input`: one string or a non-empty list of at most [`MAX_INPUTS`] strings.
fn inputs(input: Value) -> Result<Vec<String>, ApiError> {
    let texts = match input {
        Value::String(text) => vec![text],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::invalid("input is an empty list"));
        }
        Value::Array(items) if items.len() > MAX_INPUTS => {
            return Err(ApiError::invalid(format!(
                "input holds {} texts; at most {MAX_INPUTS} per request",
                items.len()
            )));
        }
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(ApiError::invalid(
                    "input must be a string or a list of strings (token arrays are not supported)",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::invalid(
                "input must be a string or a list of strings",
            ));
        }
    };
    Ok(texts)
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn inputs_take_a_string_or_a_list_of_strings() {
        assert_eq!(inputs(json!("hi")).unwrap(), ["hi"]);
        assert_eq!(inputs(json!(["a", "b"])).unwrap(), ["a", "b"]);
        for bad in [
            json!([]),
            json!([1, 2]),
            json!(3),
            json!(null),
            json!(["a", 1]),
        ] {
            assert_eq!(inputs(bad).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
        let many = Value::Array(vec![json!("x"); MAX_INPUTS + 1]);
        assert!(inputs(many).unwrap_err().message.contains("at most"));
    }
}
