//! Policy versions kept across restarts on a single node (no shared database): every
//! change to a slot (an upload, a rollback, a promote, an abort, a file change) is written
//! to a small SQLite file beside the spend ledger, with the components it names. At start
//! the rule is that of replicas sharing PostgreSQL ([`super::replicas`]): the saved state
//! (a rolled-back or uploaded version, a candidate) goes live again unless the slot's file
//! changed since it was written, in which case the file wins.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::replicas::{Changed, SharedSlot, candidate_columns};
use super::{CandidateMode, Origin, PolicySet, lock};
use crate::time::now_ms;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS policy_slots (
    slot             TEXT PRIMARY KEY,
    live_digest      TEXT NOT NULL,
    -- The digest of the slot's file when it was last read: a different file at start
    -- means the operator deployed a new one, which then wins over the saved state.
    file_digest      TEXT NOT NULL,
    candidate_digest TEXT,
    candidate_mode   TEXT,
    canary_percent   REAL,
    changed_ms       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_blobs (
    digest     TEXT PRIMARY KEY,
    bytes      BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
";

/// The file beside the SQLite ledger at `ledger`: `NAME.policies.db` for `NAME.db`.
pub fn path_beside(ledger: &Path) -> PathBuf {
    ledger.with_extension("policies.db")
}

/// Restores the saved state of `set`'s slots from the file at `path` (created if need
/// be), then keeps writing every later change there until the process ends.
pub async fn keep(set: Arc<PolicySet>, path: &Path) -> Result<(), String> {
    let open = path.to_owned();
    let conn = tokio::task::spawn_blocking(move || open_store(&open))
        .await
        .map_err(|e| format!("policy version store task failed: {e}"))?
        .map_err(|e| format!("opening the policy version store {}: {e}", path.display()))?;
    let store = Store(Arc::new(Mutex::new(conn)));
    let (announce, mut changes) = mpsc::unbounded_channel();
    if set.announcer.set(announce).is_err() {
        return Err("policy versions are already shared".to_owned());
    }
    for slot in set.slots().to_vec() {
        let name = slot.name();
        let digest = slot.live().policy.digest().to_owned();
        match store.read(&name).await {
            Ok(Some(state)) if state.file_digest == digest => {
                let fetch = |digest: String| -> BoxFuture<'_, Result<Vec<u8>, String>> {
                    Box::pin(store.blob(digest))
                };
                set.adopt(&name, &state, &fetch, Origin::Restored).await;
            }
            Ok(_) => {
                if let Some(change) = Changed::file_of(&slot).await {
                    store.write(&set, change).await;
                }
            }
            Err(e) => tracing::warn!(policy = %name, error = %e,
                "cannot read the saved policy version; serving the file"),
        }
    }
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            store.write(&set, change).await;
        }
    });
    Ok(())
}

fn open_store(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// The store's connection, used on blocking threads.
#[derive(Clone)]
struct Store(Arc<Mutex<Connection>>);

impl Store {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, String> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(|e| format!("policy version store task failed: {e}"))?
            .map_err(|e| e.to_string())
    }

    async fn read(&self, slot: &str) -> Result<Option<SharedSlot>, String> {
        let slot = slot.to_owned();
        self.blocking(move |conn| {
            conn.query_row(
                "SELECT live_digest, file_digest, candidate_digest, candidate_mode, canary_percent
                 FROM policy_slots WHERE slot = ?1",
                [&slot],
                |row| {
                    let digest: Option<String> = row.get(2)?;
                    let mode: Option<String> = row.get(3)?;
                    let percent: Option<f64> = row.get(4)?;
                    let candidate = digest.and_then(|d| match mode.as_deref() {
                        Some("shadow") => Some((d, CandidateMode::Shadow)),
                        Some("canary") => Some((
                            d,
                            CandidateMode::Canary {
                                percent: percent.unwrap_or(0.0),
                            },
                        )),
                        _ => None,
                    });
                    Ok(SharedSlot::saved(row.get(0)?, row.get(1)?, candidate))
                },
            )
            .optional()
        })
        .await
    }

    async fn blob(&self, digest: String) -> Result<Vec<u8>, String> {
        let wanted = digest.clone();
        let bytes = self
            .blocking(move |conn| {
                conn.query_row(
                    "SELECT bytes FROM policy_blobs WHERE digest = ?1",
                    [&wanted],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()
            })
            .await
            .map_err(|e| format!("reading version {digest}: {e}"))?;
        bytes.ok_or_else(|| format!("version {digest} is not in the policy version store"))
    }

    /// Writes `change`'s slot as it is now (and its new component), then forgets the
    /// components no slot names any more. A failed write is logged: the slot keeps
    /// serving, and the next change writes its whole state again.
    async fn write(&self, set: &PolicySet, change: Changed) {
        let Ok(slot) = set.slot(&change.slot) else {
            return;
        };
        let live = slot.live().policy.digest().to_owned();
        let (candidate, mode, percent) = candidate_columns(slot);
        // Components to keep besides those the rows name: every slot's history, so a
        // rollback to any of them is saved with its component.
        let held: HashSet<String> = set
            .slots()
            .iter()
            .flat_map(|s| {
                let history = lock(&s.history);
                history
                    .newest_first()
                    .map(|v| v.policy.digest().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let name = change.slot.clone();
        let written = self
            .blocking(move |conn| {
                let now = now_ms();
                let tx = conn.transaction()?;
                if let Some(blob) = &change.blob {
                    tx.execute(
                        "INSERT OR IGNORE INTO policy_blobs (digest, bytes, created_ms)
                         VALUES (?1, ?2, ?3)",
                        params![blob.digest, &*blob.bytes, now],
                    )?;
                }
                tx.execute(
                    "INSERT INTO policy_slots (slot, live_digest, file_digest, candidate_digest,
                         candidate_mode, canary_percent, changed_ms)
                     VALUES (?1, ?2, COALESCE(?3, ?2), ?4, ?5, ?6, ?7)
                     ON CONFLICT (slot) DO UPDATE SET
                         live_digest = excluded.live_digest,
                         file_digest = COALESCE(?3, policy_slots.file_digest),
                         candidate_digest = excluded.candidate_digest,
                         candidate_mode = excluded.candidate_mode,
                         canary_percent = excluded.canary_percent,
                         changed_ms = excluded.changed_ms",
                    params![
                        change.slot,
                        live,
                        change.file_digest,
                        candidate,
                        mode,
                        percent,
                        now
                    ],
                )?;
                let unnamed: Vec<String> = tx
                    .prepare(
                        "SELECT digest FROM policy_blobs WHERE digest NOT IN (
                             SELECT live_digest FROM policy_slots
                             UNION SELECT file_digest FROM policy_slots
                             UNION SELECT candidate_digest FROM policy_slots
                                   WHERE candidate_digest IS NOT NULL)",
                    )?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                for digest in unnamed.iter().filter(|d| !held.contains(*d)) {
                    tx.execute("DELETE FROM policy_blobs WHERE digest = ?1", [digest])?;
                }
                tx.commit()
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(policy = %name, error = %e,
                "cannot save the policy version; a restart would serve the file");
        }
    }
}
