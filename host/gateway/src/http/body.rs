//! Request bodies with a deadline: the whole body within `body_read_timeout`, and no
//! slower than `body_min_bytes_per_s` after a grace, so a client that sends headers and a
//! byte, then goes silent, loses its connection instead of holding it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::config::ConnLimits;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body did not arrive in time (an error of the body stream, answered with 408).
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimeout;

/// When a body that started at `started` and has delivered `received` bytes must have
/// made progress by.
fn deadline(limits: &ConnLimits, started: Instant, received: u64) -> Instant {
    let whole = started + limits.body_read_timeout;
    if limits.body_min_bytes_per_s == 0 {
        return whole;
    }
    let grace = Duration::from_millis(crate::config::defaults::BODY_RATE_GRACE_MS);
    let earned = Duration::from_secs_f64(received as f64 / limits.body_min_bytes_per_s as f64);
    whole.min(started + grace + earned)
}

pin_project_lite::pin_project! {
    /// `inner` under the deadlines of [`ConnLimits`]. The clock starts the first time the
    /// body is not ready at once: a body that came with its headers costs no timer.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        limits: ConnLimits,
        started: Option<Instant>,
        received: u64,
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: ConnLimits) -> Self {
        Self {
            inner,
            limits,
            started: None,
            received: 0,
            timer: None,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received = this.received.saturating_add(data.len() as u64);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        let due = deadline(this.limits, started, *this.received);
        match this.timer.as_mut().as_pin_mut() {
            Some(timer) if timer.deadline() != due => timer.reset(due),
            Some(_) => {}
            None => this.timer.set(Some(tokio::time::sleep_until(due))),
        }
        if let Some(timer) = this.timer.as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (a body rejection) was caused by a [`BodyTimeout`].
pub fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(whole_ms: u64, rate: u64) -> ConnLimits {
        ConnLimits {
            body_read_timeout: Duration::from_millis(whole_ms),
            body_min_bytes_per_s: rate,
            ..ConnLimits::default()
        }
    }

    #[test]
    fn deadline_grows_with_bytes_received_up_to_the_whole_body_limit() {
        let t0 = Instant::now();
        let l = limits(30_000, 1_000);
        assert_eq!(deadline(&l, t0, 0), t0 + Duration::from_secs(2));
        assert_eq!(deadline(&l, t0, 5_000), t0 + Duration::from_secs(7));
        assert_eq!(deadline(&l, t0, 1 << 30), t0 + Duration::from_secs(30));
        assert_eq!(
            deadline(&limits(30_000, 0), t0, 0),
            t0 + Duration::from_secs(30)
        );
    }

    async fn read(
        body: TimedBody<impl Body<Data = Bytes, Error = impl Into<BoxError>> + Send + 'static>,
    ) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(axum::body::Body::new(body), usize::MAX).await
    }

    #[tokio::test]
    async fn a_stalled_body_fails_at_its_deadline_and_a_whole_one_passes() {
        let stalled = Stalled(Some(Bytes::from_static(b"x")));
        let started = std::time::Instant::now();
        let err = read(TimedBody::new(stalled, limits(300, 0)))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(is_timeout(&err), "{err}");
        let whole = axum::body::Body::from("hello");
        let bytes = read(TimedBody::new(whole, limits(500, 0))).await.unwrap();
        assert_eq!(&bytes[..], b"hello");
    }

    /// A body that yields one chunk, then stays pending (a client gone silent).
    struct Stalled(Option<Bytes>);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }
}
