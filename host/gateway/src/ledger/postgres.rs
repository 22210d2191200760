//! The PostgreSQL store (`[ledger] url`): any number of gateway replicas share one
//! database. A reservation for a tenant with a hard cap is admitted by the database in one
//! round trip: one statement adds its estimate to the tenant's month row only while the
//! total stays within the cap, and writes its row and day total with it — so replicas
//! cannot pass a cap together, and a crash cannot lose a granted reservation. Every other
//! write (uncapped reservations, settlements, releases) is written behind as on SQLite: a
//! writer task collects writes for [`COMMIT_WINDOW`] and commits them in one transaction
//! with the day and month totals.
//!
//! Each replica holds a lease row renewed every second ([`LEASE`] long). The open
//! reservations of a replica whose lease expired (a `kill -9`, a lost host) are settled at
//! their estimate by whichever replica notices first, its own restart included. Schema
//! migrations are applied at start (refinery, under an advisory lock). While the database
//! cannot be reached, reservations are refused (the client gets 503) and the writes held
//! are retried until it is back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::try_join_all;
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls, Statement, config::SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::rate::{Costs, LimitKind, Refused, WINDOW_US};
use super::totals::{Nanos, SpendMap, Totals, replace_committed, to_nanos, to_usd};
use super::{
    COMMIT_WINDOW, Closing, LedgerError, MAX_BATCH, NewAttempt, REFRESH, RETRY, Shared,
    TenantSpend, Write, day_and_month, dequeue,
};
use crate::time::now_ms;

refinery::embed_migrations!("migrations/postgres");

/// How long a replica's lease lasts without renewal (renewed every [`REFRESH`]).
pub const LEASE: Duration = Duration::from_secs(5);
/// Connecting to the database, unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One reservation statement or one write transaction.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The advisory lock replicas starting together take around the migrations.
const MIGRATION_LOCK: i64 = 0x5357_4c45_4447_4552; // "SWLEDGER"

/// The database's clock in ms: leases are compared on one clock, whatever the replicas'.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A hard-capped reservation: month total (only within the cap), day total and row, in
/// one statement. No row comes back when the cap would be passed.
/// One rate-limit admission (migration V2's function).
const RATE_ADMIT: &str = "SELECT refused, wait_us FROM rate_admit($1, $2, $3, $4)";
/// Corrects a tenant's token TAT once a request's real token count is known.
const RATE_CORRECT: &str =
    "UPDATE rate_limits SET tokens_tat_us = tokens_tat_us + $2 WHERE tenant = $1";

const RESERVE_CAPPED: &str = "
WITH cap AS (
    INSERT INTO month_totals AS m (tenant, month, nanos)
    SELECT $1::text, $3::bigint, $7::bigint WHERE $7::bigint <= $8::bigint
    ON CONFLICT (tenant, month) DO UPDATE SET nanos = m.nanos + EXCLUDED.nanos
        WHERE m.nanos + EXCLUDED.nanos <= $8::bigint
    RETURNING m.nanos
), day AS (
    INSERT INTO daily_totals AS d (tenant, day, month, nanos)
    SELECT $1::text, $2::bigint, $3::bigint, $7::bigint FROM cap
    ON CONFLICT (tenant, day) DO UPDATE SET nanos = d.nanos + EXCLUDED.nanos
)
INSERT INTO attempts (tenant, day, month, request_id, attempt, backend, state,
                      estimate_nanos, replica, created_ms)
SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::bigint, $6::text, 'reserved',
       $7::bigint, $9::text, $10::bigint
FROM cap
RETURNING id";

const INSERT_ATTEMPT: &str = "
INSERT INTO attempts (tenant, day, month, request_id, attempt, backend, state,
                      estimate_nanos, cost_nanos, replica, created_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id";

/// Closes a row still reserved; no row back when it was closed already (recovered).
const CLOSE_ATTEMPT: &str = "
UPDATE attempts SET state = $2, cost_nanos = $3 WHERE id = $1 AND state = 'reserved'
RETURNING id";

const ADD_TO_DAY: &str = "
INSERT INTO daily_totals AS d (tenant, day, month, nanos) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant, day) DO UPDATE SET nanos = d.nanos + EXCLUDED.nanos";

const ADD_TO_MONTH: &str = "
INSERT INTO month_totals AS m (tenant, month, nanos) VALUES ($1, $2, $3)
ON CONFLICT (tenant, month) DO UPDATE SET nanos = m.nanos + EXCLUDED.nanos";

/// Every tenant's totals for month $2 with day $1's share.
const MONTH_TOTALS: &str = "
SELECT m.tenant, COALESCE(d.nanos, 0), m.nanos
FROM month_totals m LEFT JOIN daily_totals d ON d.tenant = m.tenant AND d.day = $1
WHERE m.month = $2";

const TENANTS: &str = "
SELECT tenant,
       COALESCE(SUM(cost_nanos) FILTER (WHERE state = 'settled' AND day = $1), 0)::bigint,
       COALESCE(SUM(cost_nanos) FILTER (WHERE state = 'settled' AND month = $2), 0)::bigint,
       COALESCE(SUM(cost_nanos) FILTER (WHERE state = 'settled'), 0)::bigint,
       COUNT(*) FILTER (WHERE state = 'settled'),
       COUNT(*) FILTER (WHERE state = 'reserved')
FROM attempts GROUP BY tenant ORDER BY tenant";

/// A `postgres://` URL for `[ledger] url`, parsed, with its TLS settings. Its `Debug`
/// hides the password.
#[derive(Clone)]
pub struct PostgresUrl {
    config: tokio_postgres::Config,
    /// `Some` with `sslmode=require`: TLS, the server's certificate verified against the
    /// Mozilla roots and the configured CA file. `disable` and `prefer`: plaintext.
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PostgresUrl {
    /// Parses `url` (`postgres://user:password@host:port/db?...`); the error never
    /// repeats the URL (it may hold a password). `ca_file`: PEM certificates trusted for
    /// the server besides the Mozilla roots (a private CA), used with `sslmode=require`.
    pub fn parse(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must be a postgres:// or postgresql:// URL".to_owned());
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_hosts().is_empty() {
            return Err("names no host".to_owned());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("switchyard");
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_connector(ca_file)?),
            _ if ca_file.is_some() => {
                return Err("tls_ca_file is set but the URL does not ask for TLS \
                            (add ?sslmode=require)"
                    .to_owned());
            }
            _ => None,
        };
        Ok(Self { config, tls })
    }

    /// The parsed connection settings (for other users of the same database).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Opens a connection and drives it on a task (logging when it ends with an error);
    /// `on_message` sees each asynchronous message (a `NOTIFY`) until then.
    pub async fn connect(
        &self,
        on_message: impl FnMut(tokio_postgres::AsyncMessage) + Send + 'static,
    ) -> Result<Client, tokio_postgres::Error> {
        match &self.tls {
            Some(tls) => Ok(drive(self.config.connect(tls.clone()).await?, on_message)),
            None => Ok(drive(self.config.connect(NoTls).await?, on_message)),
        }
    }
}

/// rustls with the Mozilla roots plus `ca_file`'s certificates.
fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("tls_ca_file {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls_ca_file {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("tls_ca_file {shown}: no PEM certificate in it"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_file {shown}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Drives `connection` on a task, handing its asynchronous messages to `on_message`.
fn drive<S, T>(
    (client, mut connection): (Client, tokio_postgres::Connection<S, T>),
    mut on_message: impl FnMut(tokio_postgres::AsyncMessage) + Send + 'static,
) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
            match message {
                Ok(message) => on_message(message),
                Err(e) => {
                    tracing::warn!(error = %e, "database connection lost");
                    break;
                }
            }
        }
    });
    client
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// A serving replica: migrates, holds a lease, recovers dead replicas' reservations.
    Replica,
    /// A reader (`switchyard spend`): changes nothing.
    Inspect,
}

/// Work for the writer task, in queue order.
enum Op {
    Write(Write),
    /// Answered once every earlier write has been committed (or is held for retry).
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The connection reservations (and reads) use, shared by every request; its statements
/// are pipelined.
struct Reserver {
    client: Client,
    reserve: Statement,
    rate_admit: Statement,
    rate_correct: Statement,
}

/// The PostgreSQL store: the writer task's queue and the reservation connection. The
/// writer runs on a thread of its own (a single-threaded runtime), which also drives the
/// connections.
pub(super) struct Store {
    ops: Option<mpsc::UnboundedSender<Op>>,
    reserver: Arc<ArcSwapOption<Reserver>>,
    runtime: tokio::runtime::Handle,
    replica: Arc<str>,
    thread: Option<JoinHandle<()>>,
}

/// This process's replica name: unique per start.
pub(crate) fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(64)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{host}-{}-{}-{nanos:x}",
        std::process::id(),
        now_ms().max(0)
    )
}

fn is_constraint(e: &LedgerError) -> bool {
    matches!(e, LedgerError::Postgres(e) if e.code().is_some_and(|c| c.code().starts_with("23")))
}

/// Adds `amount` to a tenant's day and month totals of a transaction.
fn add<'a>(
    days: &mut BTreeMap<(&'a str, i64), (i64, Nanos)>,
    months: &mut BTreeMap<(&'a str, i64), Nanos>,
    tenant: &'a str,
    day: i64,
    month: i64,
    amount: Nanos,
) {
    let entry = days.entry((tenant, day)).or_insert((month, 0));
    entry.1 = entry.1.saturating_add(amount);
    let entry = months.entry((tenant, month)).or_insert(0);
    *entry = entry.saturating_add(amount);
}

async fn connect(url: &PostgresUrl) -> Result<Client, tokio_postgres::Error> {
    url.connect(drop).await
}

/// Applies the schema migrations; replicas starting together take turns.
async fn migrate(client: &mut Client) -> Result<(), LedgerError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrations::runner().run_async(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = result.map_err(|e| LedgerError::Migrate(e.to_string()))?;
    for migration in report.applied_migrations() {
        tracing::info!(%migration, "spend ledger schema migrated");
    }
    Ok(())
}

impl Store {
    /// Connects (blocking until the connections are up, the schema migrated and, for a
    /// replica, its lease taken and dead replicas' reservations recovered).
    pub(super) fn connect(
        url: &PostgresUrl,
        shared: &Shared,
        access: Access,
    ) -> Result<Self, LedgerError> {
        let url = url.clone();
        let replica: Arc<str> = Arc::from(replica_id());
        let reserver = Arc::new(ArcSwapOption::empty());
        let (ops, queue) = mpsc::unbounded_channel();
        let (started, start) = std::sync::mpsc::sync_channel(1);
        let writer = Writer {
            url,
            replica: replica.clone(),
            access,
            spend: shared.spend.clone(),
            failing: shared.failing.clone(),
            held: shared.held.clone(),
            reserver: reserver.clone(),
            conn: None,
            open: HashMap::new(),
            retry: Vec::new(),
            refreshed: Instant::now(),
            leased: false,
        };
        let thread = std::thread::Builder::new()
            .name("ledger-postgres".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started.send(Err(LedgerError::Start(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut writer = writer;
                    if let Err(e) = writer.start().await {
                        let _ = started.send(Err(e));
                        return;
                    }
                    let _ = started.send(Ok(tokio::runtime::Handle::current()));
                    writer.run(queue).await;
                });
            })
            .map_err(LedgerError::Start)?;
        let runtime = match start.recv() {
            Ok(Ok(runtime)) => runtime,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(LedgerError::Stopped);
            }
        };
        Ok(Self {
            ops: Some(ops),
            reserver,
            runtime,
            replica,
            thread: Some(thread),
        })
    }

    pub(super) fn send(&self, write: Write) -> Result<(), LedgerError> {
        self.ops
            .as_ref()
            .ok_or(LedgerError::Stopped)?
            .send(Op::Write(write))
            .map_err(|_| LedgerError::Stopped)
    }

    /// The reservation connection, when it is up.
    fn reserver(&self) -> Result<Arc<Reserver>, LedgerError> {
        match self.reserver.load_full() {
            Some(r) if !r.client.is_closed() => Ok(r),
            _ => Err(LedgerError::Unwritable),
        }
    }

    /// Reserves against the hard cap `cap` in the database; `None` when it would pass it.
    pub(super) async fn reserve_capped(
        &self,
        new: &NewAttempt,
        cap: Nanos,
    ) -> Result<Option<i64>, LedgerError> {
        let reserver = self.reserver()?;
        let (attempt, estimate, replica) = (
            i64::from(new.attempt),
            to_nanos(new.estimate_usd),
            &*self.replica,
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &new.tenant,
            &new.day,
            &new.month,
            &new.request_id,
            &attempt,
            &new.backend,
            &estimate,
            &cap,
            &replica,
            &new.created_ms,
        ];
        let query = reserver.client.query(&reserver.reserve, &params);
        let rows = tokio::time::timeout(STATEMENT_TIMEOUT, query)
            .await
            .map_err(|_| LedgerError::Unwritable)??;
        match rows.first() {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// Admits one request of `tenant` against its rate limits in the database, which
    /// orders every replica's admissions of the tenant.
    pub(super) async fn rate_admit(
        &self,
        tenant: &str,
        costs: Costs,
    ) -> Result<Result<(), Refused>, LedgerError> {
        let reserver = self.reserver()?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&tenant, &costs.requests_us, &costs.tokens_us, &WINDOW_US];
        let query = reserver.client.query_one(&reserver.rate_admit, &params);
        let row = tokio::time::timeout(STATEMENT_TIMEOUT, query)
            .await
            .map_err(|_| LedgerError::Unwritable)??;
        let refused: Option<String> = row.try_get(0)?;
        let wait_us: i64 = row.try_get(1)?;
        Ok(match refused.as_deref().and_then(LimitKind::parse) {
            None => Ok(()),
            Some(kind) => Err(Refused {
                kind,
                retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
            }),
        })
    }

    /// Moves `tenant`'s token TAT by `delta_us` (in the background; a failure is logged
    /// and only leaves the charge at its estimate).
    pub(super) fn rate_correct(&self, tenant: &str, delta_us: i64) {
        let Ok(reserver) = self.reserver() else {
            return;
        };
        let tenant = tenant.to_owned();
        self.runtime.spawn(async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&tenant, &delta_us];
            let update = reserver.client.execute(&reserver.rate_correct, &params);
            match tokio::time::timeout(STATEMENT_TIMEOUT, update).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "rate limit token correction failed"),
                Err(_) => tracing::warn!("rate limit token correction timed out"),
            }
        });
    }

    /// Runs `query` on the store's runtime and waits for it (blocking).
    fn blocking<T: Send + 'static>(
        &self,
        query: impl Future<Output = Result<T, LedgerError>> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = reply.send(query.await);
        });
        answer.recv().map_err(|_| LedgerError::Stopped)?
    }

    pub(super) fn flush(&self) -> Result<(), LedgerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.ops
            .as_ref()
            .ok_or(LedgerError::Stopped)?
            .send(Op::Flush(reply))
            .map_err(|_| LedgerError::Stopped)?;
        answer.recv().map_err(|_| LedgerError::Stopped)
    }

    pub(super) fn tenants(&self, day: i64, month: i64) -> Result<Vec<TenantSpend>, LedgerError> {
        self.flush()?;
        let reserver = self.reserver()?;
        self.blocking(async move {
            let rows = reserver.client.query(TENANTS, &[&day, &month]).await?;
            let count = |n: i64| n.max(0).unsigned_abs();
            rows.iter()
                .map(|r| {
                    Ok(TenantSpend {
                        tenant: r.try_get(0)?,
                        today_usd: to_usd(r.try_get(1)?),
                        month_usd: to_usd(r.try_get(2)?),
                        total_usd: to_usd(r.try_get(3)?),
                        settled_attempts: count(r.try_get(4)?),
                        open_reservations: count(r.try_get(5)?),
                    })
                })
                .collect()
        })
    }

    pub(super) fn attempt_state(
        &self,
        request_id: &str,
        attempt: u32,
    ) -> Result<Option<String>, LedgerError> {
        self.flush()?;
        let reserver = self.reserver()?;
        let (replica, request_id) = (self.replica.clone(), request_id.to_owned());
        self.blocking(async move {
            let row = reserver
                .client
                .query_opt(
                    "SELECT state FROM attempts
                     WHERE replica = $1 AND request_id = $2 AND attempt = $3",
                    &[&&*replica, &request_id, &i64::from(attempt)],
                )
                .await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }
}

impl Drop for Store {
    /// Commits everything queued, gives the lease back, then stops the writer.
    fn drop(&mut self) {
        self.ops = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the ledger writer thread panicked");
        }
    }
}

/// The writer's connection and its statements.
struct WriterConn {
    client: Client,
    insert: Statement,
    close: Statement,
    add_day: Statement,
    add_month: Statement,
}

/// The writer task's side: its connection, the rows it left open, the totals it
/// publishes, the lease.
struct Writer {
    url: PostgresUrl,
    replica: Arc<str>,
    access: Access,
    spend: SpendMap,
    failing: Arc<AtomicBool>,
    /// How many writes wait for retry (for [`super::WhenDown::Serve`]'s bound).
    held: Arc<AtomicUsize>,
    reserver: Arc<ArcSwapOption<Reserver>>,
    conn: Option<WriterConn>,
    /// Rows committed as reserved, by reservation number: where their closing goes.
    open: HashMap<u64, i64>,
    /// Writes whose commit failed: retried ahead of the next ones.
    retry: Vec<Write>,
    refreshed: Instant,
    /// Whether this replica has taken its lease.
    leased: bool,
}

/// A reservation written in a batch: its number, how it was closed in the same batch
/// (if it was), its row.
type Inserted<'a> = (u64, Option<Closing>, &'a NewAttempt, i64);

impl Writer {
    /// Connects, migrates, takes the lease, recovers and reads the totals.
    async fn start(&mut self) -> Result<(), LedgerError> {
        let mut client = connect(&self.url).await?;
        if self.access == Access::Replica {
            migrate(&mut client).await?;
        }
        self.conn = Some(Self::prepare(client).await?);
        self.connect_reserver().await?;
        if self.access == Access::Replica {
            self.lease().await?;
        }
        self.refresh().await?;
        Ok(())
    }

    async fn prepare(client: Client) -> Result<WriterConn, tokio_postgres::Error> {
        Ok(WriterConn {
            insert: client.prepare(INSERT_ATTEMPT).await?,
            close: client.prepare(CLOSE_ATTEMPT).await?,
            add_day: client.prepare(ADD_TO_DAY).await?,
            add_month: client.prepare(ADD_TO_MONTH).await?,
            client,
        })
    }

    async fn connect_reserver(&self) -> Result<(), tokio_postgres::Error> {
        let client = connect(&self.url).await?;
        let reserver = Reserver {
            reserve: client.prepare(RESERVE_CAPPED).await?,
            rate_admit: client.prepare(RATE_ADMIT).await?,
            rate_correct: client.prepare(RATE_CORRECT).await?,
            client,
        };
        self.reserver.store(Some(Arc::new(reserver)));
        Ok(())
    }

    /// Reconnects whichever connection was lost.
    async fn reconnect(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(Self::prepare(connect(&self.url).await?).await?);
        }
        if self
            .reserver
            .load()
            .as_ref()
            .is_none_or(|r| r.client.is_closed())
        {
            self.connect_reserver().await?;
        }
        Ok(())
    }

    /// Takes operations until the store is dropped, committing them in groups; every
    /// [`REFRESH`], renews the lease, recovers dead replicas' reservations and re-reads
    /// the totals.
    async fn run(&mut self, mut ops: mpsc::UnboundedReceiver<Op>) {
        loop {
            let wait = if self.retry.is_empty() && !self.failing.load(Ordering::Acquire) {
                REFRESH
            } else {
                RETRY
            };
            let batch = match tokio::time::timeout(wait, ops.recv()).await {
                Ok(Some(first)) => Self::gather(first, &mut ops).await,
                Ok(None) => break,
                Err(_) => Vec::new(),
            };
            self.apply(batch).await;
            if self.refreshed.elapsed() >= REFRESH || self.failing.load(Ordering::Acquire) {
                self.upkeep().await;
            }
        }
        self.commit(Vec::new()).await;
        if !self.retry.is_empty() {
            tracing::error!(
                writes = self.retry.len(),
                "spend ledger stopped with writes it could not commit"
            );
        }
        if self.access == Access::Replica
            && let Err(e) = self.leave().await
        {
            tracing::warn!(error = %e, "giving the ledger lease back failed; it expires");
        }
    }

    /// `first` and what else arrives within [`COMMIT_WINDOW`].
    async fn gather(first: Op, ops: &mut mpsc::UnboundedReceiver<Op>) -> Vec<Op> {
        if matches!(first, Op::Write(_)) {
            tokio::time::sleep(COMMIT_WINDOW).await;
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

    /// Commits the writes of `batch` in order; a flush is answered after the writes
    /// before it.
    async fn apply(&mut self, batch: Vec<Op>) {
        let mut writes = Vec::new();
        for op in batch {
            match op {
                Op::Write(w) => writes.push(w),
                Op::Flush(reply) => {
                    self.commit(std::mem::take(&mut writes)).await;
                    let _ = reply.send(());
                }
            }
        }
        self.commit(writes).await;
    }

    /// Commits the writes held for retry and `writes` in one transaction. A write that
    /// breaks a constraint is dropped (logged); on any other error the writes are kept
    /// for the next try and reservations are refused meanwhile.
    async fn commit(&mut self, writes: Vec<Write>) {
        let mut pending = std::mem::take(&mut self.retry);
        pending.extend(writes);
        if pending.is_empty() {
            return;
        }
        let mut queue = vec![pending];
        while let Some(writes) = queue.pop() {
            let result = match self.reconnect().await {
                Ok(()) => {
                    match tokio::time::timeout(STATEMENT_TIMEOUT, self.transaction(&writes)).await {
                        Ok(result) => result,
                        Err(_) => {
                            // Dropping the connection ends its transaction on the server.
                            self.conn = None;
                            Err(LedgerError::Unwritable)
                        }
                    }
                }
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(done) => {
                    self.committed(&writes, done);
                    if self.failing.swap(false, Ordering::AcqRel) {
                        tracing::info!("spend ledger writes again");
                    }
                }
                Err(e) if is_constraint(&e) && writes.len() > 1 => {
                    tracing::warn!(error = %e, writes = writes.len(),
                        "ledger group commit failed; committing its writes one by one");
                    queue.extend(writes.into_iter().rev().map(|w| vec![w]));
                }
                Err(e) if is_constraint(&e) => {
                    tracing::error!(error = %e, "ledger write dropped");
                    dequeue(&self.spend, &writes, false);
                }
                Err(e) => {
                    if !self.failing.swap(true, Ordering::AcqRel) {
                        tracing::error!(error = %e, writes = writes.len(),
                            "spend ledger cannot commit; refusing requests until it can");
                    }
                    self.retry.extend(writes);
                    for rest in queue.drain(..).rev() {
                        self.retry.extend(rest);
                    }
                }
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

    /// One transaction over `writes`, its statements pipelined. A reservation closed
    /// within the same batch is inserted in its final state; each tenant's month and day
    /// totals get one upsert each, in key order (replicas lock them in the same order).
    async fn transaction(&mut self, writes: &[Write]) -> Result<Committed, LedgerError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(LedgerError::Unwritable);
        };
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
        let WriterConn {
            client,
            insert,
            close,
            add_day,
            add_month,
        } = conn;
        let (insert, close, add_day, add_month) = (&*insert, &*close, &*add_day, &*add_month);
        let tx = client.transaction().await?;
        let replica = &*self.replica;
        let inserts = writes.iter().filter_map(|w| match w {
            Write::Reserve { seq, new } => Some((*seq, closed_here.get(seq).copied(), new)),
            Write::Close { .. } => None,
        });
        let inserted: Vec<Inserted> = try_join_all(inserts.map(|(seq, closing, new)| {
            let tx = &tx;
            async move {
                let row = tx
                    .query_one(
                        insert,
                        &[
                            &new.tenant,
                            &new.day,
                            &new.month,
                            &new.request_id,
                            &i64::from(new.attempt),
                            &new.backend,
                            &closing.map_or("reserved", Closing::state),
                            &to_nanos(new.estimate_usd),
                            &closing.map(|c| to_nanos(c.usd())),
                            &replica,
                            &new.created_ms,
                        ],
                    )
                    .await?;
                Ok::<_, tokio_postgres::Error>((seq, closing, new, row.try_get(0)?))
            }
        }))
        .await?;
        let mut done = Committed::default();
        let closes: Vec<_> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Close {
                    seq,
                    row,
                    tenant,
                    day,
                    month,
                    estimate_usd,
                    closing,
                } if !closed_here.contains_key(seq) => {
                    done.closed.push(*seq);
                    match row.or_else(|| self.open.get(seq).copied()) {
                        Some(id) => Some((id, tenant, *day, *month, *estimate_usd, *closing)),
                        None => {
                            tracing::warn!(seq, "closing a reservation with no open row");
                            None
                        }
                    }
                }
                _ => None,
            })
            .collect();
        let closed = try_join_all(closes.iter().map(|&(id, _, _, _, _, closing)| {
            let tx = &tx;
            async move {
                tx.query_opt(close, &[&id, &closing.state(), &to_nanos(closing.usd())])
                    .await
            }
        }))
        .await?;
        // Per (tenant, day): (month, amount); per (tenant, month): amount.
        let mut days: BTreeMap<(&str, i64), (i64, Nanos)> = BTreeMap::new();
        let mut months: BTreeMap<(&str, i64), Nanos> = BTreeMap::new();
        for &(seq, closing, new, id) in &inserted {
            if closing.is_none() {
                done.opened.push((seq, id));
            }
            let usd = closing.map_or(new.estimate_usd, Closing::usd);
            add(
                &mut days,
                &mut months,
                &new.tenant,
                new.day,
                new.month,
                to_nanos(usd),
            );
        }
        for (&(_, tenant, day, month, estimate_usd, closing), changed) in closes.iter().zip(&closed)
        {
            // A row recovered meanwhile was settled at its estimate, which the totals
            // already count.
            if changed.is_some() {
                add(
                    &mut days,
                    &mut months,
                    tenant,
                    day,
                    month,
                    to_nanos(closing.usd()) - to_nanos(estimate_usd),
                );
            }
        }
        let txr = &tx;
        try_join_all(
            months
                .into_iter()
                .map(|((tenant, month), amount)| async move {
                    txr.execute(add_month, &[&tenant, &month, &amount]).await
                }),
        )
        .await?;
        try_join_all(
            days.into_iter()
                .map(|((tenant, day), (month, amount))| async move {
                    txr.execute(add_day, &[&tenant, &day, &month, &amount])
                        .await
                }),
        )
        .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Renews the lease (reconnecting first when needed), recovers and re-reads the
    /// totals; failing to reach the database refuses reservations until it is back.
    async fn upkeep(&mut self) {
        let result = async {
            self.reconnect().await?;
            if self.access == Access::Replica {
                self.lease().await?;
            }
            self.refresh().await
        }
        .await;
        match result {
            Ok(()) => {
                if self.retry.is_empty() && self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("spend ledger database reachable again");
                }
            }
            Err(e) => {
                self.refreshed = Instant::now();
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e,
                        "spend ledger database unreachable; refusing requests until it is back");
                }
            }
        }
    }

    fn client(&self) -> Result<&Client, LedgerError> {
        self.conn
            .as_ref()
            .map(|c| &c.client)
            .ok_or(LedgerError::Unwritable)
    }

    /// Renews this replica's lease, then settles the open reservations of replicas whose
    /// lease expired at their estimate (which the totals already count).
    async fn lease(&mut self) -> Result<(), LedgerError> {
        let client = &self.conn.as_ref().ok_or(LedgerError::Unwritable)?.client;
        let renewed = client
            .query_one(
                &format!(
                    "INSERT INTO replicas (id, lease_until_ms, started_ms)
                     VALUES ($1, {DB_NOW_MS} + $2, {DB_NOW_MS})
                     ON CONFLICT (id) DO UPDATE SET lease_until_ms = EXCLUDED.lease_until_ms
                     RETURNING (xmax = 0)"
                ),
                &[&&*self.replica, &(LEASE.as_millis() as i64)],
            )
            .await?;
        let inserted: bool = renewed.try_get(0)?;
        if inserted && self.leased {
            tracing::warn!(
                "this replica's ledger lease had expired: its open reservations were \
                 settled at their estimate by another replica"
            );
        }
        self.leased = true;
        let recovered = client
            .execute(
                &format!(
                    "WITH dead AS (DELETE FROM replicas WHERE lease_until_ms < {DB_NOW_MS}
                                   RETURNING id)
                     UPDATE attempts
                     SET state = 'settled', cost_nanos = estimate_nanos, recovered = true
                     WHERE state = 'reserved' AND replica <> $1
                       AND (replica IN (SELECT id FROM dead)
                            OR replica NOT IN (SELECT id FROM replicas))"
                ),
                &[&&*self.replica],
            )
            .await?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "settled reservations left open by a dead replica at their estimate"
            );
        }
        Ok(())
    }

    /// At shutdown: settles this replica's reservations still open at their estimate and
    /// drops its lease.
    async fn leave(&self) -> Result<(), LedgerError> {
        let settled = self
            .client()?
            .execute(
                "WITH gone AS (DELETE FROM replicas WHERE id = $1)
                 UPDATE attempts
                 SET state = 'settled', cost_nanos = estimate_nanos, recovered = true
                 WHERE state = 'reserved' AND replica = $1",
                &[&&*self.replica],
            )
            .await?;
        if settled > 0 {
            tracing::warn!(
                settled,
                "settled reservations still open at shutdown at their estimate"
            );
        }
        Ok(())
    }

    /// Re-reads every tenant's totals for this month (other replicas write).
    async fn refresh(&mut self) -> Result<(), LedgerError> {
        self.refreshed = Instant::now();
        let (day, month) = day_and_month(now_ms());
        let rows = self.client()?.query(MONTH_TOTALS, &[&day, &month]).await?;
        let fresh = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, String>(0)?,
                    Totals {
                        day,
                        month,
                        today: r.try_get(1)?,
                        month_total: r.try_get(2)?,
                    },
                ))
            })
            .collect::<Result<HashMap<_, _>, tokio_postgres::Error>>()?;
        replace_committed(&self.spend, fresh, day, month);
        Ok(())
    }
}

/// What one transaction did: the rows it left reserved and the reservations it closed.
#[derive(Default)]
struct Committed {
    opened: Vec<(u64, i64)>,
    closed: Vec<u64>,
}
