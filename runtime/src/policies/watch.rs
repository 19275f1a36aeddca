//! Reloads the policies when their files change. The whole directory is
//! watched (recursively, for lib/ and tests/), not the files: editors that
//! save by writing a temporary file and renaming it over the original
//! replace the file a per-file watch would follow.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::{Policies, PolicyError};

/// Watches the policies directory while alive; dropping it stops the
/// watching thread.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWatcher").finish_non_exhaustive()
    }
}

/// Whether a change to `path` can change the policy set (editors' swap
/// and backup files cannot).
fn relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".rhai") || name.ends_with(".json"))
}

impl Policies {
    /// Starts watching `config.dir`: after a change and `debounce_ms` of
    /// quiet, [`Policies::reload`] runs on the watcher's own thread.
    pub fn watch(self: &Arc<Self>) -> Result<PolicyWatcher, PolicyError> {
        let dir = self.config().dir.clone();
        let debounce = Duration::from_millis(self.config().debounce_ms.max(1));
        let (changed, changes) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let changes_files = !matches!(event.kind, EventKind::Access(_))
                        && (event.paths.iter().any(|p| relevant(p))
                            || matches!(event.kind, EventKind::Other));
                    if changes_files {
                        let _ = changed.send(());
                    }
                }
                Err(err) => tracing::warn!(error = %err, "watching the policies failed"),
            })
            .map_err(|err| io_error(&dir, err))?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|err| io_error(&dir, err))?;
        let policies = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("pigeon-policy-watch".into())
            .spawn(move || {
                // Ends when the watcher (the only sender) is dropped.
                while changes.recv().is_ok() {
                    // Wait for the editor to finish: reload after quiet.
                    while changes.recv_timeout(debounce).is_ok() {}
                    let Some(policies) = policies.upgrade() else {
                        return;
                    };
                    // The outcome is logged and recorded by reload().
                    let _ = policies.reload();
                }
            })
            .map_err(|source| PolicyError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(PolicyWatcher { _watcher: watcher })
    }
}

fn io_error(dir: &Path, err: notify::Error) -> PolicyError {
    PolicyError::Io {
        path: dir.to_owned(),
        source: std::io::Error::other(err.to_string()),
    }
}
