//! File watching: a notify watcher on every policy file and the config file. The files
//! themselves are watched, not their directories: those often hold a busy ledger or
//! decision log, whose every write would be an event (watching the directory cost ~8 % of
//! the gateway's CPU under load). Editors and `cp`/`mv` replace a file through a temp file
//! and a rename, which leaves the watch on the old inode, so every watch is re-armed on the
//! path as soon as an event arrives and again after the change is applied; a missing file
//! is watched through its directory until it reappears. Changes are applied once
//! `debounce` has passed without another event.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use super::{PolicySet, SlotConfig};

/// Keeps the watcher alive; dropping it stops watching.
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What is watched for each file: the file itself, or its directory while it is missing.
struct Watches {
    watcher: notify::RecommendedWatcher,
    files: Vec<PathBuf>,
    /// Watched path → whether it is a file (re-armed every time: its inode may be new).
    watched: BTreeMap<PathBuf, bool>,
}

impl Watches {
    /// Points every watch at the file's current inode, or at its directory while missing.
    fn rearm(&mut self) -> Result<(), String> {
        let mut want: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for file in &self.files {
            if file.exists() {
                want.insert(file.clone(), true);
            } else if let Some(dir) = file.parent() {
                want.entry(dir.to_path_buf()).or_insert(false);
            }
        }
        for (path, is_file) in &self.watched {
            if *is_file || !want.contains_key(path) {
                let _ = self.watcher.unwatch(path);
            }
        }
        for (path, is_file) in &want {
            if *is_file || !self.watched.contains_key(path) {
                self.watcher
                    .watch(path, RecursiveMode::NonRecursive)
                    .map_err(|e| format!("watching {}: {e}", path.display()))?;
            }
        }
        self.watched = want;
        Ok(())
    }

    fn rearm_or_warn(&mut self) {
        if let Err(e) = self.rearm() {
            tracing::warn!(error = %e, "re-arming the file watcher");
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

/// Re-reads the policy part of the config file.
pub type ConfigReader = Box<dyn Fn() -> Result<Vec<SlotConfig>, String> + Send + Sync>;

/// An absolute, lexically clean form of `path` for comparing event paths.
fn normalise(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Resolve symlinked directories (e.g. /tmp) so event paths compare equal.
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// Watches every policy file (and `config`, re-read with `read_config`) and applies
/// changes to `set`: a policy file change reloads that policy, a config change re-applies
/// the policy settings. Must be called inside a tokio runtime.
pub fn watch(
    set: Arc<PolicySet>,
    config: Option<(PathBuf, ConfigReader)>,
    debounce: Duration,
) -> Result<Watcher, String> {
    let config_file = config.as_ref().map(|(p, _)| normalise(p));
    let mut files: Vec<PathBuf> = set
        .slots()
        .iter()
        .map(|s| normalise(&s.config().path))
        .collect();
    files.extend(config_file.clone());
    let names: HashSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(ToOwned::to_owned))
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Vec<PathBuf>, String>>();
    let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let message = match result {
            // Reads (our own reloads included) and metadata (atime) are not changes; a
            // replaced file still reports its removal.
            Ok(event)
                if event.kind.is_access()
                    || matches!(
                        event.kind,
                        notify::EventKind::Modify(notify::event::ModifyKind::Metadata(_))
                    ) =>
            {
                return;
            }
            Ok(event) => {
                let ours: Vec<PathBuf> = event
                    .paths
                    .into_iter()
                    .filter(|p| p.file_name().is_some_and(|n| names.contains(n)))
                    .collect();
                if ours.is_empty() {
                    return;
                }
                Ok(ours)
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = tx.send(message);
    })
    .map_err(|e| format!("starting the file watcher: {e}"))?;
    let mut watches = Watches {
        watcher,
        files,
        watched: BTreeMap::new(),
    };
    watches.rearm()?;
    let reader = config.map(|(_, r)| r);
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Re-arm first, so that a second replace during the quiet period is seen too.
            watches.rearm_or_warn();
            // Collect until `debounce` passes quietly: a save is often several events.
            let mut paths = Vec::new();
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Ok(p) => paths.extend(p),
                    Err(e) => tracing::warn!(error = %e, "file watcher error"),
                }
                if let Ok(Some(more)) = tokio::time::timeout(debounce, rx.recv()).await {
                    next = Some(more);
                }
            }
            watches.rearm_or_warn();
            let changed: BTreeSet<PathBuf> = paths.iter().map(|p| normalise(p)).collect();
            if let (Some(file), Some(read)) = (&config_file, &reader)
                && changed.contains(file)
            {
                match read() {
                    Ok(configs) => set.apply_configs(configs).await,
                    Err(e) => tracing::error!(error = %e,
                        "config file changed but does not load; keeping the running policies"),
                }
            }
            let names: Vec<String> = set
                .slots()
                .iter()
                .filter(|s| changed.contains(&normalise(&s.config().path)))
                .map(|s| s.name())
                .collect();
            for name in names {
                // Errors are recorded on the slot and logged by `reload`.
                let _ = set.reload(&name).await;
            }
        }
    });
    Ok(Watcher { task })
}
