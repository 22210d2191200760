//! `POST /v1/embeddings`: the host's local embedding model (all-MiniLM-L6-v2) in OpenAI's
//! shape. `input` is a string or a list of strings; `encoding_format` `float` (default) or
//! `base64` (little-endian f32, what the OpenAI SDKs ask for). Runs off the async threads.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, authenticate, read_body};

/// Most texts one request may embed (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    /// Only 384 (the model's one size) is accepted. Other keys (`user`) are ignored.
    #[serde(default)]
    dimensions: Option<u64>,
}

pub(super) async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match serve(&state, &headers, body).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let body = read_body(state, body)?;
    authenticate(state, headers)?;
    let request: EmbeddingsRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid embeddings request: {e}")))?;
    let scorer = state.dispatcher.text_scorer();
    let Some(model) = scorer.embedding_model().map(str::to_owned) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "this gateway has no embedding model (configure [embeddings])",
        )
        .with_code("model_not_found"));
    };
    if !request.model.eq_ignore_ascii_case(&model) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model {:?} does not exist here; embeddings are served by {model:?}",
                crate::log_text::sanitize(&request.model, super::LOG_VALUE_MAX)
            ),
        )
        .with_code("model_not_found"));
    }
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
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": batch.tokens, "total_tokens": batch.tokens },
    }))
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
