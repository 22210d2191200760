//! Stage 3, the replay loop: the producer's batches are placed in time, then decided in
//! order by policy A on this thread and, to compare, by policy B on its own thread in
//! lockstep (each has its own simulated host, so neither waits on the other's state);
//! decisions that differ are counted and sampled.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use super::intake::{Intake, Ready};
use super::prepare::spawn_producer;
use super::report::{DiffSample, Differences};
use super::run::{Decided, PolicyRun};
use super::sim::SimHost;
use super::workload::{LineError, WorkloadRecord};
use super::{ReplayError, ReplayOptions};

/// Per record: the policy's decision.
type Keys = Vec<Decided>;

/// Replays `records` through `runs` (none, one, or two in policy order, left in that
/// order), placing them with `intake`; with two policies, returns their differences.
pub(super) fn simulate<I>(
    records: I,
    runs: &mut Vec<PolicyRun>,
    intake: &mut Intake<'_>,
    opts: &ReplayOptions,
) -> Result<Differences, ReplayError>
where
    I: Iterator<Item = Result<WorkloadRecord, LineError>> + Send,
{
    let hosts: Vec<Arc<SimHost>> = runs.iter().map(|r| r.host.clone()).collect();
    let run_b = if runs.len() == 2 { runs.pop() } else { None };
    let mut diff = Differences::default();
    std::thread::scope(|scope| -> Result<(), ReplayError> {
        let batches = spawn_producer(scope, records);
        let worker = run_b.map(|run| Worker::spawn(scope, run, opts));
        for batch in batches {
            let ready = intake.admit(batch, &hosts)?;
            if ready.is_empty() {
                continue;
            }
            let ready = Arc::new(ready);
            if let Some(worker) = &worker {
                worker.send(ready.clone())?;
            }
            let Some(run_a) = runs.first_mut() else {
                continue;
            };
            let keys_a: Keys = ready.iter().map(|r| run_a.step(r, opts)).collect();
            let Some(worker) = &worker else {
                write_rows(opts, &keys_a, &[]);
                continue;
            };
            let keys_b = worker.recv()?;
            write_rows(opts, &keys_a, &keys_b);
            compare(&ready, keys_a, keys_b, &mut diff, opts.diff_samples);
        }
        if let Some(worker) = worker {
            runs.push(worker.finish()?);
        }
        Ok(())
    })?;
    Ok(diff)
}

/// Policy B's thread: takes batches, returns their decision keys, and hands the run back
/// when the batches end.
struct Worker<'scope> {
    batches: SyncSender<Arc<Vec<Ready>>>,
    keys: Receiver<Keys>,
    handle: ScopedJoinHandle<'scope, PolicyRun>,
}

impl<'scope> Worker<'scope> {
    fn spawn(
        scope: &'scope Scope<'scope, '_>,
        mut run: PolicyRun,
        opts: &'scope ReplayOptions,
    ) -> Self {
        let (batches, b_rx) = sync_channel::<Arc<Vec<Ready>>>(2);
        let (r_tx, keys) = sync_channel::<Keys>(2);
        let handle = scope.spawn(move || {
            for batch in b_rx {
                let keys: Keys = batch.iter().map(|r| run.step(r, opts)).collect();
                if r_tx.send(keys).is_err() {
                    break;
                }
            }
            run
        });
        Self {
            batches,
            keys,
            handle,
        }
    }

    fn send(&self, batch: Arc<Vec<Ready>>) -> Result<(), ReplayError> {
        self.batches.send(batch).map_err(|_| ReplayError::Worker)
    }

    fn recv(&self) -> Result<Keys, ReplayError> {
        self.keys.recv().map_err(|_| ReplayError::Worker)
    }

    /// Ends the batches and waits for the run.
    fn finish(self) -> Result<PolicyRun, ReplayError> {
        drop(self.batches);
        self.handle.join().map_err(|_| ReplayError::Worker)
    }
}

/// Writes the batch's `--decisions` rows, per record A's then B's.
fn write_rows(opts: &ReplayOptions, a: &[Decided], b: &[Decided]) {
    let Some(sink) = &opts.decisions else {
        return;
    };
    let paired = a
        .iter()
        .enumerate()
        .flat_map(|(i, da)| std::iter::once(da).chain(b.get(i)));
    sink.write(paired.filter_map(|d| d.row.as_ref()));
}

/// Counts the records A and B decided differently (by comparison key) and keeps the
/// first `samples` of them.
fn compare(ready: &[Ready], keys_a: Keys, keys_b: Keys, diff: &mut Differences, samples: usize) {
    for ((r, a), b) in ready.iter().zip(keys_a).zip(keys_b) {
        if a.key == b.key {
            continue;
        }
        diff.count += 1;
        if diff.sample.len() < samples {
            diff.sample.push(DiffSample {
                line: r.line,
                id: r.request.id.clone(),
                tenant: r.request.tenant.clone(),
                a: a.shown,
                b: b.shown,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::prepare::prepare;
    use crate::replay::workload::JsonlReader;

    #[test]
    fn differences_count_every_mismatch_and_sample_the_first() {
        let opts = ReplayOptions::default();
        let mut intake = Intake::new(&opts, 0);
        let line = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n";
        let batch = JsonlReader::new(line.repeat(3).as_bytes())
            .map(|r| r.map(prepare))
            .collect();
        let ready = intake.admit(batch, &[]).unwrap_or_else(|e| panic!("{e}"));
        let keys = |ks: [&str; 3]| -> Keys {
            ks.iter()
                .map(|k| Decided {
                    key: (*k).to_owned(),
                    shown: format!("{k} (why)"),
                    row: None,
                })
                .collect()
        };
        let mut diff = Differences::default();
        compare(
            &ready,
            keys(["openai", "local", "reject 403"]),
            keys(["openai", "anthropic", "local"]),
            &mut diff,
            1,
        );
        assert_eq!((diff.count, diff.sample.len()), (2, 1));
        let s = &diff.sample[0];
        assert_eq!(
            (s.line, s.a.as_str(), s.b.as_str()),
            (2, "local (why)", "anthropic (why)")
        );
    }
}
