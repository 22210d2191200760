//! The attempt loop, shared by whole and streamed completions: a plan's targets in order,
//! each retried as its backend allows (jittered backoff, or a short `Retry-After`), the
//! next target tried after an error another target may not have (connect, timeout, 429,
//! 5xx, unavailable, prompt too long), and the client's own errors returned at once.
//! Every attempt reserves its worst-case cost before it runs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::privacy::LocalOnly;
use super::settle::{self, HeldReservation, TokenCharge};
use super::{DispatchBackend, DispatchError, Dispatcher, Routed};
use crate::backends::{BackendError, ChatRequest, ChatStream};

/// Why one target did not serve the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    /// The decision named a backend this gateway does not have.
    #[error("unknown backend")]
    UnknownBackend,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// One upstream attempt (or a target skipped) and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub backend: String,
    /// `None`: this attempt served the request.
    pub error: Option<AttemptError>,
}

/// One target of a plan: where to send and which upstream model to ask for.
pub(super) struct PlannedTarget {
    pub(super) backend: Arc<DispatchBackend>,
    pub(super) model: String,
}

/// The targets to try in order, and the request each attempt sends (its model set per
/// target when the attempt is made; its messages shared by every attempt).
pub(super) struct Plan {
    pub(super) targets: Vec<PlannedTarget>,
    /// Set when the host keeps the request local (the targets are all local then).
    pub(super) local_only: Option<LocalOnly>,
    pub(super) request: ChatRequest,
    /// The request's charge against its tenant's token rate limit, if it has one.
    pub(super) charge: Option<TokenCharge>,
}

/// The wait before retry number `retry` (0-based) after `err`, or `None` when the error
/// is not worth a retry (or the upstream asks for a longer pause than we hold a client).
fn retry_delay(err: &BackendError, retry: u32, base: Duration) -> Option<Duration> {
    let retryable = match err {
        BackendError::Connect(_) | BackendError::Timeout(_) => true,
        BackendError::Status { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    };
    if !retryable {
        return None;
    }
    if let BackendError::Status {
        retry_after_s: Some(secs),
        ..
    } = err
    {
        let wait = Duration::from_secs(*secs);
        let cap = Duration::from_millis(crate::config::defaults::MAX_RETRY_AFTER_MS);
        return (wait <= cap).then_some(wait);
    }
    Some(
        base.saturating_mul(1 << retry.min(10))
            .mul_f64(0.5 + jitter()),
    )
}

/// A uniform number in 0..1 from the std hasher's random keys (no RNG dependency).
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A streamed completion once its first event arrived within the backend's first-byte
/// timeout; the stream returned starts with that event.
pub(super) async fn first_event(
    backend: Arc<DispatchBackend>,
    chat: ChatRequest,
) -> Result<ChatStream, BackendError> {
    let started = Instant::now();
    let mut stream = backend.backend.chat_stream(chat).await?;
    let left = backend.first_byte_timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, stream.next()).await {
        Err(_) => Err(BackendError::Timeout("first stream event")),
        Ok(None) => Err(BackendError::Protocol("empty stream".into())),
        Ok(Some(Err(e))) => Err(e),
        Ok(Some(Ok(first))) => Ok(futures_util::stream::once(std::future::ready(Ok(first)))
            .chain(stream)
            .boxed()),
    }
}

impl Dispatcher {
    /// Runs `plan` through `call` until one attempt succeeds: returns its output and its
    /// open reservation (the caller settles it with the actual cost), or why none did
    /// (every local target of a request kept local failing is [`DispatchError::LocalOnly`]).
    pub(super) async fn attempts<T, F, Fut>(
        &self,
        routed: &mut Routed,
        plan: Plan,
        call: F,
    ) -> Result<(T, Option<HeldReservation>), DispatchError>
    where
        F: Fn(Arc<DispatchBackend>, ChatRequest) -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut number = 0u32;
        let mut last = None;
        'targets: for target in plan.targets {
            let backend = &target.backend;
            let name = backend.backend.name();
            let probe = ChatRequest {
                model: target.model.clone(),
                ..plan.request.clone()
            };
            if let Err(err) = backend.backend.backend().check(&probe) {
                tracing::info!(backend = name, error = %err, "target skipped: it cannot honour the request");
                routed.attempts.push(Attempt {
                    backend: name.to_owned(),
                    error: Some(AttemptError::Backend(err.clone())),
                });
                last = Some((name.to_owned(), err));
                continue 'targets;
            }
            let mut retry = 0u32;
            loop {
                let chat = ChatRequest {
                    model: target.model.clone(),
                    ..plan.request.clone()
                };
                let reservation = self.reserve(routed, number, backend, &chat).await?;
                number = number.saturating_add(1);
                let err = match call(backend.clone(), chat).await {
                    Ok(output) => {
                        routed.chosen(backend, target.model);
                        return Ok((output, reservation));
                    }
                    Err(err) => err,
                };
                settle::close(reservation, None);
                match &err {
                    BackendError::Status { status, .. }
                        if (300..400).contains(status) || matches!(status, 401 | 403) =>
                    {
                        tracing::warn!(
                            backend = name,
                            status,
                            error = %err,
                            "attempt failed: the upstream refused this backend's credentials or \
                             redirected (check its api key and base_url); trying the next target"
                        );
                    }
                    _ => tracing::warn!(backend = name, error = %err, "attempt failed"),
                }
                routed.attempts.push(Attempt {
                    backend: name.to_owned(),
                    error: Some(AttemptError::Backend(err.clone())),
                });
                if !err.is_failover() {
                    return Err(failed(routed, Some((name.to_owned(), err))));
                }
                let delay = (retry < backend.retry.retries)
                    .then(|| retry_delay(&err, retry, backend.retry.backoff))
                    .flatten();
                if let Some(wait) = delay {
                    retry += 1;
                    crate::metrics::retry(name);
                    tracing::info!(
                        backend = name,
                        wait_ms = wait.as_millis() as u64,
                        retry,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                crate::metrics::fallback(name);
                last = Some((name.to_owned(), err));
                continue 'targets;
            }
        }
        Err(match (plan.local_only, failed(routed, last)) {
            (Some(rule), DispatchError::AllFailed { attempts, .. }) => DispatchError::LocalOnly {
                rule: rule.to_string(),
                attempts,
            },
            (_, err) => err,
        })
    }

    /// Reserves the worst-case cost of attempt `number` (`None` without a ledger).
    async fn reserve(
        &self,
        routed: &Routed,
        number: u32,
        backend: &DispatchBackend,
        chat: &ChatRequest,
    ) -> Result<Option<HeldReservation>, DispatchError> {
        let Some(ledger) = &self.ledger else {
            return Ok(None);
        };
        let facts = backend.backend.facts();
        let completion = chat
            .max_tokens
            .unwrap_or(crate::config::defaults::ESTIMATE_COMPLETION_TOKENS);
        let estimate = f64::from(routed.prompt_tokens) * facts.usd_per_mtok_in / 1e6
            + f64::from(completion) * facts.usd_per_mtok_out / 1e6;
        HeldReservation::hold(
            ledger,
            &routed.tenant,
            &routed.request_id,
            number,
            backend.backend.name(),
            estimate,
        )
        .await
        .map(Some)
    }
}

/// The client's answer for `backend` refusing the request itself (an error that is not
/// failed over): the upstream's 400, 404, 413 or 422 as it is, anything else a 502.
pub(super) fn refused_upstream(backend: String, err: BackendError) -> DispatchError {
    let (status, message, provider) = match err {
        BackendError::Status {
            status: s @ (400 | 404 | 413 | 422),
            message,
            provider,
            ..
        } => (s, message, provider),
        BackendError::InvalidRequest(message) => (400, message, None),
        other => (502, other.to_string(), None),
    };
    DispatchError::Upstream {
        backend,
        status,
        message,
        retry_after_s: None,
        provider,
    }
}

/// Why no target served the request, from its attempts and the last backend error: the
/// client's own error (the upstream's 4xx, a prompt no target can hold) as it is;
/// otherwise every target failed, `unavailable` when none could take requests at all.
fn failed(routed: &mut Routed, last: Option<(String, BackendError)>) -> DispatchError {
    // Every target was too small for the prompt or could not honour it: the client's request.
    let only_client = routed.attempts.iter().all(|a| {
        matches!(
            a.error,
            None | Some(AttemptError::UnknownBackend)
                | Some(AttemptError::Backend(
                    BackendError::ContextExceeded(_) | BackendError::Unsupported(_)
                ))
        )
    });
    match last {
        Some((backend, err)) if !err.is_failover() => refused_upstream(backend, err),
        Some((_, BackendError::Unsupported(message))) if only_client => {
            DispatchError::Unsupported(message)
        }
        Some((backend, BackendError::ContextExceeded(message))) if only_client => {
            DispatchError::Upstream {
                backend,
                status: 400,
                message,
                retry_after_s: None,
                provider: None,
            }
        }
        // The last target is rate-limited: the client waits as that upstream asks.
        Some((
            backend,
            BackendError::Status {
                status: 429,
                message,
                retry_after_s,
                provider,
            },
        )) => DispatchError::Upstream {
            backend,
            status: 429,
            message,
            retry_after_s,
            provider,
        },
        _ => {
            let unavailable = routed.attempts.iter().all(|a| {
                matches!(
                    a.error,
                    Some(AttemptError::Backend(BackendError::Unavailable(_)))
                )
            });
            DispatchError::AllFailed {
                attempts: std::mem::take(&mut routed.attempts),
                unavailable,
            }
        }
    }
}
