//! `GET /admin/events`: the live decision feed as server-sent events. Each finished
//! request is a `decision` event (JSON); a watcher that fell behind gets a `lagged` event
//! with the number of decisions it missed. The stream opens with a `ready` event and ends
//! when the gateway shuts down.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::UiState;

/// Open watchers at most; more are refused (503) so that an open page per operator is
/// fine and a loop of reconnecting scripts is not.
const MAX_WATCHERS: usize = 32;

pub(super) async fn handler(State(state): State<Arc<UiState>>) -> Response {
    if state.live.watchers() >= MAX_WATCHERS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_WATCHERS} live watchers"),
        )
            .into_response();
    }
    let watch = state.live.watch();
    let ready =
        stream::once(async { Ok::<_, Infallible>(Event::default().event("ready").data("{}")) });
    let decisions = stream::unfold(watch, |mut watch| async move {
        let event = match watch.next().await {
            Ok(decision) => Event::default()
                .event("decision")
                .json_data(&*decision)
                .unwrap_or_else(|_| Event::default().comment("unserializable decision")),
            Err(RecvError::Lagged(missed)) => {
                Event::default().event("lagged").data(missed.to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), watch))
    });
    Sse::new(ready.chain(decisions))
        .keep_alive(KeepAlive::default())
        .into_response()
}
