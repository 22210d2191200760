//! The live decision feed: every finished request, broadcast to the dashboard's watchers
//! over a bounded, lossy channel (a slow watcher misses decisions, never slows a request).
//! While nobody watches it costs a request one atomic load: no event is built.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::decision_log::{DecisionLogRecord, LoggedVerdict};
use crate::time::now_ms;

/// Decisions buffered per watcher; a watcher further behind loses the oldest.
pub const CAPACITY: usize = 4096;

/// One finished request as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveDecision {
    /// Unix milliseconds when the request finished.
    pub ts_ms: i64,
    pub request_id: String,
    pub tenant: String,
    /// Model alias the client asked for.
    pub model: String,
    /// `name@short_digest` of the policy that decided.
    pub policy: String,
    /// The reason the response carried (`x-switchyard-reason`), else the policy's.
    pub reason: String,
    /// Backend and model that served it; `None` when it was not served.
    pub backend: Option<String>,
    pub served_model: Option<String>,
    /// HTTP status the client got.
    pub status: u16,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    /// The policy failed and the fallback decision was used.
    pub policy_fallback: bool,
    /// An earlier target failed and a later one served it.
    pub failover: bool,
    pub streaming: bool,
}

impl LiveDecision {
    /// The event for a finished decision-log `record`: `served_reason` is the reason the
    /// response carried (`None` when the request was not served), `failover` whether an
    /// earlier target failed first.
    pub fn from_record(
        record: &DecisionLogRecord,
        served_reason: Option<&str>,
        failover: bool,
    ) -> Self {
        let reason = match (served_reason, &record.decision) {
            (Some(reason), _) => reason.to_owned(),
            (None, Some(LoggedVerdict::Route { reason, .. })) => reason.clone(),
            (None, Some(LoggedVerdict::Reject(r))) => format!("rejected: {}", r.message),
            (None, None) => String::new(),
        };
        Self {
            ts_ms: now_ms(),
            request_id: record.request_id.clone(),
            tenant: record.tenant.clone(),
            model: record.model.clone(),
            policy: record.policy.clone(),
            reason,
            backend: record.backend.clone(),
            served_model: record.served_model.clone(),
            status: record.status.unwrap_or(0),
            latency_ms: record.latency_ms.unwrap_or(0.0),
            cost_usd: record.cost_usd,
            policy_fallback: record.policy_failure.is_some(),
            failover,
            streaming: record.streaming,
        }
    }
}

/// The feed: one sender, any number of watchers.
#[derive(Debug)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<LiveDecision>>,
    /// Open watchers, read with one relaxed load per request (the channel's own receiver
    /// count takes a lock).
    watchers: Arc<AtomicUsize>,
    /// Set at shutdown: every watcher's stream ends, so that it does not hold the drain.
    closing: watch::Sender<bool>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    pub fn new() -> Self {
        Self {
            tx: broadcast::Sender::new(CAPACITY),
            watchers: Arc::new(AtomicUsize::new(0)),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every watcher's stream, now and for watchers that come later (shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Whether anyone watches (else requests build no event).
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Sends `decision` to every watcher (dropped when there is none).
    pub fn publish(&self, decision: LiveDecision) {
        let _ = self.tx.send(Arc::new(decision));
    }

    /// A new watcher: receives every decision published from now on, until dropped.
    pub fn watch(&self) -> Watch {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Watch {
            rx: self.tx.subscribe(),
            closing: self.closing.subscribe(),
            watchers: self.watchers.clone(),
        }
    }

    /// Open watchers.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }
}

/// One watcher's receiving end; dropping it stops the feed's events for it.
#[derive(Debug)]
pub struct Watch {
    rx: broadcast::Receiver<Arc<LiveDecision>>,
    closing: watch::Receiver<bool>,
    watchers: Arc<AtomicUsize>,
}

impl Watch {
    /// The next decision, `Err(Lagged(n))` after missing `n`, or `Err(Closed)` once the
    /// feed is closed.
    pub async fn next(&mut self) -> Result<Arc<LiveDecision>, broadcast::error::RecvError> {
        tokio::select! {
            biased;
            _ = self.closing.wait_for(|closing| *closing) => Err(broadcast::error::RecvError::Closed),
            next = self.rx.recv() => next,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{Decision, PolicyRequest, Rejection, Verdict};

    fn record(verdict: &Verdict) -> DecisionLogRecord {
        let request = PolicyRequest {
            id: "chatcmpl-1".into(),
            model: "auto".into(),
            messages: Vec::new(),
            max_tokens: None,
            temperature: None,
            streaming: false,
            tenant: "acme".into(),
            labels: Default::default(),
            prompt_tokens: 3,
            needs: Default::default(),
        };
        DecisionLogRecord::decided(&request, "hybrid@abc", verdict, None, 10)
    }

    #[test]
    fn watchers_are_counted_until_dropped() {
        let feed = LiveFeed::new();
        assert!(!feed.watched());
        let a = feed.watch();
        let b = feed.watch();
        assert_eq!(feed.watchers(), 2);
        drop(a);
        assert!(feed.watched());
        drop(b);
        assert!(!feed.watched());
    }

    #[tokio::test]
    async fn closing_ends_every_watch() {
        let feed = LiveFeed::new();
        let mut watch = feed.watch();
        feed.close();
        assert!(matches!(
            watch.next().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        assert!(matches!(
            feed.watch().next().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }

    #[test]
    fn a_slow_watcher_loses_the_oldest_decisions() {
        let feed = LiveFeed::new();
        let mut watch = feed.watch();
        let route = Verdict::Route(Decision::to_backends(["local"], "short"));
        for _ in 0..CAPACITY + 10 {
            feed.publish(LiveDecision::from_record(&record(&route), None, false));
        }
        assert!(matches!(
            watch.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        assert_eq!(watch.rx.try_recv().unwrap().reason, "short");
    }

    #[test]
    fn the_reason_is_the_served_one_else_the_policys() {
        let route = Verdict::Route(Decision::to_backends(["local"], "short"));
        let mut served = record(&route);
        served.status = Some(200);
        served.backend = Some("local".into());
        served.cost_usd = Some(0.5);
        let d = LiveDecision::from_record(&served, Some("host:privacy:pii (short)"), true);
        assert_eq!(d.reason, "host:privacy:pii (short)");
        assert_eq!((d.status, d.cost_usd, d.failover), (200, Some(0.5), true));
        assert_eq!(d.backend.as_deref(), Some("local"));

        let unserved = LiveDecision::from_record(&record(&route), None, false);
        assert_eq!(unserved.reason, "short");
        let rejected = Verdict::Reject(Rejection {
            status: 429,
            message: "over budget".into(),
        });
        let d = LiveDecision::from_record(&record(&rejected), None, false);
        assert_eq!(d.reason, "rejected: over budget");
        assert_eq!(d.backend, None);
    }
}
