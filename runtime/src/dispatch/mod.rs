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
    Buckets, Carrier, CarrierCounters, CarrierHandle, CarrierSet, MAX_PACING_WAIT, Rate,
    SubmitError, SubmitRequest,
};
use crate::compliance::Compliance;
use crate::config::DispatchConfig;
use crate::encoding;
use crate::policies::{CarrierView, MessageView, PaceDecision, Policies, RouteDecision};
use crate::store::Store;
use crate::store::pacing::PacingBooking;
use crate::store::queue::{self, ClaimedPart, SubmitOutcome, SubmitResult};
use crate::store::reports::AppliedEarly;
use crate::workers::{self, Limits};

pub struct Dispatcher {
    store: Store,
    carriers: Arc<CarrierSet>,
    policies: Option<Arc<Policies>>,
    compliance: Arc<Compliance>,
    config: DispatchConfig,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        carriers: Arc<CarrierSet>,
        policies: Option<Arc<Policies>>,
        compliance: Arc<Compliance>,
        config: DispatchConfig,
    ) -> Self {
        Self {
            store,
            carriers,
            policies,
            compliance,
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
        let in_claim = self.compliance.clone();
        let claim = |limit| {
            let now = crate::time::now_ms();
            let compliance = in_claim.clone();
            let node = store.node_id().to_owned();
            store.write(move |c| {
                queue::claim_due(c, &node, now, limit, |m| {
                    let pool = m.sender.as_ref().and_then(|s| s.pool_id.as_deref());
                    compliance.opted_out(&m.account_id, &m.to, pool)
                })
            })
        };
        let config = Arc::new(self.config);
        let carriers = self.carriers;
        let recorded_carriers = carriers.clone();
        let policies = self.policies;
        let compliance = self.compliance;
        // The slow buckets as they were when the last process stopped.
        let now = crate::time::now_ms();
        let saved = self
            .store
            .read(move |c| crate::store::pacing::saved_bookings(c, now))
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "pacing buckets could not be restored; they start full");
                Vec::new()
            });
        let buckets = Arc::new(Buckets::restore(saved));
        // Several nodes share the slow buckets: they are booked in the store.
        let shared = self.store.is_shared().then(|| self.store.clone());
        let work = |claim: ClaimedPart| {
            // What the routing and pacing policies see, built once.
            let view = policies.as_ref().map(|_| {
                let m = &claim.message;
                let pool = m.sender.as_ref().and_then(|s| s.pool_id.as_deref());
                message_view(m, compliance.view(&m.account_id, &m.to, pool))
            });
            let route = plan_route(&carriers, policies.as_deref(), view.as_ref(), &claim);
            let (policies, config, buckets) = (policies.clone(), config.clone(), buckets.clone());
            let shared = shared.clone();
            let span = tracing::info_span!(
                "submit",
                message_id = %claim.message.id,
                carrier = route.carrier.as_ref().map(|c| c.name()),
                attempt = claim.attempt
            );
            async move {
                let results = match route.carrier {
                    None => {
                        let (code, reason) =
                            route.refusal.unwrap_or_else(|| no_route_reason(&claim));
                        refuse(claim, &code, &reason)
                    }
                    Some(carrier) => {
                        let pacing = Pacing {
                            policies: policies.as_deref().zip(view.as_ref()),
                            buckets: &buckets,
                            shared: shared.as_ref(),
                        };
                        paced_submit(&carrier, route.sender, claim, &config, pacing).await
                    }
                };
                count_outcomes(&results);
                results
            }
            .instrument(span)
        };
        let recorder = workers::Recorder {
            write: |c: &crate::store::Connection, results: &[SubmitResult]| {
                queue::record_results(c, results, crate::time::now_ms())
            },
            // Reports that came before their part's carrier id.
            after: move |early: Vec<AppliedEarly>| recorded_carriers.record_early_reports(&early),
        };
        workers::run(
            self.store, limits, self.wake, shutdown, claim, work, recorder,
        )
        .await;
    }
}

/// `pigeon_parts_submitted_total`, and `pigeon_parts_final_total` for the
/// parts that fail here.
fn count_outcomes(results: &[SubmitResult]) {
    for result in results {
        let carrier = if result.carrier.is_empty() {
            "none".to_owned()
        } else {
            result.carrier.clone()
        };
        let outcome = match result.outcome {
            SubmitOutcome::Accepted { .. } => "accepted",
            SubmitOutcome::Retry { .. } => "retry",
            SubmitOutcome::Deferred { .. } => "deferred",
            SubmitOutcome::Failed { .. } => "failed",
        };
        if outcome == "failed" {
            ::metrics::counter!("pigeon_parts_final_total",
                "carrier" => carrier.clone(), "status" => "failed")
            .increment(1);
        }
        ::metrics::counter!("pigeon_parts_submitted_total", "carrier" => carrier, "outcome" => outcome)
            .increment(1);
    }
}

/// Where a claim goes: a carrier and maybe a sender, or why nowhere.
struct Route {
    carrier: Option<Arc<CarrierHandle>>,
    sender: Option<String>,
    /// The routing policy's `reject(code, reason)`.
    refusal: Option<(String, String)>,
}

/// Picks the carrier. Sandbox messages (and all, while no carriers are
/// configured) go to the sandbox; otherwise the routing policy gives the
/// failover order and attempt `n` goes to the `n`-th carrier in it (round
/// and round); without policies, the cheapest carrier serving the country.
fn plan_route(
    carriers: &CarrierSet,
    policies: Option<&Policies>,
    view: Option<&MessageView>,
    claim: &ClaimedPart,
) -> Route {
    let message = &claim.message;
    let route = |carrier: Option<&Arc<CarrierHandle>>| Route {
        carrier: carrier.cloned(),
        sender: None,
        refusal: carrier
            .is_none()
            .then(|| bound_sender_refusal(message))
            .flatten(),
    };
    let (Some(policies), Some(view)) = (policies, view) else {
        return route(carriers.route(message));
    };
    if carriers.uses_sandbox(message) {
        return route(carriers.route(message));
    }
    let now = crate::time::now_ms();
    let views: Vec<CarrierView> = carriers
        .configured()
        .iter()
        .map(|c| c.view(message, now))
        .collect();
    match policies.route(view, &views, now).0 {
        RouteDecision::Route {
            carriers: names,
            sender,
        } => {
            let order: Vec<&Arc<CarrierHandle>> = names
                .iter()
                .filter_map(|name| carriers.get(name))
                .filter(|c| c.carries_sender_of(message))
                .collect();
            if order.is_empty() {
                return route(None);
            }
            let turn = (claim.attempt.max(1) - 1) as usize % order.len();
            Route {
                carrier: Some(order[turn].clone()),
                sender,
                refusal: None,
            }
        }
        RouteDecision::Reject { code, reason } => Route {
            carrier: None,
            sender: None,
            refusal: Some((code, reason)),
        },
    }
}

/// Why a message whose sender only one carrier provides went nowhere.
fn bound_sender_refusal(message: &crate::store::MessageRecord) -> Option<(String, String)> {
    let carrier = message.sender.as_ref()?.carrier.as_deref()?;
    Some((
        "no_route".into(),
        format!(
            "the sender {} is provided by carrier {carrier}, which was not chosen for this message",
            message.from.as_deref().unwrap_or_default()
        ),
    ))
}

/// What a policy sees of a message, with its recipient's consent.
pub fn message_view(
    message: &crate::store::MessageRecord,
    consent: crate::compliance::ConsentView,
) -> MessageView {
    let metadata = message
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<std::collections::BTreeMap<String, String>>(m).ok())
        .unwrap_or_default();
    MessageView {
        id: message.id.clone(),
        account: message.account_id.clone(),
        to: message.to.clone(),
        country: message.country.clone(),
        from: message.from.clone(),
        sender_kind: message.sender.as_ref().map(|s| s.kind.as_str().to_owned()),
        pool: message.sender.as_ref().and_then(|s| s.pool_id.clone()),
        consent,
        message_type: message.message_type,
        text: message.body.clone(),
        encoding: message.encoding,
        segments: u32::try_from(message.segments).unwrap_or(u32::MAX),
        metadata,
    }
}

fn no_route_reason(claim: &ClaimedPart) -> (String, String) {
    let country = claim.message.country.as_deref().unwrap_or("unknown");
    tracing::warn!(country, "no carrier serves this destination");
    (
        "no_route".into(),
        format!("no carrier is configured for destination country {country}"),
    )
}

/// The same outcome for every claimed part.
fn each_part(claim: &ClaimedPart, carrier: &str, outcome: SubmitOutcome) -> Vec<SubmitResult> {
    claim
        .parts
        .iter()
        .map(|&index| SubmitResult {
            message_id: claim.message.id.clone(),
            index,
            segments: claim.message.segments,
            carrier: carrier.to_owned(),
            outcome: outcome.clone(),
            bookings: Vec::new(),
        })
        .collect()
}

/// Fails the parts of a message that goes nowhere.
fn refuse(claim: ClaimedPart, code: &str, reason: &str) -> Vec<SubmitResult> {
    let outcome = SubmitOutcome::Failed {
        code: code.into(),
        reason: reason.into(),
    };
    each_part(&claim, "", outcome)
}

/// The pacing policy and the buckets its keys live in.
struct Pacing<'a> {
    /// The policies and what they see of the message.
    policies: Option<(&'a Policies, &'a MessageView)>,
    buckets: &'a Buckets,
    /// The store, when several nodes share it and so its slow buckets.
    shared: Option<&'a crate::store::Store>,
}

impl Pacing<'_> {
    /// Waits as long as the pacing policy says before sending `parts`, and
    /// gives the slow buckets' bookings to keep; or when to come back (Unix
    /// ms) if that is too long.
    async fn wait(
        &self,
        carrier: &CarrierHandle,
        claim: &ClaimedPart,
    ) -> Result<Vec<PacingBooking>, i64> {
        let Some((policies, message)) = self.policies else {
            return Ok(Vec::new());
        };
        let now = crate::time::now_ms();
        let view = carrier.view(&claim.message, now);
        let keys = match policies.pace(message, &view, now).0 {
            PaceDecision::DeferUntil(at) if at > now => return Err(at),
            PaceDecision::DeferUntil(_) => return Ok(Vec::new()),
            PaceDecision::Keys(keys) => keys,
        };
        let keys = keys.into_iter().map(|k| (k.key, k.rate_per_sec, k.burst));
        let (slow, fast): (Vec<_>, Vec<_>) = match self.shared {
            Some(_) => keys.partition(|(_, rate, _)| Rate::refills_slowly(Rate::interval(*rate))),
            None => (Vec::new(), keys.collect()),
        };
        let parts = claim.parts.len();
        let (mut wait, bookings) = self
            .buckets
            .reserve(&fast, parts, MAX_PACING_WAIT)
            .map_err(|wait| now + wait.as_millis() as i64)?;
        if let Some(store) = self.shared.filter(|_| !slow.is_empty()) {
            match book_shared(store, slow, parts).await {
                Ok(shared_wait) => wait = wait.max(shared_wait),
                Err(retry_at) => {
                    self.buckets.release(&fast, parts);
                    return Err(retry_at);
                }
            }
        }
        tokio::time::sleep(wait).await;
        Ok(bookings)
    }
}

/// Books `parts` on slow buckets the nodes share, in the store: how long
/// to wait, or when to come back.
async fn book_shared(
    store: &crate::store::Store,
    limits: Vec<(String, f64, u32)>,
    parts: usize,
) -> Result<Duration, i64> {
    use crate::store::pacing::{SharedBooking, SharedLimit, book_shared_buckets};
    let limits: Vec<SharedLimit> = limits
        .into_iter()
        .map(|(key, rate, burst)| {
            let interval_ms = (Rate::interval(rate).as_secs_f64() * 1_000.0).round() as i64;
            SharedLimit {
                key,
                interval_ms,
                burst_ms: interval_ms.saturating_mul(i64::from(burst.max(1))),
            }
        })
        .collect();
    let now = crate::time::now_ms();
    let patience = MAX_PACING_WAIT.as_millis() as i64;
    let booked = store
        .write(move |c| book_shared_buckets(c, &limits, parts, now, patience))
        .await;
    match booked {
        Ok(SharedBooking::Booked { wait_ms }) => Ok(Duration::from_millis(wait_ms as u64)),
        Ok(SharedBooking::Refused { retry_at }) => Err(retry_at),
        Err(error) => {
            // Unbooked, a part could pass its limit: it waits a moment.
            tracing::warn!(%error, "shared pacing buckets could not be booked");
            Err(now + 1_000)
        }
    }
}

/// Puts the parts back in the queue until `due_at`, unattempted.
fn defer(claim: &ClaimedPart, carrier: &str, due_at: i64, reason: &str) -> Vec<SubmitResult> {
    let outcome = SubmitOutcome::Deferred {
        due_at,
        reason: reason.to_owned(),
    };
    each_part(claim, carrier, outcome)
}

/// Waits for the pacing policy and the carrier's rate and window, submits,
/// and counts the outcome. A claim that cannot go soon goes back to the
/// queue unattempted.
async fn paced_submit(
    carrier: &CarrierHandle,
    sender: Option<String>,
    claim: ClaimedPart,
    config: &DispatchConfig,
    pacing: Pacing<'_>,
) -> Vec<SubmitResult> {
    let counters = &carrier.counters;
    let bookings = match pacing.wait(carrier, &claim).await {
        Ok(bookings) => bookings,
        Err(due_at) => {
            CarrierCounters::add(&counters.deferred, 1);
            return defer(
                &claim,
                carrier.name(),
                due_at,
                "deferred by the pacing policy",
            );
        }
    };
    let admission = match carrier.admit(claim.parts.len()).await {
        Ok(admission) => admission,
        Err(wait) => {
            CarrierCounters::add(&counters.deferred, 1);
            let due_at = crate::time::now_ms() + wait.as_millis() as i64;
            let reason = format!(
                "paced: waiting for carrier {}'s rate and window",
                carrier.name()
            );
            return defer(&claim, carrier.name(), due_at, &reason);
        }
    };
    let mut results = submit(carrier, sender, claim, config).await;
    drop(admission);
    // Kept with the results: the slow buckets hold across a restart.
    if let Some(first) = results.first_mut() {
        first.bookings = bookings;
    }
    results
}

/// Submits one claim and turns the carrier's answer into per-part results.
async fn submit(
    carrier: &CarrierHandle,
    sender: Option<String>,
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
        bookings: Vec::new(),
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
        from: sender.or_else(|| message.from.clone()),
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
