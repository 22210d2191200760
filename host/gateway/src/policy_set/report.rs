//! What the admin API shows of the policy set: per slot its scopes, live version,
//! history, candidate with its counters, and update status.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::uploads::UploadReport;
use super::{CandidateMode, Disagreement, Origin, PolicySet, Slot, Version, lock, unix_ms};
use crate::policy::policy_label;

/// A policy as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotReport {
    pub name: String,
    pub path: PathBuf,
    pub models: Vec<String>,
    pub tenants: Vec<String>,
    pub live: VersionReport,
    pub history: Vec<VersionReport>,
    pub candidate: Option<CandidateReport>,
    /// Admin uploads preparing in the background, and the last few finished, newest first.
    pub uploads: Vec<UploadReport>,
    pub decisions: u64,
    pub status: &'static str,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<u64>,
    pub swaps: u64,
    pub rejected_updates: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionReport {
    pub policy: String,
    pub digest: String,
    pub version: String,
    pub loaded_at_ms: u64,
    pub origin: Origin,
    /// Failing so often that its fallback is used without running it.
    pub quarantined: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    #[serde(flatten)]
    pub version: VersionReport,
    #[serde(flatten)]
    pub mode: CandidateMode,
    pub served: u64,
    pub agree: u64,
    pub disagree: u64,
    /// Shadow decisions not judged because the live or the shadow policy failed.
    pub fallbacks: u64,
    pub samples: Vec<Disagreement>,
}

fn version_report(v: &Version) -> VersionReport {
    VersionReport {
        policy: policy_label(&v.policy),
        digest: v.policy.digest().to_owned(),
        version: v.policy.info().version.clone(),
        loaded_at_ms: unix_ms(v.loaded_at),
        origin: v.origin,
        quarantined: v.policy.quarantined(),
    }
}

impl Slot {
    fn report(&self) -> SlotReport {
        let config = self.config();
        let status = lock(&self.status).clone();
        SlotReport {
            name: config.name.clone(),
            path: config.path.clone(),
            models: config.models.clone(),
            tenants: config.tenants.clone(),
            live: version_report(&self.live()),
            history: lock(&self.history)
                .newest_first()
                .map(|v| version_report(v))
                .collect(),
            candidate: self.candidate().map(|c| CandidateReport {
                version: version_report(&c.version),
                mode: c.mode,
                served: c.served.load(Ordering::Relaxed),
                agree: c.agree.load(Ordering::Relaxed),
                disagree: c.disagree.load(Ordering::Relaxed),
                fallbacks: c.fallbacks.load(Ordering::Relaxed),
                samples: lock(&c.samples).clone(),
            }),
            uploads: self.uploads.report(),
            decisions: self.decisions.load(Ordering::Relaxed),
            status: if status.last_error.is_some() {
                "serving; last update failed"
            } else {
                "serving"
            },
            last_error: status.last_error,
            last_error_at_ms: status.last_error_at_ms,
            swaps: status.swaps,
            rejected_updates: status.rejected,
        }
    }
}

impl PolicySet {
    /// What the admin API lists.
    pub fn report(&self) -> Vec<SlotReport> {
        self.slots.iter().map(|s| s.report()).collect()
    }
}
