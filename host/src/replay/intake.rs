//! Stage 2, placing records in time: each prepared record gets its timestamp (its own,
//! else the previous record's plus a day / `untimed_per_day`, the first at the start day),
//! its replay day, and is counted into the workload summary; bad lines fail the replay or
//! are skipped and counted.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::prepare::{Batch, Prepared};
use super::sim::{PiiScan, SimHost};
use super::{ReplayError, ReplayOptions, WorkloadSummary};
use crate::domain::{BackendStatus, PolicyRequest};
use crate::time;

/// Skipped-line errors kept for the report.
const SKIP_EXAMPLES: usize = 5;

/// What one record looks like to the cost model.
pub(super) struct RecordCtx<'a> {
    pub(super) day: i64,
    pub(super) prompt_tokens: u32,
    pub(super) completion_tokens: Option<u32>,
    pub(super) has_pii: bool,
    pub(super) output_ratio: f64,
    pub(super) backends: &'a [BackendStatus],
}

/// A record's output tokens: observed, else `output_ratio` × input tokens; capped by `cap`.
pub(super) fn output_tokens(ctx: &RecordCtx<'_>, cap: Option<u32>) -> u64 {
    let out = ctx.completion_tokens.map_or_else(
        || (f64::from(ctx.prompt_tokens) * ctx.output_ratio).round() as u64,
        u64::from,
    );
    cap.map_or(out, |c| out.min(u64::from(c)))
}

/// A record placed in time, ready for the policies.
pub(super) struct Ready {
    pub(super) line: u64,
    pub(super) ts: i64,
    pub(super) day: i64,
    /// The messages' PII, for the policies' `pii.detect` calls.
    pub(super) pii: Arc<PiiScan>,
    pub(super) completion_tokens: Option<u32>,
    pub(super) request: PolicyRequest,
}

impl Ready {
    /// Whether any message holds PII.
    pub(super) fn has_pii(&self) -> bool {
        self.pii.iter().any(|(_, found)| !found.is_empty())
    }

    /// The record as the cost model sees it.
    pub(super) fn ctx<'a>(&self, opts: &'a ReplayOptions) -> RecordCtx<'a> {
        RecordCtx {
            day: self.day,
            prompt_tokens: self.request.prompt_tokens,
            completion_tokens: self.completion_tokens,
            has_pii: self.has_pii(),
            output_ratio: opts.output_ratio,
            backends: &opts.backends,
        }
    }
}

/// The replay clock and the workload summary, built as records are placed.
pub(super) struct Intake<'a> {
    opts: &'a ReplayOptions,
    /// Whether a record has been placed (the first sets the hosts' first day).
    placed: bool,
    /// The time the next untimed record takes: the previous record's plus the untimed
    /// interval (the start of the first day before any record).
    next_untimed_ts: i64,
    /// A day / `untimed_per_day`, in ms.
    untimed_interval_ms: i64,
    min_day: i64,
    max_day: i64,
    tenants: BTreeSet<String>,
    summary: WorkloadSummary,
}

impl<'a> Intake<'a> {
    pub(super) fn new(opts: &'a ReplayOptions, start_day: i64) -> Self {
        Self {
            opts,
            placed: false,
            next_untimed_ts: start_day * time::DAY_MS,
            untimed_interval_ms: time::DAY_MS
                / i64::try_from(opts.untimed_per_day.max(1)).unwrap_or(i64::MAX),
            min_day: i64::MAX,
            max_day: i64::MIN,
            tenants: BTreeSet::new(),
            summary: WorkloadSummary {
                source: opts.source.clone(),
                ..WorkloadSummary::default()
            },
        }
    }

    /// Places a batch in time; a bad line fails the replay unless `skip_bad` (then it is
    /// counted). The first record placed sets the first day of `hosts`.
    pub(super) fn admit(
        &mut self,
        batch: Batch,
        hosts: &[Arc<SimHost>],
    ) -> Result<Vec<Ready>, ReplayError> {
        let mut ready = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Ok(prepared) => ready.push(self.place(prepared, hosts)),
                Err(e) if self.opts.skip_bad => {
                    self.summary.skipped_lines += 1;
                    if self.summary.skipped_examples.len() < SKIP_EXAMPLES {
                        self.summary.skipped_examples.push(e.to_string());
                    }
                }
                Err(e) => return Err(ReplayError::BadLine(e)),
            }
        }
        Ok(ready)
    }

    fn place(&mut self, prepared: Prepared, hosts: &[Arc<SimHost>]) -> Ready {
        let ts = prepared.timestamp_ms.unwrap_or(self.next_untimed_ts);
        self.next_untimed_ts = ts.saturating_add(self.untimed_interval_ms);
        if !self.placed {
            self.placed = true;
            for host in hosts {
                host.set_first_day(time::day_of(ts));
            }
        }
        let day = time::day_of(ts);
        self.min_day = self.min_day.min(day);
        self.max_day = self.max_day.max(day);
        let ready = Ready {
            line: prepared.line,
            ts,
            day,
            pii: prepared.pii,
            completion_tokens: prepared.completion_tokens,
            request: prepared.request,
        };
        let (w, req) = (&mut self.summary, &ready.request);
        w.requests += 1;
        w.input_tokens += u64::from(req.prompt_tokens);
        w.output_tokens += output_tokens(&ready.ctx(self.opts), req.max_tokens);
        w.pii_requests += u64::from(ready.has_pii());
        if let Some(task) = prepared.task {
            *w.tasks.entry(task.to_owned()).or_default() += 1;
        }
        if !self.tenants.contains(&req.tenant) {
            self.tenants.insert(req.tenant.clone());
        }
        ready
    }

    /// The workload summary: days spanned, dates and means; no records is an error.
    pub(super) fn finish(self) -> Result<WorkloadSummary, ReplayError> {
        let mut w = self.summary;
        if w.requests == 0 {
            return Err(ReplayError::Empty);
        }
        w.days = u64::try_from(self.max_day - self.min_day + 1)
            .unwrap_or(1)
            .max(1);
        w.first_date = time::date_string(self.min_day);
        w.last_date = time::date_string(self.max_day);
        w.requests_per_day = w.requests as f64 / w.days as f64;
        w.mean_input_tokens = w.input_tokens as f64 / w.requests as f64;
        w.mean_output_tokens = w.output_tokens as f64 / w.requests as f64;
        w.tenants = u64::try_from(self.tenants.len()).unwrap_or(u64::MAX);
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::prepare::prepare;
    use crate::replay::workload::JsonlReader;

    fn batch(jsonl: &str) -> Batch {
        JsonlReader::new(jsonl.as_bytes())
            .map(|r| r.map(prepare))
            .collect()
    }

    #[test]
    fn untimed_records_follow_the_previous_time_and_days_span_the_dates() {
        let msg = r#""messages":[{"role":"user","content":"hi"}]"#;
        let input = format!(
            "{{{msg}}}\n{{{msg},\"timestamp\":\"2026-01-03T10:00:00Z\"}}\n{{oops\n{{{msg},\"tenant\":\"acme\"}}\n"
        );
        let opts = ReplayOptions {
            skip_bad: true,
            ..ReplayOptions::default()
        };
        let start_day = time::days_from_civil(2026, 1, 1);
        let mut intake = Intake::new(&opts, start_day);
        let ready = intake
            .admit(batch(&input), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let days: Vec<i64> = ready.iter().map(|r| r.day - start_day).collect();
        assert_eq!(days, [0, 2, 2]);
        assert_eq!(ready[0].ts, start_day * time::DAY_MS);
        // 1,000 a day by default: 86.4 s after the timed record.
        assert_eq!(ready[2].ts, ready[1].ts + 86_400);
        let w = intake.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (w.requests, w.days, w.tenants, w.skipped_lines),
            (3, 3, 2, 1)
        );
        assert_eq!(
            (w.first_date.as_str(), w.last_date.as_str()),
            ("2026-01-01", "2026-01-03")
        );
        assert!(
            w.skipped_examples[0].starts_with("line 3"),
            "{:?}",
            w.skipped_examples
        );
    }

    #[test]
    fn an_untimed_workload_spreads_over_days_at_the_given_rate() {
        let line = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n";
        let opts = ReplayOptions {
            untimed_per_day: 400,
            ..ReplayOptions::default()
        };
        let start_day = time::days_from_civil(2026, 1, 1);
        let mut intake = Intake::new(&opts, start_day);
        let ready = intake
            .admit(batch(&line.repeat(1000)), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let per_day = |d: i64| ready.iter().filter(|r| r.day == start_day + d).count();
        assert_eq!((per_day(0), per_day(1), per_day(2)), (400, 400, 200));
        let w = intake.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((w.days, w.last_date.as_str()), (3, "2026-01-03"));
    }

    #[test]
    fn a_bad_line_fails_without_skip_bad_and_nothing_is_empty() {
        let opts = ReplayOptions::default();
        let mut intake = Intake::new(&opts, 0);
        let err = intake.admit(batch("{oops\n"), &[]).err();
        assert!(matches!(err, Some(ReplayError::BadLine(_))));
        assert!(matches!(intake.finish(), Err(ReplayError::Empty)));
    }
}
