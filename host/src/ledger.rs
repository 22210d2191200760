//! Spend ledger: one row per upstream attempt in an embedded SQLite database (WAL). An
//! attempt is reserved (estimated cost) before dispatch and then settled exactly once with
//! its actual cost, or released. Open reservations left by a crash are settled at their
//! estimate when the ledger opens. Budgets per tenant; a hard cap refuses reservations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

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
#[derive(Debug)]
pub struct Ledger {
    conn: Mutex<Connection>,
    budgets: BTreeMap<String, Budget>,
    default_budget: Budget,
}

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
CREATE INDEX IF NOT EXISTS attempts_tenant_month ON attempts (tenant, month);
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

/// A tenant's spend this month and today, from `daily_totals`.
const MONTH_AND_DAY: &str = "
SELECT COALESCE(SUM(CASE WHEN day = ?2 THEN usd ELSE 0 END), 0), COALESCE(SUM(usd), 0)
FROM daily_totals WHERE tenant = ?1 AND month = ?3";

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
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn: Mutex::new(conn),
            budgets,
            default_budget,
        })
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
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
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
        Ok(Self {
            conn: Mutex::new(conn),
            budgets,
            default_budget,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The budget of `tenant`.
    pub fn budget(&self, tenant: &str) -> Budget {
        self.budgets
            .get(tenant)
            .copied()
            .unwrap_or(self.default_budget)
    }

    /// Reserves `estimate_usd` for one attempt. Refused when the tenant's month spend plus
    /// open reservations plus this estimate would pass its hard cap. Atomic: concurrent
    /// reservations cannot overshoot the cap together.
    pub fn reserve(
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
        let now = now_ms();
        let (day, month) = day_and_month(now);
        let insert = params![
            tenant,
            day,
            month,
            request_id,
            attempt,
            backend,
            estimate_usd,
            now
        ];
        let mut conn = self.conn();
        let Some(cap) = self.budget(tenant).hard_cap_usd else {
            // No cap to check: one autocommit insert.
            conn.prepare_cached(INSERT_ATTEMPT)?.execute(insert)?;
            let id = conn.last_insert_rowid();
            return Ok(Reservation {
                id,
                tenant: tenant.to_owned(),
                estimate_usd,
            });
        };
        // The cap check and the insert in one write transaction, so that concurrent
        // reservations (other processes included) cannot overshoot the cap together.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (_, spent): (f64, f64) = tx
            .prepare_cached(MONTH_AND_DAY)?
            .query_row(params![tenant, day, month], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if spent + estimate_usd > cap {
            return Err(LedgerError::HardCap {
                tenant: tenant.to_owned(),
                cap,
                spent,
                estimate: estimate_usd,
            });
        }
        tx.prepare_cached(INSERT_ATTEMPT)?.execute(insert)?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Reservation {
            id,
            tenant: tenant.to_owned(),
            estimate_usd,
        })
    }

    /// Settles a reservation with its actual cost. Idempotent: only the first call on an
    /// open reservation changes it; returns whether this call did.
    pub fn settle(&self, reservation: &Reservation, cost_usd: f64) -> Result<bool, LedgerError> {
        let cost = if cost_usd.is_finite() && cost_usd > 0.0 {
            cost_usd
        } else {
            0.0
        };
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE attempts SET state = 'settled', cost_usd = ?2 WHERE id = ?1 AND state = 'reserved'",
            )?
            .execute(params![reservation.id, cost])?;
        Ok(n == 1)
    }

    /// Releases a reservation whose attempt cost nothing (it failed). Idempotent.
    pub fn release(&self, reservation: &Reservation) -> Result<bool, LedgerError> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE attempts SET state = 'released', cost_usd = 0 WHERE id = ?1 AND state = 'reserved'",
            )?
            .execute(params![reservation.id])?;
        Ok(n == 1)
    }

    /// Spend and budgets of `tenant` (settled cost plus open reservations), for the policy.
    pub fn status(&self, tenant: &str) -> Result<SpendStatus, LedgerError> {
        let (day, month) = day_and_month(now_ms());
        let (today, month_total): (f64, f64) = self
            .conn()
            .prepare_cached(MONTH_AND_DAY)?
            .query_row(params![tenant, day, month], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let budget = self.budget(tenant);
        Ok(SpendStatus {
            scope: tenant.to_owned(),
            today_usd: today,
            month_usd: month_total,
            daily_budget_usd: budget.daily_usd,
            monthly_budget_usd: budget.monthly_usd,
            hard_cap_usd: budget.hard_cap_usd,
        })
    }

    /// Spend of every tenant, by name.
    pub fn tenants(&self) -> Result<Vec<TenantSpend>, LedgerError> {
        let (day, month) = day_and_month(now_ms());
        let conn = self.conn();
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
    }

    /// State of the attempt row (`reserved`, `settled`, `released`), for tests and audits.
    pub fn attempt_state(
        &self,
        request_id: &str,
        attempt: u32,
    ) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT state FROM attempts WHERE request_id = ?1 AND attempt = ?2",
                params![request_id, attempt],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
        assert!(ledger.settle(&r1, 0.02).unwrap());
        assert!(!ledger.settle(&r1, 0.09).unwrap(), "settle is idempotent");
        assert!(!ledger.release(&r1).unwrap());
        let r2 = ledger.reserve("acme", "req2", 0, "openai", 0.05).unwrap();
        assert!(ledger.release(&r2).unwrap());
        assert_eq!(
            ledger.attempt_state("req2", 0).unwrap().as_deref(),
            Some("released")
        );
        let s = ledger.status("acme").unwrap();
        assert!((s.today_usd - 0.02).abs() < 1e-12);
        assert_eq!(s.hard_cap_usd, Some(0.10));
        assert_eq!(s.daily_budget_usd, Some(1.0));
        // Other tenants have no cap by default.
        ledger.reserve("other", "req3", 0, "openai", 100.0).unwrap();
        let tenants = ledger.tenants().unwrap();
        assert_eq!(tenants.len(), 2);
        assert_eq!(tenants[0].settled_attempts, 1);
        assert_eq!(tenants[1].open_reservations, 1);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_cap() {
        let ledger = std::sync::Arc::new(capped(0.10));
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    ledger
                        .reserve("acme", &format!("r{i}"), 0, "b", 0.01)
                        .is_ok()
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert!(admitted <= 10, "{admitted}");
        assert!(admitted >= 9, "{admitted}");
    }

    #[test]
    fn reopening_settles_open_reservations_and_keeps_rows() {
        let dir =
            std::env::temp_dir().join(format!("switchyard-ledger-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.db");
        let _ = std::fs::remove_file(&path);
        {
            let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
            let r = ledger.reserve("acme", "a", 0, "openai", 0.5).unwrap();
            ledger.settle(&r, 0.25).unwrap();
            ledger.reserve("acme", "b", 0, "openai", 0.125).unwrap();
            // Dropped with "b" still open, as a crash would leave it.
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
        assert!((ledger.status("acme").unwrap().month_usd - 0.375).abs() < 1e-12);

        // A ledger from before the totals table existed is backfilled on open.
        ledger
            .conn()
            .execute_batch("DROP TABLE daily_totals")
            .unwrap();
        drop(ledger);
        let ledger = Ledger::open(&path, BTreeMap::new(), Budget::default()).unwrap();
        let status = ledger.status("acme").unwrap();
        assert!((status.month_usd - 0.375).abs() < 1e-12);
        assert!((status.today_usd - 0.375).abs() < 1e-12);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
