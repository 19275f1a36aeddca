//! The active policy set, its reloads, and calls that never fail: a
//! failing script gets the spec's fallback, and is logged and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::log_limit::LogLimiter;

use super::decision::{ContentDecision, PaceDecision, PacingKey, RouteDecision};
use super::set::PolicySet;
use super::view::{CarrierView, MessageView};
use super::{PoliciesConfig, PolicyError, PolicyKind};

/// Reloads remembered (oldest dropped first).
const HISTORY_LEN: usize = 64;

/// The code a message gets when the content policy fails: fail closed.
pub const POLICY_ERROR_CODE: &str = "policy_error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new set is active.
    Loaded,
    /// The files compiled to the active digest; nothing changed.
    Unchanged,
    /// The set did not compile or its tests failed; the previous set stays.
    Failed,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }
}

/// One reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    pub at_ms: i64,
    pub outcome: ReloadOutcome,
    /// The digest of the set tried; `None` when it did not compile.
    pub digest: Option<String>,
    /// `file:line:col: message`, or what else went wrong.
    pub error: Option<String>,
}

/// Counts for one policy.
#[derive(Debug, Default)]
pub struct PolicyCounts {
    calls: AtomicU64,
    /// Errors while running, or answers that are not a decision.
    errors: AtomicU64,
    /// Runs stopped by the operations limit or the wall-clock cap.
    cut_offs: AtomicU64,
}

/// A copy of the counters, per policy, in [`PolicyKind::ALL`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub calls: [u64; 3],
    pub errors: [u64; 3],
    pub cut_offs: [u64; 3],
    pub reloads_failed: u64,
}

impl CounterSnapshot {
    pub fn errors(&self, kind: PolicyKind) -> u64 {
        self.errors[kind as usize]
    }
    pub fn cut_offs(&self, kind: PolicyKind) -> u64 {
        self.cut_offs[kind as usize]
    }
    pub fn calls(&self, kind: PolicyKind) -> u64 {
        self.calls[kind as usize]
    }
}

/// The running policies. Share as `Arc<Policies>`; every method takes
/// `&self`.
pub struct Policies {
    config: PoliciesConfig,
    active: ArcSwap<PolicySet>,
    history: Mutex<VecDeque<ReloadRecord>>,
    /// One reload at a time (the watcher and an operator may both ask).
    reloading: Mutex<()>,
    counts: [PolicyCounts; 3],
    reloads_failed: AtomicU64,
    /// Told of every reload that changed something or failed.
    observer: std::sync::OnceLock<ReloadObserver>,
}

/// See [`Policies::observe`].
pub type ReloadObserver = Box<dyn Fn(&ReloadRecord) + Send + Sync>;

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("dir", &self.config.dir)
            .field("active", &self.active.load().digest())
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Loads the set in `config.dir` (compiled and tested). Fails if it
    /// does not load: there is no previous set to keep.
    pub fn load(config: PoliciesConfig) -> Result<Self, PolicyError> {
        let (set, _) = PolicySet::load(&config.dir, deadline(&config))?;
        tracing::info!(
            dir = %config.dir.display(),
            digest = %set.digest(),
            files = set.files().len(),
            "policies loaded"
        );
        let record = ReloadRecord {
            at_ms: set.loaded_at_ms(),
            outcome: ReloadOutcome::Loaded,
            digest: Some(set.digest().to_string()),
            error: None,
        };
        Ok(Self {
            config,
            active: ArcSwap::from_pointee(set),
            history: Mutex::new(VecDeque::from([record])),
            reloading: Mutex::new(()),
            counts: Default::default(),
            reloads_failed: AtomicU64::new(0),
            observer: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &PoliciesConfig {
        &self.config
    }

    /// The set deciding messages now.
    pub fn active(&self) -> Arc<PolicySet> {
        self.active.load_full()
    }

    /// Compiles the directory again and runs its tests; on success swaps
    /// the new set in, otherwise keeps the running one. Recorded either way.
    pub fn reload(&self) -> Result<Arc<PolicySet>, PolicyError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let at_ms = crate::time::now_ms();
        let result = PolicySet::load(&self.config.dir, deadline(&self.config));
        let (record, result) = match result {
            Ok((set, _)) if set.digest() == self.active.load().digest() => (
                ReloadRecord {
                    at_ms,
                    outcome: ReloadOutcome::Unchanged,
                    digest: Some(set.digest().to_string()),
                    error: None,
                },
                Ok(self.active()),
            ),
            Ok((set, _)) => {
                let set = Arc::new(set);
                self.active.store(set.clone());
                tracing::info!(digest = %set.digest(), "policies reloaded");
                (
                    ReloadRecord {
                        at_ms,
                        outcome: ReloadOutcome::Loaded,
                        digest: Some(set.digest().to_string()),
                        error: None,
                    },
                    Ok(set),
                )
            }
            Err(err) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %err,
                    keeping = %self.active.load().digest(),
                    "policy reload failed; the previous policies stay active"
                );
                (
                    ReloadRecord {
                        at_ms,
                        outcome: ReloadOutcome::Failed,
                        digest: None,
                        error: Some(err.to_string()),
                    },
                    Err(err),
                )
            }
        };
        if record.outcome != ReloadOutcome::Unchanged
            && let Some(observer) = self.observer.get()
        {
            observer(&record);
        }
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(record);
        result
    }

    /// Has `observer` told of each reload that loaded a new set or failed
    /// (once; later calls are ignored).
    pub fn observe(&self, observer: ReloadObserver) {
        let _ = self.observer.set(observer);
    }

    /// Every reload remembered, oldest first.
    pub fn history(&self) -> Vec<ReloadRecord> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.iter().cloned().collect()
    }

    /// The error of the latest reload, if it failed.
    pub fn last_error(&self) -> Option<String> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.back().and_then(|r| r.error.clone())
    }

    pub fn counters(&self) -> CounterSnapshot {
        let mut snapshot = CounterSnapshot {
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (i, counts) in self.counts.iter().enumerate() {
            snapshot.calls[i] = counts.calls.load(Ordering::Relaxed);
            snapshot.errors[i] = counts.errors.load(Ordering::Relaxed);
            snapshot.cut_offs[i] = counts.cut_offs.load(Ordering::Relaxed);
        }
        snapshot
    }

    /// The content decision for `msg`, and the digest of the set that
    /// made it. A failing script rejects the message with `policy_error`.
    pub fn check_content(&self, msg: &MessageView, now_ms: i64) -> (ContentDecision, Arc<str>) {
        let set = self.active.load();
        let result = set.check_content(msg, now_ms);
        let decision = self.settle(PolicyKind::Content, &msg.id, result, || {
            ContentDecision::Reject {
                code: POLICY_ERROR_CODE.into(),
                reason: "the content policy failed on this message; it was not accepted".into(),
            }
        });
        (decision, set.digest().clone())
    }

    /// The routing decision; a failing script gives the configured
    /// `fallback_carriers`, in order, with no sender.
    pub fn route(
        &self,
        msg: &MessageView,
        carriers: &[CarrierView],
        now_ms: i64,
    ) -> (RouteDecision, Arc<str>) {
        let set = self.active.load();
        let result = set.route(msg, carriers, now_ms);
        let decision = self.settle(PolicyKind::Routing, &msg.id, result, || {
            RouteDecision::Route {
                carriers: self.config.fallback_carriers.clone(),
                sender: None,
            }
        });
        (decision, set.digest().clone())
    }

    /// The pacing decision; a failing script gives the carrier's configured
    /// rate, under the key `carrier:<name>` the shipped pacing uses.
    pub fn pace(
        &self,
        msg: &MessageView,
        carrier: &CarrierView,
        now_ms: i64,
    ) -> (PaceDecision, Arc<str>) {
        let set = self.active.load();
        let result = set.pace(msg, carrier, now_ms);
        let decision = self.settle(PolicyKind::Pacing, &msg.id, result, || {
            PaceDecision::Keys(vec![carrier_rate(carrier)])
        });
        (decision, set.digest().clone())
    }

    fn settle<T>(
        &self,
        kind: PolicyKind,
        message_id: &str,
        result: Result<T, PolicyError>,
        fallback: impl FnOnce() -> T,
    ) -> T {
        let counts = &self.counts[kind as usize];
        counts.calls.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(decision) => decision,
            Err(err) => {
                if matches!(err, PolicyError::CutOff(_)) {
                    counts.cut_offs.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                }
                // A broken script fails on every message: a few lines a second.
                static FAILURE_LOG: [LogLimiter; 3] = [
                    LogLimiter::new(1000, 5),
                    LogLimiter::new(1000, 5),
                    LogLimiter::new(1000, 5),
                ];
                if let Some(suppressed) = FAILURE_LOG[kind as usize].allow() {
                    tracing::warn!(
                        policy = kind.as_str(),
                        message_id,
                        error = %err,
                        suppressed,
                        "policy failed; using its fallback"
                    );
                }
                fallback()
            }
        }
    }
}

/// The pacing used when the policy fails: the carrier's configured rate.
pub fn carrier_rate(carrier: &CarrierView) -> PacingKey {
    PacingKey {
        key: format!("carrier:{}", carrier.name),
        rate_per_sec: f64::from(carrier.tps.max(1)),
        burst: carrier.tps.max(1),
    }
}

fn deadline(config: &PoliciesConfig) -> Duration {
    Duration::from_millis(config.deadline_ms.max(1))
}
