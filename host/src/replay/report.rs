//! The replay report: per-policy outcomes (targets, local share, rejections, cost and its
//! 30-day projection, PII sent to cloud, tenant budgets), baselines (everything to each
//! cloud model; everything local), break-even against a local hardware profile, and the
//! decisions two policies disagree on; rendered as an aligned terminal table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::domain::{BackendKind, BackendStatus};

pub use crate::hardware::{HardwareProfile, PROJECTION_DAYS};

/// Price of one model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub usd_per_mtok_in: f64,
    pub usd_per_mtok_out: f64,
}

impl Price {
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.usd_per_mtok_in + output as f64 * self.usd_per_mtok_out) / 1e6
    }
}

/// Price of `model` on `backend`: local is free; the backend's default model has the
/// backend's (configured) price; other models the price table's; unknown: `None`.
pub fn price_of(backend: &BackendStatus, model: Option<&str>) -> Option<Price> {
    if backend.kind == BackendKind::Local {
        return Some(Price {
            usd_per_mtok_in: 0.0,
            usd_per_mtok_out: 0.0,
        });
    }
    let default = backend.models.first().map(String::as_str);
    let model = model.or(default);
    if model == default {
        return Some(Price {
            usd_per_mtok_in: backend.usd_per_mtok_in,
            usd_per_mtok_out: backend.usd_per_mtok_out,
        });
    }
    let (i, o, _) = crate::config::defaults::model_card(model?)?;
    Some(Price {
        usd_per_mtok_in: i,
        usd_per_mtok_out: o,
    })
}

/// The workload as replayed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkloadSummary {
    pub source: String,
    pub requests: u64,
    pub skipped_lines: u64,
    /// First few skipped lines' errors.
    pub skipped_examples: Vec<String>,
    pub first_date: String,
    pub last_date: String,
    pub days: u64,
    pub requests_per_day: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
    pub pii_requests: u64,
    pub tenants: u64,
    /// Requests per synthetic task type (synthetic workloads only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, u64>,
}

/// Requests one target served.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStats {
    /// `backend/model`.
    pub target: String,
    pub kind: Option<BackendKind>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// One tenant's spend against its budgets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub requests: u64,
    pub cost_usd: f64,
    pub peak_day_usd: f64,
    pub peak_month_usd: f64,
    pub daily_budget_usd: Option<f64>,
    pub monthly_budget_usd: Option<f64>,
    pub hard_cap_usd: Option<f64>,
    /// Requests the gateway's hard cap would have refused.
    pub capped: u64,
    /// Peak day ≤ daily budget and peak month ≤ monthly budget (where set).
    pub within_budget: bool,
    /// Paid requests served while the day's or month's budget was already used up.
    pub charged_over_budget: u64,
    /// Largest amount a day or month went past its budget (the request that crossed it
    /// included).
    pub overshoot_usd: f64,
}

impl TenantReport {
    fn budget_verdict(&self) -> String {
        if self.within_budget {
            "yes".to_owned()
        } else if self.charged_over_budget == 0 {
            format!(
                "crossed by {} (last request)",
                small_usd(self.overshoot_usd)
            )
        } else {
            format!(
                "NO: {} paid request(s) past budget, over by {}",
                group(self.charged_over_budget),
                small_usd(self.overshoot_usd)
            )
        }
    }
}

/// Cost of one UTC day, per target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DayCost {
    pub date: String,
    pub total_usd: f64,
    pub by_target: BTreeMap<String, f64>,
    /// The day's requests, and those a local backend served.
    pub requests: u64,
    pub local_requests: u64,
}

/// What one policy did to the workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyReport {
    /// `name@short_digest`.
    pub policy: String,
    pub info: String,
    pub requests: u64,
    pub routed: u64,
    pub targets: Vec<TargetStats>,
    /// Served by a local backend, over all requests.
    pub local_share: f64,
    pub rejected: u64,
    pub rejected_by_status: BTreeMap<u16, u64>,
    /// Routed, but every target was inside an outage window.
    pub unserved: u64,
    /// Refused by a tenant's hard cap.
    pub capped: u64,
    /// Guest failures (the fallback decision was used), by kind.
    pub policy_failures: BTreeMap<String, u64>,
    /// Served by a later target because the first was down.
    pub failovers: u64,
    pub cost_usd: f64,
    pub projection_30d_usd: f64,
    /// Projection plus the local hardware's month, when any request went local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_30d_with_hardware_usd: Option<f64>,
    pub pii_requests: u64,
    pub pii_to_cloud: u64,
    pub tenants: Vec<TenantReport>,
    pub daily: Vec<DayCost>,
    /// Quality over the labelled requests (`--labels`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<super::quality::QualityReport>,
    pub mean_decision_us: f64,
}

/// Everything sent to one cloud model, or everything local.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// `backend/model` or `local`.
    pub name: String,
    pub kind: BackendKind,
    pub price: Option<Price>,
    pub cost_usd: f64,
    pub projection_30d_usd: f64,
    /// Cost of one request of this workload's mean token mix.
    pub usd_per_request: f64,
}

/// Where local hardware beats one cloud baseline.
#[derive(Debug, Clone, Serialize)]
pub struct BreakEvenRow {
    pub baseline: String,
    pub usd_per_request: f64,
    /// Requests a day above which the local machine is cheaper; `None` if never.
    pub requests_per_day: Option<f64>,
    pub local_cheaper_at_this_volume: bool,
}

/// Local hardware against the cloud baselines, for this workload's token mix.
#[derive(Debug, Clone, Serialize)]
pub struct BreakEven {
    pub hardware: HardwareProfile,
    pub amortized_monthly_usd: f64,
    pub power_monthly_usd: f64,
    pub monthly_usd: f64,
    /// Requests a day the machine can generate (from `tokens_per_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_requests_per_day: Option<f64>,
    pub workload_requests_per_day: f64,
    pub rows: Vec<BreakEvenRow>,
}

/// One request the two policies decided differently.
#[derive(Debug, Clone, Serialize)]
pub struct DiffSample {
    pub line: u64,
    pub id: String,
    pub tenant: String,
    pub a: String,
    pub b: String,
}

/// Decisions policy B made differently from policy A (first target or rejection).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Differences {
    pub count: u64,
    pub share: f64,
    pub sample: Vec<DiffSample>,
}

/// How fast the replay ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    pub elapsed_s: f64,
    /// Workload requests per second (each through every policy).
    pub requests_per_s: f64,
    /// Policy decisions per second of time spent in the sandbox.
    pub sandbox_decisions_per_s: f64,
}

/// The whole replay report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub workload: WorkloadSummary,
    pub output_ratio: f64,
    pub outages: Vec<super::Outage>,
    pub policies: Vec<PolicyReport>,
    pub baselines: Vec<Baseline>,
    pub break_even: Option<BreakEven>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differences: Option<Differences>,
    pub throughput: Throughput,
}

/// Thousands separators: `12345` → `12,345`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `$1,234.56`.
pub fn usd(x: f64) -> String {
    let cents = (x * 100.0).round();
    let sign = if cents < 0.0 { "-" } else { "" };
    let cents = cents.abs() as u64;
    format!("{sign}${}.{:02}", group(cents / 100), cents % 100)
}

/// Like [`usd`], but amounts under a cent show as `<$0.01`.
fn small_usd(x: f64) -> String {
    if x > 0.0 && x < 0.005 {
        "<$0.01".to_owned()
    } else {
        usd(x)
    }
}

pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Left/right-aligned columns with a two-space gutter.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// `right[i]`: column `i` is right-aligned (numbers).
    pub fn new(header: &[&str], right: &[bool]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
            right: right.to_vec(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    pub fn render(&self, indent: &str, out: &mut String) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        for row in &self.rows {
            let mut line = String::from(indent);
            for (c, w) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                let right = self.right.get(c).copied().unwrap_or(false);
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = w.saturating_sub(cell.chars().count());
                if right {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn opt_usd(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), usd)
}

impl Report {
    /// The human-readable report.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let w = &self.workload;
        let _ = writeln!(
            out,
            "Workload: {} — {} requests over {} day(s) ({} … {}), {:.0}/day, {} tenant(s)",
            w.source,
            group(w.requests),
            w.days,
            w.first_date,
            w.last_date,
            w.requests_per_day,
            w.tenants
        );
        let _ = writeln!(
            out,
            "  tokens: {} in / {} out (mean {:.0} in / {:.0} out per request; output ratio {} where unobserved); {} request(s) carry PII",
            group(w.input_tokens),
            group(w.output_tokens),
            w.mean_input_tokens,
            w.mean_output_tokens,
            self.output_ratio,
            group(w.pii_requests)
        );
        if !w.tasks.is_empty() {
            let tasks: Vec<String> = w
                .tasks
                .iter()
                .map(|(k, v)| format!("{k} {}", group(*v)))
                .collect();
            let _ = writeln!(out, "  tasks: {}", tasks.join(", "));
        }
        if w.skipped_lines > 0 {
            let _ = writeln!(out, "  skipped {} bad line(s):", group(w.skipped_lines));
            for e in &w.skipped_examples {
                let _ = writeln!(out, "    {e}");
            }
        }
        for o in &self.outages {
            let _ = writeln!(
                out,
                "  outage: {} down on replay days {}-{}",
                o.backend, o.from_day, o.to_day
            );
        }
        for (i, p) in self.policies.iter().enumerate() {
            out.push('\n');
            self.render_policy(i, p, &mut out);
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "Baselines (same workload, every request to one place):"
        );
        let mut t = Table::new(
            &["baseline", "USD/request", "total", "30-day"],
            &[false, true, true, true],
        );
        for b in &self.baselines {
            t.row(vec![
                format!("all {}", b.name),
                format!("{:.6}", b.usd_per_request),
                usd(b.cost_usd),
                usd(b.projection_30d_usd),
            ]);
        }
        t.render("  ", &mut out);
        if let Some(be) = &self.break_even {
            out.push('\n');
            let hw = &be.hardware;
            let _ = writeln!(
                out,
                "Break-even: {} ({}${:.0} over {:.0} months, {:.0} W, ${}/kWh, {} h/day) = {}/month amortized + {}/month power = {}/month",
                hw.name,
                if hw.assumed {
                    "assumed; set --hardware: "
                } else {
                    ""
                },
                hw.price_usd,
                hw.months,
                hw.watts,
                hw.usd_per_kwh,
                hw.hours_per_day,
                usd(be.amortized_monthly_usd),
                usd(be.power_monthly_usd),
                usd(be.monthly_usd)
            );
            if let Some(cap) = be.capacity_requests_per_day {
                let _ = writeln!(
                    out,
                    "  capacity at {} tokens/s: about {} requests/day of this mix",
                    hw.tokens_per_s.unwrap_or(0.0),
                    group(cap as u64)
                );
            }
            let mut t = Table::new(
                &[
                    "vs cloud baseline",
                    "USD/request",
                    "local cheaper above",
                    "this workload",
                ],
                &[false, true, true, true],
            );
            for r in &be.rows {
                t.row(vec![
                    r.baseline.clone(),
                    format!("{:.6}", r.usd_per_request),
                    r.requests_per_day.map_or_else(
                        || "never".to_owned(),
                        |n| format!("{} req/day", group(n.ceil() as u64)),
                    ),
                    format!(
                        "{:.0} req/day{}",
                        be.workload_requests_per_day,
                        if r.local_cheaper_at_this_volume {
                            " (local cheaper)"
                        } else {
                            " (cloud cheaper)"
                        }
                    ),
                ]);
            }
            t.render("  ", &mut out);
        }
        if let Some(d) = &self.differences {
            out.push('\n');
            let _ = writeln!(
                out,
                "Differences: B decided {} of {} request(s) differently from A ({})",
                group(d.count),
                group(w.requests),
                pct(d.share)
            );
            if !d.sample.is_empty() {
                let mut t = Table::new(&["line", "id", "tenant", "A", "B"], &[true]);
                for s in &d.sample {
                    t.row(vec![
                        s.line.to_string(),
                        s.id.clone(),
                        s.tenant.clone(),
                        s.a.clone(),
                        s.b.clone(),
                    ]);
                }
                t.render("  ", &mut out);
            }
        }
        out.push('\n');
        let th = &self.throughput;
        let _ = writeln!(
            out,
            "Replayed {} request(s) in {:.2} s: {} requests/s ({} decisions/s inside the sandbox)",
            group(w.requests),
            th.elapsed_s,
            group(th.requests_per_s as u64),
            group(th.sandbox_decisions_per_s as u64)
        );
        out
    }

    fn render_policy(&self, i: usize, p: &PolicyReport, out: &mut String) {
        let letter = if i == 0 { "A" } else { "B" };
        let _ = writeln!(out, "Policy {letter}: {} — {}", p.policy, p.info);
        let mut t = Table::new(
            &[
                "target",
                "requests",
                "share",
                "input tok",
                "output tok",
                "cost",
            ],
            &[false, true, true, true, true, true],
        );
        let share = |n: u64| {
            if p.requests == 0 {
                0.0
            } else {
                n as f64 / p.requests as f64
            }
        };
        for s in &p.targets {
            t.row(vec![
                s.target.clone(),
                group(s.requests),
                pct(share(s.requests)),
                group(s.input_tokens),
                group(s.output_tokens),
                usd(s.cost_usd),
            ]);
        }
        for (status, n) in &p.rejected_by_status {
            t.row(vec![
                format!("rejected ({status})"),
                group(*n),
                pct(share(*n)),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for (label, n) in [
            ("unserved (all targets down)", p.unserved),
            ("refused by hard cap", p.capped),
        ] {
            if n > 0 {
                t.row(vec![
                    label.to_owned(),
                    group(n),
                    pct(share(n)),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        t.row(vec![
            "total".to_owned(),
            group(p.requests),
            String::new(),
            String::new(),
            String::new(),
            usd(p.cost_usd),
        ]);
        t.render("  ", out);
        let _ = writeln!(
            out,
            "  30-day projection {}{} · local share {} · PII requests to cloud: {} of {} · failovers {}",
            usd(p.projection_30d_usd),
            p.projection_30d_with_hardware_usd
                .map(|x| format!(" ({} with local hardware)", usd(x)))
                .unwrap_or_default(),
            pct(p.local_share),
            group(p.pii_to_cloud),
            group(p.pii_requests),
            group(p.failovers)
        );
        if !p.policy_failures.is_empty() {
            let f: Vec<String> = p
                .policy_failures
                .iter()
                .map(|(k, v)| format!("{k} {}", group(*v)))
                .collect();
            let _ = writeln!(out, "  policy failures (fallback used): {}", f.join(", "));
            if p.policy_failures.contains_key("deadline") {
                let _ = writeln!(
                    out,
                    "  (a busy machine also causes deadline failures: rerun with --deadline-ms 100 to tell them apart)"
                );
            }
        }
        if let Some(q) = &p.quality {
            let _ = writeln!(
                out,
                "  quality {} over {} labelled requests · {} of the best backend ({} {}) · random at the same shares {}",
                pct(q.quality),
                group(q.labelled),
                pct(q.share_of_best),
                q.best_backend,
                pct(q.best_quality),
                pct(q.random_same_shares),
            );
            if q.unlabelled_backend > 0 {
                let _ = writeln!(
                    out,
                    "  ({} labelled requests were served by a backend their label does not name: counted as 0)",
                    group(q.unlabelled_backend)
                );
            }
        }
        let _ = writeln!(out, "  mean decision time {:.1} µs", p.mean_decision_us);
        let mut t = Table::new(
            &[
                "tenant",
                "requests",
                "cost",
                "peak day",
                "daily budget",
                "peak month",
                "monthly budget",
                "within budget",
            ],
            &[false, true, true, true, true, true, true, false],
        );
        for tr in &p.tenants {
            t.row(vec![
                tr.tenant.clone(),
                group(tr.requests),
                usd(tr.cost_usd),
                usd(tr.peak_day_usd),
                opt_usd(tr.daily_budget_usd),
                usd(tr.peak_month_usd),
                opt_usd(tr.monthly_budget_usd),
                tr.budget_verdict(),
            ]);
        }
        t.render("  ", out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_grouping() {
        assert_eq!(usd(97.5), "$97.50");
        assert_eq!(usd(1234.567), "$1,234.57");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(999), "999");
    }

    #[test]
    fn hardware_profiles() {
        let hw = HardwareProfile::rtx4090();
        assert!((hw.monthly_usd() - 93.2).abs() < 1e-9);
        let hw: HardwareProfile =
            "price=1800,months=36,watts=350,usd_per_kwh=0.15,hours_per_day=24"
                .parse()
                .unwrap_or_else(|e: String| panic!("{e}"));
        assert!((hw.amortized_monthly_usd() - 50.0).abs() < 1e-9);
        assert!((hw.power_monthly_usd() - 37.8).abs() < 1e-9);
        assert!(!hw.assumed);
        assert!("price=-1".parse::<HardwareProfile>().is_err());
        assert!("volts=3".parse::<HardwareProfile>().is_err());
        assert!("hours_per_day=25".parse::<HardwareProfile>().is_err());
        assert!("months=0".parse::<HardwareProfile>().is_err());
    }

    #[test]
    fn prices_follow_backend_and_card() {
        let host = crate::policy::StaticHost::default();
        let openai = &host.backends[1];
        let p = price_of(openai, None).unwrap_or_else(|| panic!("price"));
        assert_eq!((p.usd_per_mtok_in, p.usd_per_mtok_out), (2.5, 10.0));
        let p = price_of(openai, Some("gpt-4o-mini")).unwrap_or_else(|| panic!("price"));
        assert_eq!(p.usd_per_mtok_in, 0.15);
        assert!(price_of(openai, Some("nope")).is_none());
        let local = price_of(&host.backends[0], Some("x")).unwrap_or_else(|| panic!("price"));
        assert_eq!(local.cost(1000, 1000), 0.0);
        assert!((p.cost(500, 200) - 0.000_195).abs() < 1e-12);
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["name", "n"], &[false, true]);
        t.row(vec!["a".into(), "1,000".into()]);
        t.row(vec!["longer".into(), "5".into()]);
        let mut s = String::new();
        t.render("", &mut s);
        assert_eq!(s, "name        n\na       1,000\nlonger      5\n");
    }
}
