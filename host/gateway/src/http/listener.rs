//! The accept loop: HTTP/1 connections through hyper with a connection cap (connections
//! past it are closed as soon as they are accepted), header and body read deadlines,
//! accept errors backed off and logged at most every few seconds, the process's file
//! limit raised to its hard limit, and graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tower_service::Service;

use super::body::TimedBody;
use crate::config::ConnLimits;

/// How often a repeated listener warning (accept errors, refused connections) is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Longest pause after repeated accept errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Raises the soft limit on open files to the hard limit; returns the soft limit now in
/// force (`None` where it cannot be read).
fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The connection cap in force: the configured one, or half the file limit when that is
/// smaller (the other half for upstream sockets, the ledger, logs and policy files).
fn effective_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let by_files = fd_limit.map_or(usize::MAX, |n| usize::try_from(n / 2).unwrap_or(usize::MAX));
    configured.min(by_files).max(1)
}

/// A warning that may repeat fast: logged at once, then at most every [`LOG_EVERY`] with
/// the number of occurrences in between.
struct Throttled {
    last: Option<Instant>,
    skipped: u64,
}

impl Throttled {
    fn new() -> Self {
        Self {
            last: None,
            skipped: 0,
        }
    }

    /// `Some(skipped since the last log)` when this occurrence should be logged.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// Pause after consecutive accept errors: 5 ms, doubling up to [`MAX_BACKOFF`].
fn backoff(consecutive: u32) -> Duration {
    let ms = 5u64.saturating_mul(1u64 << consecutive.min(16));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves; then stops
/// accepting and waits up to `drain` for in-flight connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    drain: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let cap = effective_cap(limits.max_connections, raise_fd_limit());
    if cap < limits.max_connections {
        tracing::info!(
            cap,
            configured = limits.max_connections,
            "connection cap lowered to half the open-file limit"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut accept_errors = Throttled::new();
    let mut refusals = Throttled::new();
    let mut consecutive_errors: u32 = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => {
                        consecutive_errors = 0;
                        stream
                    }
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        if let Some(skipped) = accept_errors.hit() {
                            tracing::warn!(error = %err, repeats = skipped, "accept failed");
                        }
                        tokio::time::sleep(backoff(consecutive_errors)).await;
                        consecutive_errors = consecutive_errors.saturating_add(1);
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    if let Some(skipped) = refusals.hit() {
                        tracing::warn!(cap, repeats = skipped, "connection cap reached: connection closed");
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    app.clone().call(req.map(|body| TimedBody::new(body, limits)))
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_lowered_to_half_the_file_limit() {
        assert_eq!(effective_cap(8192, Some(1024)), 512);
        assert_eq!(effective_cap(64, Some(1 << 20)), 64);
        assert_eq!(effective_cap(64, None), 64);
        assert_eq!(effective_cap(64, Some(0)), 1);
    }

    #[test]
    fn backoff_doubles_up_to_a_second() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn throttled_logs_once_per_period_and_counts_the_rest() {
        let mut t = Throttled::new();
        assert_eq!(t.hit(), Some(0));
        assert_eq!(t.hit(), None);
        assert_eq!(t.hit(), None);
        t.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(t.hit(), Some(2));
    }
}
