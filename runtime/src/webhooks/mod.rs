//! Status webhooks: the deliverer takes due rows from the outbox (written in
//! the same transaction as each status change, see `store::webhooks`), POSTs
//! each signed payload to the message's `callback_url`, and records the
//! outcome: delivered on 2xx, otherwise retried with backoff until
//! `webhooks.max_attempts`, then failed.
//!
//! Fairness: claims go round robin across accounts, and each account and
//! each endpoint (scheme, host and port) may have only so many requests in
//! flight (`per_account_concurrency`, `per_endpoint_concurrency`). An
//! endpoint that never answers holds its own slots for the timeout, not
//! everyone's.

mod guard;
mod signature;
pub mod twilio;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

pub use guard::{InvalidUrl, Refused, check_host, non_public, validate_callback_url};
pub use signature::{
    HEADER as SIGNATURE_HEADER, header_value, header_value_rotating, sign, verify,
};

use crate::auth::Sealer;
use crate::config::WebhooksConfig;
use crate::dispatch::retry_delay;
use crate::store::Store;
use crate::store::webhooks::{
    self as outbox, Admission, ClaimWindow, ClaimedWebhook, DeliveryOutcome, DeliveryResult,
    WebhookFormat,
};
use crate::workers::{self, Limits};

/// Most deliveries claimed in one write.
const CLAIM_BATCH: usize = 256;
/// A claim keeps a delivery from being claimed again for the request's
/// timeout plus this long (time to record the result). If the process dies
/// holding it, the delivery becomes due again when that has passed.
const LEASE_MARGIN_MS: u64 = 30_000;
/// A delivery whose endpoint is busy is put off this long.
const BUSY_ENDPOINT_DEFER_MS: i64 = 500;
/// How much of an endpoint's error answer is kept in `last_error`.
const MAX_ERROR_BODY: usize = 200;
/// The most of a TwiML answer read.
const MAX_TWIML_BODY: usize = 64 * 1024;

pub const USER_AGENT_VALUE: &str = concat!("Pigeon/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot set up TLS for webhooks: {0}")]
    Tls(#[from] rustls::Error),
}

/// The HTTP client for webhooks, resolving names through the SSRF guard.
type HttpClient = crate::http_client::HttpsClient<guard::GuardedResolver>;

fn http_client(allow_private: bool) -> Result<HttpClient, WebhookError> {
    let http = HttpConnector::new_with_resolver(guard::GuardedResolver::new(allow_private));
    Ok(crate::http_client::build(http, Duration::from_secs(30))?)
}

pub struct Deliverer {
    store: Store,
    client: HttpClient,
    config: WebhooksConfig,
    /// Opens the Twilio auth tokens that sign Twilio-form webhooks.
    sealer: Sealer,
    /// Woken when a TwiML answer left replies to send.
    replies_waker: Arc<Notify>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        config: WebhooksConfig,
        sealer: Sealer,
        replies_waker: Arc<Notify>,
    ) -> Result<Self, WebhookError> {
        Ok(Self {
            store,
            client: http_client(config.allow_private_networks)?,
            config,
            sealer,
            replies_waker,
        })
    }

    /// Delivers until `shutdown` turns true, then lets the requests in
    /// flight finish (each is bounded by the timeout) and records them.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let limits = Limits {
            concurrency: self.config.concurrency,
            claim_batch: CLAIM_BATCH,
            poll: Duration::from_millis(self.config.poll_interval_ms),
        };
        let lease_ms = (self.config.timeout_ms + LEASE_MARGIN_MS) as i64;
        let store = self.store.clone();
        let in_flight = Arc::new(InFlight::new(&self.config));
        let last_account = Arc::new(Mutex::new(String::new()));
        let claim = |limit| {
            let now = crate::time::now_ms();
            let window = ClaimWindow {
                now,
                limit,
                lease_until: now + lease_ms,
                defer_until: now + BUSY_ENDPOINT_DEFER_MS,
            };
            let (in_flight, last_account) = (in_flight.clone(), last_account.clone());
            let after = lock(&last_account).clone();
            let store = store.clone();
            async move {
                // The job counts on a copy: it may run again, or its
                // transaction fail; only a committed claim is counted in.
                let counting = in_flight.clone();
                let (claimed, last) = store
                    .write(move |c| {
                        let mut counts = counting.snapshot();
                        outbox::claim_due(c, window, &after, |row| counts.admit(row))
                    })
                    .await?;
                in_flight.take(&claimed);
                if let Some(last) = last {
                    *lock(&last_account) = last;
                }
                Ok(claimed)
            }
        };
        let config = Arc::new(self.config);
        let client = self.client;
        let (sealer, replies_waker) = (Arc::new(self.sealer), self.replies_waker);
        let work = |claim: ClaimedWebhook| {
            let (client, config) = (client.clone(), config.clone());
            let (sealer, replies_waker) = (sealer.clone(), replies_waker.clone());
            let slot = Slot::new(in_flight.clone(), &claim);
            let span = tracing::info_span!(
                "webhook",
                message_id = %claim.message_id,
                event_id = %claim.id,
                attempt = claim.attempt
            );
            async move {
                let id = claim.id.clone();
                let (outcome, replies) = deliver(&client, claim, &config, &sealer).await;
                drop(slot);
                if !replies.is_empty() {
                    // Recorded with the result; the Twilio door sends them.
                    replies_waker.notify_one();
                }
                vec![DeliveryResult {
                    id,
                    outcome,
                    replies,
                }]
            }
            .instrument(span)
        };
        // Woken when a result is recorded: it may make the message's next
        // webhook due.
        let wake = Arc::new(Notify::new());
        workers::run(
            self.store,
            limits,
            wake,
            shutdown,
            claim,
            work,
            workers::Recorder {
                write: outbox::record_results,
                after: |()| {},
            },
        )
        .await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The endpoint a URL's requests go to: scheme, host and port.
fn endpoint_of(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("http");
            let default_port = if scheme == "https" { 443 } else { 80 };
            let host = uri.host().unwrap_or_default().to_ascii_lowercase();
            let port = uri.port_u16().unwrap_or(default_port);
            format!("{scheme}://{host}:{port}")
        }
        Err(_) => url.to_owned(),
    }
}

/// Requests in flight per account and per endpoint.
#[derive(Debug, Clone, Default)]
struct Counts {
    per_account_limit: usize,
    per_endpoint_limit: usize,
    accounts: HashMap<String, usize>,
    endpoints: HashMap<String, usize>,
}

impl Counts {
    /// Whether `row` may start now; counted in if so.
    fn admit(&mut self, row: &ClaimedWebhook) -> Admission {
        if self.accounts.get(&row.account_id).copied().unwrap_or(0) >= self.per_account_limit {
            return Admission::SkipAccount;
        }
        let endpoint = endpoint_of(&row.url);
        if self.endpoints.get(&endpoint).copied().unwrap_or(0) >= self.per_endpoint_limit {
            return Admission::Defer;
        }
        *self.accounts.entry(row.account_id.clone()).or_default() += 1;
        *self.endpoints.entry(endpoint).or_default() += 1;
        Admission::Claim
    }

    fn release(&mut self, account: &str, endpoint: &str) {
        for (map, key) in [
            (&mut self.accounts, account),
            (&mut self.endpoints, endpoint),
        ] {
            if let Some(count) = map.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

/// The deliverer's counts of requests in flight.
struct InFlight(Mutex<Counts>);

impl InFlight {
    fn new(config: &WebhooksConfig) -> Self {
        Self(Mutex::new(Counts {
            per_account_limit: config.per_account_concurrency,
            per_endpoint_limit: config.per_endpoint_concurrency,
            ..Counts::default()
        }))
    }

    fn snapshot(&self) -> Counts {
        lock(&self.0).clone()
    }

    fn take(&self, claimed: &[ClaimedWebhook]) {
        let mut counts = lock(&self.0);
        for row in claimed {
            *counts.accounts.entry(row.account_id.clone()).or_default() += 1;
            *counts.endpoints.entry(endpoint_of(&row.url)).or_default() += 1;
        }
    }
}

/// One request's place in the counts, given back when dropped.
struct Slot {
    in_flight: Arc<InFlight>,
    account: String,
    endpoint: String,
}

impl Slot {
    fn new(in_flight: Arc<InFlight>, claim: &ClaimedWebhook) -> Self {
        Self {
            in_flight,
            account: claim.account_id.clone(),
            endpoint: endpoint_of(&claim.url),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.in_flight.0).release(&self.account, &self.endpoint);
    }
}

/// Why one attempt did not deliver.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// The request may never be made: not worth retrying.
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Transient(String),
}

/// Makes one attempt and decides what comes next; with the replies a
/// TwiML answer asked for.
async fn deliver(
    client: &HttpClient,
    claim: ClaimedWebhook,
    config: &WebhooksConfig,
    sealer: &Sealer,
) -> (DeliveryOutcome, Vec<String>) {
    let attempt = claim.attempt;
    let (attempted, replies) = match attempt_once(client, claim, config, sealer).await {
        Ok((status, replies)) => (Ok(status), replies),
        Err(err) => (Err(err), Vec::new()),
    };
    let outcome = decide(attempted, attempt, config);
    let label = match &outcome {
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::Retry { .. } => "retry",
        DeliveryOutcome::Failed { .. } => "failed",
    };
    ::metrics::counter!("pigeon_webhook_deliveries_total", "outcome" => label).increment(1);
    (outcome, replies)
}

fn decide(
    attempted: Result<hyper::StatusCode, AttemptError>,
    attempt: i64,
    config: &WebhooksConfig,
) -> DeliveryOutcome {
    match attempted {
        Ok(status) => {
            tracing::debug!(%status, "webhook delivered");
            DeliveryOutcome::Delivered
        }
        Err(AttemptError::Permanent(error)) => {
            tracing::warn!(%error, "webhook refused; not retrying");
            DeliveryOutcome::Failed { error }
        }
        Err(AttemptError::Transient(error)) if attempt >= i64::from(config.max_attempts) => {
            tracing::warn!(%error, "webhook failed; attempts exhausted");
            DeliveryOutcome::Failed {
                error: format!("gave up after {attempt} attempts: {error}"),
            }
        }
        Err(AttemptError::Transient(error)) => {
            let delay = retry_delay(
                attempt,
                Duration::from_millis(config.retry_base_ms),
                Duration::from_millis(config.retry_max_ms),
            );
            tracing::info!(%error, retry_in_ms = delay.as_millis() as u64, "webhook failed; will retry");
            DeliveryOutcome::Retry {
                at: crate::time::now_ms() + delay.as_millis() as i64,
                error,
            }
        }
    }
}

/// A request ready to send: its body, content type and signature header.
struct Signed {
    body: Bytes,
    content_type: &'static str,
    signature: (&'static str, String),
}

/// The request body and signature in the row's form.
fn sign_claim(claim: &ClaimedWebhook, sealer: &Sealer) -> Result<Signed, AttemptError> {
    if claim.format == WebhookFormat::Pigeon {
        let Some(secret) = &claim.secret else {
            return Err(AttemptError::Permanent(
                "the message's account has no webhook secret".into(),
            ));
        };
        let timestamp = crate::time::now_ms().div_euclid(1000);
        let signature = header_value_rotating(
            secret,
            claim.previous_secret.as_deref(),
            timestamp,
            claim.payload.as_bytes(),
        );
        return Ok(Signed {
            body: Bytes::from(claim.payload.clone()),
            content_type: "application/json",
            signature: (SIGNATURE_HEADER, signature),
        });
    }
    let token = claim
        .twilio_token
        .as_deref()
        .and_then(|sealed| sealer.open(sealed))
        .ok_or_else(|| {
            AttemptError::Permanent(
                "the account has no Twilio credential in force to sign with".into(),
            )
        })?;
    let params: Vec<(String, String)> = serde_json::from_str::<serde_json::Value>(&claim.payload)
        .ok()
        .and_then(|payload| payload.get("form").and_then(|f| f.as_object()).cloned())
        .map(|form| {
            form.into_iter()
                .map(|(name, value)| (name, value.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .ok_or_else(|| AttemptError::Permanent("the stored webhook has no form".into()))?;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let signature = twilio::signature(&token, &claim.url, &params);
    Ok(Signed {
        body: Bytes::from(body),
        content_type: "application/x-www-form-urlencoded",
        signature: (twilio::SIGNATURE_HEADER, signature),
    })
}

async fn attempt_once(
    client: &HttpClient,
    claim: ClaimedWebhook,
    config: &WebhooksConfig,
    sealer: &Sealer,
) -> Result<(hyper::StatusCode, Vec<String>), AttemptError> {
    let signed = sign_claim(&claim, sealer)?;
    let uri: Uri = claim
        .url
        .parse()
        .map_err(|err| AttemptError::Permanent(format!("invalid callback_url: {err}")))?;
    if !config.allow_private_networks
        && let Some(host) = uri.host()
    {
        check_host(host).map_err(|refused| AttemptError::Permanent(refused.to_string()))?;
    }
    let request = Request::post(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static(signed.content_type))
        .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
        .header(signed.signature.0, signed.signature.1)
        .body(Full::new(signed.body))
        .map_err(|err| AttemptError::Permanent(format!("invalid request: {err}")))?;
    let wants_replies = claim.format == WebhookFormat::TwilioInbound;
    let timeout = Duration::from_millis(config.timeout_ms);
    let exchange = async {
        let response = client.request(request).await.map_err(|err| {
            if let Some(refused) = find_refusal(&err) {
                AttemptError::Permanent(refused.to_string())
            } else {
                AttemptError::Transient(format!("request failed: {}", error_chain(&err)))
            }
        })?;
        let status = response.status();
        if status.is_success() {
            let replies = if wants_replies {
                twiml_replies(response.into_body()).await
            } else {
                Vec::new()
            };
            return Ok((status, replies));
        }
        let excerpt = read_excerpt(response.into_body()).await;
        Err(AttemptError::Transient(if excerpt.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {excerpt}")
        }))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(AttemptError::Transient(format!(
            "no answer within {} ms",
            config.timeout_ms
        ))),
    }
}

/// What a TwiML answer asks to send back. An answer that is not TwiML
/// asks for nothing: the webhook was still delivered.
async fn twiml_replies(body: hyper::body::Incoming) -> Vec<String> {
    let limited = http_body_util::Limited::new(body, MAX_TWIML_BODY);
    let Ok(collected) = limited.collect().await else {
        tracing::warn!("the TwiML answer could not be read; no reply sent");
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    twilio::replies(&text).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "the inbound webhook's answer is not TwiML; no reply sent");
        Vec::new()
    })
}

/// The start of an error answer's body, for `last_error`.
async fn read_excerpt(mut body: hyper::body::Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let text: String = text
        .chars()
        .take(MAX_ERROR_BODY)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_owned()
}

/// The SSRF refusal behind a client error, if that is what it was.
fn find_refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(guard::ResolveError::Refused(refused)) = err.downcast_ref() {
            return Some(refused);
        }
        current = err.source();
    }
    None
}

/// An error and its causes, joined (hyper's own message is terse).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
    }
    text
}
