//! Hot reload: notice that a plugin file changed and load it again.

use std::sync::Arc;
use std::time::Duration;

use super::engine::Plugin;

/// Checks the plugins' files every `interval` and reloads those that changed
/// (see [`Plugin::reload_if_changed`]). Stops when the task is aborted.
pub fn watch(plugins: Vec<Arc<Plugin>>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let plugins = plugins.clone();
            // Compiling a component takes a while: not on the async threads.
            let checked = tokio::task::spawn_blocking(move || {
                for plugin in &plugins {
                    plugin.reload_if_changed();
                }
            })
            .await;
            if let Err(e) = checked {
                tracing::error!(error = %e, "plugin reload check failed");
            }
        }
    })
}
