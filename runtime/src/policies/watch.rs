//! Reloads the policies when their files change. The whole directory is
//! watched (recursively, for lib/ and tests/), not the files: editors that
//! save by writing a temporary file and renaming it over the original
//! replace the file a per-file watch would follow.
//!
//! Deploys replace the directory itself (`git checkout`, `rsync --delete`,
//! a rename into place, a symlink swap), and a watch follows the directory
//! it was set on, not its path. So the parent is watched too, for the
//! directory's name appearing again, and the directory's watch is set
//! again after every change. A poll of the files' sizes and times every
//! `POLL_INTERVAL` is the fallback where file events are not delivered
//! (network file systems, some container mounts).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};

use super::{Policies, PolicyError};

/// How often the files are compared when no event came.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Watches the policies directory while alive; dropping it stops the
/// watching thread.
pub struct PolicyWatcher {
    signals: mpsc::Sender<Signal>,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWatcher").finish_non_exhaustive()
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop);
    }
}

enum Signal {
    Changed,
    Stop,
}

/// Whether a change to `path` can change the policy set (editors' swap
/// and backup files cannot). The directory itself appearing, going or
/// being swapped always can.
fn relevant(path: &Path, dir: &Path) -> bool {
    if path == dir {
        return true;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".rhai") || name.ends_with(".json"))
}

/// What the policy files look like from outside: each relevant file's
/// path, size and modification time, and where the directory leads.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(&path, root, out);
            } else if relevant(&path, root) {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(target) = std::fs::canonicalize(dir) {
        out.push((target, 0, None));
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

impl Policies {
    /// Starts watching `config.dir`: after a change and `debounce_ms` of
    /// quiet, [`Policies::reload`] runs on the watcher's own thread.
    pub fn watch(self: &Arc<Self>) -> Result<PolicyWatcher, PolicyError> {
        // Absolute, so its parent is known and event paths compare equal.
        let dir = std::path::absolute(&self.config().dir).map_err(|source| PolicyError::Io {
            path: self.config().dir.clone(),
            source,
        })?;
        let debounce = Duration::from_millis(self.config().debounce_ms.max(1));
        let (signals, received) = mpsc::channel::<Signal>();
        let sender = signals.clone();
        let event_dir = dir.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let changes_files = !matches!(event.kind, EventKind::Access(_))
                        && (event.paths.iter().any(|p| relevant(p, &event_dir))
                            || matches!(event.kind, EventKind::Other));
                    if changes_files {
                        let _ = sender.send(Signal::Changed);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "watching the policies failed"),
            })
            .map_err(|err| io_error(&dir, err))?;
        // The parent, for the directory being replaced; the directory, for edits.
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&parent, RecursiveMode::NonRecursive)
            .map_err(|err| io_error(&parent, err))?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|err| io_error(&dir, err))?;
        let policies = Arc::downgrade(self);
        let thread_dir = dir.clone();
        std::thread::Builder::new()
            .name("pigeon-policy-watch".into())
            .spawn(move || {
                let dir = thread_dir;
                let mut seen = fingerprint(&dir);
                loop {
                    match received.recv_timeout(POLL_INTERVAL) {
                        Ok(Signal::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Ok(Signal::Changed) => {
                            // Wait for the editor or deploy to finish: reload after quiet.
                            loop {
                                match received.recv_timeout(debounce) {
                                    Ok(Signal::Changed) => {}
                                    Ok(Signal::Stop) => return,
                                    Err(_) => break,
                                }
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if fingerprint(&dir) == seen {
                                continue;
                            }
                        }
                    }
                    // The directory may be a new one: watch what the path leads to now.
                    let _ = watcher.unwatch(&dir);
                    if let Err(err) = watcher.watch(&dir, RecursiveMode::Recursive) {
                        tracing::debug!(error = %err, "the policies directory cannot be watched yet");
                    }
                    seen = fingerprint(&dir);
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
        Ok(PolicyWatcher { signals })
    }
}

fn io_error(dir: &Path, err: notify::Error) -> PolicyError {
    PolicyError::Io {
        path: dir.to_owned(),
        source: std::io::Error::other(err.to_string()),
    }
}
