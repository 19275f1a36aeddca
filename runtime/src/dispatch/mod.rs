//! The dispatcher: claims due parts from the queue (most urgent type first),
//! picks each message's carrier, waits for that carrier's pacing, hands it
//! the parts, and records the outcome — accepted, retry later with backoff,
//! put back for pacing, or failed.

mod backoff;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::Instrument;

pub use backoff::retry_delay;

use crate::carriers::{
    Carrier, CarrierCounters, CarrierHandle, CarrierSet, LastSent, SubmitError, SubmitRequest,
};
use crate::config::DispatchConfig;
use crate::encoding;
use crate::store::Store;
use crate::store::queue::{self, ClaimedPart, SubmitOutcome, SubmitResult};
use crate::workers::{self, Limits};

pub struct Dispatcher {
    store: Store,
    carriers: Arc<CarrierSet>,
    config: DispatchConfig,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(store: Store, carriers: Arc<CarrierSet>, config: DispatchConfig) -> Self {
        Self {
            store,
            carriers,
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
        let carriers = self.carriers;
        let work = |claim: ClaimedPart| {
            let carrier = carriers.route(&claim.message).cloned();
            let (carriers, config) = (carriers.clone(), config.clone());
            let span = tracing::info_span!(
                "submit",
                message_id = %claim.message.id,
                carrier = carrier.as_ref().map(|c| c.name()),
                attempt = claim.attempt
            );
            async move {
                let Some(carrier) = carrier else {
                    return no_route(claim);
                };
                let (to, sent) = (
                    claim.message.to.clone(),
                    LastSent {
                        account_id: claim.message.account_id.clone(),
                        message_id: claim.message.id.clone(),
                    },
                );
                let results = paced_submit(&carrier, claim, &config).await;
                if results
                    .iter()
                    .any(|r| matches!(r.outcome, SubmitOutcome::Accepted { .. }))
                {
                    carriers.recipients.remember(&to, sent);
                }
                results
            }
            .instrument(span)
        };
        let record = |c: &rusqlite::Connection, results: &[SubmitResult]| {
            queue::record_results(c, results, crate::time::now_ms())
        };
        workers::run(self.store, limits, self.wake, shutdown, claim, work, record).await;
    }
}

/// Fails the parts of a message no carrier serves.
fn no_route(claim: ClaimedPart) -> Vec<SubmitResult> {
    let country = claim.message.country.as_deref().unwrap_or("unknown");
    tracing::warn!(country, "no carrier serves this destination");
    claim
        .parts
        .iter()
        .map(|&index| SubmitResult {
            message_id: claim.message.id.clone(),
            index,
            segments: claim.message.segments,
            carrier: String::new(),
            outcome: SubmitOutcome::Failed {
                code: "no_route".into(),
                reason: format!("no carrier is configured for destination country {country}"),
            },
        })
        .collect()
}

/// Waits for the carrier's rate and window, submits, and counts the outcome.
/// A claim the carrier cannot take soon goes back to the queue unattempted.
async fn paced_submit(
    carrier: &CarrierHandle,
    claim: ClaimedPart,
    config: &DispatchConfig,
) -> Vec<SubmitResult> {
    let counters = &carrier.counters;
    let admission = match carrier.admit(claim.parts.len()).await {
        Ok(admission) => admission,
        Err(wait) => {
            CarrierCounters::add(&counters.deferred, 1);
            let due_at = crate::time::now_ms() + wait.as_millis() as i64;
            let reason = format!(
                "paced: waiting for carrier {}'s rate and window",
                carrier.name()
            );
            return claim
                .parts
                .iter()
                .map(|&index| SubmitResult {
                    message_id: claim.message.id.clone(),
                    index,
                    segments: claim.message.segments,
                    carrier: carrier.name().to_owned(),
                    outcome: SubmitOutcome::Deferred {
                        due_at,
                        reason: reason.clone(),
                    },
                })
                .collect();
        }
    };
    let results = submit(carrier, claim, config).await;
    drop(admission);
    results
}

/// Submits one claim and turns the carrier's answer into per-part results.
async fn submit(
    carrier: &CarrierHandle,
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
        text: message.body.clone(),
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
    let counters = &carrier.counters;
    let count = |counter| CarrierCounters::add(counter, 1);
    let outcomes: Vec<SubmitOutcome> = match carrier.carrier.submit(&request).await {
        Ok(ids) if ids.len() == request.parts.len() => {
            tracing::debug!(parts = ids.len(), "carrier accepted");
            count(&counters.submitted);
            CarrierCounters::add(&counters.parts_submitted, ids.len() as u64);
            carrier.misconfigured.store(false, Ordering::Relaxed);
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
            count(&counters.failed);
            vec![failed("carrier_bad_response", reason); request.parts.len()]
        }
        Err(SubmitError::Retryable(reason)) => {
            tracing::info!(%reason, "retryable carrier failure");
            count(&counters.retried);
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
            count(&counters.throttled);
            vec![retry(Duration::from_millis(retry_after_ms), reason); request.parts.len()]
        }
        Err(SubmitError::Misconfigured(reason)) => {
            // Not the message's fault: it waits, without using up its
            // attempts, until an operator fixes the carrier or its validity
            // runs out.
            count(&counters.retried);
            carrier.misconfigured.store(true, Ordering::Relaxed);
            let outcome = SubmitOutcome::Deferred {
                due_at: now + config.retry_max_ms as i64,
                reason: format!("carrier misconfigured: {reason}"),
            };
            vec![outcome; request.parts.len()]
        }
        Err(SubmitError::Permanent { code, reason }) => {
            tracing::info!(%code, %reason, "permanent carrier failure");
            count(&counters.failed);
            vec![failed(&code, reason); request.parts.len()]
        }
    };
    let accepted = matches!(outcomes.first(), Some(SubmitOutcome::Accepted { .. }));
    carrier.stats.record_submission(now, accepted);
    claim
        .parts
        .iter()
        .zip(outcomes)
        .map(|(&index, outcome)| result_for(index, outcome))
        .collect()
}
