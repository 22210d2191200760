//! Stage 3, one policy's simulation: each record decided in the real sandbox against the
//! policy's own [`SimHost`], served, priced and charged, and the totals turned into its
//! [`PolicyReport`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ReplayOptions;
use super::decisions::DecisionRow;
use super::intake::{Ready, output_tokens};
use super::quality::QualityAcc;
use super::report::{
    self, DayCost, HardwareProfile, PolicyReport, Price, TargetStats, TenantReport,
    WorkloadSummary, price_of,
};
use super::sim::SimHost;
use crate::domain::{BackendKind, Verdict};
use crate::policy::{HostState, LoadedPolicy};
use crate::time;

/// One tenant's totals under one policy.
#[derive(Debug, Default)]
struct TenantAcc {
    requests: u64,
    cost: f64,
    capped: u64,
    charged_over_budget: u64,
}

/// One policy replaying the workload: its sandbox, its simulated host and its totals.
pub(super) struct PolicyRun {
    policy: LoadedPolicy,
    /// `name@digest`, as reports and decision rows name the policy.
    label: String,
    pub(super) host: Arc<SimHost>,
    dyn_host: Arc<dyn HostState>,
    requests: u64,
    routed: u64,
    rejected: BTreeMap<u16, u64>,
    unserved: u64,
    capped: u64,
    failovers: u64,
    failures: BTreeMap<&'static str, u64>,
    targets: BTreeMap<String, TargetStats>,
    daily: BTreeMap<i64, DayAcc>,
    local_served: u64,
    pii_to_cloud: u64,
    tenants: BTreeMap<String, TenantAcc>,
    pub(super) decision_ns: u128,
    quality: QualityAcc,
}

/// One request decided by one policy: the comparison key and display of its decision
/// (for `--compare`), and its `--decisions` row when the replay writes them.
pub(super) struct Decided {
    pub(super) key: String,
    pub(super) shown: String,
    pub(super) row: Option<DecisionRow>,
}

/// One replayed day of one policy.
#[derive(Debug, Default)]
struct DayAcc {
    /// Cost per served target.
    by_target: BTreeMap<String, f64>,
    requests: u64,
    /// Served by a local backend.
    local: u64,
}

/// Whether any of `messages` holds PII per the host detector.
fn has_pii(messages: &[crate::domain::ChatMessage]) -> bool {
    messages
        .iter()
        .any(|m| !policy_sdk::pii::detect(&m.content).is_empty())
}

impl PolicyRun {
    /// A run with nothing replayed yet; its host starts at `first_day`.
    pub(super) fn new(policy: LoadedPolicy, opts: &ReplayOptions, first_day: i64) -> Self {
        let host = Arc::new(
            SimHost::new(
                opts.backends.clone(),
                opts.outages.clone(),
                opts.budgets.clone(),
                first_day,
            )
            .with_scorer(opts.scorer.clone()),
        );
        let dyn_host: Arc<dyn HostState> = host.clone();
        Self {
            label: format!("{}@{}", policy.name(), policy.short_digest()),
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
            quality: QualityAcc::default(),
        }
    }

    /// Decides and accounts one request: the decision's comparison key and display, and
    /// its `--decisions` row when the replay writes them.
    pub(super) fn step(&mut self, ready: &Ready, opts: &ReplayOptions) -> Decided {
        let (req, ctx) = (&ready.request, &ready.ctx(opts));
        let label = opts.labels.as_deref().and_then(|l| l.get(&req.id));
        let served_by = |quality: &mut QualityAcc, backend: Option<&str>| {
            if let Some(label) = label {
                quality.record(label, backend);
            }
        };
        self.host.set_now(ready.ts);
        self.host.set_pii(ready.pii.clone());
        let eval = self.policy.decide_blocking(req, self.dyn_host.clone());
        self.decision_ns += eval.elapsed.as_nanos();
        if let Some(f) = &eval.failure {
            *self.failures.entry(f.kind.as_str()).or_default() += 1;
        }
        self.requests += 1;
        self.daily.entry(ctx.day).or_default().requests += 1;
        let tenant = self.tenants.entry(req.tenant.clone()).or_default();
        tenant.requests += 1;
        let mut row = opts.decisions.is_some().then(|| DecisionRow {
            line: ready.line,
            id: req.id.clone(),
            tenant: req.tenant.clone(),
            timestamp: time::rfc3339(ready.ts),
            policy: self.label.clone(),
            outcome: "route",
            targets: Vec::new(),
            reason: String::new(),
            fallback: eval.failure.is_some(),
            failure: eval.failure.as_ref().map(|f| f.kind.as_str()),
            status: None,
            served_by: None,
            failover: false,
            capped: false,
            cost_usd: 0.0,
        });
        let decision = match eval.verdict {
            Verdict::Reject(r) => {
                served_by(&mut self.quality, None);
                *self.rejected.entry(r.status).or_default() += 1;
                let key = format!("reject {}", r.status);
                let shown = format!("{key}: {}", r.message);
                if let Some(row) = &mut row {
                    row.outcome = "reject";
                    row.status = Some(r.status);
                    row.reason = r.message;
                }
                return Decided { key, shown, row };
            }
            Verdict::Route(d) => d,
        };
        let target_name = |t: &crate::domain::Target| match &t.model {
            Some(m) => format!("{}/{m}", t.backend),
            None => t.backend.clone(),
        };
        let key = decision
            .targets
            .first()
            .map_or_else(String::new, target_name);
        let shown = if eval.failure.is_some() {
            format!("{key} (policy failed; fallback)")
        } else {
            format!("{key} ({})", decision.reason)
        };
        if let Some(row) = &mut row {
            row.targets = decision.targets.iter().map(target_name).collect();
            row.reason.clone_from(&decision.reason);
        }
        let served = decision.targets.iter().enumerate().find_map(|(i, t)| {
            let b = ctx.backends.iter().find(|b| b.name == t.backend)?;
            (!self.host.is_down(&b.name, ctx.day)).then_some((i, t, b))
        });
        let Some((index, target, backend)) = served else {
            served_by(&mut self.quality, None);
            self.unserved += 1;
            return Decided { key, shown, row };
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
            served_by(&mut self.quality, None);
            if let Some(row) = &mut row {
                row.capped = true;
            }
            return Decided { key, shown, row };
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
        served_by(&mut self.quality, Some(&backend.name));
        self.routed += 1;
        let label = format!("{}/{model}", backend.name);
        if let Some(row) = &mut row {
            row.served_by = Some(label.clone());
            row.failover = index > 0;
            row.cost_usd = cost;
        }
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
        match day.by_target.get_mut(&label) {
            Some(c) => *c += cost,
            None => {
                day.by_target.insert(label, cost);
            }
        }
        match backend.kind {
            BackendKind::Local => {
                self.local_served += 1;
                day.local += 1;
            }
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
        Decided { key, shown, row }
    }

    /// The policy's report over the whole workload.
    pub(super) fn report(
        self,
        workload: &WorkloadSummary,
        hardware: &HardwareProfile,
    ) -> PolicyReport {
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
            .map(|(day, acc)| DayCost {
                date: time::date_string(day),
                total_usd: acc.by_target.values().sum(),
                by_target: acc.by_target,
                requests: acc.requests,
                local_requests: acc.local,
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
            policy: self.label,
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
            quality: self.quality.report(),
            mean_decision_us: if self.requests == 0 {
                0.0
            } else {
                self.decision_ns as f64 / self.requests as f64 / 1000.0
            },
        }
    }
}
