//! The dispatcher: claims due parts from the queue (most urgent type first),
//! hands each message's parts to the carrier, and records the outcome —
//! accepted, retry later with backoff, or failed.

mod backoff;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tracing::Instrument;

pub use backoff::retry_delay;

use crate::carriers::{Carrier, SubmitError, SubmitRequest};
use crate::config::DispatchConfig;
use crate::encoding;
use crate::store::Store;
use crate::store::queue::{self, ClaimedPart, SubmitOutcome, SubmitResult};

/// Most submit results recorded in one write.
const RESULT_BATCH: usize = 1024;

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
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let concurrency = self.config.concurrency;
        let permits = Arc::new(Semaphore::new(concurrency));
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_results(self.store.clone(), results_rx));
        let poll = Duration::from_millis(self.config.poll_interval_ms);

        while !*shutdown.borrow() {
            // Claim only what can be submitted now, so claimed parts don't wait.
            let free = permits.available_permits().min(self.config.batch_size);
            if free == 0 {
                tokio::select! {
                    permit = permits.clone().acquire_owned() => drop(permit),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let now = crate::time::now_ms();
            let claimed = match self
                .store
                .write(move |c| queue::claim_due(c, now, free))
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::error!(error = %err, "claiming due parts failed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for claim in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let carrier = self.carrier.clone();
                let results = results_tx.clone();
                let config = self.config.clone();
                let span = tracing::info_span!(
                    "submit",
                    message_id = %claim.message.id,
                    carrier = carrier.name(),
                    attempt = claim.attempt
                );
                tokio::spawn(
                    async move {
                        for result in submit(carrier.as_ref(), claim, &config).await {
                            let _ = results.send(result);
                        }
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }

        // Wait for every submission in flight, then for their results.
        let _ = permits.acquire_many(concurrency as u32).await;
        drop(results_tx);
        let _ = recorder.await;
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

/// Writes submit results in batches. A failed write is retried: losing an
/// `accepted` would send the part again after a restart.
async fn record_results(store: Store, mut results: mpsc::UnboundedReceiver<SubmitResult>) {
    let mut batch = Vec::with_capacity(RESULT_BATCH);
    while results.recv_many(&mut batch, RESULT_BATCH).await > 0 {
        let pending = Arc::new(std::mem::take(&mut batch));
        let mut delay = Duration::from_millis(50);
        loop {
            let job = pending.clone();
            let now = crate::time::now_ms();
            match store
                .write(move |c| queue::record_results(c, &job, now))
                .await
            {
                Ok(()) => break,
                Err(crate::store::StoreError::Closed) => return,
                Err(err) => {
                    tracing::error!(error = %err, count = pending.len(), "recording submit results failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
