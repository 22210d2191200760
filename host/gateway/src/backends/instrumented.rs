//! [`Instrumented`]: wraps a backend, records latency (EWMA and a window for percentiles),
//! error rate and in-flight, runs its circuit breaker, and renders the [`BackendStatus`]
//! policies read.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{
    Backend, BackendError, ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse,
};
use crate::config::BackendConfig;
use crate::domain::{BackendStatus, ModelCapabilities};

/// Samples kept for percentiles.
const WINDOW: usize = 256;
/// Weight of the newest sample in the EWMAs.
const ALPHA: f64 = 0.1;
/// Consecutive failures that open the breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open breaker refuses requests before letting one probe through.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// Breaker state, as exported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Stats {
    window: VecDeque<f64>,
    /// p50 and p95 of `window`; `None` after it changed (recomputed on the next read).
    percentiles: Option<(f64, f64)>,
    ewma_ms: Option<f64>,
    error_rate: f64,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// Static facts about a backend from its config.
#[derive(Debug, Clone)]
pub struct BackendFacts {
    pub context_window: u32,
    pub usd_per_mtok_in: f64,
    pub usd_per_mtok_out: f64,
    pub labels: BTreeMap<String, String>,
    /// Per model, in order ([`super::fields::capabilities`]).
    pub capabilities: Vec<ModelCapabilities>,
}

impl From<&BackendConfig> for BackendFacts {
    fn from(c: &BackendConfig) -> Self {
        Self {
            context_window: c.context_window,
            usd_per_mtok_in: c.usd_per_mtok_in,
            usd_per_mtok_out: c.usd_per_mtok_out,
            labels: c.labels.clone(),
            capabilities: super::fields::capabilities(c),
        }
    }
}

/// A backend with live statistics and a circuit breaker.
pub struct Instrumented {
    inner: Arc<dyn Backend>,
    facts: BackendFacts,
    in_flight: Arc<AtomicU32>,
    stats: Arc<Mutex<Stats>>,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("name", &self.inner.name())
            .finish_non_exhaustive()
    }
}

struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock(m: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Backend>, facts: BackendFacts) -> Self {
        Self {
            inner,
            facts,
            in_flight: Arc::new(AtomicU32::new(0)),
            stats: Arc::new(Mutex::new(Stats {
                window: VecDeque::with_capacity(WINDOW),
                percentiles: None,
                ewma_ms: None,
                error_rate: 0.0,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            })),
        }
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }

    pub fn backend(&self) -> &dyn Backend {
        self.inner.as_ref()
    }

    pub fn facts(&self) -> &BackendFacts {
        &self.facts
    }

    /// Breaker state now.
    pub fn breaker(&self) -> BreakerState {
        let s = lock(&self.stats);
        match s.opened_at {
            None => BreakerState::Closed,
            Some(at) if at.elapsed() < BREAKER_COOLDOWN => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to this backend now; in half-open, admits one probe.
    fn admit(&self) -> bool {
        let mut s = lock(&self.stats);
        match s.opened_at {
            None => true,
            Some(at) if at.elapsed() < BREAKER_COOLDOWN => false,
            Some(_) => {
                if s.probe_in_flight {
                    false
                } else {
                    s.probe_in_flight = true;
                    true
                }
            }
        }
    }

    /// Records a call's outcome: a success (with its latency as a sample, or `None` for a
    /// call whose latency is not a completion's) or a failure.
    fn record(stats: &Mutex<Stats>, outcome: Result<Option<Duration>, ()>) {
        let mut s = lock(stats);
        s.probe_in_flight = false;
        match outcome {
            Ok(latency) => {
                if let Some(latency) = latency {
                    let ms = latency.as_secs_f64() * 1000.0;
                    if s.window.len() == WINDOW {
                        s.window.pop_front();
                    }
                    s.window.push_back(ms);
                    s.percentiles = None;
                    s.ewma_ms = Some(match s.ewma_ms {
                        None => ms,
                        Some(prev) => prev + ALPHA * (ms - prev),
                    });
                }
                s.error_rate *= 1.0 - ALPHA;
                s.consecutive_failures = 0;
                s.opened_at = None;
            }
            Err(()) => {
                s.error_rate += ALPHA * (1.0 - s.error_rate);
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                // A failed probe re-opens; enough failures in a row open.
                if s.opened_at.is_some() || s.consecutive_failures >= BREAKER_FAILURES {
                    s.opened_at = Some(Instant::now());
                }
            }
        }
    }

    /// Counts only failures that say something about the backend's health.
    fn outcome<T>(
        result: &Result<T, BackendError>,
        start: Instant,
    ) -> Option<Result<Duration, ()>> {
        match result {
            Ok(_) => Some(Ok(start.elapsed())),
            // The request, not the backend: too long for it, or asking what it cannot do.
            Err(BackendError::ContextExceeded(_) | BackendError::Unsupported(_)) => None,
            Err(e) if e.is_failover() => Some(Err(())),
            // The upstream answered (4xx): healthy, but no latency sample.
            Err(_) => None,
        }
    }

    /// Runs `call` through the breaker: counted in flight while it runs (the guard comes back,
    /// for a stream to hold) and its outcome recorded; `latency`: whether its time is a
    /// sample of the latency window policies compare backends by.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, BackendError>>,
        latency: bool,
    ) -> Result<(T, InFlight), BackendError> {
        if !self.admit() {
            return Err(BackendError::Unavailable("circuit breaker open".into()));
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(self.in_flight.clone());
        let start = Instant::now();
        let result = call.await;
        match Self::outcome(&result, start) {
            Some(o) => Self::record(&self.stats, o.map(|d| latency.then_some(d))),
            None => lock(&self.stats).probe_in_flight = false,
        }
        result.map(|value| (value, guard))
    }

    /// A whole completion, through the breaker and the statistics.
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, BackendError> {
        let (response, _) = self.guarded(self.inner.chat(request), true).await?;
        Ok(response)
    }

    /// Embeddings, through the breaker and the health statistics (not the latency window).
    pub async fn embed(&self, request: EmbedRequest) -> Result<EmbedResponse, BackendError> {
        let (response, _) = self.guarded(self.inner.embed(request), false).await?;
        Ok(response)
    }

    /// A streamed completion. Latency is time to the upstream's response; a stream that
    /// breaks mid-way counts as a failure. In-flight lasts until the stream is dropped.
    pub async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, BackendError> {
        let (stream, guard) = self.guarded(self.inner.chat_stream(request), true).await?;
        let stats = self.stats.clone();
        Ok(stream
            .inspect(move |item| {
                let _hold = &guard;
                if item.as_ref().is_err_and(BackendError::is_failover) {
                    Self::record(&stats, Err(()));
                }
            })
            .boxed())
    }

    /// What the policy reads about this backend now.
    pub fn status(&self) -> BackendStatus {
        let ((p50, p95), error_rate, open) = {
            let mut s = lock(&self.stats);
            let percentiles = match s.percentiles {
                Some(p) => p,
                None => {
                    let p = percentiles(&s.window);
                    s.percentiles = Some(p);
                    p
                }
            };
            let open = matches!(s.opened_at, Some(at) if at.elapsed() < BREAKER_COOLDOWN);
            (percentiles, s.error_rate, open)
        };
        BackendStatus {
            name: self.inner.name().to_owned(),
            kind: self.inner.kind(),
            models: self.inner.models().to_vec(),
            healthy: self.inner.ready() && !open,
            latency_p50_ms: p50,
            latency_p95_ms: p95,
            error_rate,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queue_depth: self.inner.queue_depth(),
            usd_per_mtok_in: self.facts.usd_per_mtok_in,
            usd_per_mtok_out: self.facts.usd_per_mtok_out,
            context_window: self.facts.context_window,
            labels: self.facts.labels.clone(),
            capabilities: self.facts.capabilities.clone(),
        }
    }

    /// Latency EWMA in ms (None before the first success).
    pub fn latency_ewma_ms(&self) -> Option<f64> {
        lock(&self.stats).ewma_ms
    }
}

/// The p50 and p95 of `window` (nearest rank: the sample at `round((n - 1) * q)` in
/// sorted order; 0 when empty), selected on a stack copy without sorting it.
fn percentiles(window: &VecDeque<f64>) -> (f64, f64) {
    let n = window.len().min(WINDOW);
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut copy = [0.0_f64; WINDOW];
    for (slot, &ms) in copy.iter_mut().zip(window) {
        *slot = ms;
    }
    let rank = |q: f64| ((n - 1) as f64 * q).round() as usize;
    let (i50, i95) = (rank(0.5), rank(0.95));
    let (below, p95, _) = copy[..n].select_nth_unstable_by(i95, f64::total_cmp);
    let p95 = *p95;
    // Everything before p95's slot is no larger than it: p50 is selected there.
    let p50 = if i50 < i95 {
        *below.select_nth_unstable_by(i50, f64::total_cmp).1
    } else {
        p95
    };
    (p50, p95)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backends::{StreamEvent, Usage};
    use crate::domain::BackendKind;
    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::AtomicBool;

    struct Flaky {
        models: Vec<String>,
        fail: AtomicBool,
    }

    impl Backend for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn kind(&self) -> BackendKind {
            BackendKind::Cloud
        }
        fn models(&self) -> &[String] {
            &self.models
        }
        fn chat(&self, request: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
            let fail = self.fail.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(BackendError::Status {
                        status: 500,
                        message: "boom".into(),
                        retry_after_s: None,
                        provider: None,
                    })
                } else {
                    Ok(ChatResponse {
                        model: request.model,
                        content: "ok".into(),
                        finish_reason: "stop".into(),
                        usage: Usage::default(),
                        raw: None,
                    })
                }
            }
            .boxed()
        }
        fn chat_stream(&self, _: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
            async move {
                let s: ChatStream =
                    futures_util::stream::iter(vec![Ok(StreamEvent::Delta("x".into()))]).boxed();
                Ok(s)
            }
            .boxed()
        }
    }

    fn req() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: Vec::new().into(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: None,
            passthrough: Default::default(),
        }
    }

    #[tokio::test]
    async fn breaker_opens_after_consecutive_failures_and_status_reports_it() {
        let backend = Arc::new(Flaky {
            models: vec!["m".into()],
            fail: AtomicBool::new(true),
        });
        let inst = Instrumented::new(
            backend.clone(),
            BackendFacts {
                context_window: 1000,
                usd_per_mtok_in: 1.0,
                usd_per_mtok_out: 2.0,
                labels: BTreeMap::new(),
                capabilities: Vec::new(),
            },
        );
        for _ in 0..BREAKER_FAILURES {
            assert!(matches!(
                inst.chat(req()).await,
                Err(BackendError::Status { .. })
            ));
        }
        assert_eq!(inst.breaker(), BreakerState::Open);
        let status = inst.status();
        assert!(!status.healthy);
        assert!(status.error_rate > 0.3);
        backend.fail.store(false, Ordering::SeqCst);
        // Still open: refused without calling the backend.
        assert!(matches!(
            inst.chat(req()).await,
            Err(BackendError::Unavailable(_))
        ));
        assert_eq!(inst.status().in_flight, 0);
    }

    /// Embeds (1 token); refuses every completion as unsupported.
    struct Embedder;

    impl Backend for Embedder {
        fn name(&self) -> &str {
            "embedder"
        }
        fn kind(&self) -> BackendKind {
            BackendKind::Cloud
        }
        fn models(&self) -> &[String] {
            &[]
        }
        fn chat(&self, _: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, BackendError>> {
            async { Err(BackendError::Unsupported("no chat here".into())) }.boxed()
        }
        fn chat_stream(&self, _: ChatRequest) -> BoxFuture<'_, Result<ChatStream, BackendError>> {
            async { Err(BackendError::Unsupported("no chat here".into())) }.boxed()
        }
        fn embed(
            &self,
            _: crate::backends::EmbedRequest,
        ) -> BoxFuture<'_, Result<crate::backends::EmbedResponse, BackendError>> {
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(crate::backends::EmbedResponse {
                    body: bytes::Bytes::from_static(b"{}"),
                    prompt_tokens: 1,
                })
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn refusals_leave_the_breaker_closed_and_embeddings_stay_out_of_the_latency_window() {
        let inst = Instrumented::new(
            Arc::new(Embedder),
            BackendFacts {
                context_window: 1000,
                usd_per_mtok_in: 1.0,
                usd_per_mtok_out: 2.0,
                labels: BTreeMap::new(),
                capabilities: Vec::new(),
            },
        );
        for _ in 0..BREAKER_FAILURES * 2 {
            assert!(matches!(
                inst.chat(req()).await,
                Err(BackendError::Unsupported(_))
            ));
        }
        assert_eq!(inst.breaker(), BreakerState::Closed);
        assert_eq!(inst.status().error_rate, 0.0);
        let request = crate::backends::EmbedRequest {
            model: "e".into(),
            fields: Default::default(),
        };
        for _ in 0..3 {
            assert_eq!(inst.embed(request.clone()).await.unwrap().prompt_tokens, 1);
        }
        let status = inst.status();
        assert!(status.healthy);
        assert_eq!((status.latency_p50_ms, status.latency_p95_ms), (0.0, 0.0));
    }

    #[test]
    fn percentiles_match_the_sorted_window_and_follow_new_samples() {
        let sorted_pct = |w: &VecDeque<f64>, q: f64| {
            let mut v: Vec<f64> = w.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let mut window = VecDeque::new();
        assert_eq!(percentiles(&window), (0.0, 0.0));
        let mut x: u64 = 7;
        for n in 1..=WINDOW {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            window.push_back((x >> 40) as f64 / 1000.0);
            let want = (sorted_pct(&window, 0.5), sorted_pct(&window, 0.95));
            assert_eq!(percentiles(&window), want, "{n} samples");
        }

        let inst = Instrumented::new(
            Arc::new(Flaky {
                models: vec!["m".into()],
                fail: AtomicBool::new(false),
            }),
            BackendFacts {
                context_window: 1000,
                usd_per_mtok_in: 0.0,
                usd_per_mtok_out: 0.0,
                labels: BTreeMap::new(),
                capabilities: Vec::new(),
            },
        );
        for ms in [10, 20, 30] {
            Instrumented::record(&inst.stats, Ok(Some(Duration::from_millis(ms))));
        }
        let s = inst.status();
        assert_eq!((s.latency_p50_ms, s.latency_p95_ms), (20.0, 30.0));
        // A new sample is seen by the next status.
        Instrumented::record(&inst.stats, Ok(Some(Duration::from_millis(90))));
        let s = inst.status();
        assert_eq!((s.latency_p50_ms, s.latency_p95_ms), (30.0, 90.0));
    }

    #[tokio::test]
    async fn stream_holds_in_flight_until_dropped() {
        let backend = Arc::new(Flaky {
            models: vec!["m".into()],
            fail: AtomicBool::new(false),
        });
        let inst = Instrumented::new(
            backend,
            BackendFacts {
                context_window: 1000,
                usd_per_mtok_in: 0.0,
                usd_per_mtok_out: 0.0,
                labels: BTreeMap::new(),
                capabilities: Vec::new(),
            },
        );
        let stream = inst.chat_stream(req()).await.unwrap();
        assert_eq!(inst.status().in_flight, 1);
        drop(stream);
        assert_eq!(inst.status().in_flight, 0);
        assert!(inst.latency_ewma_ms().is_some());
    }
}
