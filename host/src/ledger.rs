//! Spend ledger: one row per upstream attempt in an embedded SQLite database (WAL). An
//! attempt is reserved (estimated cost) before dispatch and then settled exactly once with
//! its actual cost, or released. Open reservations left by a crash are settled at their
//! estimate when the ledger opens. Budgets per tenant; a hard cap refuses reservations.
//!
//! One writer thread owns the connection and commits whatever is queued in one
//! transaction (group commit): a reservation is answered once its row is committed, so no
//! upstream call goes out without a durable row; settlements are written behind (their
//! commit follows within milliseconds, is flushed on shutdown, and a crash before it
//! leaves the row reserved, which the next start settles at the estimate). Request
//! threads never touch SQLite: the spend the policy reads comes from per-tenant totals
//! the writer republishes after each commit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::SpendStatus;

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
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    id: i64,
    pub tenant: String,
    pub estimate_usd: f64,
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

/// The spend ledger.
pub struct Ledger {
    queue: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    totals: Arc<RwLock<HashMap<String, Totals>>>,
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

/// A tenant's spend on one day of one month (settled cost plus open reservations).
#[derive(Debug, Clone, Copy)]
struct Totals {
    day: i64,
    month: i64,
    today_usd: f64,
    month_usd: f64,
}

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 512;
/// How long a batch holding only settlements waits for a reservation to share its commit.
const SETTLE_LINGER: Duration = Duration::from_millis(2);
/// WAL pages between automatic checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;
/// An idle writer re-reads every tenant's totals this often (other processes may write).
const REFRESH: Duration = Duration::from_secs(1);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    day          INTEGER NOT NULL,  -- days since 1970-01-01 (UTC)
    month        INTEGER NOT NULL,  -- year * 12 + month - 1
    request_id   TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    backend      TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('reserved', 'settled', 'released')),
    estimate_usd REAL    NOT NULL,
    cost_usd     REAL,
    recovered    INTEGER NOT NULL DEFAULT 0,
    created_ms   INTEGER NOT NULL,
    UNIQUE (request_id, attempt)
);
-- Spend is read from daily_totals; an index over the attempts only cost every insert.
DROP INDEX IF EXISTS attempts_tenant_month;
-- Spend per tenant per day (settled cost plus open reservations), kept by triggers in
-- the same transaction as the attempt rows, so reading a tenant's spend is a lookup of
-- at most 31 rows however many requests it made.
CREATE TABLE IF NOT EXISTS daily_totals (
    tenant TEXT    NOT NULL,
    day    INTEGER NOT NULL,
    month  INTEGER NOT NULL,
    usd    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
CREATE TRIGGER IF NOT EXISTS attempts_insert_total AFTER INSERT ON attempts BEGIN
    INSERT INTO daily_totals (tenant, day, month, usd) VALUES (NEW.tenant, NEW.day, NEW.month, 0)
        ON CONFLICT (tenant, day) DO NOTHING;
    UPDATE daily_totals SET usd = usd + (CASE NEW.state WHEN 'settled' THEN COALESCE(NEW.cost_usd, 0)
                                                        WHEN 'reserved' THEN NEW.estimate_usd ELSE 0 END)
        WHERE tenant = NEW.tenant AND day = NEW.day;
END;
CREATE TRIGGER IF NOT EXISTS attempts_update_total AFTER UPDATE OF state, cost_usd ON attempts BEGIN
    UPDATE daily_totals SET usd = usd
        - (CASE OLD.state WHEN 'settled' THEN COALESCE(OLD.cost_usd, 0)
                          WHEN 'reserved' THEN OLD.estimate_usd ELSE 0 END)
        + (CASE NEW.state WHEN 'settled' THEN COALESCE(NEW.cost_usd, 0)
                          WHEN 'reserved' THEN NEW.estimate_usd ELSE 0 END)
        WHERE tenant = NEW.tenant AND day = NEW.day;
END;
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
                      created_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'reserved', ?7, ?8)";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// (day number, month number) of a Unix time in ms, UTC.
fn day_and_month(ms: i64) -> (i64, i64) {
    let days = ms.div_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (days, y * 12 + m - 1)
}

/// Totals for `month` (?2) with day ?1's share, of every tenant (a scan: idle refreshes).
const MONTH_TOTALS: &str = "
SELECT tenant, COALESCE(SUM(CASE WHEN day = ?1 THEN usd ELSE 0 END), 0), COALESCE(SUM(usd), 0)
FROM daily_totals WHERE month = ?2 GROUP BY tenant";

/// The same for tenant ?3 alone (a primary-key range: the hard-cap check, and the refresh
/// after every commit); no row when the tenant has none this month.
const TENANT_MONTH_TOTALS: &str = "
SELECT tenant, COALESCE(SUM(CASE WHEN day = ?1 THEN usd ELSE 0 END), 0), COALESCE(SUM(usd), 0)
FROM daily_totals WHERE tenant = ?3 AND month = ?2 GROUP BY tenant";

/// How a settlement closes a reservation.
#[derive(Debug, Clone, Copy)]
enum Closing {
    Settled(f64),
    Released,
}

/// A write the writer thread commits.
enum Write {
    Reserve {
        tenant: String,
        request_id: String,
        attempt: u32,
        backend: String,
        estimate_usd: f64,
        cap: Option<f64>,
        reply: tokio::sync::oneshot::Sender<Result<Reservation, LedgerError>>,
    },
    Close {
        id: i64,
        tenant: String,
        closing: Closing,
    },
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
        let totals = Arc::new(RwLock::new(HashMap::new()));
        let mut writer = Writer {
            conn,
            totals: totals.clone(),
        };
        if let Err(e) = writer.refresh_all() {
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
            totals,
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

    /// Reserves `estimate_usd` for one attempt and returns once its row is committed.
    /// Refused when the tenant's month spend plus open reservations plus this estimate
    /// would pass its hard cap; the check and the insert share one write transaction, so
    /// concurrent reservations (other processes included) cannot overshoot the cap together.
    pub async fn reserve(
        &self,
        tenant: &str,
        request_id: &str,
        attempt: u32,
        backend: &str,
        estimate_usd: f64,
    ) -> Result<Reservation, LedgerError> {
        let estimate_usd = if estimate_usd.is_finite() && estimate_usd > 0.0 {
            estimate_usd
        } else {
            0.0
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Op::Write(Write::Reserve {
            tenant: tenant.to_owned(),
            request_id: request_id.to_owned(),
            attempt,
            backend: backend.to_owned(),
            estimate_usd,
            cap: self.budget(tenant).hard_cap_usd,
            reply,
        }))?;
        PendingReservation {
            answer: Some(answer),
            queue: self.queue.clone(),
        }
        .wait()
        .await
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

    fn close(&self, reservation: &Reservation, closing: Closing) -> Result<(), LedgerError> {
        self.send(Op::Write(Write::Close {
            id: reservation.id,
            tenant: reservation.tenant.clone(),
            closing,
        }))
    }

    /// Waits until every write queued so far is committed (blocking).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.read(|_| Ok(()))
    }

    /// Spend and budgets of `tenant` (settled cost plus open reservations), for the policy:
    /// as of the writer's last commit (or its last refresh, for other processes' writes).
    pub fn status(&self, tenant: &str) -> SpendStatus {
        let (day, month) = day_and_month(now_ms());
        let totals = self
            .totals
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .copied();
        let (today_usd, month_usd) = match totals {
            Some(t) if t.month == month && t.day == day => (t.today_usd, t.month_usd),
            Some(t) if t.month == month => (0.0, t.month_usd),
            _ => (0.0, 0.0),
        };
        let budget = self.budget(tenant);
        SpendStatus {
            scope: tenant.to_owned(),
            today_usd,
            month_usd,
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

/// A reservation being committed. Dropped unanswered (the request went away), it makes
/// sure the row does not stay reserved: released here if the answer already came, else by
/// the writer when it cannot deliver the answer.
struct PendingReservation {
    answer: Option<tokio::sync::oneshot::Receiver<Result<Reservation, LedgerError>>>,
    queue: Option<mpsc::Sender<Op>>,
}

impl PendingReservation {
    async fn wait(&mut self) -> Result<Reservation, LedgerError> {
        let answer = self.answer.as_mut().ok_or(LedgerError::Stopped)?;
        let result = answer.await;
        self.answer = None;
        result.map_err(|_| LedgerError::Stopped)?
    }
}

impl Drop for PendingReservation {
    fn drop(&mut self) {
        let Some(mut answer) = self.answer.take() else {
            return;
        };
        answer.close();
        if let (Ok(Ok(r)), Some(queue)) = (answer.try_recv(), &self.queue) {
            let _ = queue.send(Op::Write(Write::Close {
                id: r.id,
                tenant: r.tenant,
                closing: Closing::Released,
            }));
        }
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

/// The writer thread's side: the connection and the totals it publishes.
struct Writer {
    conn: Connection,
    totals: Arc<RwLock<HashMap<String, Totals>>>,
}

impl Writer {
    /// Takes operations until every sender is gone, committing them in groups.
    fn run(&mut self, ops: &mpsc::Receiver<Op>) {
        loop {
            let first = match ops.recv_timeout(REFRESH) {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.refresh_all() {
                        tracing::debug!(error = %e, "refreshing the spend totals failed");
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            let linger_until = Instant::now() + SETTLE_LINGER;
            loop {
                while batch.len() < MAX_BATCH {
                    match ops.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                // Settlements alone wait briefly for a reservation to share the commit.
                let only_settlements = batch
                    .iter()
                    .all(|op| matches!(op, Op::Write(Write::Close { .. })));
                let wait = linger_until.saturating_duration_since(Instant::now());
                if batch.len() >= MAX_BATCH || !only_settlements || wait.is_zero() {
                    break;
                }
                match ops.recv_timeout(wait) {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
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

    /// Commits `writes` in one transaction; if that fails, each in its own.
    fn commit(&mut self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        let outcomes = match self.transaction(&writes) {
            Ok(outcomes) => outcomes,
            Err(e) if writes.len() > 1 => {
                tracing::warn!(error = %e, writes = writes.len(),
                    "ledger group commit failed; committing its writes one by one");
                for write in writes {
                    self.commit(vec![write]);
                }
                return;
            }
            Err(e) => {
                match writes.into_iter().next() {
                    Some(Write::Reserve { reply, .. }) => {
                        let _ = reply.send(Err(LedgerError::Db(e)));
                    }
                    Some(Write::Close { .. }) => tracing::error!(error = %e,
                        "ledger settle failed; the reservation stays open until restart"),
                    None => {}
                }
                return;
            }
        };
        let mut touched: Vec<String> = Vec::new();
        let mut orphaned = Vec::new();
        for (write, outcome) in writes.into_iter().zip(outcomes) {
            let tenant = match write {
                Write::Reserve { tenant, reply, .. } => {
                    let Some(outcome) = outcome else { continue };
                    let reserved = outcome.is_ok();
                    // The request went away while its row was being committed: nothing
                    // will be dispatched for it, so release the row now.
                    if let Err(Ok(r)) = reply.send(outcome) {
                        orphaned.push(Write::Close {
                            id: r.id,
                            tenant: r.tenant,
                            closing: Closing::Released,
                        });
                    }
                    if !reserved {
                        continue;
                    }
                    tenant
                }
                Write::Close { tenant, .. } => tenant,
            };
            if !touched.contains(&tenant) {
                touched.push(tenant);
            }
        }
        for tenant in touched {
            if let Err(e) = self.refresh(&tenant) {
                tracing::warn!(error = %e, "reading the spend totals after a commit failed");
            }
        }
        self.commit(orphaned);
    }

    /// One write transaction over `writes`: each reservation's row or refusal (`None` for
    /// settlements), or the database error that rolled the whole transaction back.
    fn transaction(
        &mut self,
        writes: &[Write],
    ) -> Result<Vec<Option<Result<Reservation, LedgerError>>>, rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        let (day, month) = day_and_month(now);
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Reserve {
                    tenant,
                    request_id,
                    attempt,
                    backend,
                    estimate_usd,
                    cap,
                    ..
                } => {
                    if let Some(cap) = *cap {
                        let spent: f64 = tx
                            .prepare_cached(TENANT_MONTH_TOTALS)?
                            .query_row(params![day, month, tenant], |r| r.get(2))
                            .optional()?
                            .unwrap_or(0.0);
                        if spent + estimate_usd > cap {
                            outcomes.push(Some(Err(LedgerError::HardCap {
                                tenant: tenant.clone(),
                                cap,
                                spent,
                                estimate: *estimate_usd,
                            })));
                            continue;
                        }
                    }
                    tx.prepare_cached(INSERT_ATTEMPT)?.execute(params![
                        tenant,
                        day,
                        month,
                        request_id,
                        attempt,
                        backend,
                        estimate_usd,
                        now
                    ])?;
                    outcomes.push(Some(Ok(Reservation {
                        id: tx.last_insert_rowid(),
                        tenant: tenant.clone(),
                        estimate_usd: *estimate_usd,
                    })));
                }
                Write::Close { id, closing, .. } => {
                    let (state, cost) = match closing {
                        Closing::Settled(cost) => ("settled", *cost),
                        Closing::Released => ("released", 0.0),
                    };
                    tx.prepare_cached(
                        "UPDATE attempts SET state = ?2, cost_usd = ?3 WHERE id = ?1 AND state = 'reserved'",
                    )?
                    .execute(params![id, state, cost])?;
                    outcomes.push(None);
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Re-reads `tenant`'s totals for this month.
    fn refresh(&self, tenant: &str) -> Result<(), rusqlite::Error> {
        let read = self.read_totals(Some(tenant))?;
        let mut totals = self.totals.write().unwrap_or_else(PoisonError::into_inner);
        match read.into_iter().next() {
            Some((tenant, t)) => totals.insert(tenant, t),
            None => totals.remove(tenant),
        };
        Ok(())
    }

    /// Re-reads every tenant's totals for this month.
    fn refresh_all(&self) -> Result<(), rusqlite::Error> {
        let fresh = self.read_totals(None)?.into_iter().collect();
        *self.totals.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// This month's totals of `tenant`, or of every tenant.
    fn read_totals(&self, tenant: Option<&str>) -> Result<Vec<(String, Totals)>, rusqlite::Error> {
        let (day, month) = day_and_month(now_ms());
        let row = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, String>(0)?,
                Totals {
                    day,
                    month,
                    today_usd: r.get(1)?,
                    month_usd: r.get(2)?,
                },
            ))
        };
        match tenant {
            Some(tenant) => self
                .conn
                .prepare_cached(TENANT_MONTH_TOTALS)?
                .query_map(params![day, month, tenant], row)?
                .collect(),
            None => self
                .conn
                .prepare_cached(MONTH_TOTALS)?
                .query_map(params![day, month], row)?
                .collect(),
        }
    }
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

    #[tokio::test]
    async fn reserve_settle_release_and_hard_cap() {
        let ledger = capped(0.10);
        let r1 = ledger
            .reserve("acme", "req1", 0, "openai", 0.06)
            .await
            .unwrap();
        // Open reservations count against the cap.
        let err = ledger
            .reserve("acme", "req2", 0, "openai", 0.05)
            .await
            .unwrap_err();
        assert!(matches!(err, LedgerError::HardCap { .. }), "{err}");
        ledger.settle(&r1, 0.02).unwrap();
        // Settle is idempotent: later settlements and releases change nothing.
        ledger.settle(&r1, 0.09).unwrap();
        ledger.release(&r1).unwrap();
        let r2 = ledger
            .reserve("acme", "req2", 0, "openai", 0.05)
            .await
            .unwrap();
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
        ledger
            .reserve("other", "req3", 0, "openai", 100.0)
            .await
            .unwrap();
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
                    ledger
                        .reserve("acme", &format!("r{i}"), 0, "b", 0.01)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += usize::from(task.await.unwrap());
        }
        assert!(admitted <= 10, "{admitted}");
        assert!(admitted >= 9, "{admitted}");
        assert_eq!(
            ledger.tenants().unwrap()[0].open_reservations,
            admitted as u64
        );
    }

    #[tokio::test]
    async fn a_reservation_nobody_waits_for_is_released() {
        let ledger = capped(1.0);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // Dropped before its answer is read, as when the client goes away. (The writer
        // may answer before the first poll returns; then try again.)
        let mut dropped = None;
        for attempt in 0..100 {
            let id = format!("gone{attempt}");
            let mut pending = Box::pin(ledger.reserve("acme", &id, 0, "b", 0.01));
            match pending.as_mut().poll(&mut cx) {
                std::task::Poll::Pending => {
                    drop(pending);
                    dropped = Some(id);
                    break;
                }
                std::task::Poll::Ready(r) => ledger.release(&r.unwrap()).unwrap(),
            }
        }
        let id = dropped.expect("the writer answered every reservation before its first poll");
        assert_eq!(
            ledger.attempt_state(&id, 0).unwrap().as_deref(),
            Some("released")
        );
        ledger.flush().unwrap();
        assert!(ledger.status("acme").month_usd.abs() < 1e-12);
    }

    #[tokio::test]
    async fn reopening_settles_open_reservations_and_keeps_rows() {
        let dir =
            std::env::temp_dir().join(format!("switchyard-ledger-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.db");
        let _ = std::fs::remove_file(&path);
        {
            let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
            let r = ledger.reserve("acme", "a", 0, "openai", 0.5).await.unwrap();
            ledger.settle(&r, 0.25).unwrap();
            ledger
                .reserve("acme", "b", 0, "openai", 0.125)
                .await
                .unwrap();
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
