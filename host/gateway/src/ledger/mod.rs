//! Spend ledger: one row per upstream attempt. An attempt is reserved (estimated cost)
//! before dispatch and then settled exactly once with its actual cost, or released.
//! Budgets per tenant; a hard cap refuses reservations. Reservations a dead process left
//! open are settled at their estimate.
//!
//! Two stores behind one API: an embedded SQLite file ([`sqlite`], the default: one
//! gateway, admission in memory) and PostgreSQL ([`postgres`]: replicas sharing one
//! database, a hard-capped tenant's reservation admitted by the database itself). Both
//! write behind: rows are collected for [`COMMIT_WINDOW`] and committed together.

mod postgres;
mod rate;
mod sqlite;
mod totals;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub use postgres::PostgresUrl;
pub(crate) use postgres::replica_id;
pub use rate::{LimitKind, RateLimit, Refused};

use crate::domain::SpendStatus;
use crate::time::now_ms;
use totals::{Nanos, SpendMap, lock, to_nanos, to_usd};

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("spend ledger database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(
        "spend ledger database (PostgreSQL): {}",
        crate::log_text::with_causes(.0)
    )]
    Postgres(#[from] tokio_postgres::Error),
    #[error("spend ledger schema migration: {0}")]
    Migrate(String),
    #[error(
        "tenant {tenant} would exceed its hard cap of ${cap:.4} this month \
         (spent or reserved ${spent:.4}, this request up to ${estimate:.4})"
    )]
    HardCap {
        tenant: String,
        cap: f64,
        spent: f64,
        estimate: f64,
    },
    #[error(
        "tenant {tenant} is over its rate limit of {per_minute} {} per minute; retry in {}s",
        .refused.kind.as_str(),
        retry_after_s(.refused)
    )]
    RateLimited {
        tenant: String,
        per_minute: u32,
        refused: Refused,
    },
    #[error("spend ledger cannot write its database (see the log); retrying")]
    Unwritable,
    #[error("spend ledger writer has stopped")]
    Stopped,
    #[error("starting the spend ledger writer thread: {0}")]
    Start(std::io::Error),
}

/// What the gateway does while the ledger cannot write its database (`[ledger] when_down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenDown {
    /// Refuse requests (503 `ledger_unavailable`) until the database is back.
    #[default]
    Refuse,
    /// Keep serving: reservations are checked against this replica's view of spend (a hard
    /// cap holds per replica, not across them) and rate limits per replica; the rows are
    /// held in memory (at most [`MAX_HELD_WRITES`]) and committed when the database is back.
    Serve,
}

/// Most writes held for the database in [`WhenDown::Serve`]; past it requests are refused.
pub const MAX_HELD_WRITES: usize = 200_000;

/// Whole seconds until a refused request would fit (at least 1), as `Retry-After` says it.
pub fn retry_after_s(refused: &Refused) -> u64 {
    refused.retry_after.as_secs_f64().ceil().max(1.0) as u64
}

/// Budgets of one tenant, USD. Daily and monthly budgets are shown to the policy (which
/// may route cheaper); the hard cap is enforced here, per calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub hard_cap_usd: Option<f64>,
}

/// An open reservation for one upstream attempt.
#[derive(Debug)]
pub struct Reservation {
    seq: u64,
    /// Its row, when the reservation was written before it was granted (PostgreSQL, hard
    /// cap); otherwise the writer learns the row when it commits it.
    row: Option<i64>,
    pub tenant: String,
    pub estimate_usd: f64,
    day: i64,
    month: i64,
    closed: AtomicBool,
}

/// Spend of one tenant, for `switchyard spend`.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpend {
    pub tenant: String,
    pub today_usd: f64,
    pub month_usd: f64,
    pub total_usd: f64,
    pub settled_attempts: u64,
    pub open_reservations: u64,
}

/// How long a writer collects writes before committing them together: a commit's fixed
/// cost (locks, WAL frames, a round trip, a wake-up) is then shared by every write of the
/// window.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(2);
/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How often a writer re-reads every tenant's totals (other processes may write).
const REFRESH: Duration = Duration::from_secs(1);
/// How soon writes that failed to commit are tried again.
const RETRY: Duration = Duration::from_millis(100);

/// (day number, month number) of a Unix time in ms, UTC.
fn day_and_month(ms: i64) -> (i64, i64) {
    (crate::time::day_of(ms), crate::time::month_of(ms))
}

/// How a settlement closes a reservation.
#[derive(Debug, Clone, Copy)]
enum Closing {
    Settled(f64),
    Released,
}

impl Closing {
    fn state(self) -> &'static str {
        match self {
            Closing::Settled(_) => "settled",
            Closing::Released => "released",
        }
    }

    /// What the attempt finally costs.
    fn usd(self) -> f64 {
        match self {
            Closing::Settled(cost) => cost,
            Closing::Released => 0.0,
        }
    }
}

/// A reservation's row as it is first written.
struct NewAttempt {
    tenant: String,
    day: i64,
    month: i64,
    request_id: String,
    attempt: u32,
    backend: String,
    estimate_usd: f64,
    created_ms: i64,
}

/// A write a store's writer commits.
enum Write {
    Reserve {
        seq: u64,
        new: NewAttempt,
    },
    Close {
        seq: u64,
        row: Option<i64>,
        tenant: String,
        day: i64,
        month: i64,
        estimate_usd: f64,
        closing: Closing,
    },
}

impl Write {
    /// The change to the tenant's spend: (tenant, day, month, amount).
    fn delta(&self) -> (&str, i64, i64, Nanos) {
        match self {
            Write::Reserve { new, .. } => {
                (&new.tenant, new.day, new.month, to_nanos(new.estimate_usd))
            }
            Write::Close {
                tenant,
                day,
                month,
                estimate_usd,
                closing,
                ..
            } => (
                tenant,
                *day,
                *month,
                to_nanos(closing.usd()) - to_nanos(*estimate_usd),
            ),
        }
    }
}

/// Moves the amounts of `writes` off the queue: into the committed totals when they were
/// committed, nowhere when they were dropped.
fn dequeue(spend: &SpendMap, writes: &[Write], committed: bool) {
    let mut spend = lock(spend);
    for write in writes {
        let (tenant, day, month, amount) = write.delta();
        if let Some(entry) = spend.get_mut(tenant) {
            entry.dequeue(day, month, amount, committed);
        }
    }
}

/// Where the rows live.
enum Store {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

/// The spend ledger.
pub struct Ledger {
    store: Store,
    spend: SpendMap,
    /// Set while the writer holds writes it could not commit (or cannot reach its
    /// database): reservations are refused meanwhile.
    failing: Arc<AtomicBool>,
    next_seq: AtomicU64,
    budgets: BTreeMap<String, Budget>,
    default_budget: Budget,
    rate_limits: BTreeMap<String, RateLimit>,
    /// The rate limits' state when this process enforces them alone (SQLite, or
    /// PostgreSQL while it is down and [`WhenDown::Serve`]).
    local_rates: rate::Local,
    held: Arc<AtomicUsize>,
    when_down: WhenDown,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("budgets", &self.budgets)
            .field("default_budget", &self.default_budget)
            .field("rate_limits", &self.rate_limits)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) the SQLite ledger at `path` in WAL mode and settles
    /// reservations a previous process left open at their estimate.
    pub fn open(
        path: &Path,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let shared = Shared::default();
        let store = sqlite::Store::open(path, &shared)?;
        Ok(Self::new(
            Store::Sqlite(store),
            shared,
            budgets,
            default_budget,
        ))
    }

    /// Opens an existing SQLite ledger read-only, without recovery (safe while a server
    /// runs).
    pub fn inspect(
        path: &Path,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let shared = Shared::default();
        let store = sqlite::Store::inspect(path, &shared)?;
        Ok(Self::new(
            Store::Sqlite(store),
            shared,
            budgets,
            default_budget,
        ))
    }

    /// A SQLite ledger that lives in memory (tests, `--no-ledger` setups).
    pub fn in_memory(
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let shared = Shared::default();
        let store = sqlite::Store::in_memory(&shared)?;
        Ok(Self::new(
            Store::Sqlite(store),
            shared,
            budgets,
            default_budget,
        ))
    }

    /// Connects to the PostgreSQL ledger at `url` as one replica among any number:
    /// applies the schema migrations, takes a replica lease and settles the open
    /// reservations of replicas whose lease expired (blocking: call it off the async
    /// runtime).
    pub fn connect(
        url: &PostgresUrl,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let shared = Shared::default();
        let store = postgres::Store::connect(url, &shared, postgres::Access::Replica)?;
        Ok(Self::new(
            Store::Postgres(store),
            shared,
            budgets,
            default_budget,
        ))
    }

    /// Reads the PostgreSQL ledger at `url` without taking a lease, migrating or
    /// recovering (blocking; for `switchyard spend`).
    pub fn inspect_postgres(
        url: &PostgresUrl,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let shared = Shared::default();
        let store = postgres::Store::connect(url, &shared, postgres::Access::Inspect)?;
        Ok(Self::new(
            Store::Postgres(store),
            shared,
            budgets,
            default_budget,
        ))
    }

    fn new(
        store: Store,
        shared: Shared,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Self {
        Self {
            store,
            spend: shared.spend,
            failing: shared.failing,
            held: shared.held,
            when_down: WhenDown::Refuse,
            next_seq: AtomicU64::new(0),
            budgets,
            default_budget,
            rate_limits: BTreeMap::new(),
            local_rates: rate::Local::default(),
        }
    }

    /// Enforces `limits` per tenant (tenants not named are unlimited): across replicas
    /// on PostgreSQL, in this process on SQLite (where a restart starts them afresh).
    pub fn with_rate_limits(mut self, limits: BTreeMap<String, RateLimit>) -> Self {
        self.rate_limits = limits
            .into_iter()
            .filter(|(_, limit)| limit.is_limited())
            .collect();
        self
    }

    /// What to do while the database cannot be written ([`WhenDown`]).
    pub fn when_down(mut self, when_down: WhenDown) -> Self {
        self.when_down = when_down;
        self
    }

    /// Whether a reservation may go ahead while the writer is failing.
    fn down_but_serving(&self) -> Result<(), LedgerError> {
        if self.when_down == WhenDown::Serve && self.held.load(Ordering::Relaxed) < MAX_HELD_WRITES
        {
            Ok(())
        } else {
            Err(LedgerError::Unwritable)
        }
    }

    /// Admits one request of `tenant` that may use `tokens` (prompt plus completion
    /// limit) against its rate limits; [`LedgerError::RateLimited`] when it is over one.
    /// Returns the tokens charged (0 for an unlimited tenant), to correct with
    /// [`Ledger::correct_tokens`] once the request's real use is known.
    pub async fn admit(&self, tenant: &str, tokens: u32) -> Result<u32, LedgerError> {
        let Some(limit) = self.rate_limits.get(tenant) else {
            return Ok(0);
        };
        let costs = limit.costs(tokens);
        let local = || {
            self.local_rates
                .admit(tenant, now_ms().saturating_mul(1000), costs)
        };
        let verdict = match &self.store {
            Store::Postgres(store) => match store.rate_admit(tenant, costs).await {
                Ok(verdict) => verdict,
                Err(e) => {
                    self.down_but_serving().map_err(|_| e)?;
                    local()
                }
            },
            Store::Sqlite(_) => local(),
        };
        match verdict {
            Ok(()) => Ok(tokens),
            Err(refused) => Err(LedgerError::RateLimited {
                tenant: tenant.to_owned(),
                per_minute: match refused.kind {
                    LimitKind::Requests => limit.requests_per_minute,
                    LimitKind::Tokens => limit.tokens_per_minute,
                }
                .unwrap_or(0),
                refused,
            }),
        }
    }

    /// Corrects a request's token charge from `charged` (what [`Ledger::admit`] returned)
    /// to `used`.
    pub fn correct_tokens(&self, tenant: &str, charged: u32, used: u32) {
        let Some(limit) = self.rate_limits.get(tenant) else {
            return;
        };
        let delta = limit.token_correction_us(charged, used);
        if delta == 0 {
            return;
        }
        match &self.store {
            Store::Postgres(store) => store.rate_correct(tenant, delta),
            Store::Sqlite(_) => self.local_rates.correct_tokens(tenant, delta),
        }
    }

    /// The budget of `tenant`.
    pub fn budget(&self, tenant: &str) -> Budget {
        self.budgets
            .get(tenant)
            .copied()
            .unwrap_or(self.default_budget)
    }

    /// Reserves `estimate_usd` for one attempt. Refused when the tenant's month spend
    /// plus open reservations plus this estimate would pass its hard cap, and while the
    /// writer cannot commit. Concurrent reservations cannot pass a cap together: on SQLite
    /// the check and the count share one lock (its row is written behind; another
    /// process's spend counts from the writer's next read, within a second); on PostgreSQL
    /// a capped tenant's reservation is one conditional statement on the tenant's month
    /// row, which holds across replicas, and an uncapped one is written behind.
    pub async fn reserve(
        &self,
        tenant: &str,
        request_id: &str,
        attempt: u32,
        backend: &str,
        estimate_usd: f64,
    ) -> Result<Reservation, LedgerError> {
        if self.failing.load(Ordering::Acquire) {
            self.down_but_serving()?;
        }
        let estimate_usd = if estimate_usd.is_finite() && estimate_usd > 0.0 {
            estimate_usd
        } else {
            0.0
        };
        let created_ms = now_ms();
        let (day, month) = day_and_month(created_ms);
        let amount = to_nanos(estimate_usd);
        let cap = self.budget(tenant).hard_cap_usd;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let new = NewAttempt {
            tenant: tenant.to_owned(),
            day,
            month,
            request_id: request_id.to_owned(),
            attempt,
            backend: backend.to_owned(),
            estimate_usd,
            created_ms,
        };
        let hard_cap = |spent: Nanos, cap: f64| LedgerError::HardCap {
            tenant: tenant.to_owned(),
            cap,
            spent: to_usd(spent),
            estimate: estimate_usd,
        };
        // A capped tenant on PostgreSQL: the database admits it, unless it is down and
        // the gateway serves meanwhile (then this replica's view does, as for the rest).
        let capped = match (&self.store, cap) {
            (Store::Postgres(store), Some(cap)) => {
                match store.reserve_capped(&new, to_nanos(cap)).await {
                    Ok(Some(row)) => Some(row),
                    Ok(None) => return Err(hard_cap(self.month_spend(tenant, day, month), cap)),
                    Err(e) => {
                        self.down_but_serving().map_err(|_| e)?;
                        None
                    }
                }
            }
            _ => None,
        };
        let row = match (capped, &self.store, cap) {
            (Some(row), _, _) => {
                lock(&self.spend)
                    .entry(tenant.to_owned())
                    .or_default()
                    .committed
                    .add(day, month, amount);
                Some(row)
            }
            (None, store, cap) => {
                {
                    let mut spend = lock(&self.spend);
                    let entry = spend.entry(tenant.to_owned()).or_default();
                    if let Some(cap) = cap {
                        let (_, spent) = entry.at(day, month);
                        if spent.saturating_add(amount) > to_nanos(cap) {
                            return Err(hard_cap(spent, cap));
                        }
                    }
                    entry.queue(day, month, amount);
                }
                if let Err(e) = store.send(Write::Reserve { seq, new }) {
                    self.unqueue(tenant, day, month, amount);
                    return Err(e);
                }
                None
            }
        };
        Ok(Reservation {
            seq,
            row,
            tenant: tenant.to_owned(),
            estimate_usd,
            day,
            month,
            closed: AtomicBool::new(false),
        })
    }

    /// This process's view of `tenant`'s spend this month.
    fn month_spend(&self, tenant: &str, day: i64, month: i64) -> Nanos {
        lock(&self.spend)
            .get(tenant)
            .map_or(0, |s| s.at(day, month).1)
    }

    /// Takes back an amount queued for a write that never reached the writer.
    fn unqueue(&self, tenant: &str, day: i64, month: i64, amount: Nanos) {
        if let Some(entry) = lock(&self.spend).get_mut(tenant) {
            entry.dequeue(day, month, amount, false);
        }
    }

    /// Settles a reservation with its actual cost (written behind; see the module docs).
    /// Idempotent: only the first settlement or release of a reservation changes it.
    pub fn settle(&self, reservation: &Reservation, cost_usd: f64) -> Result<(), LedgerError> {
        let cost = if cost_usd.is_finite() && cost_usd > 0.0 {
            cost_usd
        } else {
            0.0
        };
        self.close(reservation, Closing::Settled(cost))
    }

    /// Releases a reservation whose attempt cost nothing (it failed). Idempotent.
    pub fn release(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        self.close(reservation, Closing::Released)
    }

    fn close(&self, r: &Reservation, closing: Closing) -> Result<(), LedgerError> {
        if r.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let write = Write::Close {
            seq: r.seq,
            row: r.row,
            tenant: r.tenant.clone(),
            day: r.day,
            month: r.month,
            estimate_usd: r.estimate_usd,
            closing,
        };
        let (_, day, month, amount) = write.delta();
        lock(&self.spend)
            .entry(r.tenant.clone())
            .or_default()
            .queue(day, month, amount);
        let sent = self.store.send(write);
        if sent.is_err() {
            self.unqueue(&r.tenant, day, month, amount);
        }
        sent
    }

    /// Waits until every write queued so far is committed (blocking).
    pub fn flush(&self) -> Result<(), LedgerError> {
        match &self.store {
            Store::Sqlite(store) => store.flush()?,
            Store::Postgres(store) => store.flush()?,
        }
        if self.failing.load(Ordering::Acquire) {
            return Err(LedgerError::Unwritable);
        }
        Ok(())
    }

    /// Spend and budgets of `tenant` (settled cost plus open reservations), for the policy.
    pub fn status(&self, tenant: &str) -> SpendStatus {
        let (day, month) = day_and_month(now_ms());
        let (today, month_total) = lock(&self.spend)
            .get(tenant)
            .map_or((0, 0), |s| s.at(day, month));
        let budget = self.budget(tenant);
        SpendStatus {
            scope: tenant.to_owned(),
            today_usd: to_usd(today),
            month_usd: to_usd(month_total),
            daily_budget_usd: budget.daily_usd,
            monthly_budget_usd: budget.monthly_usd,
            hard_cap_usd: budget.hard_cap_usd,
        }
    }

    /// Spend of every tenant, by name (after every queued write is committed; blocking).
    pub fn tenants(&self) -> Result<Vec<TenantSpend>, LedgerError> {
        let (day, month) = day_and_month(now_ms());
        match &self.store {
            Store::Sqlite(store) => store.tenants(day, month),
            Store::Postgres(store) => store.tenants(day, month),
        }
    }

    /// State of the attempt row (`reserved`, `settled`, `released`), for tests and audits
    /// (after every queued write is committed; blocking). On PostgreSQL, the row this
    /// replica wrote.
    pub fn attempt_state(
        &self,
        request_id: &str,
        attempt: u32,
    ) -> Result<Option<String>, LedgerError> {
        match &self.store {
            Store::Sqlite(store) => store.attempt_state(request_id, attempt),
            Store::Postgres(store) => store.attempt_state(request_id, attempt),
        }
    }
}

impl Store {
    fn send(&self, write: Write) -> Result<(), LedgerError> {
        match self {
            Store::Sqlite(store) => store.send(write),
            Store::Postgres(store) => store.send(write),
        }
    }
}

/// What a store's writer shares with the [`Ledger`]: the spend it publishes and whether
/// it is failing.
#[derive(Default)]
struct Shared {
    spend: SpendMap,
    failing: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        // 2024-02-29T12:00:00Z
        let (day, month) = day_and_month(1_709_208_000_000);
        assert_eq!(day, 19_782);
        assert_eq!(month, 2024 * 12 + 1);
        assert_eq!(day_and_month(0), (0, 1970 * 12));
    }
}
