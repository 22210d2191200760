//! Stage 4, assembling the report: the workload's throughput, each policy's report, the
//! baselines (every request to each cloud model, and everything local), the break-even
//! with local hardware, and the share of differing decisions.

use super::ReplayOptions;
use super::report::{
    self, Baseline, BreakEven, BreakEvenRow, Differences, HardwareProfile, PolicyReport, Report,
    Throughput, WorkloadSummary, price_of,
};
use super::run::PolicyRun;
use crate::domain::BackendKind;

/// The report of a finished replay: `runs` in policy order, the finished workload
/// summary, the differences (two policies) and the replay loop's wall time.
pub(super) fn assemble(
    runs: Vec<PolicyRun>,
    w: WorkloadSummary,
    mut diff: Differences,
    elapsed_s: f64,
    opts: &ReplayOptions,
    hardware: &HardwareProfile,
) -> Report {
    let throughput = throughput(&runs, &w, elapsed_s);
    let two = runs.len() == 2;
    let policies: Vec<PolicyReport> = runs.into_iter().map(|r| r.report(&w, hardware)).collect();
    let baselines = baselines(opts, &w, hardware);
    let break_even = Some(break_even(&w, hardware, &baselines));
    if two {
        diff.share = diff.count as f64 / w.requests as f64;
    }
    Report {
        output_ratio: opts.output_ratio,
        outages: opts.outages.clone(),
        policies,
        baselines,
        break_even,
        differences: two.then_some(diff),
        throughput,
        workload: w,
    }
}

/// Requests a second through the whole replay, and decisions a second in the sandbox.
fn throughput(runs: &[PolicyRun], w: &WorkloadSummary, elapsed: f64) -> Throughput {
    let sandbox_ns: u128 = runs.iter().map(|r| r.decision_ns).sum();
    let decisions = w.requests as f64 * runs.len() as f64;
    Throughput {
        elapsed_s: elapsed,
        requests_per_s: if elapsed > 0.0 {
            w.requests as f64 / elapsed
        } else {
            0.0
        },
        sandbox_decisions_per_s: if sandbox_ns > 0 {
            decisions / (sandbox_ns as f64 / 1e9)
        } else {
            0.0
        },
    }
}

/// The workload sent whole to each configured cloud model, and to the local hardware.
fn baselines(
    opts: &ReplayOptions,
    w: &WorkloadSummary,
    hardware: &HardwareProfile,
) -> Vec<Baseline> {
    let days = w.days.max(1) as f64;
    let per_request = |cost: f64| {
        if w.requests == 0 {
            0.0
        } else {
            cost / w.requests as f64
        }
    };
    let mut out = Vec::new();
    for b in opts
        .backends
        .iter()
        .filter(|b| b.kind == BackendKind::Cloud)
    {
        for model in &b.models {
            let Some(price) = price_of(b, Some(model)) else {
                continue;
            };
            let cost = price.cost(w.input_tokens, w.output_tokens);
            out.push(Baseline {
                name: format!("{}/{model}", b.name),
                kind: BackendKind::Cloud,
                price: Some(price),
                cost_usd: cost,
                projection_30d_usd: cost / days * report::PROJECTION_DAYS,
                usd_per_request: per_request(cost),
            });
        }
    }
    if opts.backends.iter().any(|b| b.kind == BackendKind::Local) {
        let monthly = hardware.monthly_usd();
        out.push(Baseline {
            name: "local (hardware)".to_owned(),
            kind: BackendKind::Local,
            price: None,
            cost_usd: monthly / report::PROJECTION_DAYS * days,
            projection_30d_usd: monthly,
            usd_per_request: per_request(monthly / report::PROJECTION_DAYS * days),
        });
    }
    out
}

/// The hardware's monthly cost and, per cloud baseline, the requests a day above which
/// local is cheaper.
fn break_even(
    w: &WorkloadSummary,
    hardware: &HardwareProfile,
    baselines: &[Baseline],
) -> BreakEven {
    let monthly = hardware.monthly_usd();
    let rows = baselines
        .iter()
        .filter(|b| b.kind == BackendKind::Cloud)
        .map(|b| {
            let per_day = (b.usd_per_request > 0.0)
                .then(|| monthly / (report::PROJECTION_DAYS * b.usd_per_request));
            BreakEvenRow {
                baseline: b.name.clone(),
                usd_per_request: b.usd_per_request,
                requests_per_day: per_day,
                local_cheaper_at_this_volume: per_day.is_some_and(|n| w.requests_per_day >= n),
            }
        })
        .collect();
    BreakEven {
        amortized_monthly_usd: hardware.amortized_monthly_usd(),
        power_monthly_usd: hardware.power_monthly_usd(),
        monthly_usd: monthly,
        capacity_requests_per_day: hardware.tokens_per_s.and_then(|tps| {
            (w.mean_output_tokens > 0.0)
                .then(|| tps * 3600.0 * hardware.hours_per_day / w.mean_output_tokens)
        }),
        workload_requests_per_day: w.requests_per_day,
        hardware: hardware.clone(),
        rows,
    }
}
