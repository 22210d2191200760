//! File watching: a notify watcher on the directories of every policy file and of the
//! config file. Editors and `cp`/`mv` write through temp files and renames, so the
//! directories are watched and events are matched by path. Only events naming a watched
//! file pass the watcher's callback: those directories often hold a busy ledger or
//! decision log, whose every write is an event (a debouncer that tracked each of them
//! took ~7 % of the CPU under load). Changes are applied once `debounce` has passed
//! without another.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use super::{PolicySet, SlotConfig};

/// Keeps the watcher alive; dropping it stops watching.
pub struct Watcher {
    _watcher: Box<dyn std::any::Any + Send>,
    _task: tokio::task::JoinHandle<()>,
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
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let message = match result {
            Ok(event) if event.kind.is_access() => return,
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
    let dirs: BTreeSet<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    }
    let reader = config.map(|(_, r)| r);
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
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
    Ok(Watcher {
        _watcher: Box::new(watcher),
        _task: task,
    })
}
