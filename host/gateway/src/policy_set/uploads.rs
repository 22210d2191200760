//! Admin uploads that prepare in the background: each upload's stage (queued, compiling,
//! testing, then live, staged, unchanged or failed), shown in `GET /admin/policies` while
//! it runs and for a while after.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::{CandidateMode, ReloadOutcome, UpdateError, lock, unix_ms};

/// Uploads of one slot still queued or preparing: more are refused (each holds its
/// component in memory until it is prepared).
pub(super) const MAX_PENDING: usize = 4;
/// Finished uploads kept in the report.
const KEEP_FINISHED: usize = 8;

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStage {
    /// Waiting for the slot's earlier update to finish.
    Queued,
    /// Compiling (or taking from the cache) and linking the component.
    Compiling,
    /// Smoke decisions and the self-test case file.
    Testing,
    /// Made live.
    Live,
    /// Staged as a canary or shadow candidate.
    Staged,
    /// The same bytes as the live version: nothing changed.
    Unchanged,
    /// Refused; `error` says why, and the live version keeps serving.
    Failed,
}

impl UploadStage {
    fn finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Compiling | Self::Testing)
    }
}

/// One upload as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadReport {
    /// The component's sha256.
    pub digest: String,
    /// `None`: live at once.
    pub mode: Option<CandidateMode>,
    pub stage: UploadStage,
    /// Why it failed.
    pub error: Option<String>,
    /// What it did, once finished (`swapped`, `staged`, `unchanged`).
    pub outcome: Option<ReloadOutcome>,
    pub received_at_ms: u64,
    /// Time since it was received, or how long it took once finished.
    pub elapsed_ms: u64,
}

/// One upload's progress, updated by the task preparing it.
#[derive(Debug)]
pub struct Upload {
    received: Instant,
    state: Mutex<UploadReport>,
}

impl Upload {
    fn new(digest: String, mode: Option<CandidateMode>) -> Self {
        Self {
            received: Instant::now(),
            state: Mutex::new(UploadReport {
                digest,
                mode,
                stage: UploadStage::Queued,
                error: None,
                outcome: None,
                received_at_ms: unix_ms(SystemTime::now()),
                elapsed_ms: 0,
            }),
        }
    }

    /// Moves an unfinished upload to `stage`.
    pub(super) fn stage(&self, stage: UploadStage) {
        let mut state = lock(&self.state);
        if !state.stage.finished() {
            state.stage = stage;
        }
    }

    /// Records how the upload ended.
    pub(super) fn finish(&self, result: &Result<ReloadOutcome, UpdateError>) {
        let mut state = lock(&self.state);
        state.stage = match result {
            Ok(ReloadOutcome::Swapped { .. }) => UploadStage::Live,
            Ok(ReloadOutcome::Staged { .. }) => UploadStage::Staged,
            Ok(ReloadOutcome::Unchanged { .. }) => UploadStage::Unchanged,
            Err(_) => UploadStage::Failed,
        };
        state.outcome = result.as_ref().ok().cloned();
        state.error = result.as_ref().err().map(ToString::to_string);
        state.elapsed_ms = u64::try_from(self.received.elapsed().as_millis()).unwrap_or(u64::MAX);
    }

    pub fn report(&self) -> UploadReport {
        let mut report = lock(&self.state).clone();
        if !report.stage.finished() {
            report.elapsed_ms =
                u64::try_from(self.received.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        report
    }
}

/// A slot's recent uploads, newest last.
#[derive(Debug, Default)]
pub(super) struct Uploads(Mutex<VecDeque<Arc<Upload>>>);

impl Uploads {
    /// Registers a new upload, or refuses it while [`MAX_PENDING`] are unfinished.
    pub(super) fn start(
        &self,
        digest: String,
        mode: Option<CandidateMode>,
    ) -> Result<Arc<Upload>, UpdateError> {
        let mut uploads = lock(&self.0);
        let pending = uploads
            .iter()
            .filter(|u| !lock(&u.state).stage.finished())
            .count();
        if pending >= MAX_PENDING {
            return Err(UpdateError::Busy(format!(
                "{pending} uploads of this policy are still being prepared; wait for one to \
                 finish (GET /admin/policies shows their stages)"
            )));
        }
        // Forget the oldest finished ones beyond what the report keeps.
        while uploads.len() >= KEEP_FINISHED + MAX_PENDING {
            match uploads.iter().position(|u| lock(&u.state).stage.finished()) {
                Some(oldest) => drop(uploads.remove(oldest)),
                None => break,
            }
        }
        let upload = Arc::new(Upload::new(digest, mode));
        uploads.push_back(upload.clone());
        Ok(upload)
    }

    /// Every kept upload, newest first.
    pub(super) fn report(&self) -> Vec<UploadReport> {
        lock(&self.0).iter().rev().map(|u| u.report()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_move_forward_until_the_upload_ends() {
        let uploads = Uploads::default();
        let upload = uploads.start("d1".to_owned(), None).ok();
        let upload = upload.as_deref();
        assert_eq!(upload.map(|u| u.report().stage), Some(UploadStage::Queued));
        if let Some(u) = upload {
            u.stage(UploadStage::Compiling);
            u.finish(&Err(UpdateError::Prepare("bad world".to_owned())));
            u.stage(UploadStage::Testing);
        }
        let report = uploads.report();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].stage, UploadStage::Failed);
        assert_eq!(report[0].error.as_deref(), Some("bad world"));
    }

    #[test]
    fn unfinished_uploads_are_bounded_and_finished_ones_forgotten() {
        let uploads = Uploads::default();
        let started: Vec<_> = (0..MAX_PENDING)
            .filter_map(|i| uploads.start(format!("d{i}"), None).ok())
            .collect();
        assert_eq!(started.len(), MAX_PENDING);
        assert!(matches!(
            uploads.start("more".to_owned(), None),
            Err(UpdateError::Busy(_))
        ));
        for u in &started {
            u.finish(&Ok(ReloadOutcome::Unchanged {
                digest: "x".to_owned(),
            }));
        }
        for i in 0..50 {
            let u = uploads.start(format!("e{i}"), None).ok();
            if let Some(u) = u {
                u.finish(&Ok(ReloadOutcome::Unchanged {
                    digest: "x".to_owned(),
                }));
            }
        }
        let report = uploads.report();
        assert!(
            report.len() <= KEEP_FINISHED + MAX_PENDING,
            "{}",
            report.len()
        );
        assert_eq!(report[0].digest, "e49");
    }
}
