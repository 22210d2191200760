//! The simulated host a replay runs policies against: backends from the config (or the
//! demo set) with optional outage windows, the replayed request's time as the clock, and
//! spend that accumulates per tenant, per UTC day and calendar month, as the replay goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use policy_sdk::pii::PiiMatch;

use crate::domain::{BackendKind, BackendStatus, SpendStatus};
use crate::embeddings::{NoEmbeddings, TextScorer};
use crate::ledger::Budget;
use crate::policy::HostState;
use crate::time;

/// A backend down from day `from` to day `to` (1-based days of the replay, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outage {
    pub backend: String,
    pub from_day: u32,
    pub to_day: u32,
}

impl std::str::FromStr for Outage {
    type Err = String;

    /// `BACKEND:START-END` or `BACKEND:DAY` (1-based replay days, inclusive).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected BACKEND:START_DAY-END_DAY (e.g. openai:10-12), got {s:?}");
        let (backend, days) = s.split_once(':').ok_or_else(bad)?;
        let (from, to) = days.split_once('-').unwrap_or((days, days));
        let from_day: u32 = from.trim().parse().map_err(|_| bad())?;
        let to_day: u32 = to.trim().parse().map_err(|_| bad())?;
        if backend.is_empty() || from_day == 0 || to_day < from_day {
            return Err(bad());
        }
        Ok(Self {
            backend: backend.to_owned(),
            from_day,
            to_day,
        })
    }
}

#[derive(Debug, Default)]
struct TenantSpend {
    by_day: HashMap<i64, f64>,
    by_month: HashMap<i64, f64>,
}

#[derive(Debug)]
struct State {
    /// Backends as of `day` (outages applied).
    backends: Vec<BackendStatus>,
    day: Option<i64>,
    spend: HashMap<String, TenantSpend>,
}

/// The replay's [`HostState`]. Set the clock with [`SimHost::set_now`] before each decision
/// and record what a served request cost with [`SimHost::charge`].
#[derive(Debug)]
pub struct SimHost {
    base: Vec<BackendStatus>,
    outages: Vec<Outage>,
    budgets: BTreeMap<String, Budget>,
    first_day: AtomicI64,
    now_ms: AtomicI64,
    state: Mutex<State>,
    /// The current request's messages with the PII found in each (scanned once, off the
    /// decision thread); `detect_pii` answers from it.
    pii: Mutex<Arc<PiiScan>>,
    /// What policies' `embeddings` calls reach (the config's classifiers, if any).
    scorer: Arc<dyn TextScorer>,
}

/// Message texts with the PII spans found in each.
pub type PiiScan = Vec<(String, Vec<PiiMatch>)>;

impl SimHost {
    /// `first_day` is the UTC day number outage days count from (day 1).
    pub fn new(
        backends: Vec<BackendStatus>,
        outages: Vec<Outage>,
        budgets: BTreeMap<String, Budget>,
        first_day: i64,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                backends: backends.clone(),
                day: None,
                spend: HashMap::new(),
            }),
            base: backends,
            outages,
            budgets,
            first_day: AtomicI64::new(first_day),
            now_ms: AtomicI64::new(first_day * time::DAY_MS),
            pii: Mutex::new(Arc::default()),
            scorer: Arc::new(NoEmbeddings),
        }
    }

    /// Answers policies' `embeddings` calls with `scorer`.
    pub fn with_scorer(mut self, scorer: Arc<dyn TextScorer>) -> Self {
        self.scorer = scorer;
        self
    }

    /// The PII scan of the request about to be decided.
    pub fn set_pii(&self, scan: Arc<PiiScan>) {
        *self
            .pii
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = scan;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Day 1 of the replay (UTC day number).
    pub fn set_first_day(&self, day: i64) {
        self.first_day.store(day, Ordering::Relaxed);
        self.lock().day = None;
    }

    /// 1-based replay day of a UTC day number.
    pub fn replay_day(&self, day: i64) -> i64 {
        day - self.first_day.load(Ordering::Relaxed) + 1
    }

    /// Whether `backend` is inside an outage window on UTC day `day`.
    pub fn is_down(&self, backend: &str, day: i64) -> bool {
        let rday = self.replay_day(day);
        self.outages.iter().any(|o| {
            o.backend == backend && rday >= i64::from(o.from_day) && rday <= i64::from(o.to_day)
        })
    }

    /// Moves the clock to `ms` (the replayed request's time).
    pub fn set_now(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::Relaxed);
        let day = time::day_of(ms);
        let mut state = self.lock();
        if state.day != Some(day) {
            state.backends = self
                .base
                .iter()
                .map(|b| {
                    let mut b = b.clone();
                    if self.is_down(&b.name, day) {
                        b.healthy = false;
                    }
                    b
                })
                .collect();
            state.day = Some(day);
        }
    }

    /// The backend statuses now (outages applied).
    pub fn current_backends(&self) -> Vec<BackendStatus> {
        self.lock().backends.clone()
    }

    /// Adds `usd` to `tenant`'s spend at the current time.
    pub fn charge(&self, tenant: &str, usd: f64) {
        if usd == 0.0 {
            return;
        }
        let now = self.now_ms.load(Ordering::Relaxed);
        let (day, month) = (time::day_of(now), time::month_of(now));
        let mut state = self.lock();
        let entry = state.spend.entry(tenant.to_owned()).or_default();
        *entry.by_day.entry(day).or_default() += usd;
        *entry.by_month.entry(month).or_default() += usd;
    }

    /// The tenant's budget (none configured: all `None`).
    pub fn budget(&self, tenant: &str) -> Budget {
        self.budgets.get(tenant).copied().unwrap_or_default()
    }

    /// Highest spend of `tenant` on any one day and in any one month so far.
    pub fn peaks(&self, tenant: &str) -> (f64, f64) {
        let state = self.lock();
        state.spend.get(tenant).map_or((0.0, 0.0), |s| {
            let max = |m: &HashMap<i64, f64>| m.values().copied().fold(0.0, f64::max);
            (max(&s.by_day), max(&s.by_month))
        })
    }

    /// Whether any backend of kind `kind` exists.
    pub fn has_kind(&self, kind: BackendKind) -> bool {
        self.base.iter().any(|b| b.kind == kind)
    }
}

impl HostState for SimHost {
    fn backends(&self) -> Vec<BackendStatus> {
        self.current_backends()
    }

    fn scorer(&self) -> &dyn TextScorer {
        &*self.scorer
    }

    fn detect_pii(&self, text: &str) -> Vec<PiiMatch> {
        let scan = self
            .pii
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match scan.iter().find(|(t, _)| t == text) {
            Some((_, found)) => found.clone(),
            None => policy_sdk::pii::detect(text),
        }
    }

    fn spend(&self, scope: &str) -> SpendStatus {
        let now = self.now_ms.load(Ordering::Relaxed);
        let (day, month) = (time::day_of(now), time::month_of(now));
        let (today_usd, month_usd) = {
            let state = self.lock();
            state.spend.get(scope).map_or((0.0, 0.0), |s| {
                (
                    s.by_day.get(&day).copied().unwrap_or(0.0),
                    s.by_month.get(&month).copied().unwrap_or(0.0),
                )
            })
        };
        let budget = self.budget(scope);
        SpendStatus {
            scope: scope.to_owned(),
            today_usd,
            month_usd,
            daily_budget_usd: budget.daily_usd,
            monthly_budget_usd: budget.monthly_usd,
            hard_cap_usd: budget.hard_cap_usd,
        }
    }

    fn count_tokens(&self, text: &str) -> u32 {
        crate::domain::estimate_tokens(text)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now_ms.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::StaticHost;

    #[test]
    fn pii_answers_from_the_request_scan() {
        let host = SimHost::new(Vec::new(), Vec::new(), BTreeMap::new(), 0);
        let marked = PiiMatch {
            kind: policy_sdk::pii::PiiKind::Iban,
            start: 0,
            end: 2,
        };
        host.set_pii(Arc::new(vec![("scanned".to_owned(), vec![marked.clone()])]));
        // A text of the scan gets the scan's answer, any other text a fresh detection.
        assert_eq!(host.detect_pii("scanned"), vec![marked]);
        let fresh = host.detect_pii("mail bob@example.com");
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].kind, policy_sdk::pii::PiiKind::Email);
    }

    #[test]
    fn outage_parsing() {
        let o: Outage = "openai:10-12".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.from_day, o.to_day), (10, 12));
        let o: Outage = "gemini:3".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.from_day, o.to_day), (3, 3));
        for bad in ["openai", "openai:0-2", "openai:5-2", ":1-2", "openai:a-b"] {
            assert!(bad.parse::<Outage>().is_err(), "{bad}");
        }
    }

    #[test]
    fn outages_and_spend_follow_the_clock() {
        let first = time::days_from_civil(2026, 1, 30);
        let mut budgets = BTreeMap::new();
        budgets.insert(
            "acme".to_owned(),
            Budget {
                daily_usd: Some(5.0),
                monthly_usd: Some(100.0),
                hard_cap_usd: None,
            },
        );
        let host = SimHost::new(
            StaticHost::default().backends,
            vec![
                "openai:2-2"
                    .parse()
                    .unwrap_or_else(|e: String| panic!("{e}")),
            ],
            budgets,
            first,
        );
        host.set_now(first * time::DAY_MS + 5);
        assert!(host.backends().iter().all(|b| b.healthy));
        host.charge("acme", 1.5);
        host.charge("acme", 1.0);
        let s = host.spend("acme");
        assert_eq!(
            (s.today_usd, s.month_usd, s.daily_budget_usd),
            (2.5, 2.5, Some(5.0))
        );
        // Day 2 (Jan 31): openai down, new day, same month.
        host.set_now((first + 1) * time::DAY_MS);
        let down: Vec<_> = host
            .backends()
            .into_iter()
            .filter(|b| !b.healthy)
            .map(|b| b.name)
            .collect();
        assert_eq!(down, ["openai"]);
        let s = host.spend("acme");
        assert_eq!((s.today_usd, s.month_usd), (0.0, 2.5));
        host.charge("acme", 4.0);
        // Day 3 (Feb 1): new month, openai back.
        host.set_now((first + 2) * time::DAY_MS);
        assert!(host.backends().iter().all(|b| b.healthy));
        let s = host.spend("acme");
        assert_eq!((s.today_usd, s.month_usd), (0.0, 0.0));
        assert_eq!(host.peaks("acme"), (4.0, 6.5));
        assert_eq!(host.spend("other").daily_budget_usd, None);
        assert_eq!(
            host.now_ms(),
            u64::try_from((first + 2) * time::DAY_MS).unwrap_or(0)
        );
    }
}
