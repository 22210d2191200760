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

pub mod chart;
pub mod report;
pub mod sim;
pub mod synthetic;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::domain::{BackendKind, BackendStatus, PolicyRequest, Verdict};
use crate::ledger::Budget;
use crate::policy::{HostState, LoadedPolicy};
use crate::time;

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

/// Skipped-line errors kept for the report.
const SKIP_EXAMPLES: usize = 5;

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
}

#[derive(Debug, Default)]
struct TenantAcc {
    requests: u64,
    cost: f64,
    capped: u64,
    charged_over_budget: u64,
}

struct PolicyRun {
    policy: LoadedPolicy,
    host: Arc<SimHost>,
    dyn_host: Arc<dyn HostState>,
    requests: u64,
    routed: u64,
    rejected: BTreeMap<u16, u64>,
    unserved: u64,
    capped: u64,
    failovers: u64,
    failures: BTreeMap<&'static str, u64>,
    targets: BTreeMap<String, TargetStats>,
    daily: BTreeMap<i64, BTreeMap<String, f64>>,
    local_served: u64,
    pii_to_cloud: u64,
    tenants: BTreeMap<String, TenantAcc>,
    decision_ns: u128,
}

/// What one record looks like to the cost model.
struct RecordCtx<'a> {
    day: i64,
    prompt_tokens: u32,
    completion_tokens: Option<u32>,
    has_pii: bool,
    output_ratio: f64,
    backends: &'a [BackendStatus],
}

fn output_tokens(ctx: &RecordCtx<'_>, cap: Option<u32>) -> u64 {
    let out = ctx.completion_tokens.map_or_else(
        || (f64::from(ctx.prompt_tokens) * ctx.output_ratio).round() as u64,
        u64::from,
    );
    cap.map_or(out, |c| out.min(u64::from(c)))
}

/// Records handed from the producer thread at a time.
const BATCH: usize = 64;

/// A record with the work that needs no replay state done.
struct Prepared {
    line: u64,
    timestamp_ms: Option<i64>,
    task: Option<&'static str>,
    pii: Arc<PiiScan>,
    completion_tokens: Option<u32>,
    /// `prompt_tokens` filled in (observed, else the host estimate).
    request: PolicyRequest,
}

/// A record placed in time, ready for the policies.
struct Ready {
    line: u64,
    ts: i64,
    day: i64,
    /// The messages' PII, for the policies' `pii.detect` calls.
    pii: Arc<PiiScan>,
    completion_tokens: Option<u32>,
    request: PolicyRequest,
}

impl Ready {
    /// Whether any message holds PII.
    fn has_pii(&self) -> bool {
        self.pii.iter().any(|(_, found)| !found.is_empty())
    }

    fn ctx<'a>(&self, opts: &'a ReplayOptions) -> RecordCtx<'a> {
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

fn prepare(rec: WorkloadRecord) -> Prepared {
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
        },
    }
}

fn has_pii(messages: &[crate::domain::ChatMessage]) -> bool {
    messages
        .iter()
        .any(|m| !policy_sdk::pii::detect(&m.content).is_empty())
}

impl PolicyRun {
    fn new(policy: LoadedPolicy, opts: &ReplayOptions, first_day: i64) -> Self {
        let host = Arc::new(SimHost::new(
            opts.backends.clone(),
            opts.outages.clone(),
            opts.budgets.clone(),
            first_day,
        ));
        let dyn_host: Arc<dyn HostState> = host.clone();
        Self {
            policy,
            host,
            dyn_host,
            requests: 0,
            routed: 0,
            rejected: BTreeMap::new(),
            unserved: 0,
            capped: 0,
            failovers: 0,
            failures: BTreeMap::new(),
            targets: BTreeMap::new(),
            daily: BTreeMap::new(),
            local_served: 0,
            pii_to_cloud: 0,
            tenants: BTreeMap::new(),
            decision_ns: 0,
        }
    }

    /// Decides and accounts one request; returns (comparison key, display) of the decision.
    fn step(&mut self, ready: &Ready, opts: &ReplayOptions) -> (String, String) {
        let (req, ctx) = (&ready.request, &ready.ctx(opts));
        self.host.set_now(ready.ts);
        self.host.set_pii(ready.pii.clone());
        let eval = self.policy.decide_blocking(req, self.dyn_host.clone());
        self.decision_ns += eval.elapsed.as_nanos();
        if let Some(f) = &eval.failure {
            *self.failures.entry(f.kind.as_str()).or_default() += 1;
        }
        self.requests += 1;
        let tenant = self.tenants.entry(req.tenant.clone()).or_default();
        tenant.requests += 1;
        let decision = match eval.verdict {
            Verdict::Reject(r) => {
                *self.rejected.entry(r.status).or_default() += 1;
                let key = format!("reject {}", r.status);
                let shown = format!("{key}: {}", r.message);
                return (key, shown);
            }
            Verdict::Route(d) => d,
        };
        let first = decision.targets.first();
        let key = first.map_or_else(String::new, |t| match &t.model {
            Some(m) => format!("{}/{m}", t.backend),
            None => t.backend.clone(),
        });
        let shown = if eval.failure.is_some() {
            format!("{key} (policy failed; fallback)")
        } else {
            format!("{key} ({})", decision.reason)
        };
        let served = decision.targets.iter().enumerate().find_map(|(i, t)| {
            let b = ctx.backends.iter().find(|b| b.name == t.backend)?;
            (!self.host.is_down(&b.name, ctx.day)).then_some((i, t, b))
        });
        let Some((index, target, backend)) = served else {
            self.unserved += 1;
            return (key, shown);
        };
        if index > 0 {
            self.failovers += 1;
        }
        let model = target
            .model
            .clone()
            .or_else(|| backend.models.first().cloned())
            .unwrap_or_default();
        let price = price_of(backend, target.model.as_deref()).unwrap_or(Price {
            usd_per_mtok_in: backend.usd_per_mtok_in,
            usd_per_mtok_out: backend.usd_per_mtok_out,
        });
        let input = u64::from(ctx.prompt_tokens);
        let output = output_tokens(ctx, decision.max_tokens.or(req.max_tokens));
        let cost = price.cost(input, output);
        if let Some(cap) = self.host.budget(&req.tenant).hard_cap_usd
            && self.host.spend(&req.tenant).month_usd + cost > cap
        {
            self.capped += 1;
            tenant.capped += 1;
            return (key, shown);
        }
        if cost > 0.0 {
            let budget = self.host.budget(&req.tenant);
            let spent = self.host.spend(&req.tenant);
            let exhausted = |spent: f64, limit: Option<f64>| limit.is_some_and(|l| spent >= l);
            if exhausted(spent.today_usd, budget.daily_usd)
                || exhausted(spent.month_usd, budget.monthly_usd)
            {
                tenant.charged_over_budget += 1;
            }
        }
        self.host.charge(&req.tenant, cost);
        tenant.cost += cost;
        self.routed += 1;
        let label = format!("{}/{model}", backend.name);
        let stats = self
            .targets
            .entry(label.clone())
            .or_insert_with(|| TargetStats {
                target: label.clone(),
                kind: Some(backend.kind),
                ..TargetStats::default()
            });
        stats.requests += 1;
        stats.input_tokens += input;
        stats.output_tokens += output;
        stats.cost_usd += cost;
        let day = self.daily.entry(ctx.day).or_default();
        match day.get_mut(&label) {
            Some(c) => *c += cost,
            None => {
                day.insert(label, cost);
            }
        }
        match backend.kind {
            BackendKind::Local => self.local_served += 1,
            BackendKind::Cloud => {
                let sent_pii = match &decision.messages {
                    Some(rewritten) => has_pii(rewritten),
                    None => ctx.has_pii,
                };
                if sent_pii {
                    self.pii_to_cloud += 1;
                }
            }
        }
        (key, shown)
    }

    fn report(self, workload: &WorkloadSummary, hardware: &HardwareProfile) -> PolicyReport {
        let days = workload.days.max(1) as f64;
        let cost_usd: f64 = self.targets.values().map(|t| t.cost_usd).sum();
        let projection = cost_usd / days * report::PROJECTION_DAYS;
        let tenants = self
            .tenants
            .into_iter()
            .map(|(name, acc)| {
                let budget = self.host.budget(&name);
                let (peak_day, peak_month) = self.host.peaks(&name);
                let within = |peak: f64, limit: Option<f64>| limit.is_none_or(|l| peak <= l + 1e-9);
                TenantReport {
                    within_budget: within(peak_day, budget.daily_usd)
                        && within(peak_month, budget.monthly_usd)
                        && within(peak_month, budget.hard_cap_usd),
                    tenant: name,
                    requests: acc.requests,
                    cost_usd: acc.cost,
                    peak_day_usd: peak_day,
                    peak_month_usd: peak_month,
                    daily_budget_usd: budget.daily_usd,
                    monthly_budget_usd: budget.monthly_usd,
                    hard_cap_usd: budget.hard_cap_usd,
                    capped: acc.capped,
                    charged_over_budget: acc.charged_over_budget,
                    overshoot_usd: [
                        budget.daily_usd.map(|l| peak_day - l),
                        budget.monthly_usd.map(|l| peak_month - l),
                    ]
                    .into_iter()
                    .flatten()
                    .fold(0.0, f64::max),
                }
            })
            .collect();
        let daily = self
            .daily
            .into_iter()
            .map(|(day, by_target)| DayCost {
                date: time::date_string(day),
                total_usd: by_target.values().sum(),
                by_target,
            })
            .collect();
        let info = self.policy.info();
        let share = |n: u64| {
            if self.requests == 0 {
                0.0
            } else {
                n as f64 / self.requests as f64
            }
        };
        PolicyReport {
            policy: format!("{}@{}", self.policy.name(), self.policy.short_digest()),
            info: format!("{} {}: {}", info.name, info.version, info.description),
            requests: self.requests,
            routed: self.routed,
            targets: self.targets.into_values().collect(),
            local_share: share(self.local_served),
            rejected: self.rejected.values().sum(),
            rejected_by_status: self.rejected,
            unserved: self.unserved,
            capped: self.capped,
            policy_failures: self
                .failures
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            failovers: self.failovers,
            cost_usd,
            projection_30d_usd: projection,
            projection_30d_with_hardware_usd: (self.local_served > 0)
                .then(|| projection + hardware.monthly_usd()),
            pii_requests: workload.pii_requests,
            pii_to_cloud: self.pii_to_cloud,
            tenants,
            daily,
            mean_decision_us: if self.requests == 0 {
                0.0
            } else {
                self.decision_ns as f64 / self.requests as f64 / 1000.0
            },
        }
    }
}

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
    if policies.len() > 2 {
        return Err(ReplayError::PolicyCount(policies.len()));
    }
    if !(opts.output_ratio.is_finite() && opts.output_ratio >= 0.0) {
        return Err(ReplayError::OutputRatio(opts.output_ratio));
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
    let hardware = opts
        .hardware
        .clone()
        .unwrap_or_else(HardwareProfile::rtx4090);
    let start_day = synthetic::start_day();
    let mut runs: Vec<PolicyRun> = policies
        .iter()
        .map(|p| PolicyRun::new(p.clone(), opts, start_day))
        .collect();
    let mut w = WorkloadSummary {
        source: opts.source.clone(),
        ..WorkloadSummary::default()
    };
    let mut tenants = BTreeSet::new();
    let mut last_ts: Option<i64> = None;
    let (mut min_day, mut max_day) = (i64::MAX, i64::MIN);
    let mut diff = Differences::default();
    let mut run_b = if runs.len() == 2 { runs.pop() } else { None };
    let host_b = run_b.as_ref().map(|r| r.host.clone());
    let started = Instant::now();
    // A producer thread reads or generates records and does the per-record work that
    // needs no replay state (JSON parsing, token estimates, PII detection); this thread
    // decides and accounts in order.
    let consumed = std::thread::scope(|scope| -> Result<(), ReplayError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<Prepared, LineError>>>(8);
        let records = records.into_iter();
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
        // With two policies, B decides on its own thread, batch by batch in lockstep with A
        // (each has its own simulated host, so neither waits on the other's state).
        let (b_tx, b_rx) = std::sync::mpsc::sync_channel::<Arc<Vec<Ready>>>(2);
        let (r_tx, r_rx) = std::sync::mpsc::sync_channel::<Vec<(String, String)>>(2);
        let worker = run_b.take().map(|mut run| {
            scope.spawn(move || {
                for batch in b_rx {
                    let keys: Vec<(String, String)> =
                        batch.iter().map(|r| run.step(r, opts)).collect();
                    if r_tx.send(keys).is_err() {
                        break;
                    }
                }
                run
            })
        });
        let mut pending: Vec<Ready> = Vec::with_capacity(BATCH);
        for batch in rx {
            for item in batch {
                let prepared = match item {
                    Ok(p) => p,
                    Err(e) if opts.skip_bad => {
                        w.skipped_lines += 1;
                        if w.skipped_examples.len() < SKIP_EXAMPLES {
                            w.skipped_examples.push(e.to_string());
                        }
                        continue;
                    }
                    Err(e) => return Err(ReplayError::BadLine(e)),
                };
                let ts = prepared
                    .timestamp_ms
                    .or(last_ts)
                    .unwrap_or(start_day * time::DAY_MS);
                if last_ts.is_none() {
                    for host in runs.iter().map(|r| &r.host).chain(host_b.iter()) {
                        host.set_first_day(time::day_of(ts));
                    }
                }
                last_ts = Some(ts);
                let day = time::day_of(ts);
                min_day = min_day.min(day);
                max_day = max_day.max(day);
                let ready = Ready {
                    line: prepared.line,
                    ts,
                    day,
                    pii: prepared.pii,
                    completion_tokens: prepared.completion_tokens,
                    request: prepared.request,
                };
                let req = &ready.request;
                w.requests += 1;
                w.input_tokens += u64::from(req.prompt_tokens);
                w.output_tokens += output_tokens(&ready.ctx(opts), req.max_tokens);
                w.pii_requests += u64::from(ready.has_pii());
                if let Some(task) = prepared.task {
                    *w.tasks.entry(task.to_owned()).or_default() += 1;
                }
                if !tenants.contains(&req.tenant) {
                    tenants.insert(req.tenant.clone());
                }
                pending.push(ready);
            }
            if pending.is_empty() {
                continue;
            }
            let ready = Arc::new(std::mem::replace(&mut pending, Vec::with_capacity(BATCH)));
            if worker.is_some() && b_tx.send(ready.clone()).is_err() {
                return Err(ReplayError::Worker);
            }
            let Some(run_a) = runs.first_mut() else {
                continue;
            };
            let keys_a: Vec<(String, String)> = ready.iter().map(|r| run_a.step(r, opts)).collect();
            if worker.is_none() {
                continue;
            }
            let keys_b = r_rx.recv().map_err(|_| ReplayError::Worker)?;
            for ((r, (ka, sa)), (kb, sb)) in ready.iter().zip(keys_a).zip(keys_b) {
                if ka == kb {
                    continue;
                }
                diff.count += 1;
                if diff.sample.len() < opts.diff_samples {
                    diff.sample.push(DiffSample {
                        line: r.line,
                        id: r.request.id.clone(),
                        tenant: r.request.tenant.clone(),
                        a: sa,
                        b: sb,
                    });
                }
            }
        }
        drop(b_tx);
        if let Some(handle) = worker {
            runs.push(handle.join().map_err(|_| ReplayError::Worker)?);
        }
        Ok(())
    });
    consumed?;
    let elapsed = started.elapsed().as_secs_f64();
    if w.requests == 0 {
        return Err(ReplayError::Empty);
    }
    w.days = u64::try_from(max_day - min_day + 1).unwrap_or(1).max(1);
    w.first_date = time::date_string(min_day);
    w.last_date = time::date_string(max_day);
    w.requests_per_day = w.requests as f64 / w.days as f64;
    w.mean_input_tokens = w.input_tokens as f64 / w.requests as f64;
    w.mean_output_tokens = w.output_tokens as f64 / w.requests as f64;
    w.tenants = u64::try_from(tenants.len()).unwrap_or(u64::MAX);
    let sandbox_ns: u128 = runs.iter().map(|r| r.decision_ns).sum();
    let decisions = w.requests as f64 * runs.len() as f64;
    let throughput = Throughput {
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
    };
    let two = runs.len() == 2;
    let policies: Vec<PolicyReport> = runs.into_iter().map(|r| r.report(&w, &hardware)).collect();
    let baselines = baselines(opts, &w, &hardware);
    let break_even = Some(break_even(&w, &hardware, &baselines));
    if two {
        diff.share = diff.count as f64 / w.requests as f64;
    }
    Ok(Report {
        output_ratio: opts.output_ratio,
        outages: opts.outages.clone(),
        policies,
        baselines,
        break_even,
        differences: two.then_some(diff),
        throughput,
        workload: w,
    })
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
