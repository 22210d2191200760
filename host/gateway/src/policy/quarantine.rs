//! Quarantine of a policy that keeps failing: after enough failures in a window (more
//! failures than successes, so a busy policy's rare failure never trips it) its fallback
//! is used without running it for a while; then one probe decision runs it again, and
//! either releases it or starts another period.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When a failing policy is quarantined and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// Failures within `window` that quarantine the policy (when they also outnumber its
    /// successes there); 0 turns quarantine off.
    pub failures: u32,
    pub window: Duration,
    /// How long a quarantined policy is not run.
    pub period: Duration,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            failures: 20,
            window: Duration::from_secs(10),
            period: Duration::from_secs(30),
        }
    }
}

/// Whether a decision runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Run it; the outcome counts toward the window.
    Run,
    /// Run it as the probe after a quarantine period.
    Probe,
    /// Quarantined: use the fallback without running it.
    Skip,
}

/// A change the caller reports (log, metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Quarantined,
    Released,
}

struct State {
    window_start: Instant,
    failures: u32,
    successes: u32,
    until: Option<Instant>,
    /// When the running probe started (a probe whose outcome never arrives, its request
    /// dropped, is replaced after a period).
    probe: Option<Instant>,
}

/// One policy's failure record and quarantine.
pub(super) struct Quarantine {
    config: QuarantineConfig,
    state: Mutex<State>,
}

impl Quarantine {
    pub(super) fn new(config: QuarantineConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                window_start: Instant::now(),
                failures: 0,
                successes: 0,
                until: None,
                probe: None,
            }),
        }
    }

    /// Whether the next decision runs the guest.
    pub(super) fn admit(&self, now: Instant) -> Admission {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(until) = s.until else {
            return Admission::Run;
        };
        let probing = s
            .probe
            .is_some_and(|at| now.duration_since(at) < self.config.period);
        if now < until || probing {
            return Admission::Skip;
        }
        s.probe = Some(now);
        Admission::Probe
    }

    /// Records a decision that ran: `failed` when the guest misbehaved.
    pub(super) fn record(
        &self,
        admission: Admission,
        failed: bool,
        now: Instant,
    ) -> Option<Change> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if admission == Admission::Probe {
            s.probe = None;
            s.window_start = now;
            s.failures = 0;
            s.successes = 0;
            if failed {
                s.until = Some(now + self.config.period);
                return None;
            }
            s.until = None;
            return Some(Change::Released);
        }
        if self.config.failures == 0 || s.until.is_some() {
            return None;
        }
        if now.duration_since(s.window_start) > self.config.window {
            s.window_start = now;
            s.failures = 0;
            s.successes = 0;
        }
        if !failed {
            s.successes = s.successes.saturating_add(1);
            return None;
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures >= self.config.failures && s.failures > s.successes {
            s.until = Some(now + self.config.period);
            return Some(Change::Quarantined);
        }
        None
    }

    /// Whether the policy is quarantined now (a running probe included).
    pub(super) fn is_quarantined(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarantine() -> Quarantine {
        Quarantine::new(QuarantineConfig {
            failures: 3,
            window: Duration::from_secs(10),
            period: Duration::from_secs(30),
        })
    }

    #[test]
    fn repeated_failures_quarantine_and_a_probe_releases() {
        let q = quarantine();
        let t0 = Instant::now();
        assert_eq!(q.record(Admission::Run, true, t0), None);
        assert_eq!(q.record(Admission::Run, true, t0), None);
        assert_eq!(q.admit(t0), Admission::Run, "two failures are not enough");
        assert_eq!(
            q.record(Admission::Run, true, t0),
            Some(Change::Quarantined)
        );
        assert!(q.is_quarantined());
        assert_eq!(q.admit(t0 + Duration::from_secs(29)), Admission::Skip);

        // After the period one probe runs; the others keep skipping until it ends.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(q.admit(later), Admission::Probe);
        assert_eq!(q.admit(later), Admission::Skip);
        // A failed probe starts another period.
        assert_eq!(q.record(Admission::Probe, true, later), None);
        assert_eq!(q.admit(later + Duration::from_secs(1)), Admission::Skip);
        let again = later + Duration::from_secs(31);
        assert_eq!(q.admit(again), Admission::Probe);
        assert_eq!(
            q.record(Admission::Probe, false, again),
            Some(Change::Released)
        );
        assert!(!q.is_quarantined());
        assert_eq!(q.admit(again), Admission::Run);
    }

    #[test]
    fn failures_among_more_successes_or_spread_over_windows_do_not_quarantine() {
        let q = quarantine();
        let t0 = Instant::now();
        for _ in 0..10 {
            q.record(Admission::Run, false, t0);
        }
        for _ in 0..5 {
            assert_eq!(q.record(Admission::Run, true, t0), None);
        }
        let q = quarantine();
        for i in 0..6 {
            let at = t0 + Duration::from_secs(11 * i);
            assert_eq!(q.record(Admission::Run, true, at), None);
        }
        assert!(!q.is_quarantined());
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_period() {
        let q = quarantine();
        let t0 = Instant::now();
        for _ in 0..3 {
            q.record(Admission::Run, true, t0);
        }
        let later = t0 + Duration::from_secs(31);
        assert_eq!(q.admit(later), Admission::Probe);
        assert_eq!(q.admit(later + Duration::from_secs(31)), Admission::Probe);
    }
}
