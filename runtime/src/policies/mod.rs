//! Policies: the Rhai scripts in `policies/` that compliance staff edit and
//! Pigeon reloads without a restart.
//!
//! - `content.rhai`: `check(msg)` at accept time: allow, reject or rewrite.
//! - `routing.rhai`: `route(msg, carriers)` at dispatch: the carriers to try,
//!   in order, and optionally a sender; or reject.
//! - `pacing.rhai`: `pace(msg, carrier)` at dispatch: rate limits (pacing
//!   keys, enforced by the host's token buckets) or a time to defer to.
//!
//! A [`PolicySet`] is the three scripts (and the modules in `lib/`) compiled
//! together, identified by the SHA-256 digest of its files. [`Policies`]
//! holds the active set, reloads it (compile, run `policies/tests/`, swap;
//! any error keeps the last good set), keeps the reload history and
//! counters, and answers every call without failing: a script that errors
//! rejects the message (content), falls back to the configured carriers
//! (routing) or to the carrier's configured rate (pacing). See
//! `docs/policies.md` for the script side.

mod cli_check;
mod cli_test;
mod decision;
mod engine;
mod fixtures;
mod reload;
mod set;
mod timezones;
mod view;
mod watch;

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

pub use cli_check::check_command;
pub use cli_test::test_command;
pub use decision::{ContentDecision, PaceDecision, PacingKey, RouteDecision};
pub use engine::limits;
pub use fixtures::{CaseReport, run_fixtures};
pub use reload::{
    CounterSnapshot, Policies, PolicyCounts, ReloadObserver, ReloadOutcome, ReloadRecord,
};
pub use set::PolicySet;
pub use timezones::zone_for_country;
pub use view::{CarrierStats, CarrierView, MessageView};
pub use watch::PolicyWatcher;

/// The three policies of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Content,
    Routing,
    Pacing,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [Self::Content, Self::Routing, Self::Pacing];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Content => "content",
            Self::Routing => "routing",
            Self::Pacing => "pacing",
        }
    }

    /// The script's file name in the policies directory.
    pub fn file(self) -> &'static str {
        match self {
            Self::Content => "content.rhai",
            Self::Routing => "routing.rhai",
            Self::Pacing => "pacing.rhai",
        }
    }

    /// The function the host calls, as the script must declare it.
    pub fn function(self) -> &'static str {
        match self {
            Self::Content => "check",
            Self::Routing => "route",
            Self::Pacing => "pace",
        }
    }

    fn signature(self) -> &'static str {
        match self {
            Self::Content => "fn check(msg)",
            Self::Routing => "fn route(msg, carriers)",
            Self::Pacing => "fn pace(msg, carrier)",
        }
    }

    fn arity(self) -> usize {
        match self {
            Self::Content => 1,
            Self::Routing | Self::Pacing => 2,
        }
    }
}

/// A place in a policy file and what is wrong there. Displays as
/// `file:line:col: message`, the form editors jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Relative to the policies directory: `routing.rhai`, `lib/lists.rhai`.
    pub file: String,
    /// 1-based; 0 when the error has no position (then shown as 1).
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file,
            self.line.max(1),
            self.col.max(1),
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax error, a missing function, or an error while running.
    #[error("{0}")]
    Script(Located),
    /// The script ran past a limit (operations or wall clock): an endless
    /// loop, most likely.
    #[error("{0}")]
    CutOff(Located),
    /// The script answered something that is not a decision.
    #[error("{file}: {message}")]
    Answer { file: String, message: String },
    /// A file in `policies/tests/` that cannot be read as a fixture.
    #[error("{file}: {message}")]
    Fixture { file: String, message: String },
    #[error("{failed} of {total} policy tests failed; first: {first}")]
    TestsFailed {
        failed: usize,
        total: usize,
        first: String,
    },
}

impl PolicyError {
    /// Where in a policy file the error is, when it has a place.
    pub fn located(&self) -> Option<&Located> {
        match self {
            Self::Script(located) | Self::CutOff(located) => Some(located),
            _ => None,
        }
    }
}

/// How the runtime loads and runs policies. For the `[policies]` section of
/// the configuration (wired in by the runtime's start-up).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesConfig {
    /// The policies directory (content.rhai, routing.rhai, pacing.rhai,
    /// lib/, tests/).
    pub dir: PathBuf,
    /// Wall-clock time one policy call may run.
    pub deadline_ms: u64,
    /// Reload when a file in `dir` changes.
    pub watch: bool,
    /// Quiet time after the last change before reloading (editors write
    /// a file in several steps).
    pub debounce_ms: u64,
    /// Carriers tried, in order, when the routing policy fails.
    pub fallback_carriers: Vec<String>,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            deadline_ms: 20,
            watch: true,
            debounce_ms: 200,
            fallback_carriers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
