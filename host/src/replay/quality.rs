//! Quality labels for replay (`--labels`): how well each backend answered each request,
//! and the quality a policy's routing reaches, beside the best single backend and random
//! routing with the same share per backend.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::LineError;

/// Quality per backend (0.0..=1.0) of each labelled request, by request id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    by_id: HashMap<String, BTreeMap<String, f64>>,
}

/// One line of a labels file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelLine {
    id: String,
    quality: BTreeMap<String, f64>,
}

impl Labels {
    /// Reads JSON lines `{"id": "REQUEST ID", "quality": {"BACKEND": 0.0..=1.0, ...}}`
    /// (blank lines skipped). The id is the workload's (`id`, else `line-N`).
    pub fn read(reader: impl BufRead) -> Result<Self, LineError> {
        let mut by_id = HashMap::new();
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let error = |message: String| LineError {
                line: line_no,
                message,
            };
            let line = line.map_err(|e| error(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: LabelLine =
                serde_json::from_str(&line).map_err(|e| error(e.to_string()))?;
            if let Some((backend, q)) = parsed
                .quality
                .iter()
                .find(|(_, q)| !(0.0..=1.0).contains(*q))
            {
                return Err(error(format!("quality of {backend} is {q}, outside 0..=1")));
            }
            if by_id.insert(parsed.id.clone(), parsed.quality).is_some() {
                return Err(error(format!(
                    "request id {:?} is labelled twice",
                    parsed.id
                )));
            }
        }
        Ok(Self { by_id })
    }

    /// The quality per backend of request `id`.
    pub fn get(&self, id: &str) -> Option<&BTreeMap<String, f64>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// One policy's quality over the labelled requests of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// Workload requests that had a label.
    pub labelled: u64,
    /// Mean quality of what the policy's routing served (a rejected or unserved request,
    /// or one served by a backend its label does not name, counts 0).
    pub quality: f64,
    /// The backend with the best mean quality over the labelled requests, and that mean.
    pub best_backend: String,
    pub best_quality: f64,
    /// `quality / best_quality`.
    pub share_of_best: f64,
    /// Expected quality of random routing that sends the same share of requests to each
    /// backend as the policy did.
    pub random_same_shares: f64,
    /// Mean quality per backend over the labelled requests.
    pub backend_quality: BTreeMap<String, f64>,
    /// Served by a backend the request's label does not name.
    pub unlabelled_backend: u64,
}

/// Accumulates one policy's quality while it replays.
#[derive(Debug, Default)]
pub(super) struct QualityAcc {
    labelled: u64,
    achieved: f64,
    served_by: BTreeMap<String, u64>,
    /// Per backend: the sum of its quality over labelled requests, and their count.
    backend_sum: BTreeMap<String, (f64, u64)>,
    unlabelled_backend: u64,
}

impl QualityAcc {
    /// One labelled request, `served` by that backend (`None`: rejected or unserved).
    pub(super) fn record(&mut self, label: &BTreeMap<String, f64>, served: Option<&str>) {
        self.labelled += 1;
        for (backend, q) in label {
            let entry = self.backend_sum.entry(backend.clone()).or_default();
            entry.0 += q;
            entry.1 += 1;
        }
        let Some(backend) = served else {
            return;
        };
        match label.get(backend) {
            Some(q) => {
                self.achieved += q;
                *self.served_by.entry(backend.to_owned()).or_default() += 1;
            }
            None => self.unlabelled_backend += 1,
        }
    }

    /// The report, or `None` when no request had a label.
    pub(super) fn report(&self) -> Option<QualityReport> {
        if self.labelled == 0 {
            return None;
        }
        let n = self.labelled as f64;
        let backend_quality: BTreeMap<String, f64> = self
            .backend_sum
            .iter()
            .map(|(b, (sum, count))| (b.clone(), sum / (*count).max(1) as f64))
            .collect();
        let (best_backend, best_quality) = backend_quality
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(b, q)| (b.clone(), *q))?;
        let quality = self.achieved / n;
        let random_same_shares = self
            .served_by
            .iter()
            .map(|(b, k)| *k as f64 / n * backend_quality.get(b).copied().unwrap_or(0.0))
            .sum();
        Some(QualityReport {
            labelled: self.labelled,
            quality,
            share_of_best: if best_quality > 0.0 {
                quality / best_quality
            } else {
                0.0
            },
            best_backend,
            best_quality,
            random_same_shares,
            backend_quality,
            unlabelled_backend: self.unlabelled_backend,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn label(local: f64, cloud: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("local".to_owned(), local), ("openai".to_owned(), cloud)])
    }

    #[test]
    fn reads_labels_and_refuses_bad_lines() {
        let text = "{\"id\":\"a\",\"quality\":{\"local\":1,\"openai\":0.5}}\n\n{\"id\":\"b\",\"quality\":{}}\n";
        let labels = Labels::read(text.as_bytes()).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.get("a").unwrap()["openai"], 0.5);
        assert!(labels.get("c").is_none());
        for (bad, line, says) in [
            ("{\"id\":\"a\",\"quality\":{\"local\":2}}", 1, "outside"),
            (
                "{\"id\":\"a\",\"quality\":{}}\n{\"id\":\"a\",\"quality\":{}}",
                2,
                "twice",
            ),
            ("{\"id\":\"a\"}", 1, "quality"),
            ("not json", 1, ""),
        ] {
            let err = Labels::read(bad.as_bytes()).unwrap_err();
            assert_eq!(err.line, line, "{bad}");
            assert!(err.message.contains(says), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn quality_against_the_best_backend_and_random_at_the_same_shares() {
        let mut acc = QualityAcc::default();
        assert_eq!(acc.report(), None);
        // Local gets the easy two right, the cloud all but one; the policy sends the
        // hard ones to the cloud, except one it rejects.
        acc.record(&label(1.0, 1.0), Some("local"));
        acc.record(&label(1.0, 0.0), Some("local"));
        acc.record(&label(0.0, 1.0), Some("openai"));
        acc.record(&label(0.0, 1.0), None);
        let r = acc.report().unwrap();
        assert_eq!(r.labelled, 4);
        assert!((r.quality - 0.75).abs() < 1e-12);
        assert_eq!(r.best_backend, "openai");
        assert!((r.best_quality - 0.75).abs() < 1e-12);
        assert!((r.share_of_best - 1.0).abs() < 1e-12);
        // Random with 2/4 local (mean 0.5) and 1/4 cloud (mean 0.75).
        assert!((r.random_same_shares - (0.5 * 0.5 + 0.25 * 0.75)).abs() < 1e-12);
        acc.record(&BTreeMap::from([("local".to_owned(), 1.0)]), Some("gemini"));
        assert_eq!(acc.report().unwrap().unlabelled_backend, 1);
    }
}
