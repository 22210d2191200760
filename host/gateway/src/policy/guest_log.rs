//! A policy's log budget: guest log lines pass a per-policy token bucket; lines over it
//! (or over the per-call cap) are dropped, counted in
//! `switchyard_policy_log_dropped_total{policy}` and summed up in at most one warning a
//! second.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Guest log lines a policy may write per second, sustained.
pub const LINES_PER_SECOND: f64 = 50.0;
/// Lines a policy may write at once after a quiet spell.
pub const BURST_LINES: f64 = 200.0;
/// Least time between two "lines dropped" warnings of one policy.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last summary.
    dropped: u64,
    summarized: Option<Instant>,
}

/// One policy's log budget, shared by all its instances.
pub(super) struct LogBudget {
    bucket: Mutex<Bucket>,
}

impl LogBudget {
    pub(super) fn new() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: BURST_LINES,
                refilled: Instant::now(),
                dropped: 0,
                summarized: None,
            }),
        }
    }

    /// Takes one line from the bucket; false (and the line counted as dropped) when empty.
    pub(super) fn admit(&self, policy: &str) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let earned = now.duration_since(b.refilled).as_secs_f64() * LINES_PER_SECOND;
        b.tokens = (b.tokens + earned).min(BURST_LINES);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        drop(b);
        self.dropped(policy);
        false
    }

    /// Counts one dropped line.
    pub(super) fn dropped(&self, policy: &str) {
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped += 1;
        metrics::counter!("switchyard_policy_log_dropped_total", "policy" => policy.to_owned())
            .increment(1);
    }

    /// Writes one warning with the lines dropped since the last one, at most once per
    /// [`SUMMARY_EVERY`]; the number it reported (0 when it wrote nothing).
    pub(super) fn summarize(&self, policy: &str) -> u64 {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let due = b
            .summarized
            .is_none_or(|at| now.duration_since(at) >= SUMMARY_EVERY);
        if b.dropped == 0 || !due {
            return 0;
        }
        let dropped = std::mem::take(&mut b.dropped);
        b.summarized = Some(now);
        tracing::warn!(
            policy,
            dropped,
            "policy log lines dropped (over its log rate or per-call cap)"
        );
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_at_the_burst_and_summed_up_once() {
        let budget = LogBudget::new();
        let admitted = (0..1000).filter(|_| budget.admit("p")).count();
        // The burst plus what the bucket earned while the loop ran (well under 1 s).
        assert!((200..260).contains(&admitted), "{admitted}");
        let dropped = budget.summarize("p");
        assert_eq!(dropped, 1000 - admitted as u64);
        budget.dropped("p");
        assert_eq!(budget.summarize("p"), 0, "at most one summary a second");
    }
}
