//! The dispatcher: claims due parts from the queue (most urgent type first),
//! hands each message's parts to the carrier, and records the outcome —
//! accepted, retry later with backoff, or failed.

mod backoff;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::Instrument;

pub use backoff::retry_delay;

use crate::carriers::{Carrier, SubmitError, SubmitRequest};
use crate::config::DispatchConfig;
use crate::encoding;
use crate::store::Store;
use crate::store::queue::{self, ClaimedPart, SubmitOutcome, SubmitResult};
use crate::workers::{self, Limits};

pub struct Dispatcher {
    store: Store,
    carrier: Arc<dyn Carrier>,
    config: DispatchConfig,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(store: Store, carrier: Arc<dyn Carrier>, config: DispatchConfig) -> Self {
        Self {
            store,
            carrier,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Call to say new parts are due now, so they need not wait for a poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Dispatches until `shutdown` turns true, then lets submissions in
    /// flight finish and records their results.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let limits = Limits {
            concurrency: self.config.concurrency,
            claim_batch: self.config.batch_size,
            poll: Duration::from_millis(self.config.poll_interval_ms),
        };
        let store = self.store.clone();
        let claim = |limit| {
            let now = crate::time::now_ms();
            store.write(move |c| queue::claim_due(c, now, limit))
        };
        let config = Arc::new(self.config);
        let carrier = self.carrier;
        let work = |claim: ClaimedPart| {
            let (carrier, config) = (carrier.clone(), config.clone());
            let span = tracing::info_span!(
                "submit",
                message_id = %claim.message.id,
                carrier = carrier.name(),
                attempt = claim.attempt
            );
            async move { submit(carrier.as_ref(), claim, &config).await }.instrument(span)
        };
        let record = |c: &rusqlite::Connection, results: &[SubmitResult]| {
            queue::record_results(c, results, crate::time::now_ms())
        };
        workers::run(self.store, limits, self.wake, shutdown, claim, work, record).await;
    }
}

/// Submits one claim and turns the carrier's answer into per-part results.
async fn submit(
    carrier: &dyn Carrier,
    claim: ClaimedPart,
    config: &DispatchConfig,
) -> Vec<SubmitResult> {
    let message = &claim.message;
    let encoded = encoding::encode(&message.body, message.concat_ref);
    let result_for = |index: i64, outcome: SubmitOutcome| SubmitResult {
        message_id: message.id.clone(),
        index,
        segments: message.segments,
        carrier: carrier.name().to_owned(),
        outcome,
    };
    let failed = |code: &str, reason: String| SubmitOutcome::Failed {
        code: code.into(),
        reason,
    };
    if encoded.parts.len() as i64 != message.segments {
        let reason = format!(
            "body re-encodes to {} parts, {} were stored",
            encoded.parts.len(),
            message.segments
        );
        return claim
            .parts
            .iter()
            .map(|&i| result_for(i, failed("encoding_mismatch", reason.clone())))
            .collect();
    }
    let request = SubmitRequest {
        message_id: message.id.clone(),
        to: message.to.clone(),
        from: message.from.clone(),
        message_type: message.message_type,
        encoding: encoded.encoding,
        parts: claim
            .parts
            .iter()
            .map(|&i| encoded.parts[i as usize].clone())
            .collect(),
        attempt: claim.attempt,
    };
    let now = crate::time::now_ms();
    let retry = |after: Duration, reason: String| {
        if claim.attempt >= config.max_attempts as i64 {
            failed(
                "retries_exhausted",
                format!("gave up after {} attempts: {reason}", claim.attempt),
            )
        } else {
            SubmitOutcome::Retry {
                due_at: now + after.as_millis() as i64,
                reason,
            }
        }
    };
    let outcomes: Vec<SubmitOutcome> = match carrier.submit(&request).await {
        Ok(ids) if ids.len() == request.parts.len() => {
            tracing::debug!(parts = ids.len(), "carrier accepted");
            ids.into_iter()
                .map(|carrier_message_id| SubmitOutcome::Accepted { carrier_message_id })
                .collect()
        }
        Ok(ids) => {
            let reason = format!(
                "carrier returned {} ids for {} parts",
                ids.len(),
                request.parts.len()
            );
            tracing::warn!(%reason, "carrier answer malformed");
            vec![failed("carrier_bad_response", reason); request.parts.len()]
        }
        Err(SubmitError::Retryable(reason)) => {
            tracing::info!(%reason, "retryable carrier failure");
            let delay = retry_delay(
                claim.attempt,
                Duration::from_millis(config.retry_base_ms),
                Duration::from_millis(config.retry_max_ms),
            );
            vec![retry(delay, reason); request.parts.len()]
        }
        Err(SubmitError::Throttled { retry_after_ms }) => {
            let reason = format!("carrier throttled; retry after {retry_after_ms} ms");
            tracing::info!(%reason, "carrier throttled");
            vec![retry(Duration::from_millis(retry_after_ms), reason); request.parts.len()]
        }
        Err(SubmitError::Permanent { code, reason }) => {
            tracing::info!(%code, %reason, "permanent carrier failure");
            vec![failed(&code, reason); request.parts.len()]
        }
    };
    claim
        .parts
        .iter()
        .zip(outcomes)
        .map(|(&index, outcome)| result_for(index, outcome))
        .collect()
}
