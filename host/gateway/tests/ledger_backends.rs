//! The spend ledger's semantics on both stores, SQLite and PostgreSQL (a real server
//! started by the test): reserve, settle exactly once, release, the hard cap under
//! concurrency (across two replicas on PostgreSQL), reopening, recovery of a dead
//! replica's reservations, refusal while the database is down and recovery after it, TLS
//! to the database with the server's certificate verified, and what a reservation costs
//! on each store (printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg_server.rs"]
mod pg_server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_server::PgServer;
use switchyard_gateway::ledger::{Budget, Ledger, LedgerError, PostgresUrl};

fn budgets(cap: f64) -> BTreeMap<String, Budget> {
    let mut budgets = BTreeMap::new();
    budgets.insert(
        "acme".to_owned(),
        Budget {
            daily_usd: Some(1.0),
            monthly_usd: None,
            hard_cap_usd: Some(cap),
        },
    );
    budgets
}

/// A way to open a ledger: a SQLite file or a PostgreSQL database.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(Box<PostgresUrl>),
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A new database on `server`.
    fn postgres(server: &PgServer, db: &str) -> Self {
        Backend::Postgres(Box::new(
            PostgresUrl::parse(&server.database(db), None).unwrap(),
        ))
    }

    /// Opens a ledger (another replica, on PostgreSQL); blocking.
    fn open(&self, budgets: BTreeMap<String, Budget>) -> Ledger {
        match self {
            Backend::Sqlite(dir) => {
                Ledger::open(&dir.path().join("ledger.db"), budgets, Budget::default()).unwrap()
            }
            Backend::Postgres(url) => Ledger::connect(url, budgets, Budget::default()).unwrap(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

async fn reserve_settle_release_and_hard_cap(backend: &Backend) {
    let ledger = backend.open(budgets(0.10));
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
    ledger.flush().unwrap();
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
    let _open = ledger
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

/// 100 concurrent reservations of $0.01 against a $0.10 cap, spread over `replicas`
/// ledgers on one database: exactly 10 are admitted.
async fn concurrent_reservations_never_pass_the_cap(backend: &Backend, replicas: usize) {
    let ledgers: Vec<Arc<Ledger>> = (0..replicas)
        .map(|_| Arc::new(backend.open(budgets(0.10))))
        .collect();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let ledger = ledgers[i % replicas].clone();
            tokio::spawn(async move {
                let r = ledger.reserve("acme", &format!("r{i}"), 0, "b", 0.01).await;
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
    // 10 × $0.01 is exactly $0.10: the sums are exact.
    assert_eq!(admitted, 10, "{}", backend.name());
    assert_eq!(
        ledgers[0].tenants().unwrap()[0].open_reservations,
        admitted as u64
    );
}

async fn reopening_settles_open_reservations_and_keeps_rows(backend: &Backend) {
    {
        let ledger = backend.open(BTreeMap::new());
        let r = ledger.reserve("acme", "a", 0, "openai", 0.5).await.unwrap();
        ledger.settle(&r, 0.25).unwrap();
        let _open = ledger
            .reserve("acme", "b", 0, "openai", 0.125)
            .await
            .unwrap();
        // Dropped with "b" still open: SQLite settles it on the next open, a PostgreSQL
        // replica as it leaves; dropping commits the queued settlement of "a".
    }
    let ledger = backend.open(BTreeMap::new());
    let t = &ledger.tenants().unwrap()[0];
    assert!((t.total_usd - 0.375).abs() < 1e-12, "{t:?}");
    assert_eq!(t.open_reservations, 0);
    assert_eq!(t.settled_attempts, 2);
    // The totals the policy reads agree with the rows.
    assert!((ledger.status("acme").month_usd - 0.375).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_semantics() {
    let backend = Backend::sqlite();
    reserve_settle_release_and_hard_cap(&backend).await;
    concurrent_reservations_never_pass_the_cap(&Backend::sqlite(), 1).await;
    reopening_settles_open_reservations_and_keeps_rows(&Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_semantics() {
    let server = PgServer::start();
    reserve_settle_release_and_hard_cap(&Backend::postgres(&server, "basics")).await;
    concurrent_reservations_never_pass_the_cap(&Backend::postgres(&server, "one"), 1).await;
    // Three replicas on one database cannot pass the cap together either.
    concurrent_reservations_never_pass_the_cap(&Backend::postgres(&server, "three"), 3).await;
    reopening_settles_open_reservations_and_keeps_rows(&Backend::postgres(&server, "reopen")).await;
}

/// A replica that died with reservations open (its lease row expired) has them settled
/// at their estimate by a live one, and the totals stay what they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recovers_a_dead_replicas_reservations() {
    let server = PgServer::start();
    let url = server.database("ledger");
    let ledger = Ledger::connect(
        &PostgresUrl::parse(&url, None).unwrap(),
        budgets(1.0),
        Budget::default(),
    )
    .unwrap();
    // What a replica killed mid-request leaves: a capped reservation (row and totals),
    // and a lease that is no longer renewed.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (day, month): (i64, i64) = {
        let r = ledger.reserve("acme", "probe", 0, "b", 0.0).await.unwrap();
        ledger.release(&r).unwrap();
        ledger.flush().unwrap();
        let row = client
            .query_one(
                "SELECT day, month FROM attempts WHERE request_id = 'probe'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    client
        .batch_execute(&format!(
            "INSERT INTO replicas VALUES ('ghost', 0, 0);
             INSERT INTO attempts (tenant, day, month, request_id, attempt, backend, state,
                                   estimate_nanos, replica, created_ms)
             VALUES ('acme', {day}, {month}, 'lost', 0, 'b', 'reserved', 250000000, 'ghost', 0);
             INSERT INTO month_totals VALUES ('acme', {month}, 250000000)
             ON CONFLICT (tenant, month) DO UPDATE SET nanos = month_totals.nanos + 250000000;
             INSERT INTO daily_totals VALUES ('acme', {day}, {month}, 250000000)
             ON CONFLICT (tenant, day) DO UPDATE SET nanos = daily_totals.nanos + 250000000;"
        ))
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let state: String = client
            .query_one("SELECT state FROM attempts WHERE request_id = 'lost'", &[])
            .await
            .unwrap()
            .get(0);
        if state == "settled" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the dead replica's reservation was never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = &ledger.tenants().unwrap()[0];
    assert_eq!(t.open_reservations, 0);
    assert!((t.total_usd - 0.25).abs() < 1e-12, "{t:?}");
    // Its estimate still counts against the cap: $0.75 is left of $1.00.
    assert!(ledger.reserve("acme", "c", 0, "b", 0.80).await.is_err());
    let ok = ledger.reserve("acme", "d", 0, "b", 0.75).await.unwrap();
    ledger.settle(&ok, 0.75).unwrap();
    let ghosts: i64 = client
        .query_one("SELECT COUNT(*) FROM replicas WHERE id = 'ghost'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ghosts, 0);
}

/// While the database is down reservations are refused (fail closed); once it is back,
/// the writes held meanwhile land and reservations are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_refuses_reservations_then_recovers() {
    let server = PgServer::start();
    let url = PostgresUrl::parse(&server.database("ledger"), None).unwrap();
    let ledger = Arc::new(Ledger::connect(&url, budgets(10.0), Budget::default()).unwrap());
    let a = ledger.reserve("acme", "a", 0, "b", 0.5).await.unwrap();
    let free = ledger.reserve("other", "f", 0, "b", 0.5).await.unwrap();
    ledger.flush().unwrap();
    server.stop();
    // Settled while the database is down: held for retry.
    ledger.settle(&a, 0.25).unwrap();
    ledger.settle(&free, 0.125).unwrap();
    let start = Instant::now();
    let mut n = 0;
    for tenant in ["acme", "other"] {
        loop {
            n += 1;
            match ledger
                .reserve(tenant, &format!("down{n}"), 0, "b", 0.01)
                .await
            {
                Err(LedgerError::HardCap { .. }) => panic!("refused as over the cap"),
                Err(_) => break,
                Ok(r) => ledger.release(&r).unwrap(),
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "reservations still admitted with the database down"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.start_again();
    let start = Instant::now();
    let r = loop {
        if let Ok(r) = ledger.reserve("acme", "back", 0, "b", 0.01).await {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "reservations still refused after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ledger.settle(&r, 0.01).unwrap();
    let tenants = ledger.tenants().unwrap();
    assert_eq!(tenants[0].tenant, "acme");
    assert!((tenants[0].total_usd - 0.26).abs() < 1e-9, "{tenants:?}");
    assert!((tenants[1].total_usd - 0.125).abs() < 1e-9, "{tenants:?}");
    assert!(tenants.iter().all(|t| t.open_reservations == 0));
}

/// What one reserve + settle costs the request path on each store, printed (no timing
/// assertion): SQLite (admission in memory, written behind), PostgreSQL without a hard
/// cap (written behind too) and with one (a round trip to the database per reservation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_cost_per_store() {
    const N: u32 = 2000;
    let server = PgServer::start();
    let url = PostgresUrl::parse(&server.database("bench"), None).unwrap();
    let sqlite = Backend::sqlite();
    let stores = [
        ("sqlite", sqlite.open(budgets(1e9))),
        (
            "postgres",
            Ledger::connect(&url, budgets(1e9), Budget::default()).unwrap(),
        ),
    ];
    let mut report = String::new();
    for (name, ledger) in &stores {
        for tenant in ["acme", "uncapped"] {
            let start = Instant::now();
            for i in 0..N {
                let r = ledger
                    .reserve(tenant, &format!("{tenant}-{i}"), 0, "b", 0.001)
                    .await
                    .unwrap();
                ledger.settle(&r, 0.0005).unwrap();
            }
            let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(N);
            ledger.flush().unwrap();
            let cap = if tenant == "acme" {
                "hard cap"
            } else {
                "no cap"
            };
            report.push_str(&format!(
                "ledger {name:8} {cap:8}: {per:7.1} µs per reserve+settle (sequential, {N})\n"
            ));
        }
        let rows = ledger.tenants().unwrap();
        let settled: u64 = rows.iter().map(|t| t.settled_attempts).sum();
        assert_eq!(settled, 2 * u64::from(N), "{name}");
    }
    #[allow(clippy::print_stderr)]
    {
        eprint!("{report}");
    }
}

/// `sslmode=require`: the ledger talks TLS to a server that takes TLS only and verifies
/// its certificate against the configured CA; plaintext is refused by the server, and a
/// certificate no trusted CA issued is refused by the ledger.
#[test]
fn tls_to_the_database_verifies_the_server() {
    let server = PgServer::start();
    let plain_url = server.database("tls");
    let ca = server.require_tls();
    let url = format!("{plain_url}?sslmode=require");
    let ledger = Ledger::connect(
        &PostgresUrl::parse(&url, Some(&ca)).unwrap(),
        budgets(1.0),
        Budget::default(),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let held = runtime
        .block_on(ledger.reserve("acme", "tls-1", 0, "openai", 0.25))
        .unwrap();
    ledger.settle(&held, 0.125).unwrap();
    ledger.flush().unwrap();
    let acme = ledger
        .tenants()
        .unwrap()
        .into_iter()
        .find(|t| t.tenant == "acme")
        .unwrap();
    assert!((acme.month_usd - 0.125).abs() < 1e-9, "{acme:?}");

    let plain = Ledger::connect(
        &PostgresUrl::parse(&plain_url, None).unwrap(),
        budgets(1.0),
        Budget::default(),
    );
    let err = plain
        .expect_err("a plaintext connection is refused")
        .to_string();
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );

    let unverified = Ledger::connect(
        &PostgresUrl::parse(&url, None).unwrap(),
        budgets(1.0),
        Budget::default(),
    );
    let err = unverified
        .expect_err("an unknown issuer is refused")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // A CA file without TLS asked for, or with no certificate in it, is a config error.
    let err = PostgresUrl::parse(&plain_url, Some(&ca)).unwrap_err();
    assert!(err.contains("sslmode=require"), "{err}");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let err = PostgresUrl::parse(&url, Some(empty.path())).unwrap_err();
    assert!(err.contains("no PEM certificate"), "{err}");
}
