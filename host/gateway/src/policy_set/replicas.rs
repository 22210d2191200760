//! Policy versions shared by replicas through the PostgreSQL ledger's database. Every
//! change a replica makes to a slot (an upload, a file change, a rollback, a promote or an
//! abort) is written to `policy_slots` (components to `policy_blobs`) and announced with
//! `NOTIFY switchyard_policies`; every other replica hears it, prepares the version as it
//! prepares its own (compile, smoke decisions, self-test) and makes it live too, or keeps
//! serving its current version and reports why (`last_error` in `/admin/policies`). A
//! poll every few seconds catches what a lost connection missed. At start a replica takes
//! the shared state, unless its own file changed since the state was written (then its
//! file goes live everywhere).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Row};

use super::{CandidateMode, PolicySet};
use crate::ledger::PostgresUrl;
use crate::policy::digest_of;
use crate::time::now_ms;

/// The notification channel.
const CHANNEL: &str = "switchyard_policies";
/// How often the shared state is read even without a notification.
const POLL: Duration = Duration::from_secs(5);
/// The wait before reconnecting to the database.
const RECONNECT: Duration = Duration::from_secs(1);

/// A component that went live or was staged here, for the database.
#[derive(Debug)]
pub struct Blob {
    pub digest: String,
    pub bytes: Arc<[u8]>,
}

/// A slot changed on this replica: the database gets its state as it is when the message
/// is handled. `blob` is the new component (if any); `file_digest` is set when it was
/// read from the slot's file.
#[derive(Debug)]
pub struct Changed {
    pub slot: String,
    pub blob: Option<Blob>,
    pub file_digest: Option<String>,
}

impl Changed {
    /// `slot`'s file as a change: its component, read again, as the file's version.
    pub(super) async fn file_of(slot: &super::Slot) -> Option<Self> {
        let name = slot.name();
        match tokio::fs::read(&slot.config().path).await {
            Ok(bytes) => {
                let digest = digest_of(&bytes);
                Some(Self {
                    slot: name,
                    blob: Some(Blob {
                        digest: digest.clone(),
                        bytes: Arc::from(bytes),
                    }),
                    file_digest: Some(digest),
                })
            }
            Err(e) => {
                tracing::warn!(policy = %name, error = %e, "cannot read the policy file to keep it");
                None
            }
        }
    }
}

/// A slot's candidate as the databases store it: its digest, mode and canary percent.
pub(super) fn candidate_columns(
    slot: &super::Slot,
) -> (Option<String>, Option<&'static str>, Option<f64>) {
    match slot.candidate().as_deref() {
        None => (None, None, None),
        Some(c) => {
            let (mode, percent) = match c.mode {
                CandidateMode::Shadow => ("shadow", None),
                CandidateMode::Canary { percent } => ("canary", Some(percent)),
            };
            (
                Some(c.version.policy.digest().to_owned()),
                Some(mode),
                percent,
            )
        }
    }
}

/// Where a replica's changes are sent.
pub type Announcer = mpsc::UnboundedSender<Changed>;

/// A slot's state as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SharedSlot {
    pub(super) live: String,
    pub(super) file_digest: String,
    pub(super) candidate: Option<(String, CandidateMode)>,
    generation: i64,
    changed_by: String,
}

impl SharedSlot {
    /// A state saved by this node alone ([`super::saved`]).
    pub(super) fn saved(
        live: String,
        file_digest: String,
        candidate: Option<(String, CandidateMode)>,
    ) -> Self {
        Self {
            live,
            file_digest,
            candidate,
            generation: 0,
            changed_by: String::new(),
        }
    }

    fn from_row(row: &Row) -> Result<(String, Self), tokio_postgres::Error> {
        let mode: Option<String> = row.try_get("candidate_mode")?;
        let percent: Option<f64> = row.try_get("canary_percent")?;
        let digest: Option<String> = row.try_get("candidate_digest")?;
        let candidate = digest.and_then(|d| {
            let mode = match mode.as_deref() {
                Some("shadow") => CandidateMode::Shadow,
                Some("canary") => CandidateMode::Canary {
                    percent: percent.unwrap_or(0.0),
                },
                _ => return None,
            };
            Some((d, mode))
        });
        Ok((
            row.try_get("slot")?,
            Self {
                live: row.try_get("live_digest")?,
                file_digest: row.try_get("file_digest")?,
                candidate,
                generation: row.try_get("generation")?,
                changed_by: row.try_get("changed_by")?,
            },
        ))
    }
}

/// Shares `set`'s versions with every replica on the database at `url`: announces this
/// replica's changes and applies the others'. Runs until the process ends, reconnecting
/// after database outages (changes made meanwhile are written when it is back).
pub fn share(set: Arc<PolicySet>, url: PostgresUrl) {
    let (announce, changes) = mpsc::unbounded_channel();
    if set.announcer.set(announce).is_err() {
        tracing::warn!("policy versions are already shared");
        return;
    }
    let replica = crate::ledger::replica_id();
    tokio::spawn(
        Sync {
            set,
            url,
            replica,
            seen: HashMap::new(),
            started: false,
        }
        .run(changes),
    );
}

struct Sync {
    set: Arc<PolicySet>,
    url: PostgresUrl,
    /// This process's name in `changed_by`.
    replica: String,
    /// The generation of each slot's state last written or applied here.
    seen: HashMap<String, i64>,
    /// Whether the start rule ran.
    started: bool,
}

impl Sync {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Changed>) {
        loop {
            match self.connect().await {
                Ok((mut client, mut notified)) => {
                    if let Err(e) = self.serve(&mut client, &mut notified, &mut changes).await {
                        tracing::warn!(error = %e, "policy version sharing lost the database; retrying");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "policy version sharing cannot reach the database; retrying");
                }
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }

    /// A connection that listens on [`CHANNEL`]; its notifications' payloads (slot names)
    /// arrive on the receiver, which closes when the connection is lost.
    async fn connect(
        &self,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), tokio_postgres::Error> {
        let (notify, notified) = mpsc::unbounded_channel();
        let client = self
            .url
            .connect(move |message| {
                if let AsyncMessage::Notification(n) = message {
                    let _ = notify.send(n.payload().to_owned());
                }
            })
            .await?;
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok((client, notified))
    }

    async fn serve(
        &mut self,
        client: &mut Client,
        notified: &mut mpsc::UnboundedReceiver<String>,
        changes: &mut mpsc::UnboundedReceiver<Changed>,
    ) -> Result<(), tokio_postgres::Error> {
        if !self.started {
            self.start(client).await?;
            self.started = true;
        } else {
            self.pull(client, None).await?;
        }
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => self.write(client, change).await?,
                    None => return Ok(()),
                },
                slot = notified.recv() => match slot {
                    Some(slot) => self.pull(client, Some(&slot)).await?,
                    None => return Ok(()),
                },
                () = tokio::time::sleep(POLL) => self.pull(client, None).await?,
            }
        }
    }

    /// The start rule, per slot: no shared state yet, or a file that changed since the
    /// state was written → this replica's version becomes the shared one; otherwise the
    /// shared version (an upload, a rollback) is taken.
    async fn start(&mut self, client: &mut Client) -> Result<(), tokio_postgres::Error> {
        let shared = self.read(client, None).await?;
        for slot in self.set.slots().to_vec() {
            let name = slot.name();
            let live = slot.live();
            let digest = live.policy.digest().to_owned();
            match shared.get(&name) {
                Some(state) if state.file_digest == digest => {
                    self.apply(client, &name, state.clone()).await?;
                }
                _ => {
                    if let Some(change) = Changed::file_of(&slot).await {
                        self.write(client, change).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `change`'s slot as it is now, with its component, and announces it.
    async fn write(
        &mut self,
        client: &mut Client,
        change: Changed,
    ) -> Result<(), tokio_postgres::Error> {
        let Ok(slot) = self.set.slot(&change.slot) else {
            return Ok(());
        };
        let live = slot.live().policy.digest().to_owned();
        let (candidate_digest, mode, percent) = candidate_columns(slot);
        let now = now_ms();
        let transaction = client.build_transaction().start().await?;
        if let Some(blob) = &change.blob {
            transaction
                .execute(
                    "INSERT INTO policy_blobs (digest, bytes, created_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO NOTHING",
                    &[&blob.digest, &&*blob.bytes, &now],
                )
                .await?;
        }
        let row = transaction
            .query_one(
                "INSERT INTO policy_slots AS s (slot, live_digest, file_digest, candidate_digest,
                     candidate_mode, canary_percent, generation, changed_by, changed_ms)
                 VALUES ($1, $2, COALESCE($3, $2), $4, $5, $6, 1, $7, $8)
                 ON CONFLICT (slot) DO UPDATE SET
                     live_digest = EXCLUDED.live_digest,
                     file_digest = COALESCE($3, s.file_digest),
                     candidate_digest = EXCLUDED.candidate_digest,
                     candidate_mode = EXCLUDED.candidate_mode,
                     canary_percent = EXCLUDED.canary_percent,
                     generation = s.generation + 1,
                     changed_by = EXCLUDED.changed_by,
                     changed_ms = EXCLUDED.changed_ms
                 RETURNING generation",
                &[
                    &change.slot,
                    &live,
                    &change.file_digest,
                    &candidate_digest,
                    &mode,
                    &percent,
                    &self.replica,
                    &now,
                ],
            )
            .await?;
        transaction
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &change.slot])
            .await?;
        transaction.commit().await?;
        self.seen.insert(change.slot, row.try_get(0)?);
        Ok(())
    }

    /// The shared state of `slot` (every slot for `None`).
    async fn read(
        &self,
        client: &Client,
        slot: Option<&str>,
    ) -> Result<HashMap<String, SharedSlot>, tokio_postgres::Error> {
        const COLUMNS: &str = "slot, live_digest, file_digest, candidate_digest, candidate_mode, \
                               canary_percent, generation, changed_by";
        let rows = match slot {
            Some(slot) => {
                client
                    .query(
                        &format!("SELECT {COLUMNS} FROM policy_slots WHERE slot = $1"),
                        &[&slot],
                    )
                    .await?
            }
            None => {
                client
                    .query(&format!("SELECT {COLUMNS} FROM policy_slots"), &[])
                    .await?
            }
        };
        rows.iter().map(SharedSlot::from_row).collect()
    }

    /// Applies what other replicas changed in `slot` (every slot for `None`).
    async fn pull(
        &mut self,
        client: &Client,
        slot: Option<&str>,
    ) -> Result<(), tokio_postgres::Error> {
        for (name, state) in self.read(client, slot).await? {
            let newer = self
                .seen
                .get(&name)
                .is_none_or(|seen| state.generation > *seen);
            if newer && state.changed_by != self.replica {
                self.apply(client, &name, state).await?;
            } else if newer {
                self.seen.insert(name, state.generation);
            }
        }
        Ok(())
    }

    /// Makes `slot` match `state`, fetching components this replica does not hold.
    async fn apply(
        &mut self,
        client: &Client,
        slot: &str,
        state: SharedSlot,
    ) -> Result<(), tokio_postgres::Error> {
        self.seen.insert(slot.to_owned(), state.generation);
        let fetch = |digest: String| -> BoxFuture<'_, Result<Vec<u8>, String>> {
            Box::pin(async move {
                let row = client
                    .query_opt(
                        "SELECT bytes FROM policy_blobs WHERE digest = $1",
                        &[&digest],
                    )
                    .await
                    .map_err(|e| format!("reading version {digest} from the database: {e}"))?;
                let row = row.ok_or_else(|| format!("version {digest} is not in the database"))?;
                row.try_get(0)
                    .map_err(|e| format!("reading version {digest} from the database: {e}"))
            })
        };
        self.set
            .adopt(slot, &state, &fetch, super::Origin::Replica)
            .await;
        Ok(())
    }
}
