//! Delivery tracking: what a carrier's callback brings — delivery reports,
//! which move parts (and so messages) to their final state, and inbound
//! messages — is written in one transaction before the carrier gets its
//! answer, so a report acknowledged is a report kept.

//!
//! What carriers send is bounded: an inbound text is kept to
//! [`MAX_INBOUND_CHARS`], and reports for unknown ids expire.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::model::Status;
use crate::store::inbound::{NewInbound, insert_inbound};
use crate::store::reports::{ReportOutcome, apply_report, prune_early_reports};
use crate::store::{DeliveryReport, Store};

/// Longest inbound text kept, in characters: a 10-part GSM-7 message
/// (10 × 153). The rest is dropped and the message counted as truncated.
pub const MAX_INBOUND_CHARS: usize = 1530;
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
    /// Inbound messages stored (repeats of one already stored are not).
    pub inbound: usize,
    /// Inbound messages whose text was cut to [`MAX_INBOUND_CHARS`].
    pub truncated: usize,
    /// Early reports dropped for age or number.
    pub pruned: usize,
}

/// Cuts `text` to [`MAX_INBOUND_CHARS`]; whether it did.
fn truncate_inbound(text: &mut String) -> bool {
    match text.char_indices().nth(MAX_INBOUND_CHARS) {
        Some((end, _)) => {
            text.truncate(end);
            true
        }
        None => false,
    }
}

pub async fn apply(
    store: &Store,
    reports: Vec<DeliveryReport>,
    mut inbound: Vec<NewInbound>,
) -> crate::store::Result<Applied> {
    let mut truncated = 0;
    for message in &mut inbound {
        if truncate_inbound(&mut message.text) {
            truncated += 1;
        }
    }
    // Decided outside the job, which may run more than once.
    let prune_due = crate::time::now_ms() - LAST_PRUNE_MS.load(Ordering::Relaxed) >= PRUNE_EVERY_MS;
    let applied = store
        .write(move |conn| {
            let now = crate::time::now_ms();
            let mut applied = Applied {
                truncated,
                ..Applied::default()
            };
            for report in &reports {
                match apply_report(conn, report, now)? {
                    ReportOutcome::Applied { status, latency_ms } => {
                        applied.applied.push((status, latency_ms))
                    }
                    ReportOutcome::Ignored => applied.ignored += 1,
                    ReportOutcome::Early => applied.early += 1,
                }
            }
            for message in &inbound {
                if insert_inbound(conn, message, now)? {
                    applied.inbound += 1;
                }
            }
            if applied.early > 0 && prune_due {
                applied.pruned = prune_early_reports(conn, now)?;
            }
            Ok(applied)
        })
        .await?;
    if applied.early > 0 && prune_due {
        LAST_PRUNE_MS.store(crate::time::now_ms(), Ordering::Relaxed);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_text_is_cut_at_the_ten_part_maximum() {
        let mut short = "Hi".to_owned();
        assert!(!truncate_inbound(&mut short));
        let mut long = "é".repeat(MAX_INBOUND_CHARS + 5);
        assert!(truncate_inbound(&mut long));
        assert_eq!(long.chars().count(), MAX_INBOUND_CHARS);
    }
}
