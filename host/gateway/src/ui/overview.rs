//! `GET /admin/overview`: the dashboard's snapshot of every backend (health, breaker,
//! latency, errors, in-flight, queue) and every tenant's spend against its budgets, with
//! the month-end projection.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::UiState;
use crate::backends::instrumented::{BreakerState, Instrumented};
use crate::domain::BackendStatus;
use crate::ledger::{Budget, Ledger, TenantSpend};
use crate::time::{DAY_MS, civil_from_days, day_of, days_from_civil, now_ms};

#[derive(Debug, Serialize)]
struct Overview {
    now_ms: i64,
    backends: Vec<BackendView>,
    tenants: Vec<TenantView>,
    /// Why spend could not be read (the page says so instead of showing zeros).
    spend_error: Option<String>,
    policies: bool,
    watchers: usize,
}

#[derive(Debug, Serialize)]
struct BackendView {
    #[serde(flatten)]
    status: BackendStatus,
    /// `closed`, `open` or `half-open`.
    breaker: &'static str,
    latency_ewma_ms: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize)]
struct TenantView {
    tenant: String,
    today_usd: f64,
    month_usd: f64,
    total_usd: f64,
    attempts: u64,
    open_reservations: u64,
    daily_budget_usd: Option<f64>,
    monthly_budget_usd: Option<f64>,
    hard_cap_usd: Option<f64>,
    /// This month's spend extended linearly to the month's end.
    projected_month_usd: f64,
    /// The worst budget state, in words.
    state: &'static str,
}

pub(super) async fn handler(State(state): State<Arc<UiState>>) -> Response {
    let backends = state.dispatcher.backends().map(|b| backend(b)).collect();
    let ledger = state.ledger.clone();
    let names = state.tenants.clone();
    let (tenants, spend_error) =
        match tokio::task::spawn_blocking(move || spend(&ledger, &names)).await {
            Ok(Ok(rows)) => (rows, None),
            Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
            Err(_) => (Vec::new(), Some("reading the ledger failed".to_owned())),
        };
    let body = Overview {
        now_ms: now_ms(),
        backends,
        tenants,
        spend_error,
        policies: state.policies,
        watchers: state.live.watchers(),
    };
    (StatusCode::OK, Json(body)).into_response()
}

fn backend(b: &Instrumented) -> BackendView {
    BackendView {
        status: b.status(),
        breaker: match b.breaker() {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        },
        latency_ewma_ms: b.latency_ewma_ms(),
    }
}

/// Every tenant in the ledger, and every configured one (`names`) that has spent nothing.
fn spend(ledger: &Ledger, names: &[String]) -> Result<Vec<TenantView>, crate::ledger::LedgerError> {
    let mut rows = ledger.tenants()?;
    for name in names {
        if !rows.iter().any(|r| &r.tenant == name) {
            rows.push(TenantSpend {
                tenant: name.clone(),
                today_usd: 0.0,
                month_usd: 0.0,
                total_usd: 0.0,
                settled_attempts: 0,
                open_reservations: 0,
            });
        }
    }
    rows.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let now = now_ms();
    Ok(rows
        .into_iter()
        .map(|r| {
            let budget = ledger.budget(&r.tenant);
            tenant_view(r, budget, now)
        })
        .collect())
}

fn tenant_view(r: TenantSpend, budget: Budget, now_ms: i64) -> TenantView {
    TenantView {
        projected_month_usd: projection(r.month_usd, now_ms),
        state: budget_state(&r, &budget),
        tenant: r.tenant,
        today_usd: r.today_usd,
        month_usd: r.month_usd,
        total_usd: r.total_usd,
        attempts: r.settled_attempts,
        open_reservations: r.open_reservations,
        daily_budget_usd: budget.daily_usd,
        monthly_budget_usd: budget.monthly_usd,
        hard_cap_usd: budget.hard_cap_usd,
    }
}

/// `month_usd` spent so far this month (UTC) extended linearly to its last day; the
/// elapsed part counts as at least one day, so a month's first hours do not project wild
/// figures.
fn projection(month_usd: f64, now_ms: i64) -> f64 {
    let (y, m, _) = civil_from_days(day_of(now_ms));
    let start = days_from_civil(y, m, 1);
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    let elapsed_days = (now_ms - start * DAY_MS) as f64 / DAY_MS as f64;
    month_usd / elapsed_days.max(1.0) * (next - start) as f64
}

/// The worst budget state of a tenant, in words (the page shows it as text).
fn budget_state(r: &TenantSpend, b: &Budget) -> &'static str {
    let past = |spent: f64, limit: Option<f64>| limit.is_some_and(|l| spent >= l);
    if past(r.month_usd, b.hard_cap_usd) {
        "at hard cap"
    } else if past(r.month_usd, b.monthly_usd) {
        "over monthly budget"
    } else if past(r.today_usd, b.daily_usd) {
        "over daily budget"
    } else if b.daily_usd.is_none() && b.monthly_usd.is_none() && b.hard_cap_usd.is_none() {
        "no budget"
    } else {
        "within budget"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, hour: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + hour * 3_600_000
    }

    #[test]
    fn projection_extends_the_month_linearly() {
        // 10 days into a 30-day month: three times what was spent.
        let p = projection(5.0, at(2026, 4, 11, 0));
        assert!((p - 15.0).abs() < 1e-9, "{p}");
        // December rolls over into the next year (31 days).
        let p = projection(1.0, at(2026, 12, 2, 0));
        assert!((p - 31.0).abs() < 1e-9, "{p}");
        // The first hours count as a whole day.
        let p = projection(2.0, at(2026, 2, 1, 3));
        assert!((p - 56.0).abs() < 1e-9, "{p}");
    }

    #[test]
    fn budget_state_names_the_worst_limit_passed() {
        let spend = |today: f64, month: f64| TenantSpend {
            tenant: "t".into(),
            today_usd: today,
            month_usd: month,
            total_usd: month,
            settled_attempts: 1,
            open_reservations: 0,
        };
        let budget = Budget {
            daily_usd: Some(1.0),
            monthly_usd: Some(10.0),
            hard_cap_usd: Some(20.0),
        };
        assert_eq!(budget_state(&spend(0.5, 5.0), &budget), "within budget");
        assert_eq!(budget_state(&spend(1.5, 5.0), &budget), "over daily budget");
        assert_eq!(
            budget_state(&spend(1.5, 12.0), &budget),
            "over monthly budget"
        );
        assert_eq!(budget_state(&spend(1.5, 20.0), &budget), "at hard cap");
        assert_eq!(
            budget_state(&spend(9.0, 9.0), &Budget::default()),
            "no budget"
        );
    }
}
