//! Admin API for live policies, behind a bearer token: list, reload, rollback, upload a
//! version (live, canary or shadow; prepared in the background unless `wait=true`),
//! promote or abort the candidate.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{Accepted, CandidateMode, PolicySet, ReloadOutcome, UpdateError};

/// What the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub policies: Arc<PolicySet>,
    /// The bearer token; `None` leaves the admin API closed (401 on every call).
    pub token: Option<Arc<str>>,
}

/// `/admin/...` routes; `max_upload_bytes` bounds an uploaded component.
pub fn router(state: AdminState, max_upload_bytes: usize) -> Router {
    Router::new()
        .route("/admin/policies", get(list))
        .route("/admin/policies/{name}/reload", post(reload))
        .route("/admin/policies/{name}/rollback", post(rollback))
        .route("/admin/policies/{name}/versions", post(upload))
        .route("/admin/policies/{name}/promote", post(promote))
        .route("/admin/policies/{name}/abort", post(abort))
        .layer(DefaultBodyLimit::max(max_upload_bytes))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message.into(), "type": "admin_error"}})),
    )
        .into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    match refusal(state.token.as_deref(), request.headers()) {
        None => next.run(request).await,
        Some(refused) => refused,
    }
}

/// `None` when `headers` carry `Authorization: Bearer TOKEN` with the admin token; the
/// 401 response otherwise (and always while no token is set). Every admin route checks it.
pub fn refusal(token: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = token else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "the admin API is disabled: set the admin token env var (default SWITCHYARD_ADMIN_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

fn outcome(result: Result<ReloadOutcome, UpdateError>) -> Response {
    match result {
        Ok(outcome) => axum::Json(outcome).into_response(),
        Err(e) => refused(&e),
    }
}

fn refused(e: &UpdateError) -> Response {
    let status = match e {
        UpdateError::UnknownPolicy(_) => StatusCode::NOT_FOUND,
        UpdateError::Prepare(_) => StatusCode::UNPROCESSABLE_ENTITY,
        UpdateError::Invalid(_) => StatusCode::CONFLICT,
        UpdateError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    error(status, e.to_string())
}

async fn list(State(state): State<AdminState>) -> Response {
    axum::Json(json!({ "policies": state.policies.report() })).into_response()
}

async fn reload(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    outcome(state.policies.reload(&name).await)
}

async fn rollback(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    outcome(state.policies.rollback(&name).await)
}

async fn promote(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    outcome(state.policies.promote(&name).await)
}

async fn abort(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    outcome(state.policies.abort(&name).await)
}

/// `?mode=live|canary|shadow&percent=N&wait=true|false`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    percent: Option<f64>,
    /// Answer when the version is live or staged (200 with the outcome, 422 when it does
    /// not prepare) instead of at once (202, progress in `GET /admin/policies`).
    #[serde(default)]
    wait: bool,
}

async fn upload(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Response {
    let mode = match (query.mode.as_deref(), query.percent) {
        (None | Some("live"), None) => None,
        (Some("canary"), Some(percent)) => Some(CandidateMode::Canary { percent }),
        (Some("canary"), None) => {
            return error(StatusCode::BAD_REQUEST, "mode=canary needs percent=N");
        }
        (Some("shadow"), None) => Some(CandidateMode::Shadow),
        (Some(other), _) if !["live", "canary", "shadow"].contains(&other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown mode {other:?}: live, canary or shadow"),
            );
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "percent is only used with mode=canary",
            );
        }
    };
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be the component bytes",
        );
    }
    if query.wait {
        return outcome(state.policies.upload(&name, body.to_vec(), mode).await);
    }
    match state
        .policies
        .upload_in_background(&name, body.to_vec(), mode)
    {
        Ok(Accepted::Done(done)) => axum::Json(done).into_response(),
        Ok(Accepted::Preparing(upload)) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "result": "accepted",
                "policy": name,
                "upload": upload,
                "progress": "GET /admin/policies: this policy's uploads[] (by digest)",
            })),
        )
            .into_response(),
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
    }
}
