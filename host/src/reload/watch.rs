//! File watching: a debounced notify watcher on the directories of every policy file and
//! of the config file. Editors and `cp`/`mv` write through temp files and renames, so the
//! directories are watched and events are matched by path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use super::{PolicySet, SlotConfig};

/// Keeps the watcher alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Box<dyn std::any::Any + Send>,
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
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(debounce, None, move |result| {
        let _ = tx.send(result);
    })
    .map_err(|e| format!("starting the file watcher: {e}"))?;
    let mut dirs = BTreeSet::new();
    let config_file = config.as_ref().map(|(p, _)| normalise(p));
    let mut files: Vec<PathBuf> = set
        .slots()
        .iter()
        .map(|s| normalise(&s.config().path))
        .collect();
    files.extend(config_file.clone());
    for file in &files {
        if let Some(dir) = file.parent() {
            dirs.insert(dir.to_path_buf());
        }
    }
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    }
    let reader = config.map(|(_, r)| r);
    let task = tokio::spawn(async move {
        while let Some(result) = rx.recv().await {
            let events = match result {
                Ok(events) => events,
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "file watcher error");
                    }
                    continue;
                }
            };
            let changed: BTreeSet<PathBuf> = events
                .iter()
                .filter(|e| !e.kind.is_access())
                .flat_map(|e| e.paths.iter().map(|p| normalise(p)))
                .collect();
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
        _debouncer: Box::new(debouncer),
        _task: task,
    })
}
