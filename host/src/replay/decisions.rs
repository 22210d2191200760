//! `--decisions FILE`: every replayed request's decision as one JSON line per policy (id,
//! targets, reason, fallback, what served it and what it cost), written in workload order.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// One policy's decision on one request, as written to the decisions file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRow {
    /// Workload line (1-based).
    pub line: u64,
    pub id: String,
    pub tenant: String,
    /// The replay clock for this request (RFC 3339).
    pub timestamp: String,
    /// `name@digest` of the deciding policy.
    pub policy: String,
    /// `route` or `reject`.
    pub outcome: &'static str,
    /// The decision's targets in order, `backend` or `backend/model`.
    pub targets: Vec<String>,
    /// The policy's reason (a rejection's message).
    pub reason: String,
    /// The policy failed (trap, deadline, bad decision) and the fallback decision was used.
    pub fallback: bool,
    /// Why the policy failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'static str>,
    /// A rejection's HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `backend/model` that served it; `null` when rejected, unserved or refused by a hard cap.
    pub served_by: Option<String>,
    /// Served by a later target because the earlier ones were down.
    pub failover: bool,
    /// Refused by the tenant's hard cap.
    pub capped: bool,
    pub cost_usd: f64,
}

/// Where `--decisions` rows go: a buffered writer shared by the replay's threads, keeping
/// the first write error for the end of the replay.
pub struct DecisionSink {
    inner: Mutex<SinkState>,
}

struct SinkState {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    rows: u64,
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for DecisionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionSink").finish_non_exhaustive()
    }
}

impl DecisionSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Mutex::new(SinkState {
                out: std::io::BufWriter::with_capacity(1 << 16, out),
                rows: 0,
                error: None,
            }),
        }
    }

    /// Appends `rows` as JSON lines; after a failed write, later rows are dropped.
    pub fn write<'a>(&self, rows: impl IntoIterator<Item = &'a DecisionRow>) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if state.error.is_some() {
            return;
        }
        for row in rows {
            let written = serde_json::to_writer(&mut state.out, row)
                .map_err(std::io::Error::from)
                .and_then(|()| state.out.write_all(b"\n"));
            if let Err(e) = written {
                state.error = Some(e);
                return;
            }
            state.rows += 1;
        }
    }

    /// Flushes; the rows written, or the first write error.
    pub fn finish(&self) -> std::io::Result<u64> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        state.out.flush()?;
        Ok(state.rows)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Full;

    impl Write for Full {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("disk full"))
        }
    }

    fn row(line: u64) -> DecisionRow {
        DecisionRow {
            line,
            id: format!("r{line}"),
            tenant: "acme".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            policy: "p@abc".into(),
            outcome: "route",
            targets: vec!["local".into()],
            reason: "why".into(),
            fallback: false,
            failure: None,
            status: None,
            served_by: Some("local/smollm2".into()),
            failover: false,
            capped: false,
            cost_usd: 0.0,
        }
    }

    #[test]
    fn rows_are_json_lines_and_a_write_error_surfaces_at_the_end() {
        let buf = Shared::default();
        let sink = DecisionSink::new(Box::new(buf.clone()));
        sink.write(&[row(1), row(2)]);
        assert_eq!(sink.finish().unwrap(), 2);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["id"], "r2");
        assert_eq!(lines[0]["served_by"], "local/smollm2");
        assert!(lines[0].get("status").is_none());

        let sink = DecisionSink::new(Box::new(Full));
        // Small rows sit in the buffer; the error shows at the flush.
        sink.write(&[row(1)]);
        let err = sink.finish().unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
