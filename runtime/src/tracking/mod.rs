//! Delivery tracking: what a carrier's callback brings — delivery reports,
//! which move parts (and so messages) to their final state, and inbound
//! messages — is written in one transaction before the carrier gets its
//! answer, so a report acknowledged is a report kept.

use crate::model::Status;
use crate::store::inbound::{NewInbound, insert_inbound};
use crate::store::reports::{ReportOutcome, apply_report};
use crate::store::{DeliveryReport, Store};

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
}

pub async fn apply(
    store: &Store,
    reports: Vec<DeliveryReport>,
    inbound: Vec<NewInbound>,
) -> crate::store::Result<Applied> {
    store
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
            for message in &inbound {
                if insert_inbound(conn, message, now)? {
                    applied.inbound += 1;
                }
            }
            Ok(applied)
        })
        .await
}
