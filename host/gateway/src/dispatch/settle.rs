//! Closing a served request's books: the attempt's ledger reservation settled (or
//! released) exactly once, and the decision-log record completed with what happened
//! upstream (and sent to the live feed's watchers), for whole completions and for streams
//! (when the stream ends or the client goes away).

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use super::{DispatchError, Routed};
use crate::backends::{ChatStream, StreamEvent, Usage};
use crate::decision_log::{DecisionLog, DecisionLogRecord, UsageRecord};
use crate::ledger::{Ledger, LedgerError, Reservation};
use crate::live_feed::{LiveDecision, LiveFeed};

/// An attempt's open reservation. [`HeldReservation::close`] settles or releases it;
/// dropped unclosed (the request went away during the upstream call, which may still be
/// billed) it is settled at its estimate.
pub(super) struct HeldReservation {
    pub(super) ledger: Arc<Ledger>,
    pub(super) reservation: Reservation,
}

impl HeldReservation {
    /// Reserves `estimate_usd` in `ledger` for attempt `number` of `request_id` on
    /// `backend`; refused over the tenant's hard cap ([`DispatchError::Budget`]) or while
    /// the ledger fails ([`DispatchError::Ledger`]).
    pub(super) async fn hold(
        ledger: &Arc<Ledger>,
        tenant: &str,
        request_id: &str,
        number: u32,
        backend: &str,
        estimate_usd: f64,
    ) -> Result<Self, DispatchError> {
        match ledger
            .reserve(tenant, request_id, number, backend, estimate_usd)
            .await
        {
            Ok(reservation) => Ok(Self {
                ledger: ledger.clone(),
                reservation,
            }),
            Err(e @ LedgerError::HardCap { .. }) => Err(DispatchError::Budget(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "ledger reserve failed");
                Err(DispatchError::Ledger(e.to_string()))
            }
        }
    }

    /// Settles with `cost`, or releases (`None`: the attempt failed); only the first
    /// call counts.
    pub(super) fn close(&self, cost: Option<f64>) {
        let result = match cost {
            Some(cost) => self.ledger.settle(&self.reservation, cost),
            None => self.ledger.release(&self.reservation),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "ledger settle failed; the reservation stays open until restart");
        }
    }
}

impl Drop for HeldReservation {
    fn drop(&mut self) {
        self.close(Some(self.reservation.estimate_usd));
    }
}

/// A request's charge against its tenant's token rate limit (prompt plus completion
/// limit, taken when it was admitted): corrected to the tokens it used once they are
/// known ([`TokenCharge::used`]); dropped without them (nothing was served), to none.
pub(super) struct TokenCharge {
    pub(super) ledger: Arc<Ledger>,
    pub(super) tenant: String,
    pub(super) charged: u32,
    pub(super) used: u32,
}

impl TokenCharge {
    pub(super) fn used(mut self, usage: &Usage) {
        self.used = usage.prompt_tokens.saturating_add(usage.completion_tokens);
    }
}

impl Drop for TokenCharge {
    fn drop(&mut self) {
        self.ledger
            .correct_tokens(&self.tenant, self.charged, self.used);
    }
}

/// Settles an attempt's reservation (if any) with `cost`, or releases it (`None`).
pub(super) fn close(reservation: Option<HeldReservation>, cost: Option<f64>) {
    if let Some(held) = reservation {
        held.close(cost);
    }
}

/// Fills a decision-log record with what happened upstream.
pub(super) fn outcome(record: &mut DecisionLogRecord, routed: &Routed, usage: Option<Usage>) {
    record.status = Some(200);
    record.backend = Some(routed.backend.clone());
    record.served_model = Some(routed.model.clone());
    if let Some(usage) = usage {
        record.usage = Some(UsageRecord {
            prompt_tokens: Some(usage.prompt_tokens),
            completion_tokens: Some(usage.completion_tokens),
        });
        record.cost_usd = Some(routed.cost_usd(&usage));
    }
}

/// A request's record waiting for its outcome: for the decision log, the live feed, or
/// both.
pub(super) struct PendingRecord {
    pub(super) log: Option<Arc<DecisionLog>>,
    /// Set when someone watched the live feed as the request was decided.
    pub(super) live: Option<Arc<LiveFeed>>,
    pub(super) record: DecisionLogRecord,
    pub(super) started: Instant,
}

impl PendingRecord {
    /// Writes the record with the HTTP `status` the client got (200 with `usage` when
    /// served) and the request's latency, and sends it to the live feed's watchers.
    pub(super) fn write(mut self, routed: Option<&Routed>, status: u16, usage: Option<Usage>) {
        match routed {
            Some(routed) => outcome(&mut self.record, routed, usage),
            None => self.record.status = Some(status),
        }
        self.record.latency_ms = Some(self.started.elapsed().as_secs_f64() * 1e3);
        if let Some(live) = self.live.filter(|live| live.watched()) {
            live.publish(LiveDecision::from_record(
                &self.record,
                routed.map(|r| r.reason.as_str()),
                routed.is_some_and(|r| r.attempts.len() > 1),
            ));
        }
        if let Some(log) = self.log {
            log.write(self.record);
        }
    }
}

/// When a served stream ends (or the client goes away): settles the ledger reservation
/// with the reported usage (or an estimate from the text seen) and writes the
/// decision-log record.
pub(super) fn on_stream_end(
    stream: ChatStream,
    routed: &Routed,
    reservation: Option<HeldReservation>,
    record: Option<PendingRecord>,
    charge: Option<TokenCharge>,
) -> ChatStream {
    if reservation.is_none() && record.is_none() && charge.is_none() {
        return stream;
    }
    struct Finish {
        reservation: Option<HeldReservation>,
        record: Option<PendingRecord>,
        charge: Option<TokenCharge>,
        usage: Option<Usage>,
        text_bytes: usize,
        routed: Routed,
    }
    impl Drop for Finish {
        fn drop(&mut self) {
            let usage = self.usage.unwrap_or(Usage {
                prompt_tokens: self.routed.prompt_tokens,
                completion_tokens: u32::try_from(self.text_bytes.div_ceil(4)).unwrap_or(u32::MAX),
            });
            close(self.reservation.take(), Some(self.routed.cost_usd(&usage)));
            if let Some(charge) = self.charge.take() {
                charge.used(&usage);
            }
            if let Some(record) = self.record.take() {
                record.write(Some(&self.routed), 200, Some(usage));
            }
        }
    }
    let mut finish = Finish {
        reservation,
        record,
        charge,
        usage: None,
        text_bytes: 0,
        routed: routed.clone(),
    };
    stream
        .inspect(move |item| {
            // Borrow the whole struct so the closure owns it (and its Drop) entirely.
            let finish = &mut finish;
            match item {
                Ok(StreamEvent::Delta(t)) => finish.text_bytes += t.len(),
                Ok(StreamEvent::Chunk { text_bytes, .. }) => finish.text_bytes += text_bytes,
                Ok(StreamEvent::Usage(u)) => finish.usage = Some(*u),
                _ => {}
            }
        })
        .boxed()
}
