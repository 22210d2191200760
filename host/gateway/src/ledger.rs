//! Spend ledger: one row per upstream attempt in an embedded SQLite database (WAL). An
//! attempt is reserved (estimated cost) before dispatch and then settled exactly once with
//! its actual cost, or released. Open reservations left by a crash are settled at their
//! estimate when the ledger opens. Budgets per tenant; a hard cap refuses reservations.
//!
//! Admission is in memory: a reservation is checked against the tenant's hard cap and
//! counted in its spend under one lock, so concurrent requests cannot pass the cap
//! together. Rows are written behind by one writer thread that owns the connection: it
//! collects writes for [`COMMIT_WINDOW`] and commits them in one transaction, per-day
//! totals included (one upsert per tenant and day). A reservation's row is thus durable
//! within a few milliseconds, while its upstream call runs; a settlement that arrives
//! before its reservation's row was written is folded into it (one settled row). A crash
//! loses at most the last window's rows; the next start settles reservations still open at
//! their estimate. Request threads never touch SQLite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::SpendStatus;
use crate::time::now_ms;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("spend ledger database: {0}")]
    Db(#[from] rusqlite::Error),
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
    #[error("spend ledger cannot write its database (see the log); retrying")]
    Unwritable,
    #[error("spend ledger writer has stopped")]
    Stopped,
    #[error("starting the spend ledger writer thread: {0}")]
    Start(std::io::Error),
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

/// USD in billionths, so that in-memory sums are exact.
type Nanos = i64;

fn to_nanos(usd: f64) -> Nanos {
    // `as` saturates (and maps NaN to 0).
    (usd * 1e9).round() as Nanos
}

fn to_usd(nanos: Nanos) -> f64 {
    nanos as f64 / 1e9
}

/// A tenant's spend on one day of one month.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    day: i64,
    month: i64,
    today: Nanos,
    month_total: Nanos,
}

impl Totals {
    /// Adds `amount` spent on `day` of `month`.
    fn add(&mut self, day: i64, month: i64, amount: Nanos) {
        if month > self.month {
            *self = Totals {
                day,
                month,
                today: amount,
                month_total: amount,
            };
        } else if month == self.month {
            self.month_total = self.month_total.saturating_add(amount);
            if day > self.day {
                self.day = day;
                self.today = amount;
            } else if day == self.day {
                self.today = self.today.saturating_add(amount);
            }
        }
    }

    /// (today, this month) as of `day` of `month`.
    fn at(&self, day: i64, month: i64) -> (Nanos, Nanos) {
        match (self.month == month, self.day == day) {
            (true, true) => (self.today, self.month_total),
            (true, false) => (0, self.month_total),
            _ => (0, 0),
        }
    }
}

/// What this process knows of a tenant's spend: settled cost plus open reservations.
#[derive(Debug, Default)]
struct Spend {
    /// In the database, as of the writer's last commit or read.
    committed: Totals,
    /// Queued for the writer and not committed yet: (day, month, amount), one per day.
    queued: Vec<(i64, i64, Nanos)>,
}

impl Spend {
    /// (today, this month) as of `day` of `month`.
    fn at(&self, day: i64, month: i64) -> (Nanos, Nanos) {
        let (mut today, mut total) = self.committed.at(day, month);
        for &(d, m, amount) in &self.queued {
            if m == month {
                total = total.saturating_add(amount);
                if d == day {
                    today = today.saturating_add(amount);
                }
            }
        }
        (today, total)
    }

    fn queue(&mut self, day: i64, month: i64, amount: Nanos) {
        match self.queued.iter_mut().find(|(d, ..)| *d == day) {
            Some(entry) => entry.2 = entry.2.saturating_add(amount),
            None => self.queued.push((day, month, amount)),
        }
    }

    /// Takes `amount` off the queue; with `committed`, adds it to the committed totals.
    fn dequeue(&mut self, day: i64, month: i64, amount: Nanos, committed: bool) {
        match self.queued.iter().position(|(d, ..)| *d == day) {
            Some(i) => {
                self.queued[i].2 = self.queued[i].2.saturating_sub(amount);
                if self.queued[i].2 == 0 {
                    self.queued.swap_remove(i);
                }
            }
            None => self.queued.push((day, month, amount.saturating_neg())),
        }
        if committed {
            self.committed.add(day, month, amount);
        }
    }
}

type SpendMap = Arc<Mutex<HashMap<String, Spend>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The spend ledger.
pub struct Ledger {
    queue: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    spend: SpendMap,
    /// Set while the writer holds writes it could not commit.
    failing: Arc<AtomicBool>,
    next_seq: AtomicU64,
    budgets: BTreeMap<String, Budget>,
    default_budget: Budget,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("budgets", &self.budgets)
            .field("default_budget", &self.default_budget)
            .finish_non_exhaustive()
    }
}

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How long the writer collects writes before committing them together: a commit's fixed
/// cost (locks, WAL frames, a wake-up) is then shared by every write of the window.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(2);
/// WAL pages between automatic checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;
/// How often the writer re-reads every tenant's totals (other processes may write).
const REFRESH: Duration = Duration::from_secs(1);
/// How soon writes that failed to commit are tried again.
const RETRY: Duration = Duration::from_millis(100);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    day          INTEGER NOT NULL,  -- days since 1970-01-01 (UTC)
    month        INTEGER NOT NULL,  -- year * 12 + month - 1
    request_id   TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    backend      TEXT    NOT NULL,
    -- Not `state IN (...)`: SQLite builds an ephemeral index of an IN list on every insert.
    state        TEXT    NOT NULL
                 CHECK (state = 'reserved' OR state = 'settled' OR state = 'released'),
    estimate_usd REAL    NOT NULL,
    cost_usd     REAL,
    recovered    INTEGER NOT NULL DEFAULT 0,
    created_ms   INTEGER NOT NULL,
    UNIQUE (request_id, attempt)
);
-- Spend is read from daily_totals; an index over the attempts only cost every insert.
DROP INDEX IF EXISTS attempts_tenant_month;
-- Spend per tenant per day (settled cost plus open reservations), kept by the writer in
-- the same transaction as the attempt rows (one upsert per tenant and day per commit), so
-- reading a tenant's spend is a lookup of at most 31 rows however many requests it made.
CREATE TABLE IF NOT EXISTS daily_totals (
    tenant TEXT    NOT NULL,
    day    INTEGER NOT NULL,
    month  INTEGER NOT NULL,
    usd    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
-- Earlier versions kept daily_totals with per-row triggers.
DROP TRIGGER IF EXISTS attempts_insert_total;
DROP TRIGGER IF EXISTS attempts_update_total;
";
/// Fills `daily_totals` from the attempt rows of a ledger written before it existed.
const BACKFILL: &str = "
INSERT INTO daily_totals (tenant, day, month, usd)
SELECT tenant, day, month,
       SUM(CASE state WHEN 'settled' THEN COALESCE(cost_usd, 0)
                      WHEN 'reserved' THEN estimate_usd ELSE 0 END)
FROM attempts
WHERE NOT EXISTS (SELECT 1 FROM daily_totals)
GROUP BY tenant, day, month;
";

const INSERT_ATTEMPT: &str = "
INSERT INTO attempts (tenant, day, month, request_id, attempt, backend, state, estimate_usd,
                      cost_usd, created_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

const CLOSE_ATTEMPT: &str =
    "UPDATE attempts SET state = ?2, cost_usd = ?3 WHERE id = ?1 AND state = 'reserved'";

const ADD_TO_DAY: &str = "
INSERT INTO daily_totals (tenant, day, month, usd) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (tenant, day) DO UPDATE SET usd = usd + excluded.usd";

/// Every tenant's totals for `month` (?2) with day ?1's share.
const MONTH_TOTALS: &str = "
SELECT tenant, COALESCE(SUM(CASE WHEN day = ?1 THEN usd ELSE 0 END), 0), COALESCE(SUM(usd), 0)
FROM daily_totals WHERE month = ?2 GROUP BY tenant";

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

/// A write the writer thread commits.
enum Write {
    Reserve {
        seq: u64,
        tenant: String,
        day: i64,
        month: i64,
        request_id: String,
        attempt: u32,
        backend: String,
        estimate_usd: f64,
        created_ms: i64,
    },
    Close {
        seq: u64,
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
            Write::Reserve {
                tenant,
                day,
                month,
                estimate_usd,
                ..
            } => (tenant, *day, *month, to_nanos(*estimate_usd)),
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

/// Work for the writer thread, in queue order.
enum Op {
    Write(Write),
    /// Runs on the connection after every earlier write has been committed.
    Read(Box<dyn FnOnce(&Connection) + Send>),
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` in WAL mode and settles reservations a
    /// previous process left open at their estimate.
    pub fn open(
        path: &Path,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        Self::init(Connection::open(path)?, budgets, default_budget)
    }

    /// Opens an existing ledger read-only, without recovery (safe while a server runs).
    pub fn inspect(
        path: &Path,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Self::start(conn, budgets, default_budget)
    }

    /// A ledger that lives in memory (tests, `--no-ledger` setups).
    pub fn in_memory(
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?, budgets, default_budget)
    }

    fn init(
        conn: Connection,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL + NORMAL: a committed row survives a process crash (kill -9).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoint (copy the WAL into the database and fsync it) every 4,000 pages
        // instead of 1,000: the pages a ledger rewrites are few, so a checkpoint costs
        // about the same however many commits it covers.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(BACKFILL)?;
        // At their estimate, which daily_totals already counts.
        let recovered = conn.execute(
            "UPDATE attempts SET state = 'settled', cost_usd = estimate_usd, recovered = 1
             WHERE state = 'reserved'",
            [],
        )?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "settled reservations left open by a previous process at their estimate"
            );
        }
        Self::start(conn, budgets, default_budget)
    }

    /// Loads the totals and hands the connection to the writer thread.
    fn start(
        conn: Connection,
        budgets: BTreeMap<String, Budget>,
        default_budget: Budget,
    ) -> Result<Self, LedgerError> {
        let spend = SpendMap::default();
        let failing = Arc::new(AtomicBool::new(false));
        let mut writer = Writer {
            conn,
            spend: spend.clone(),
            failing: failing.clone(),
            open: HashMap::new(),
            retry: Vec::new(),
            refreshed: Instant::now(),
        };
        if let Err(e) = writer.refresh() {
            // A read-only ledger from before `daily_totals` existed: `tenants` still works.
            tracing::debug!(error = %e, "reading the spend totals failed");
        }
        let (queue, ops) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(&ops))
            .map_err(LedgerError::Start)?;
        Ok(Self {
            queue: Some(queue),
            writer: Some(thread),
            spend,
            failing,
            next_seq: AtomicU64::new(0),
            budgets,
            default_budget,
        })
    }

    fn send(&self, op: Op) -> Result<(), LedgerError> {
        self.queue
            .as_ref()
            .ok_or(LedgerError::Stopped)?
            .send(op)
            .map_err(|_| LedgerError::Stopped)
    }

    /// Runs `read` on the writer thread after every write queued before it has been
    /// committed, and waits for its answer (blocking: for tools, tests and shutdown).
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Op::Read(Box::new(move |conn| {
            let _ = reply.send(read(conn));
        })))?;
        answer.recv().map_err(|_| LedgerError::Stopped)?
    }

    /// The budget of `tenant`.
    pub fn budget(&self, tenant: &str) -> Budget {
        self.budgets
            .get(tenant)
            .copied()
            .unwrap_or(self.default_budget)
    }

    /// Reserves `estimate_usd` for one attempt; its row is written behind (see the module
    /// docs). Refused when the tenant's
    /// month spend plus open reservations plus this estimate would pass its hard cap (the
    /// check and the count share one lock, so concurrent reservations cannot pass it
    /// together; another process's spend counts from the writer's next read, within a
    /// second), and while the writer cannot commit.
    pub fn reserve(
        &self,
        tenant: &str,
        request_id: &str,
        attempt: u32,
        backend: &str,
        estimate_usd: f64,
    ) -> Result<Reservation, LedgerError> {
        if self.failing.load(Ordering::Acquire) {
            return Err(LedgerError::Unwritable);
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
        {
            let mut spend = lock(&self.spend);
            let entry = spend.entry(tenant.to_owned()).or_default();
            if let Some(cap) = cap {
                let (_, spent) = entry.at(day, month);
                if spent.saturating_add(amount) > to_nanos(cap) {
                    return Err(LedgerError::HardCap {
                        tenant: tenant.to_owned(),
                        cap,
                        spent: to_usd(spent),
                        estimate: estimate_usd,
                    });
                }
            }
            entry.queue(day, month, amount);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let sent = self.send(Op::Write(Write::Reserve {
            seq,
            tenant: tenant.to_owned(),
            day,
            month,
            request_id: request_id.to_owned(),
            attempt,
            backend: backend.to_owned(),
            estimate_usd,
            created_ms,
        }));
        if let Err(e) = sent {
            self.unqueue(tenant, day, month, amount);
            return Err(e);
        }
        Ok(Reservation {
            seq,
            tenant: tenant.to_owned(),
            estimate_usd,
            day,
            month,
            closed: AtomicBool::new(false),
        })
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
        let sent = self.send(Op::Write(write));
        if sent.is_err() {
            self.unqueue(&r.tenant, day, month, amount);
        }
        sent
    }

    /// Waits until every write queued so far is committed (blocking).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.read(|_| Ok(()))?;
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

    /// Spend of every tenant, by name (after every queued write is committed).
    pub fn tenants(&self) -> Result<Vec<TenantSpend>, LedgerError> {
        self.read(|conn| {
            let (day, month) = day_and_month(now_ms());
            let mut stmt = conn.prepare(
                "SELECT tenant,
                   COALESCE(SUM(CASE WHEN state = 'settled' AND day = ?1 THEN cost_usd ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN state = 'settled' AND month = ?2 THEN cost_usd ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN state = 'settled' THEN cost_usd ELSE 0 END), 0),
                   SUM(state = 'settled'), SUM(state = 'reserved')
                 FROM attempts GROUP BY tenant ORDER BY tenant",
            )?;
            let rows = stmt.query_map(params![day, month], |r| {
                Ok(TenantSpend {
                    tenant: r.get(0)?,
                    today_usd: r.get(1)?,
                    month_usd: r.get(2)?,
                    total_usd: r.get(3)?,
                    settled_attempts: r.get::<_, i64>(4)?.max(0).unsigned_abs(),
                    open_reservations: r.get::<_, i64>(5)?.max(0).unsigned_abs(),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// State of the attempt row (`reserved`, `settled`, `released`), for tests and audits
    /// (after every queued write is committed).
    pub fn attempt_state(
        &self,
        request_id: &str,
        attempt: u32,
    ) -> Result<Option<String>, LedgerError> {
        let request_id = request_id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT state FROM attempts WHERE request_id = ?1 AND attempt = ?2",
                    params![request_id, attempt],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }
}

impl Drop for Ledger {
    /// Commits everything queued, then stops the writer.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the ledger writer thread panicked");
        }
    }
}

/// The writer thread's side: the connection, the rows it left open, and the totals it
/// publishes.
struct Writer {
    conn: Connection,
    spend: SpendMap,
    failing: Arc<AtomicBool>,
    /// Rows committed as reserved, by reservation number: where their closing goes.
    open: HashMap<u64, i64>,
    /// Writes whose commit failed: retried ahead of the next ones.
    retry: Vec<Write>,
    refreshed: Instant,
}

/// What one transaction did: the rows it left reserved and the reservations it closed.
#[derive(Default)]
struct Committed {
    opened: Vec<(u64, i64)>,
    closed: Vec<u64>,
}

impl Writer {
    /// Takes operations until every sender is gone, committing them in groups.
    fn run(&mut self, ops: &mpsc::Receiver<Op>) {
        loop {
            let wait = if self.retry.is_empty() {
                REFRESH
            } else {
                RETRY
            };
            let batch = match ops.recv_timeout(wait) {
                Ok(first) => Self::gather(first, ops),
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.commit(Vec::new());
                    if !self.retry.is_empty() {
                        tracing::error!(
                            writes = self.retry.len(),
                            "spend ledger stopped with writes it could not commit"
                        );
                    }
                    return;
                }
            };
            self.apply(batch);
            if self.refreshed.elapsed() >= REFRESH
                && let Err(e) = self.refresh()
            {
                tracing::debug!(error = %e, "refreshing the spend totals failed");
            }
        }
    }

    /// `first` and what else arrives within [`COMMIT_WINDOW`]. The writer sleeps through
    /// the window instead of waiting on the queue, so senders do not wake it; a read (a
    /// flush, a tool's query) does not wait for the window.
    fn gather(first: Op, ops: &mpsc::Receiver<Op>) -> Vec<Op> {
        if matches!(first, Op::Write(_)) {
            std::thread::sleep(COMMIT_WINDOW);
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        batch
    }

    /// Commits the writes of `batch` in order; a read runs after the writes before it.
    fn apply(&mut self, batch: Vec<Op>) {
        let mut writes = Vec::new();
        for op in batch {
            match op {
                Op::Write(w) => writes.push(w),
                Op::Read(read) => {
                    self.commit(std::mem::take(&mut writes));
                    read(&self.conn);
                }
            }
        }
        self.commit(writes);
    }

    /// Commits the writes held for retry and `writes` in one transaction. A write that
    /// breaks a constraint is dropped (logged); on any other error the writes are kept
    /// for the next try and reservations are refused meanwhile.
    fn commit(&mut self, writes: Vec<Write>) {
        let writes = if self.retry.is_empty() {
            writes
        } else {
            let mut all = std::mem::take(&mut self.retry);
            all.extend(writes);
            all
        };
        if writes.is_empty() {
            return;
        }
        match self.transaction(&writes) {
            Ok(done) => {
                self.committed(&writes, done);
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("spend ledger writes again");
                }
            }
            Err(e) if is_constraint(&e) && writes.len() > 1 => {
                tracing::warn!(error = %e, writes = writes.len(),
                    "ledger group commit failed; committing its writes one by one");
                for write in writes {
                    self.commit(vec![write]);
                }
            }
            Err(e) if is_constraint(&e) => {
                tracing::error!(error = %e, "ledger write dropped");
                self.discard(writes);
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, writes = writes.len(),
                        "spend ledger cannot commit; refusing requests until it can");
                }
                self.retry = writes;
            }
        }
    }

    /// After a commit: remembers open rows and moves the writes' amounts from queued to
    /// committed.
    fn committed(&mut self, writes: &[Write], done: Committed) {
        self.open.extend(done.opened);
        for seq in done.closed {
            self.open.remove(&seq);
        }
        let mut spend = lock(&self.spend);
        for write in writes {
            let (tenant, day, month, amount) = write.delta();
            if let Some(entry) = spend.get_mut(tenant) {
                entry.dequeue(day, month, amount, true);
            }
        }
    }

    /// Drops writes that can never be committed.
    fn discard(&mut self, writes: Vec<Write>) {
        let mut spend = lock(&self.spend);
        for write in &writes {
            let (tenant, day, month, amount) = write.delta();
            if let Some(entry) = spend.get_mut(tenant) {
                entry.dequeue(day, month, amount, false);
            }
        }
    }

    /// One write transaction over `writes`. A reservation closed within the same batch is
    /// inserted in its final state; each tenant's day total gets one upsert.
    fn transaction(&mut self, writes: &[Write]) -> Result<Committed, rusqlite::Error> {
        let reserved_here: HashSet<u64> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Reserve { seq, .. } => Some(*seq),
                Write::Close { .. } => None,
            })
            .collect();
        let closed_here: HashMap<u64, Closing> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Close { seq, closing, .. } if reserved_here.contains(seq) => {
                    Some((*seq, *closing))
                }
                _ => None,
            })
            .collect();
        let mut days: HashMap<(&str, i64), (i64, f64)> = HashMap::new();
        let mut done = Committed::default();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for write in writes {
            let (tenant, day, month, usd) = match write {
                Write::Reserve {
                    seq,
                    tenant,
                    day,
                    month,
                    request_id,
                    attempt,
                    backend,
                    estimate_usd,
                    created_ms,
                    ..
                } => {
                    let closing = closed_here.get(seq).copied();
                    tx.prepare_cached(INSERT_ATTEMPT)?.execute(params![
                        tenant,
                        day,
                        month,
                        request_id,
                        attempt,
                        backend,
                        closing.map_or("reserved", Closing::state),
                        estimate_usd,
                        closing.map(Closing::usd),
                        created_ms,
                    ])?;
                    if closing.is_none() {
                        done.opened.push((*seq, tx.last_insert_rowid()));
                    }
                    let usd = closing.map_or(*estimate_usd, Closing::usd);
                    (tenant, *day, *month, usd)
                }
                Write::Close {
                    seq,
                    tenant,
                    day,
                    month,
                    estimate_usd,
                    closing,
                } => {
                    if closed_here.contains_key(seq) {
                        continue;
                    }
                    let Some(id) = self.open.get(seq) else {
                        tracing::warn!(seq, "closing a reservation with no open row");
                        continue;
                    };
                    let changed = tx.prepare_cached(CLOSE_ATTEMPT)?.execute(params![
                        id,
                        closing.state(),
                        closing.usd()
                    ])?;
                    done.closed.push(*seq);
                    if changed == 0 {
                        continue;
                    }
                    (tenant, *day, *month, closing.usd() - estimate_usd)
                }
            };
            days.entry((tenant.as_str(), day)).or_insert((month, 0.0)).1 += usd;
        }
        for ((tenant, day), (month, usd)) in days {
            tx.prepare_cached(ADD_TO_DAY)?
                .execute(params![tenant, day, month, usd])?;
        }
        tx.commit()?;
        Ok(done)
    }

    /// Re-reads every tenant's totals for this month (other processes may write).
    fn refresh(&mut self) -> Result<(), rusqlite::Error> {
        self.refreshed = Instant::now();
        let (day, month) = day_and_month(now_ms());
        let mut fresh: HashMap<String, Totals> = self
            .conn
            .prepare_cached(MONTH_TOTALS)?
            .query_map(params![day, month], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Totals {
                        day,
                        month,
                        today: to_nanos(r.get(1)?),
                        month_total: to_nanos(r.get(2)?),
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut spend = lock(&self.spend);
        spend.retain(|tenant, s| {
            s.committed = fresh.remove(tenant).unwrap_or(Totals {
                day,
                month,
                today: 0,
                month_total: 0,
            });
            s.committed.month_total != 0 || !s.queued.is_empty()
        });
        for (tenant, committed) in fresh {
            spend.insert(
                tenant,
                Spend {
                    committed,
                    queued: Vec::new(),
                },
            );
        }
        Ok(())
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn capped(cap: f64) -> Ledger {
        let mut budgets = BTreeMap::new();
        budgets.insert(
            "acme".to_owned(),
            Budget {
                daily_usd: Some(1.0),
                monthly_usd: None,
                hard_cap_usd: Some(cap),
            },
        );
        Ledger::in_memory(budgets, Budget::default()).unwrap()
    }

    #[test]
    fn civil_dates() {
        // 2024-02-29T12:00:00Z
        let (day, month) = day_and_month(1_709_208_000_000);
        assert_eq!(day, 19_782);
        assert_eq!(month, 2024 * 12 + 1);
        assert_eq!(day_and_month(0), (0, 1970 * 12));
    }

    #[test]
    fn reserve_settle_release_and_hard_cap() {
        let ledger = capped(0.10);
        let r1 = ledger.reserve("acme", "req1", 0, "openai", 0.06).unwrap();
        // Open reservations count against the cap.
        let err = ledger
            .reserve("acme", "req2", 0, "openai", 0.05)
            .unwrap_err();
        assert!(matches!(err, LedgerError::HardCap { .. }), "{err}");
        ledger.settle(&r1, 0.02).unwrap();
        // Settle is idempotent: later settlements and releases change nothing.
        ledger.settle(&r1, 0.09).unwrap();
        ledger.release(&r1).unwrap();
        let r2 = ledger.reserve("acme", "req2", 0, "openai", 0.05).unwrap();
        ledger.release(&r2).unwrap();
        assert_eq!(
            ledger.attempt_state("req2", 0).unwrap().as_deref(),
            Some("released")
        );
        assert_eq!(
            ledger.attempt_state("req1", 0).unwrap().as_deref(),
            Some("settled")
        );
        let s = ledger.status("acme");
        assert!((s.today_usd - 0.02).abs() < 1e-12, "{s:?}");
        assert_eq!(s.hard_cap_usd, Some(0.10));
        assert_eq!(s.daily_budget_usd, Some(1.0));
        // Other tenants have no cap by default.
        let _open = ledger.reserve("other", "req3", 0, "openai", 100.0).unwrap();
        let tenants = ledger.tenants().unwrap();
        assert_eq!(tenants.len(), 2);
        assert_eq!(tenants[0].settled_attempts, 1);
        assert!((tenants[0].total_usd - 0.02).abs() < 1e-12);
        assert_eq!(tenants[1].open_reservations, 1);
        // The policy sees open reservations too.
        assert!((ledger.status("other").month_usd - 100.0).abs() < 1e-9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_pass_the_cap() {
        let ledger = std::sync::Arc::new(capped(0.10));
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let r = ledger.reserve("acme", &format!("r{i}"), 0, "b", 0.01);
                    // Each attempt's upstream call would run here.
                    tokio::task::yield_now().await;
                    r.is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += usize::from(task.await.unwrap());
        }
        // 10 × $0.01 is exactly $0.10: the in-memory sums are exact.
        assert_eq!(admitted, 10);
        assert_eq!(
            ledger.tenants().unwrap()[0].open_reservations,
            admitted as u64
        );
    }

    #[test]
    fn rows_reach_the_disk_within_the_window_and_a_quick_settlement_folds_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
        let other = Connection::open(&path).unwrap();
        let row = |id: &str| -> Option<(String, Option<f64>)> {
            other
                .query_row(
                    "SELECT state, cost_usd FROM attempts WHERE request_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .unwrap()
        };
        // Written behind: another connection sees the row within a few windows, with no
        // flush from this side.
        let slow = ledger.reserve("acme", "slow", 0, "openai", 0.5).unwrap();
        let seen = (0..500).any(|_| {
            std::thread::sleep(COMMIT_WINDOW);
            row("slow").is_some()
        });
        assert!(seen, "the reservation never reached the database");
        assert_eq!(row("slow"), Some(("reserved".to_owned(), None)));
        // Settled within the same window: folded into one settled row (had the writer
        // committed in between, the reserved row would be settled; the end is the same).
        let quick = ledger.reserve("acme", "quick", 0, "openai", 0.5).unwrap();
        ledger.settle(&quick, 0.125).unwrap();
        ledger.release(&slow).unwrap();
        ledger.flush().unwrap();
        assert_eq!(row("quick"), Some(("settled".to_owned(), Some(0.125))));
        assert_eq!(row("slow"), Some(("released".to_owned(), Some(0.0))));
        // Memory, rows and per-day totals agree.
        assert_eq!(ledger.status("acme").month_usd, 0.125);
        assert_eq!(ledger.tenants().unwrap()[0].total_usd, 0.125);
        let day_total: f64 = other
            .query_row("SELECT SUM(usd) FROM daily_totals", [], |r| r.get(0))
            .unwrap();
        assert!((day_total - 0.125).abs() < 1e-12, "{day_total}");
        drop(ledger);
    }

    #[test]
    fn writes_that_fail_are_kept_and_retried_and_requests_refused_meanwhile() {
        let ledger = capped(1.0);
        let query_only = |on: bool| {
            ledger
                .read(move |conn| Ok(conn.pragma_update(None, "query_only", on)?))
                .unwrap();
        };
        let a = ledger.reserve("acme", "a", 0, "openai", 0.25).unwrap();
        ledger.flush().unwrap();
        // The database refuses writes (as a full disk would).
        query_only(true);
        ledger.settle(&a, 0.125).unwrap();
        let b = ledger.reserve("acme", "b", 0, "openai", 0.25).unwrap();
        ledger.settle(&b, 0.25).unwrap();
        assert!(matches!(ledger.flush(), Err(LedgerError::Unwritable)));
        assert!(matches!(
            ledger.reserve("acme", "c", 0, "openai", 0.01),
            Err(LedgerError::Unwritable)
        ));
        // Nothing is lost: the spend still counts, and the rows land once writes work.
        assert_eq!(ledger.status("acme").month_usd, 0.375);
        query_only(false);
        ledger.flush().unwrap();
        assert_eq!(
            ledger.attempt_state("a", 0).unwrap().as_deref(),
            Some("settled")
        );
        assert_eq!(
            ledger.attempt_state("b", 0).unwrap().as_deref(),
            Some("settled")
        );
        assert_eq!(ledger.tenants().unwrap()[0].total_usd, 0.375);
        assert_eq!(ledger.status("acme").month_usd, 0.375);
        assert!(ledger.reserve("acme", "c", 0, "openai", 0.01).is_ok());
    }

    #[test]
    fn totals_roll_over_by_day_and_month() {
        let mut t = Totals::default();
        t.add(10, 3, 5);
        t.add(10, 3, 2);
        assert_eq!(t.at(10, 3), (7, 7));
        t.add(11, 3, 1);
        assert_eq!(t.at(11, 3), (1, 8));
        // A late settlement of an earlier day counts in the month only.
        t.add(10, 3, 4);
        assert_eq!(t.at(11, 3), (1, 12));
        assert_eq!(t.at(12, 3), (0, 12));
        t.add(40, 4, 3);
        assert_eq!(t.at(40, 4), (3, 3));
        assert_eq!(t.at(41, 5), (0, 0));
    }

    #[test]
    fn reopening_settles_open_reservations_and_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
            let r = ledger.reserve("acme", "a", 0, "openai", 0.5).unwrap();
            ledger.settle(&r, 0.25).unwrap();
            let _open = ledger.reserve("acme", "b", 0, "openai", 0.125).unwrap();
            // Dropped with "b" still open, as a crash would leave it; dropping commits
            // the queued settlement of "a".
        }
        let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
        assert_eq!(
            ledger.attempt_state("b", 0).unwrap().as_deref(),
            Some("settled")
        );
        let t = &ledger.tenants().unwrap()[0];
        assert!((t.total_usd - 0.375).abs() < 1e-12);
        assert_eq!(t.open_reservations, 0);
        // The per-day totals the policy reads agree with the rows.
        assert!((ledger.status("acme").month_usd - 0.375).abs() < 1e-12);
        drop(ledger);

        // A ledger from before the totals table existed is backfilled on open.
        Connection::open(&path)
            .unwrap()
            .execute_batch("DROP TABLE daily_totals")
            .unwrap();
        let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
        let status = ledger.status("acme");
        assert!((status.month_usd - 0.375).abs() < 1e-12);
        assert!((status.today_usd - 0.375).abs() < 1e-12);
    }
}
