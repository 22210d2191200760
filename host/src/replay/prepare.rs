//! Stage 1, reading and preparing the workload: a producer thread reads or generates the
//! records and does the per-record work that needs no replay state (JSON parsing, token
//! estimates, PII detection), handing them on in batches.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;

use super::sim::PiiScan;
use super::workload::{LineError, WorkloadRecord};
use crate::domain::PolicyRequest;

/// Records handed from the producer thread at a time.
pub(super) const BATCH: usize = 64;

/// A record with the work that needs no replay state done.
pub(super) struct Prepared {
    pub(super) line: u64,
    pub(super) timestamp_ms: Option<i64>,
    pub(super) task: Option<&'static str>,
    pub(super) pii: Arc<PiiScan>,
    pub(super) completion_tokens: Option<u32>,
    /// `prompt_tokens` filled in (observed, else the host estimate).
    pub(super) request: PolicyRequest,
}

/// A batch from the producer thread, bad lines included (the replay thread decides
/// whether they fail the replay).
pub(super) type Batch = Vec<Result<Prepared, LineError>>;

/// Starts the producer thread on `scope`: it prepares `records` and sends them in
/// batches of [`BATCH`] until they run out or the receiver is dropped.
pub(super) fn spawn_producer<'scope, I>(
    scope: &'scope Scope<'scope, '_>,
    records: I,
) -> Receiver<Batch>
where
    I: Iterator<Item = Result<WorkloadRecord, LineError>> + Send + 'scope,
{
    let (tx, rx) = sync_channel::<Batch>(8);
    scope.spawn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        for item in records {
            batch.push(item.map(prepare));
            if batch.len() == BATCH {
                if tx.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
                batch.reserve(BATCH);
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
    });
    rx
}

/// Estimates the prompt tokens (unless observed), scans the messages for PII and builds
/// the request the policies see.
pub(super) fn prepare(rec: WorkloadRecord) -> Prepared {
    let prompt_tokens = rec.prompt_tokens.unwrap_or_else(|| {
        rec.messages
            .iter()
            .map(|m| crate::domain::estimate_tokens(&m.content))
            .fold(0u32, u32::saturating_add)
    });
    Prepared {
        line: rec.line,
        timestamp_ms: rec.timestamp_ms,
        task: rec.task,
        pii: Arc::new(
            rec.messages
                .iter()
                .map(|m| (m.content.clone(), policy_sdk::pii::detect(&m.content)))
                .collect(),
        ),
        completion_tokens: rec.completion_tokens,
        request: PolicyRequest {
            id: rec.id,
            model: rec.model,
            messages: rec.messages,
            max_tokens: rec.max_tokens,
            temperature: rec.temperature,
            streaming: rec.streaming,
            tenant: rec.tenant,
            labels: rec.labels,
            prompt_tokens,
            needs: Default::default(),
        },
    }
}
