//! The embedded SQLite store (WAL), the default: one writer thread owns the connection;
//! it collects writes for [`COMMIT_WINDOW`] and commits them in one transaction, per-day
//! totals included (one upsert per tenant and day). A reservation's row is thus durable
//! within a few milliseconds, while its upstream call runs; a settlement that arrives
//! before its reservation's row was written is folded into it (one settled row). A crash
//! loses at most the last window's rows; the next start settles reservations still open at
//! their estimate. Admission is in memory (see [`super::Ledger::reserve`]): request threads
//! never touch SQLite.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::totals::{SpendMap, Totals, replace_committed, to_nanos};
use super::{
    COMMIT_WINDOW, Closing, LedgerError, MAX_BATCH, NewAttempt, REFRESH, RETRY, Shared,
    TenantSpend, Write, day_and_month, dequeue,
};
use crate::time::now_ms;

/// WAL pages between automatic checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;

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

/// Work for the writer thread, in queue order.
enum Op {
    Write(Write),
    /// Runs on the connection after every earlier write has been committed.
    Read(Box<dyn FnOnce(&Connection) + Send>),
}

/// The SQLite store: the queue to its writer thread.
pub(super) struct Store {
    queue: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
}

impl Store {
    pub(super) fn open(path: &Path, shared: &Shared) -> Result<Self, LedgerError> {
        Self::init(Connection::open(path)?, shared)
    }

    pub(super) fn inspect(path: &Path, shared: &Shared) -> Result<Self, LedgerError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Self::start(conn, shared)
    }

    pub(super) fn in_memory(shared: &Shared) -> Result<Self, LedgerError> {
        Self::init(Connection::open_in_memory()?, shared)
    }

    fn init(conn: Connection, shared: &Shared) -> Result<Self, LedgerError> {
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
        Self::start(conn, shared)
    }

    /// Loads the totals and hands the connection to the writer thread.
    fn start(conn: Connection, shared: &Shared) -> Result<Self, LedgerError> {
        let mut writer = Writer {
            conn,
            spend: shared.spend.clone(),
            failing: shared.failing.clone(),
            held: shared.held.clone(),
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
        })
    }

    fn send_op(&self, op: Op) -> Result<(), LedgerError> {
        self.queue
            .as_ref()
            .ok_or(LedgerError::Stopped)?
            .send(op)
            .map_err(|_| LedgerError::Stopped)
    }

    pub(super) fn send(&self, write: Write) -> Result<(), LedgerError> {
        self.send_op(Op::Write(write))
    }

    /// Runs `read` on the writer thread after every write queued before it has been
    /// committed, and waits for its answer (blocking: for tools, tests and shutdown).
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send_op(Op::Read(Box::new(move |conn| {
            let _ = reply.send(read(conn));
        })))?;
        answer.recv().map_err(|_| LedgerError::Stopped)?
    }

    pub(super) fn flush(&self) -> Result<(), LedgerError> {
        self.read(|_| Ok(()))
    }

    pub(super) fn tenants(&self, day: i64, month: i64) -> Result<Vec<TenantSpend>, LedgerError> {
        self.read(move |conn| {
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

    pub(super) fn attempt_state(
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

impl Drop for Store {
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
    /// How many writes wait for retry (for [`super::WhenDown::Serve`]'s bound).
    held: Arc<AtomicUsize>,
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
        self.held.store(self.retry.len(), Ordering::Relaxed);
    }

    /// After a commit: remembers open rows and moves the writes' amounts from queued to
    /// committed.
    fn committed(&mut self, writes: &[Write], done: Committed) {
        self.open.extend(done.opened);
        for seq in done.closed {
            self.open.remove(&seq);
        }
        dequeue(&self.spend, writes, true);
    }

    /// Drops writes that can never be committed.
    fn discard(&mut self, writes: Vec<Write>) {
        dequeue(&self.spend, &writes, false);
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
                    new:
                        NewAttempt {
                            tenant,
                            day,
                            month,
                            request_id,
                            attempt,
                            backend,
                            estimate_usd,
                            created_ms,
                        },
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
                    ..
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
        let fresh: HashMap<String, Totals> = self
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
        replace_committed(&self.spend, fresh, day, month);
        Ok(())
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{Budget, Ledger, Store as Backend};
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
        let slow = block_on(ledger.reserve("acme", "slow", 0, "openai", 0.5)).unwrap();
        let seen = (0..500).any(|_| {
            std::thread::sleep(COMMIT_WINDOW);
            row("slow").is_some()
        });
        assert!(seen, "the reservation never reached the database");
        assert_eq!(row("slow"), Some(("reserved".to_owned(), None)));
        // Settled within the same window: folded into one settled row (had the writer
        // committed in between, the reserved row would be settled; the end is the same).
        let quick = block_on(ledger.reserve("acme", "quick", 0, "openai", 0.5)).unwrap();
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
            let Backend::Sqlite(store) = &ledger.store else {
                unreachable!("an in-memory ledger is SQLite")
            };
            store
                .read(move |conn| Ok(conn.pragma_update(None, "query_only", on)?))
                .unwrap();
        };
        let a = block_on(ledger.reserve("acme", "a", 0, "openai", 0.25)).unwrap();
        ledger.flush().unwrap();
        // The database refuses writes (as a full disk would).
        query_only(true);
        ledger.settle(&a, 0.125).unwrap();
        let b = block_on(ledger.reserve("acme", "b", 0, "openai", 0.25)).unwrap();
        ledger.settle(&b, 0.25).unwrap();
        assert!(matches!(ledger.flush(), Err(LedgerError::Unwritable)));
        assert!(matches!(
            block_on(ledger.reserve("acme", "c", 0, "openai", 0.01)),
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
        assert!(block_on(ledger.reserve("acme", "c", 0, "openai", 0.01)).is_ok());
    }

    #[test]
    fn a_ledger_from_before_the_totals_table_is_backfilled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
            let r = block_on(ledger.reserve("acme", "a", 0, "openai", 0.5)).unwrap();
            ledger.settle(&r, 0.375).unwrap();
        }
        Connection::open(&path)
            .unwrap()
            .execute_batch("DROP TABLE daily_totals")
            .unwrap();
        let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
        let status = ledger.status("acme");
        assert!((status.month_usd - 0.375).abs() < 1e-12);
        assert!((status.today_usd - 0.375).abs() < 1e-12);
    }

    /// Runs a SQLite reservation (ready at once) to completion.
    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
