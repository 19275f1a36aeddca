//! Hot reload: notice that a plugin file changed and load it again.

use std::sync::Arc;
use std::time::Duration;

use super::engine::Plugin;

/// What became of a reload: the plugin's file, and the error if the new
/// file did not load (the previous version stays in use).
pub type ReloadObserver = Arc<dyn Fn(&Plugin, Result<(), String>) + Send + Sync>;

/// Checks the plugins' files every `interval` and reloads those that changed
/// (see [`Plugin::reload_if_changed`]), telling `observer` of each reload.
/// Stops when the task is aborted.
pub fn watch(
    plugins: Vec<Arc<Plugin>>,
    interval: Duration,
    observer: Option<ReloadObserver>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let (plugins, observer) = (plugins.clone(), observer.clone());
            // Compiling a component takes a while: not on the async threads.
            let checked = tokio::task::spawn_blocking(move || {
                for plugin in &plugins {
                    let failures = plugin.stats().reload_failures;
                    let outcome = if plugin.reload_if_changed() {
                        Ok(())
                    } else if plugin.stats().reload_failures > failures {
                        Err(plugin.reload_error().unwrap_or_default())
                    } else {
                        continue;
                    };
                    if let Some(observer) = &observer {
                        observer(plugin, outcome);
                    }
                }
            })
            .await;
            if let Err(e) = checked {
                tracing::error!(error = %e, "plugin reload check failed");
            }
        }
    })
}
