//! A carrier built into the runtime that needs no network: it accepts every
//! part and reports it delivered after a short delay. Number suffixes pick
//! other outcomes so every path can be tried without a real carrier:
//! `…0001` is reported undeliverable, `…0002` fails permanently, `…0003`
//! fails once with a retryable error and then goes through.

use std::time::Duration;

use super::{BoxFuture, Carrier, ReportSink, SubmitError, SubmitRequest};
use crate::store::{DeliveryReport, ReportState};

pub struct LoopbackCarrier {
    reports: ReportSink,
    delivery_delay: Duration,
}

impl LoopbackCarrier {
    pub const NAME: &'static str = "loopback";

    pub fn new(reports: ReportSink, delivery_delay: Duration) -> Self {
        Self {
            reports,
            delivery_delay,
        }
    }
}

impl LoopbackCarrier {
    /// Reports on parts after the delivery delay. Also called at start-up for
    /// parts accepted before a restart: the simulated network kept them.
    pub fn report_later(&self, parts: Vec<(String, String)>) {
        if parts.is_empty() {
            return;
        }
        let sink = self.reports.clone();
        let delay = self.delivery_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let at = crate::time::now_ms();
            for (carrier_message_id, to) in parts {
                let (state, error_code) = if to.ends_with("0001") {
                    (
                        ReportState::Undeliverable,
                        Some("absent_subscriber".to_owned()),
                    )
                } else {
                    (ReportState::Delivered, None)
                };
                // The tracker is gone only when shutting down.
                let _ = sink.send(DeliveryReport {
                    carrier: Self::NAME.into(),
                    carrier_message_id,
                    state,
                    error_code,
                    raw_status: Some(state.as_str().to_uppercase()),
                    at,
                });
            }
        });
    }
}

impl Carrier for LoopbackCarrier {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, SubmitError>> {
        Box::pin(async move {
            if request.to.ends_with("0002") {
                return Err(SubmitError::Permanent {
                    code: "carrier_rejected".into(),
                    reason: "loopback rejects numbers ending in 0002".into(),
                });
            }
            if request.to.ends_with("0003") && request.attempt == 1 {
                return Err(SubmitError::Retryable(
                    "loopback fails the first attempt for numbers ending in 0003".into(),
                ));
            }
            let ids: Vec<String> = request
                .parts
                .iter()
                .map(|_| crate::ids::new_id("lb"))
                .collect();
            self.report_later(
                ids.iter()
                    .map(|id| (id.clone(), request.to.clone()))
                    .collect(),
            );
            Ok(ids)
        })
    }
}
