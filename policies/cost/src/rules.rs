//! The budget stage: reads the tenant's spend against its daily/monthly budgets (host
//! `spend` import), puts it in a tier and orders backends for that tier. Self-contained
//! (only `policy_sdk`), so the `hybrid` policy compiles it in as well.

use policy_sdk::{
    BackendStatus, Decision, Host, LogLevel, Rejection, Request, SpendStatus, select,
};

/// How much of its budget a tenant has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// No budget configured.
    None,
    /// Under the soft threshold.
    Ok,
    /// Past the soft threshold, under the budget.
    Soft,
    /// At or past the budget.
    Exhausted,
}

impl Tier {
    /// `none`, `ok`, `soft` or `exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::None => "none",
            Tier::Ok => "ok",
            Tier::Soft => "soft",
            Tier::Exhausted => "exhausted",
        }
    }
}

/// Where requests go past the soft threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftMode {
    /// Cloud cheapest first, then local.
    CheapCloud,
    /// Local first, then cloud cheapest first.
    LocalFirst,
}

/// The stage's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Fraction of the budget where spending gets careful (`soft_threshold`, 0.8).
    pub soft_threshold: f64,
    /// Order past the soft threshold (`soft_mode`: `cheap-cloud` or `local-first`).
    pub soft_mode: SoftMode,
    /// Completion-token cap past the soft threshold (`soft_max_tokens`, 512; 0: none).
    pub soft_max_tokens: u32,
    /// Spend scope (`scope`; default: the request's tenant).
    pub scope: Option<String>,
    /// Completion tokens assumed for a request without `max_tokens` when checking that a
    /// cloud call fits the budget left (`expected_completion_tokens`, 512).
    pub expected_completion_tokens: u32,
}

impl Config {
    /// Reads the parameters (see the fields).
    pub fn from_host(host: &dyn Host) -> Self {
        let soft_mode = match host.param_or("soft_mode", "cheap-cloud").as_str() {
            "local-first" => SoftMode::LocalFirst,
            "cheap-cloud" => SoftMode::CheapCloud,
            other => {
                host.log(
                    LogLevel::Warn,
                    "unknown soft_mode, using cheap-cloud",
                    &[("soft_mode", other)],
                );
                SoftMode::CheapCloud
            }
        };
        Self {
            soft_threshold: host.param_f64("soft_threshold", 0.8),
            soft_mode,
            soft_max_tokens: host.param_u32("soft_max_tokens", 512),
            scope: host.param("scope").filter(|s| !s.trim().is_empty()),
            expected_completion_tokens: host.param_u32("expected_completion_tokens", 512),
        }
    }
}

/// A tenant's budget position.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub tier: Tier,
    /// The larger of the daily and monthly fractions spent.
    pub fraction: Option<f64>,
    pub spend: SpendStatus,
}

impl Budget {
    /// The fraction as a whole percentage (floored), when a budget is set.
    pub fn percent(&self) -> Option<u32> {
        // The epsilon keeps 0.95 (stored as 0.94999...) at 95; `as` saturates: huge
        // fractions become u32::MAX, NaN becomes 0.
        self.fraction.map(|f| (f * 100.0 + 1e-9).floor() as u32)
    }

    /// `budget:none`, or `budget:<tier>:<pct>pct`, e.g. `budget:soft:85pct`.
    pub fn reason(&self) -> String {
        match self.percent() {
            Some(pct) => format!("budget:{}:{pct}pct", self.tier.as_str()),
            None => "budget:none".to_owned(),
        }
    }
}

/// Reads the spend for the request's scope and places it in a tier; a 429 rejection
/// when the monthly hard cap is reached.
pub fn assess(host: &dyn Host, request: &Request, cfg: &Config) -> Result<Budget, Rejection> {
    let scope = cfg.scope.as_deref().unwrap_or(&request.tenant);
    let spend = host.spend(scope);
    if spend.over_hard_cap() {
        return Err(Rejection::new(
            429,
            format!(
                "budget: {scope} reached its monthly hard cap (${:.2} of ${:.2})",
                spend.month_usd,
                spend.hard_cap_usd.unwrap_or_default()
            ),
        ));
    }
    let fraction = spend.budget_fraction();
    let tier = match fraction {
        None => Tier::None,
        Some(f) if f >= 1.0 => Tier::Exhausted,
        Some(f) if f >= cfg.soft_threshold => Tier::Soft,
        Some(_) => Tier::Ok,
    };
    Ok(Budget {
        tier,
        fraction,
        spend,
    })
}

/// Whether sending `request` to `backend` fits what is left of the budgets: its estimated
/// cost (prompt plus `max_tokens`, else the expected completion) is at most the smallest
/// remainder of the daily budget, monthly budget and hard cap. Always true without budgets.
pub fn affordable(
    backend: &BackendStatus,
    request: &Request,
    spend: &SpendStatus,
    cfg: &Config,
) -> bool {
    let completion = request.max_tokens.unwrap_or(cfg.expected_completion_tokens);
    let cost = backend.cost_usd(request.prompt_tokens, completion);
    spend.remaining_usd().is_none_or(|left| cost <= left)
}

/// The backends for `budget`'s tier, before dropping those that cannot hold the prompt:
/// none/ok → cloud in config order, then local; soft → per `soft_mode`; exhausted →
/// local only. A cloud backend whose cost for this request would overrun the budget is
/// left out, so a tenant stays within budget rather than crossing it by one request.
pub fn order<'a>(
    backends: &'a [BackendStatus],
    request: &Request,
    budget: &Budget,
    cfg: &Config,
) -> Vec<&'a BackendStatus> {
    let tier = budget.tier;
    let (local, mut cloud): (Vec<&BackendStatus>, Vec<&BackendStatus>) =
        backends.iter().partition(|b| b.is_local());
    cloud.retain(|b| affordable(b, request, &budget.spend, cfg));
    match tier {
        Tier::None | Tier::Ok => [cloud, local].concat(),
        Tier::Soft => {
            select::sort_by_price(&mut cloud);
            match cfg.soft_mode {
                SoftMode::CheapCloud => [cloud, local].concat(),
                SoftMode::LocalFirst => [local, cloud].concat(),
            }
        }
        Tier::Exhausted => local,
    }
}

/// The rejection when a tenant past its budget has no local backend to fall back on.
pub fn exhausted(budget: &Budget) -> Rejection {
    Rejection::new(
        429,
        format!(
            "budget: {} spent its budget ({}) and no healthy local backend can take the request",
            budget.spend.scope,
            budget.reason()
        ),
    )
}

/// Adds the budget labels to `d`.
pub fn labelled(d: Decision, budget: &Budget) -> Decision {
    let d = d.label("budget-tier", budget.tier.as_str());
    match budget.percent() {
        Some(pct) => d.label("budget-pct", pct.to_string()),
        None => d,
    }
}
