//! Tracking: everything a carrier tells Pigeon after submission. Delivery
//! reports move parts (and so messages) to their final state; inbound
//! messages are filed under the account that owns the number they were
//! sent to (see [`inbound`]). A callback's changes are written in one
//! transaction before the carrier gets its answer, so a report or message
//! acknowledged is one kept.
//!
//! What carriers send is bounded: an inbound text is kept to
//! [`MAX_INBOUND_CHARS`], reports for unknown ids expire, and parts of a
//! long inbound message wait at most `inbound.part_timeout_secs`.

mod inbound;
mod keywords;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

pub use inbound::MAX_INBOUND_CHARS;

use crate::compliance::Compliance;
use crate::model::Status;
use crate::plugins::InboundMessage;
use crate::store::reports::{ReportOutcome, apply_report, prune_early_reports};
use crate::store::{DeliveryReport, Store};

/// Early reports are pruned at most this often.
const PRUNE_EVERY_MS: i64 = 10_000;
static LAST_PRUNE_MS: AtomicI64 = AtomicI64::new(0);

/// What one callback changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Reports that moved a part: the part's new state, and how long after
    /// the carrier took it the report came.
    pub applied: Vec<(Status, Option<i64>)>,
    /// Duplicates, out-of-order and non-final reports.
    pub ignored: usize,
    /// Reports for carrier ids not recorded yet, kept for when they are.
    pub early: usize,
    /// Inbound messages stored (not repeats, not parts still waiting).
    pub inbound: usize,
    /// Inbound messages whose text was cut to [`MAX_INBOUND_CHARS`].
    pub truncated: usize,
    /// Early reports dropped for age or number.
    pub pruned: usize,
    /// Replies to keywords queued (the dispatcher should look).
    pub replies: usize,
    /// The keyword of each inbound message stored (`none` for none).
    pub keywords: Vec<&'static str>,
}

/// Applies one callback's reports and files its inbound messages.
pub async fn apply(
    store: &Store,
    compliance: &Arc<Compliance>,
    reports: Vec<DeliveryReport>,
    inbound: Vec<InboundMessage>,
) -> crate::store::Result<Applied> {
    // Opt-outs by keyword are held until the commit.
    let hold = compliance.hold();
    let in_job = hold.handle();
    // Decided outside the job, which may run more than once.
    let prune_due = crate::time::now_ms() - LAST_PRUNE_MS.load(Ordering::Relaxed) >= PRUNE_EVERY_MS;
    let applied = store
        .write(move |conn| {
            let now = crate::time::now_ms();
            let mut applied = Applied::default();
            for report in &reports {
                match apply_report(conn, report, now)? {
                    ReportOutcome::Applied { status, latency_ms } => {
                        applied.applied.push((status, latency_ms))
                    }
                    ReportOutcome::Ignored => applied.ignored += 1,
                    ReportOutcome::Early => applied.early += 1,
                }
            }
            let mut lifted = Vec::new();
            for message in &inbound {
                let filed = inbound::file(conn, &in_job, message.clone(), now)?;
                applied.inbound += usize::from(filed.stored);
                applied.truncated += usize::from(filed.truncated);
                if filed.stored {
                    let keyword = filed.answered.as_ref().map(|a| a.keyword.as_str());
                    applied.keywords.push(keyword.unwrap_or("none"));
                }
                if let Some(answered) = filed.answered {
                    applied.replies += usize::from(answered.replied);
                    lifted.extend(answered.lifted);
                }
            }
            if applied.early > 0 && prune_due {
                applied.pruned = prune_early_reports(conn, now)?;
            }
            Ok((applied, lifted))
        })
        .await?;
    drop(hold);
    // Lifted opt-outs leave memory only once committed.
    let (applied, lifted) = applied;
    for lift in &lifted {
        lift.apply(compliance);
    }
    if applied.early > 0 && prune_due {
        LAST_PRUNE_MS.store(crate::time::now_ms(), Ordering::Relaxed);
    }
    count(&applied);
    Ok(applied)
}

/// The metrics of what a committed callback changed (its final reports
/// are counted by the carrier: `CarrierHandle::count_final_report`).
fn count(applied: &Applied) {
    for keyword in &applied.keywords {
        ::metrics::counter!("pigeon_inbound_total", "keyword" => *keyword).increment(1);
    }
}

/// Files, as they are, long inbound messages whose missing parts have not
/// come within `part_timeout`, until `shutdown` turns true.
pub async fn release_stale_parts(
    store: Store,
    compliance: Arc<Compliance>,
    part_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout_ms = part_timeout.as_millis() as i64;
    let every = (part_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => break,
        }
        let now = crate::time::now_ms();
        let (cutoff, filed_cutoff) = (now - timeout_ms, inbound::filed_cutoff(now));
        // A read first: most of the time nothing waits.
        let waiting = store
            .read(move |c| crate::store::inbound::has_stale_parts(c, cutoff, filed_cutoff))
            .await;
        if !matches!(waiting, Ok(true)) {
            continue;
        }
        let hold = compliance.hold();
        let in_job = hold.handle();
        let released = store
            .write(move |c| inbound::release_stale_parts(c, &in_job, cutoff, crate::time::now_ms()))
            .await;
        drop(hold);
        match released {
            Ok((0, _)) => {}
            Ok((groups, lifted)) => {
                for lift in &lifted {
                    lift.apply(&compliance);
                }
                tracing::info!(
                    messages = groups,
                    "inbound messages filed with parts missing after the timeout"
                )
            }
            Err(error) => tracing::warn!(%error, "could not release waiting inbound parts"),
        }
    }
}
