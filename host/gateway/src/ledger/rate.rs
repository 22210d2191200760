//! Per-tenant rate limits (requests and tokens per minute) as a generic cell rate
//! algorithm: each limit keeps a tenant's "theoretical arrival time" (TAT), which every
//! admitted request pushes forward by its cost (a minute divided by the limit, times the
//! units it uses); a request is admitted while the push stays within one minute of now.
//! So a tenant may spend a whole minute's allowance at once, then one unit per interval,
//! and there is no window edge to burst across. In memory for one gateway ([`Local`]);
//! for replicas, the same arithmetic runs in one PostgreSQL function per admission.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The window every limit is stated over.
pub(super) const WINDOW_US: i64 = 60_000_000;

/// One tenant's rate limits (`[tenants.NAME] requests_per_minute`, `tokens_per_minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens. A request is charged its prompt and its completion
    /// limit when admitted, and corrected to what it used when it ends.
    pub tokens_per_minute: Option<u32>,
}

impl RateLimit {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }

    /// What one request with `tokens` costs against each limit, in microseconds of TAT.
    pub(super) fn costs(&self, tokens: u32) -> Costs {
        Costs {
            requests_us: cost_us(self.requests_per_minute, 1),
            tokens_us: cost_us(self.tokens_per_minute, i64::from(tokens)),
        }
    }

    /// The TAT change that corrects a token charge of `charged` to `used`.
    pub(super) fn token_correction_us(&self, charged: u32, used: u32) -> i64 {
        cost_us(self.tokens_per_minute, i64::from(used) - i64::from(charged))
    }
}

/// `units` at `per_minute`, in microseconds of TAT (0 without a limit).
fn cost_us(per_minute: Option<u32>, units: i64) -> i64 {
    match per_minute {
        // Config admits limits of 1 and more only.
        Some(limit) if limit > 0 => units.saturating_mul(WINDOW_US) / i64::from(limit),
        _ => 0,
    }
}

/// The cost of one request against each limit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Costs {
    pub(super) requests_us: i64,
    pub(super) tokens_us: i64,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "requests" => Some(Self::Requests),
            "tokens" => Some(Self::Tokens),
            _ => None,
        }
    }
}

/// A refusal: which limit, and how long until the request would fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub kind: LimitKind,
    pub retry_after: Duration,
}

/// One limit's step: the new TAT when a request costing `cost` fits at `now`, else how
/// long (µs) until it would. A request larger than the whole window is admitted once the
/// tenant's allowance is untouched, so it is slowed, never refused forever.
pub(super) fn step(tat: i64, now: i64, cost: i64) -> Result<i64, i64> {
    if cost == 0 {
        return Ok(tat);
    }
    let start = tat.max(now);
    let needed = cost.min(WINDOW_US);
    let over = (start - now).saturating_add(needed) - WINDOW_US;
    if over <= 0 {
        Ok(start.saturating_add(cost))
    } else {
        Err(over)
    }
}

/// Both limits' step; nothing changes unless both admit.
pub(super) fn admit(tats: &mut (i64, i64), now: i64, costs: Costs) -> Result<(), Refused> {
    let refused = |kind, wait_us: i64| Refused {
        kind,
        retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
    };
    let requests =
        step(tats.0, now, costs.requests_us).map_err(|w| refused(LimitKind::Requests, w))?;
    let tokens = step(tats.1, now, costs.tokens_us).map_err(|w| refused(LimitKind::Tokens, w))?;
    *tats = (requests, tokens);
    Ok(())
}

/// The limits' state of one gateway process: (requests TAT, tokens TAT) per tenant, µs.
/// Only tenants with a configured limit have an entry, so it is as large as the config.
#[derive(Debug, Default)]
pub(super) struct Local {
    tats: Mutex<HashMap<String, (i64, i64)>>,
}

impl Local {
    pub(super) fn admit(&self, tenant: &str, now: i64, costs: Costs) -> Result<(), Refused> {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tats.entry(tenant.to_owned()).or_insert((now, now));
        admit(entry, now, costs)
    }

    pub(super) fn correct_tokens(&self, tenant: &str, delta_us: i64) {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = tats.get_mut(tenant) {
            entry.1 = entry.1.saturating_add(delta_us);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn limit(requests: Option<u32>, tokens: Option<u32>) -> RateLimit {
        RateLimit {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
        }
    }

    #[test]
    fn a_minutes_allowance_at_once_then_one_per_interval() {
        let local = Local::default();
        let costs = limit(Some(60), None).costs(100);
        let now = 1_000 * SECOND;
        for i in 0..60 {
            assert!(local.admit("a", now, costs).is_ok(), "request {i}");
        }
        let refused = local.admit("a", now, costs).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Requests);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // One interval later exactly one more fits.
        assert!(local.admit("a", now + SECOND, costs).is_ok());
        assert!(local.admit("a", now + SECOND, costs).is_err());
        // Another tenant is not affected.
        assert!(local.admit("b", now, costs).is_ok());
    }

    #[test]
    fn tokens_are_charged_up_front_and_corrected() {
        let rate = limit(None, Some(1_000));
        let local = Local::default();
        let now = 5_000 * SECOND;
        assert!(local.admit("a", now, rate.costs(600)).is_ok());
        let refused = local.admit("a", now, rate.costs(600)).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Tokens);
        // The first request used only 100 tokens: 500 are handed back.
        local.correct_tokens("a", rate.token_correction_us(600, 100));
        assert!(local.admit("a", now, rate.costs(600)).is_ok());
        assert!(local.admit("a", now, rate.costs(400)).is_err());
    }

    #[test]
    fn a_request_over_the_whole_window_waits_for_a_full_allowance() {
        let rate = limit(None, Some(100));
        let local = Local::default();
        let now = 9_000 * SECOND;
        assert!(local.admit("a", now, rate.costs(500)).is_ok());
        // Its debt lasts five minutes: the next waits until the allowance is whole again.
        let refused = local.admit("a", now, rate.costs(10)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(4 * 60 + 6));
    }

    #[test]
    fn a_refused_request_changes_nothing() {
        let local = Local::default();
        let now = 2_000 * SECOND;
        let rate = limit(Some(10), Some(100));
        assert!(local.admit("a", now, rate.costs(100)).is_ok());
        for _ in 0..3 {
            assert_eq!(
                local.admit("a", now, rate.costs(1)).unwrap_err().kind,
                LimitKind::Tokens
            );
        }
        // The requests limit was charged only by the admitted request.
        let requests_only = limit(Some(10), None).costs(1);
        for _ in 0..9 {
            assert!(local.admit("a", now, requests_only).is_ok());
        }
        assert!(local.admit("a", now, requests_only).is_err());
    }
}
