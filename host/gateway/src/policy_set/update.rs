//! A slot's update lifecycle: reload from file, upload (live or as a candidate), config
//! change, rollback, promote and abort. Each is serialised per slot, and every way a
//! version goes live ends in the one [`Slot::commit`].

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::prepare::prepare;
use super::replicas::{Blob, Changed, SharedSlot};
use super::uploads::{Upload, UploadReport};
use super::{
    Candidate, CandidateMode, Origin, PolicySet, ReloadOutcome, Slot, SlotConfig, UpdateError,
    Version, lock, unix_ms,
};
use crate::policy::{LoadedPolicy, digest_of, policy_label};

impl Slot {
    /// Makes `version` live: the one way any version goes live, whichever path brought
    /// it. Swaps it in, keeps the replaced version in the history, counts the swap and
    /// reports it (metric and log line). A rollback took its version from the history:
    /// the version it replaces is dropped rather than kept, so repeated rollbacks walk
    /// back through the history.
    fn commit(&self, version: Arc<Version>) -> ReloadOutcome {
        let origin = version.origin;
        let to = policy_label(&version.policy);
        let replaced = self.live.swap(version);
        let from = policy_label(&replaced.policy);
        if origin != Origin::Rollback {
            lock(&self.history).push(replaced);
        }
        lock(&self.status).swaps += 1;
        let name = self.name();
        let result = match origin {
            Origin::File | Origin::Upload => "ok",
            Origin::Rollback => "rollback",
            Origin::Promote => "promoted",
            Origin::Replica => "replicated",
            Origin::Restored => "restored",
        };
        reload_metric(&name, result);
        tracing::info!(policy = %name, from = %from, to = %to, origin = origin.as_str(),
            "policy version live");
        ReloadOutcome::Swapped { from, to }
    }

    /// Records a refused update; the live version keeps serving.
    fn failed(&self, error: &str) {
        let name = self.name();
        {
            let mut status = lock(&self.status);
            status.last_error = Some(error.to_owned());
            status.last_error_at_ms = Some(unix_ms(SystemTime::now()));
            status.rejected += 1;
        }
        reload_metric(&name, "failed");
        tracing::error!(policy = %name, live = %policy_label(&self.live().policy), error,
            "policy update rejected; the live version keeps serving");
    }

    fn clear_error(&self) {
        lock(&self.status).last_error = None;
    }

    /// What an update can be refused for before it is prepared: a canary percent out of
    /// range, a candidate of the other kind running; and, made live, bytes equal to the
    /// live version's (`Some(Unchanged)`: nothing to do).
    fn precheck(
        &self,
        mode: Option<CandidateMode>,
        digest: &str,
    ) -> Result<Option<ReloadOutcome>, UpdateError> {
        if let Some(CandidateMode::Canary { percent }) = mode
            && !(0.0..=100.0).contains(&percent)
        {
            return Err(UpdateError::Invalid(
                "canary percent must be in 0..=100".to_owned(),
            ));
        }
        if let (Some(new), Some(running)) = (mode, self.candidate())
            && std::mem::discriminant(&new) != std::mem::discriminant(&running.mode)
        {
            let kind = |m: CandidateMode| match m {
                CandidateMode::Canary { .. } => "canary",
                CandidateMode::Shadow => "shadow",
            };
            return Err(UpdateError::Invalid(format!(
                "policy {} already has a {} candidate ({}): promote or abort it before \
                 staging a {}",
                self.name(),
                kind(running.mode),
                policy_label(&running.version.policy),
                kind(new)
            )));
        }
        if mode.is_none() && digest == self.live().policy.digest() {
            return Ok(Some(ReloadOutcome::Unchanged {
                digest: digest.to_owned(),
            }));
        }
        Ok(None)
    }

    /// Removes the candidate, or says there is none.
    fn take_candidate(&self) -> Result<Arc<Candidate>, UpdateError> {
        self.candidate
            .swap(None)
            .ok_or_else(|| UpdateError::Invalid(format!("policy {} has no candidate", self.name())))
    }
}

impl PolicySet {
    /// Re-reads the slot's file; a changed, valid file becomes live. On failure the
    /// previous version keeps serving and the error is recorded.
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let path = slot.config().path.clone();
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            let msg = format!("reading {}: {e}", path.display());
            slot.failed(&msg);
            UpdateError::Prepare(msg)
        })?;
        self.update(&slot, bytes, None, Origin::File, None).await
    }

    /// A new version from bytes: live at once (`mode` `None`), or staged as a candidate.
    /// Answers when it is done.
    pub async fn upload(
        &self,
        name: &str,
        bytes: Vec<u8>,
        mode: Option<CandidateMode>,
    ) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        self.update(&slot, bytes, mode, Origin::Upload, None).await
    }

    /// [`PolicySet::upload`] in the background: what can be refused at once is
    /// ([`Slot::precheck`], too many uploads pending); otherwise a task prepares the
    /// version and the answer is the upload's progress, which the admin report keeps
    /// showing until it is done.
    pub fn upload_in_background(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        mode: Option<CandidateMode>,
    ) -> Result<Accepted, UpdateError> {
        let slot = self.slot(name)?.clone();
        let digest = digest_of(&bytes);
        if let Some(done) = slot.precheck(mode, &digest)? {
            reload_metric(&slot.name(), "unchanged");
            return Ok(Accepted::Done(done));
        }
        let upload = slot.uploads.start(digest, mode)?;
        let report = upload.report();
        let set = self.clone();
        tokio::spawn(async move {
            let result = set
                .update(&slot, bytes, mode, Origin::Upload, Some(&upload))
                .await;
            upload.finish(&result);
        });
        Ok(Accepted::Preparing(report))
    }

    /// Re-reads every slot's config (params, path, scopes) and reloads those that changed.
    pub async fn apply_configs(&self, configs: Vec<SlotConfig>) {
        for config in configs {
            let Ok(slot) = self.slot(&config.name).cloned() else {
                tracing::warn!(policy = %config.name,
                    "a policy was added to the config; restart the gateway to serve it");
                continue;
            };
            if *slot.config() == config {
                continue;
            }
            let path = config.path.clone();
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    slot.failed(&format!("reading {}: {e}", path.display()));
                    continue;
                }
            };
            let _guard = slot.update.lock().await;
            let blob = self.blob_for(&bytes);
            match prepare(&self.engine, &config, bytes, None).await {
                Ok(policy) => {
                    slot.config.store(Arc::new(config));
                    slot.commit(Version::new(policy, Origin::File));
                    slot.clear_error();
                    self.announce(&slot, blob, true);
                }
                Err(e) => slot.failed(&e),
            }
        }
    }

    /// Prepares `bytes` and makes them live or stages them, under the slot's update
    /// lock (checked again there: the slot may have changed while this one waited);
    /// `progress` follows the stages of an upload prepared in the background.
    async fn update(
        &self,
        slot: &Arc<Slot>,
        bytes: Vec<u8>,
        mode: Option<CandidateMode>,
        origin: Origin,
        progress: Option<&Upload>,
    ) -> Result<ReloadOutcome, UpdateError> {
        let _guard = slot.update.lock().await;
        let name = slot.name();
        if let Some(done) = slot.precheck(mode, &digest_of(&bytes))? {
            reload_metric(&name, "unchanged");
            return Ok(done);
        }
        let config = slot.config();
        let blob = self.blob_for(&bytes);
        let policy = prepare(&self.engine, &config, bytes, progress)
            .await
            .map_err(|e| {
                slot.failed(&e);
                UpdateError::Prepare(e)
            })?;
        slot.clear_error();
        let version = Version::new(policy, origin);
        let outcome = match mode {
            None => {
                let outcome = slot.commit(version);
                slot.candidate.store(None);
                outcome
            }
            Some(mode) => {
                let to = policy_label(&version.policy);
                slot.candidate
                    .store(Some(Arc::new(Candidate::new(version, mode))));
                reload_metric(&name, "staged");
                tracing::info!(candidate = %to, ?mode, "policy candidate staged");
                ReloadOutcome::Staged { digest: to }
            }
        };
        self.announce(slot, blob, origin == Origin::File);
        Ok(outcome)
    }

    /// Makes the previous version live again.
    pub async fn rollback(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let _guard = slot.update.lock().await;
        let previous = lock(&slot.history)
            .pop()
            .ok_or_else(|| UpdateError::Invalid(format!("policy {name} has no earlier version")))?;
        let outcome = slot.commit(Version::new(previous.policy.clone(), Origin::Rollback));
        self.announce(&slot, None, false);
        Ok(outcome)
    }

    /// Makes the candidate live.
    pub async fn promote(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let _guard = slot.update.lock().await;
        let candidate = slot.take_candidate()?;
        let outcome = slot.commit(Version::new(
            candidate.version.policy.clone(),
            Origin::Promote,
        ));
        self.announce(&slot, None, false);
        Ok(outcome)
    }

    /// Drops the candidate.
    pub async fn abort(&self, name: &str) -> Result<ReloadOutcome, UpdateError> {
        let slot = self.slot(name)?.clone();
        let _guard = slot.update.lock().await;
        let candidate = slot.take_candidate()?;
        let digest = policy_label(&candidate.version.policy);
        tracing::info!(candidate = %digest, "policy candidate aborted");
        self.announce(&slot, None, false);
        Ok(ReloadOutcome::Unchanged {
            digest: policy_label(&slot.live().policy),
        })
    }
}

/// How a background upload was taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// Nothing to prepare (the bytes of the live version).
    Done(ReloadOutcome),
    /// Preparing; its progress so far.
    Preparing(UploadReport),
}

/// Reads a shared version's component by digest (from the replicas' database).
pub(super) type Fetch<'a> =
    &'a (dyn Fn(String) -> BoxFuture<'a, Result<Vec<u8>, String>> + Send + Sync);

impl PolicySet {
    /// A copy of a new component's bytes, when versions are shared with other replicas.
    fn blob_for(&self, bytes: &[u8]) -> Option<Blob> {
        self.announcer.get().map(|_| Blob {
            digest: digest_of(bytes),
            bytes: Arc::from(bytes),
        })
    }

    /// Tells the other replicas (if shared) that `slot` changed here; `from_file` when its
    /// new component was read from the slot's file.
    fn announce(&self, slot: &Slot, blob: Option<Blob>, from_file: bool) {
        if let Some(announcer) = self.announcer.get() {
            let file_digest = blob
                .as_ref()
                .filter(|_| from_file)
                .map(|b| b.digest.clone());
            let _ = announcer.send(Changed {
                slot: slot.name(),
                blob,
                file_digest,
            });
        }
    }

    /// Makes slot `name` match the `state` another replica shared (or this node saved,
    /// `origin` says which): its live version (one this replica holds is reused, another
    /// is fetched with `fetch` and prepared as any version is) and its candidate. A
    /// version that does not prepare here is not served: the current one keeps serving
    /// and the error is reported.
    pub(super) async fn adopt(
        &self,
        name: &str,
        state: &SharedSlot,
        fetch: Fetch<'_>,
        origin: Origin,
    ) {
        let Ok(slot) = self.slot(name).cloned() else {
            return;
        };
        let _guard = slot.update.lock().await;
        let short = |digest: &str| digest.get(..12).unwrap_or(digest).to_owned();
        if state.live != slot.live().policy.digest() {
            match self.version_for(&slot, &state.live, fetch).await {
                Ok(policy) => {
                    slot.commit(Version::new(policy, origin));
                    slot.clear_error();
                }
                Err(e) => slot.failed(&format!(
                    "version {} ({}): {e}",
                    short(&state.live),
                    origin.as_str()
                )),
            }
        }
        let local = slot
            .candidate()
            .map(|c| (c.version.policy.digest().to_owned(), c.mode));
        if local == state.candidate {
            return;
        }
        match &state.candidate {
            None => slot.candidate.store(None),
            Some((digest, mode)) => match self.version_for(&slot, digest, fetch).await {
                Ok(policy) => {
                    let version = Version::new(policy, origin);
                    slot.candidate
                        .store(Some(Arc::new(Candidate::new(version, *mode))));
                }
                Err(e) => slot.failed(&format!(
                    "candidate {} ({}): {e}",
                    short(digest),
                    origin.as_str()
                )),
            },
        }
    }

    /// The version with `digest`: from the slot's history or candidate, else fetched and
    /// prepared.
    async fn version_for(
        &self,
        slot: &Slot,
        digest: &str,
        fetch: Fetch<'_>,
    ) -> Result<LoadedPolicy, String> {
        let held = lock(&slot.history)
            .newest_first()
            .find(|v| v.policy.digest() == digest)
            .map(|v| v.policy.clone());
        let held = held.or_else(|| {
            slot.candidate()
                .filter(|c| c.version.policy.digest() == digest)
                .map(|c| c.version.policy.clone())
        });
        if let Some(policy) = held {
            return Ok(policy);
        }
        let bytes = fetch(digest.to_owned()).await?;
        if digest_of(&bytes) != digest {
            return Err(format!("the stored bytes of {digest} do not match it"));
        }
        prepare(&self.engine, &slot.config(), bytes, None).await
    }
}

fn reload_metric(policy: &str, result: &'static str) {
    metrics::counter!("switchyard_policy_reloads_total",
        "policy" => policy.to_owned(), "result" => result)
    .increment(1);
}
