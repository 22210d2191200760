//! `switchyard replay`: what one or two policies would have done to a workload — a
//! decision log or OpenAI request bodies (JSONL), or a synthetic mix — run through the
//! real sandbox ([`LoadedPolicy::decide_blocking`]) against a simulated host.
//!
//! The simulated host ([`SimHost`]) serves the configured backends (outage windows mark a
//! backend unhealthy for whole replay days), uses each request's timestamp as the clock,
//! and accumulates spend per tenant per UTC day and calendar month as the replay goes, so
//! budget-aware policies see what they would have seen. A routed request is served by its
//! first target that is not down (later ones are failovers) and costs that target's
//! price: the backend's configured price for its default model, the price table
//! ([`crate::config::defaults::model_card`]) for a model override, zero when local.
//! Input tokens come from observed usage when present, else the host estimate; output
//! tokens from observed usage, else `output_ratio` × input tokens, capped by the
//! decision's (or request's) `max_tokens`. A tenant's hard cap refuses what would exceed it.
//!
//! [`replay`] runs four stages: the workload read and prepared on a producer thread
//! (`prepare`), each record placed in time and counted (`intake`), each policy's
//! simulation over the records (`run`, driven in lockstep by `lockstep`), and the report
//! assembled with baselines and break-even (`assemble`).

mod assemble;
pub mod chart;
pub mod decisions;
pub mod html;
mod intake;
mod lockstep;
mod prepare;
pub mod quality;
pub mod report;
mod run;
pub mod sim;
pub mod sweep;
pub mod synthetic;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::domain::BackendStatus;
use crate::ledger::Budget;
use crate::policy::LoadedPolicy;

pub use report::{
    Baseline, BreakEven, BreakEvenRow, DayCost, DiffSample, Differences, HardwareProfile,
    PolicyReport, Price, Report, TargetStats, TenantReport, Throughput, WorkloadSummary, price_of,
};
pub use sim::{Outage, PiiScan, SimHost};
pub use synthetic::{Shape, Synthetic, SyntheticSpec};
pub use workload::{JsonlReader, LineError, WorkloadRecord};

/// Output tokens per input token when a record has no observed usage (the decision
/// guide's 500 in / 200 out).
pub const DEFAULT_OUTPUT_RATIO: f64 = 0.4;

/// Requests a day at which records without a timestamp are spread (the decision guide's
/// volume), so an untimed workload spans days as traffic would.
pub const DEFAULT_UNTIMED_PER_DAY: u64 = 1000;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Backends the simulated host serves (config, or the demo set).
    pub backends: Vec<BackendStatus>,
    /// Tenant budgets (config `[tenants.*]`).
    pub budgets: BTreeMap<String, Budget>,
    pub outages: Vec<Outage>,
    pub output_ratio: f64,
    /// `None`: the RTX 4090 profile, marked as assumed.
    pub hardware: Option<HardwareProfile>,
    /// Skip unreadable lines (counted) instead of failing.
    pub skip_bad: bool,
    /// Where the workload came from, for the report.
    pub source: String,
    /// Differing decisions to show (two policies).
    pub diff_samples: usize,
    /// What policies' `embeddings` calls reach: the config's classifiers (`--config`).
    pub scorer: Arc<dyn crate::embeddings::TextScorer>,
    /// Quality per backend of labelled requests (`--labels`): the report then measures
    /// each policy's quality.
    pub labels: Option<Arc<quality::Labels>>,
    /// Records without a timestamp follow the previous one at this many a day (the first,
    /// at the start of the replay's first day).
    pub untimed_per_day: u64,
    /// Where each policy's decision on each request is written (`--decisions`).
    pub decisions: Option<Arc<decisions::DecisionSink>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            backends: crate::policy::StaticHost::default().backends,
            budgets: BTreeMap::new(),
            outages: Vec::new(),
            output_ratio: DEFAULT_OUTPUT_RATIO,
            hardware: None,
            skip_bad: false,
            source: "workload".to_owned(),
            diff_samples: 10,
            scorer: Arc::new(crate::embeddings::NoEmbeddings),
            labels: None,
            untimed_per_day: DEFAULT_UNTIMED_PER_DAY,
            decisions: None,
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0} (pass --skip-bad to skip bad lines)")]
    BadLine(LineError),
    #[error("the workload holds no requests")]
    Empty,
    #[error("replay takes at most two policies, got {0}")]
    PolicyCount(usize),
    #[error("outage names unknown backend {0:?} (backends: {1})")]
    UnknownBackend(String, String),
    #[error("the replay thread of policy B stopped unexpectedly")]
    Worker,
    #[error("output ratio must be a non-negative number, got {0}")]
    OutputRatio(f64),
    #[error("untimed requests a day must be at least 1")]
    UntimedPerDay,
    #[error("writing the decisions: {0}")]
    Decisions(std::io::Error),
}

/// Replays `records` through each policy (one, or two to compare; none reports the
/// workload, baselines and break-even only) and reports.
pub fn replay<I>(
    policies: &[LoadedPolicy],
    records: I,
    opts: &ReplayOptions,
) -> Result<Report, ReplayError>
where
    I: IntoIterator<Item = Result<WorkloadRecord, LineError>>,
    I::IntoIter: Send,
{
    check(policies.len(), opts)?;
    let hardware = opts
        .hardware
        .clone()
        .unwrap_or_else(HardwareProfile::rtx4090);
    let start_day = synthetic::start_day();
    let mut runs: Vec<run::PolicyRun> = policies
        .iter()
        .map(|p| run::PolicyRun::new(p.clone(), opts, start_day))
        .collect();
    let mut intake = intake::Intake::new(opts, start_day);
    let started = Instant::now();
    let diff = lockstep::simulate(records.into_iter(), &mut runs, &mut intake, opts)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some(sink) = &opts.decisions {
        sink.finish().map_err(ReplayError::Decisions)?;
    }
    let workload = intake.finish()?;
    Ok(assemble::assemble(
        runs, workload, diff, elapsed_s, opts, &hardware,
    ))
}

/// Refuses what cannot be replayed: more than two policies, a bad output ratio, an outage
/// of a backend the host does not serve.
fn check(policies: usize, opts: &ReplayOptions) -> Result<(), ReplayError> {
    if policies > 2 {
        return Err(ReplayError::PolicyCount(policies));
    }
    if !(opts.output_ratio.is_finite() && opts.output_ratio >= 0.0) {
        return Err(ReplayError::OutputRatio(opts.output_ratio));
    }
    if opts.untimed_per_day == 0 {
        return Err(ReplayError::UntimedPerDay);
    }
    for o in &opts.outages {
        if !opts.backends.iter().any(|b| b.name == o.backend) {
            let names: Vec<_> = opts.backends.iter().map(|b| b.name.as_str()).collect();
            return Err(ReplayError::UnknownBackend(
                o.backend.clone(),
                names.join(", "),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(
        per_day: u64,
        days: u32,
    ) -> impl Iterator<Item = Result<WorkloadRecord, LineError>> + Send {
        Synthetic::new(SyntheticSpec {
            per_day,
            days,
            seed: 1,
            shape: Shape::Fixed {
                input: 500,
                output: 200,
            },
        })
        .map(Ok)
    }

    fn cents(x: f64) -> i64 {
        (x * 100.0).round() as i64
    }

    #[test]
    fn decision_guide_arithmetic_to_the_cent() {
        let report = replay(&[], fixed(1000, 30), &ReplayOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let w = &report.workload;
        assert_eq!((w.requests, w.days), (30_000, 30));
        assert_eq!((w.input_tokens, w.output_tokens), (15_000_000, 6_000_000));
        let by_name = |n: &str| {
            report
                .baselines
                .iter()
                .find(|b| b.name == n)
                .unwrap_or_else(|| panic!("no baseline {n}"))
        };
        assert_eq!(cents(by_name("openai/gpt-4o").projection_30d_usd), 9750);
        assert_eq!(cents(by_name("openai/gpt-4o").cost_usd), 9750);
        assert_eq!(
            cents(by_name("anthropic/claude-sonnet-4-5").projection_30d_usd),
            13_500
        );
        // $3.25 a day on GPT-4o: per request 0.00325.
        assert!((by_name("openai/gpt-4o").usd_per_request - 0.003_25).abs() < 1e-12);
        let local = by_name("local (hardware)");
        assert_eq!(cents(local.projection_30d_usd), 9320);
        let be = report
            .break_even
            .clone()
            .unwrap_or_else(|| panic!("no break-even"));
        assert!(be.hardware.assumed);
        let row = be
            .rows
            .iter()
            .find(|r| r.baseline == "openai/gpt-4o")
            .unwrap_or_else(|| panic!("no row"));
        // $93.20 a month / (30 × $0.00325) = 955.9 requests a day.
        let n = row.requests_per_day.unwrap_or(0.0);
        assert!((n - 93.2 / (30.0 * 0.003_25)).abs() < 1e-6, "{n}");
        assert!(row.local_cheaper_at_this_volume);
        let text = report.render_text();
        assert!(text.contains("all openai/gpt-4o"), "{text}");
        assert!(text.contains("$97.50"), "{text}");
        assert!(text.contains("$135.00"), "{text}");
    }

    #[test]
    fn projection_scales_short_workloads() {
        let report = replay(&[], fixed(1000, 3), &ReplayOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let b = &report.baselines[0];
        assert_eq!(b.name, "openai/gpt-4o");
        assert_eq!(cents(b.cost_usd), 975);
        assert_eq!(cents(b.projection_30d_usd), 9750);
    }

    #[test]
    fn bad_lines_fail_or_are_skipped() {
        let input = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n{oops\n";
        let err = replay(
            &[],
            JsonlReader::new(input.as_bytes()),
            &ReplayOptions::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("line 2: not a JSON object"), "{err}");
        assert!(err.contains("--skip-bad"), "{err}");
        let opts = ReplayOptions {
            skip_bad: true,
            ..ReplayOptions::default()
        };
        let report = replay(&[], JsonlReader::new(input.as_bytes()), &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (report.workload.requests, report.workload.skipped_lines),
            (1, 1)
        );
        assert!(report.render_text().contains("skipped 1 bad line"));
        let empty = replay(&[], JsonlReader::new("\n".as_bytes()), &opts);
        assert!(matches!(empty, Err(ReplayError::Empty)));
    }

    #[test]
    fn output_ratio_and_unknown_outage_backend() {
        let input = "{\"messages\":[{\"role\":\"user\",\"content\":\"12345678\"}],\"max_tokens\":1}\n{\"messages\":[{\"role\":\"user\",\"content\":\"1234567812345678\"}]}\n";
        let opts = ReplayOptions {
            output_ratio: 2.0,
            ..ReplayOptions::default()
        };
        let report = replay(&[], JsonlReader::new(input.as_bytes()), &opts)
            .unwrap_or_else(|e| panic!("{e}"));
        // 2 + 4 input tokens; output min(4, 1) + 8.
        assert_eq!(
            (report.workload.input_tokens, report.workload.output_tokens),
            (6, 9)
        );
        let opts = ReplayOptions {
            outages: vec!["nope:1-2".parse().unwrap_or_else(|e: String| panic!("{e}"))],
            ..ReplayOptions::default()
        };
        let err = replay(&[], JsonlReader::new(input.as_bytes()), &opts);
        assert!(matches!(err, Err(ReplayError::UnknownBackend(..))));
    }
}
