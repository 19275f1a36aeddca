//! Delivery tracking: applies carriers' delivery reports to parts, in
//! batches, and thereby moves messages to their final state.

use tokio::sync::mpsc;

use crate::store::reports::{ReportOutcome, apply_report};
use crate::store::{DeliveryReport, Store};

/// Most reports applied in one write.
const BATCH: usize = 1024;

/// Applies reports until every sender is gone.
pub async fn run(store: Store, mut reports: mpsc::UnboundedReceiver<DeliveryReport>) {
    let mut batch = Vec::with_capacity(BATCH);
    while reports.recv_many(&mut batch, BATCH).await > 0 {
        let pending = std::mem::take(&mut batch);
        let count = pending.len();
        let result = store
            .write(move |conn| {
                let now = crate::time::now_ms();
                let mut early = 0;
                for report in &pending {
                    if apply_report(conn, report, now)? == ReportOutcome::Early {
                        early += 1;
                    }
                }
                Ok(early)
            })
            .await;
        match result {
            Ok(early) if early > 0 => {
                tracing::debug!(
                    count,
                    early,
                    "delivery reports for unknown carrier ids kept for later"
                )
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, count, "applying delivery reports failed"),
        }
    }
}
