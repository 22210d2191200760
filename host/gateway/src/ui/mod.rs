//! The operators' dashboard: `GET /ui` (one page, its script and its style, embedded in
//! the binary; they hold no data) and the admin-authenticated data the page reads:
//! `GET /admin/overview` (backends and spend), `GET /admin/events` (the live decision
//! feed over SSE) and the admin API's `/admin/policies` calls.

mod events;
mod overview;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::dispatch::Dispatcher;
use crate::ledger::Ledger;
use crate::live_feed::LiveFeed;
use crate::policy_set::admin::refusal;

const PAGE: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/app.css");

/// The page may load only its own script and style and talk only to this gateway.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// What the dashboard reads.
#[derive(Debug)]
pub struct UiState {
    pub dispatcher: Arc<Dispatcher>,
    pub ledger: Arc<Ledger>,
    pub live: Arc<LiveFeed>,
    /// The admin bearer token; `None` keeps the data closed (401), like the admin API.
    pub token: Option<Arc<str>>,
    /// Tenants with configured budgets, shown before they spend anything.
    pub tenants: Vec<String>,
    /// Whether the admin API's `/admin/policies` routes are mounted (a policy set runs).
    pub policies: bool,
}

/// `/ui` and the data routes behind the admin token.
pub fn router(state: UiState) -> Router {
    let state = Arc::new(state);
    let data = Router::new()
        .route("/admin/overview", get(overview::handler))
        .route("/admin/events", get(events::handler))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .merge(data)
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn authorize(State(state): State<Arc<UiState>>, request: Request, next: Next) -> Response {
    match refusal(state.token.as_deref(), request.headers()) {
        None => next.run(request).await,
        Some(refused) => refused,
    }
}
