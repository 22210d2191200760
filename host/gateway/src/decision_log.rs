//! The decision log: one JSONL line per request ([`DecisionLogRecord`], the format
//! `switchyard replay` reads), written by a background thread, rotated by size. Message
//! content is only written when explicitly enabled.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::{Deserialize, Serialize};

use crate::domain::{ChatMessage, PolicyRequest, Rejection, Target, Verdict};
use crate::time::now_ms;

/// Records queued for the writer; past this the gateway drops records (counted) rather
/// than slow requests down.
const QUEUE: usize = 16_384;

/// The `schema` tag of a decision-log line.
pub const DECISION_LOG_SCHEMA: &str = "switchyard.decision.v1";

/// Token usage as a provider reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageRecord {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

/// What the policy returned, as logged (never message content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoggedVerdict {
    Route {
        targets: Vec<Target>,
        reason: String,
        /// The policy rewrote the messages (e.g. redaction).
        #[serde(default)]
        rewritten: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
    },
    Reject(Rejection),
}

/// One line of the gateway's decision log: what the request looked like to the policy,
/// what the policy decided, and what happened upstream.
///
/// Message content is only present (`messages`) when content logging was explicitly
/// enabled; otherwise replay gives the policy a placeholder user message holding a sample
/// of each recorded PII kind, and `prompt_tokens` as recorded, so PII- and size-driven
/// policies decide as they did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionLogRecord {
    /// Always [`DECISION_LOG_SCHEMA`].
    pub schema: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub request_id: String,
    pub tenant: String,
    /// Model alias the client asked for.
    pub model: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Prompt tokens as the host counted them for the policy.
    pub prompt_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub message_count: u32,
    /// PII kinds the host detector found in the messages (`email`, `phone`, `credit-card`,
    /// `us-ssn`, `iban`, `ip-address`, `api-key`), each once.
    #[serde(default)]
    pub pii: Vec<String>,
    /// Message content; only with content logging enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// `name@short_digest` of the policy that decided.
    #[serde(default)]
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<LoggedVerdict>,
    /// Set when the policy failed and the fallback decision was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_failure: Option<String>,
    /// Set when the host changed the decision: `host:privacy:KIND removed N non-local
    /// target(s)` for a request it keeps on local backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_us: Option<u64>,
    /// Backend and model that served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// HTTP status returned to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl DecisionLogRecord {
    /// The record of a request as the policy saw it and what it decided, without
    /// scanning it for PII or keeping its messages; the outcome is added later.
    pub fn decided(
        request: &PolicyRequest,
        policy: &str,
        verdict: &Verdict,
        failure: Option<&str>,
        decision_us: u64,
    ) -> Self {
        let decision = match verdict {
            Verdict::Route(d) => LoggedVerdict::Route {
                targets: d.targets.clone(),
                reason: d.reason.clone(),
                rewritten: d.messages.is_some(),
                max_tokens: d.max_tokens,
            },
            Verdict::Reject(r) => LoggedVerdict::Reject(r.clone()),
        };
        Self {
            schema: DECISION_LOG_SCHEMA.to_owned(),
            timestamp: crate::time::rfc3339(now_ms()),
            request_id: request.id.clone(),
            tenant: request.tenant.clone(),
            model: request.model.clone(),
            labels: request.labels.clone(),
            prompt_tokens: request.prompt_tokens,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            streaming: request.streaming,
            message_count: u32::try_from(request.messages.len()).unwrap_or(u32::MAX),
            pii: Vec::new(),
            messages: None,
            policy: policy.to_owned(),
            decision: Some(decision),
            policy_failure: failure.map(str::to_owned),
            host_override: None,
            decision_us: Some(decision_us),
            backend: None,
            served_model: None,
            status: None,
            usage: None,
            latency_ms: None,
            cost_usd: None,
        }
    }
}

/// Decision log settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionLogConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` newest … `path.N`).
    pub keep: u32,
    /// Write message content (off by default: PII kinds and token counts only).
    pub include_content: bool,
}

/// A running decision log.
#[derive(Debug)]
pub struct DecisionLog {
    tx: SyncSender<DecisionLogRecord>,
    include_content: bool,
    dropped: AtomicU64,
}

impl DecisionLog {
    /// Opens (appends to) the log and starts its writer thread.
    pub fn open(config: DecisionLogConfig) -> std::io::Result<Self> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = Rotating::open(config.path.clone(), config.max_bytes, config.keep)?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("decision-log".to_owned())
            .spawn(move || writer(rx, file))?;
        Ok(Self {
            tx,
            include_content: config.include_content,
            dropped: AtomicU64::new(0),
        })
    }

    /// The record of a request as the policy saw it and what it decided, with the PII
    /// kinds found in it (and its messages when content logging is on); the caller adds
    /// the outcome and passes it to [`DecisionLog::write`].
    pub fn record(
        &self,
        request: &PolicyRequest,
        policy: &str,
        verdict: &Verdict,
        failure: Option<&str>,
        decision_us: u64,
    ) -> DecisionLogRecord {
        let mut record = DecisionLogRecord::decided(request, policy, verdict, failure, decision_us);
        for m in &request.messages {
            for found in policy_sdk::pii::detect(&m.content) {
                let kind = found.kind.as_str().to_owned();
                if !record.pii.contains(&kind) {
                    record.pii.push(kind);
                }
            }
        }
        record.messages = self
            .include_content
            .then(|| request.messages.iter().map(ChatMessage::clone).collect());
        record
    }

    /// Queues a finished record; never blocks the request.
    pub fn write(&self, record: DecisionLogRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::counter!("switchyard_decision_log_dropped_total").increment(1);
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "decision log is behind; records dropped");
                }
            }
        }
    }
}

fn writer(rx: Receiver<DecisionLogRecord>, mut file: Rotating) {
    while let Ok(first) = rx.recv() {
        file.append(&first);
        // Drain what is queued, then flush once.
        while let Ok(next) = rx.try_recv() {
            file.append(&next);
        }
        file.flush();
    }
    file.flush();
}

/// An append-only file rotated by size.
struct Rotating {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
}

impl Rotating {
    fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes,
            keep,
            out: BufWriter::new(file),
            size,
        })
    }

    fn append(&mut self, record: &DecisionLogRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "decision log record not serialisable");
                return;
            }
        };
        line.push(b'\n');
        let len = line.len() as u64;
        if self.size > 0
            && self.size + len > self.max_bytes
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, path = %self.path.display(), "decision log rotation failed");
        }
        match self.out.write_all(&line) {
            Ok(()) => self.size += len,
            Err(e) => tracing::error!(error = %e, "decision log write failed"),
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!(error = %e, "decision log flush failed");
        }
    }

    /// `path` → `path.1` → … → `path.keep` (the oldest is dropped), then a fresh `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u32| rotated(&self.path, n);
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

/// The path of rotated file `n` of `path` (`path.n`).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{Decision, Role, Target};

    fn request(text: &str) -> PolicyRequest {
        PolicyRequest {
            id: "r1".into(),
            model: "auto".into(),
            messages: vec![ChatMessage {
                role: Role::User,
                content: text.into(),
            }],
            max_tokens: Some(10),
            temperature: None,
            streaming: false,
            tenant: "acme".into(),
            labels: Default::default(),
            prompt_tokens: 7,
            needs: Default::default(),
        }
    }

    fn verdict() -> Verdict {
        Verdict::Route(Decision {
            targets: vec![Target {
                backend: "local".into(),
                model: None,
            }],
            reason: "pii:email".into(),
            messages: None,
            max_tokens: None,
            labels: Default::default(),
        })
    }

    #[test]
    fn records_pii_kinds_without_content_and_rotates_by_size() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let path = dir.join("decisions.jsonl");
        let log = DecisionLog::open(DecisionLogConfig {
            path: path.clone(),
            max_bytes: 2_000,
            keep: 2,
            include_content: false,
        })
        .unwrap();
        let record = log.record(
            &request("mail bob@example.com"),
            "hybrid@abc",
            &verdict(),
            None,
            42,
        );
        assert_eq!(record.pii, ["email"]);
        assert!(record.messages.is_none());
        for _ in 0..40 {
            log.write(record.clone());
        }
        drop(log); // the writer drains and exits when the sender is gone
        for _ in 0..100 {
            if rotated(&path, 2).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut lines = 0;
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.len() <= 2_000,
                "{} is {} bytes",
                p.display(),
                text.len()
            );
            for line in text.lines() {
                let back: DecisionLogRecord = serde_json::from_str(line).unwrap();
                assert_eq!(back.request_id, "r1");
                assert!(!line.contains("bob@example.com"));
                lines += 1;
            }
        }
        assert!(!rotated(&path, 3).exists(), "keep = 2");
        assert!(
            lines > 0 && lines < 40,
            "older rotations are dropped: {lines}"
        );
    }

    #[test]
    fn content_only_when_enabled() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let log = DecisionLog::open(DecisionLogConfig {
            path: dir.join("d.jsonl"),
            max_bytes: 1 << 20,
            keep: 1,
            include_content: true,
        })
        .unwrap();
        let record = log.record(&request("hello"), "p@1", &verdict(), None, 1);
        assert_eq!(record.messages.unwrap()[0].content, "hello");
    }
}
