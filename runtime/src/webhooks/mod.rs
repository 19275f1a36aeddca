//! Status webhooks: the deliverer takes due rows from the outbox (written in
//! the same transaction as each status change, see `store::webhooks`), POSTs
//! each signed payload to the message's `callback_url`, and records the
//! outcome: delivered on 2xx, otherwise retried with backoff until
//! `webhooks.max_attempts`, then failed.

mod guard;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

pub use guard::{Refused, check_host, non_public};
pub use signature::{HEADER as SIGNATURE_HEADER, header_value, sign, verify};

use crate::config::WebhooksConfig;
use crate::dispatch::retry_delay;
use crate::store::Store;
use crate::store::webhooks::{self as outbox, ClaimedWebhook, DeliveryOutcome, DeliveryResult};
use crate::workers::{self, Limits};

/// Most deliveries claimed in one write.
const CLAIM_BATCH: usize = 256;
/// A claim keeps a delivery from being claimed again for the request's
/// timeout plus this long (time to record the result). If the process dies
/// holding it, the delivery becomes due again when that has passed.
const LEASE_MARGIN_MS: u64 = 30_000;
/// How much of an endpoint's error answer is kept in `last_error`.
const MAX_ERROR_BODY: usize = 200;

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
}

impl Deliverer {
    pub fn new(store: Store, config: WebhooksConfig) -> Result<Self, WebhookError> {
        Ok(Self {
            store,
            client: http_client(config.allow_private_networks)?,
            config,
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
        let claim = |limit| {
            let now = crate::time::now_ms();
            store.write(move |c| outbox::claim_due(c, now, limit, now + lease_ms))
        };
        let config = Arc::new(self.config);
        let client = self.client;
        let work = |claim: ClaimedWebhook| {
            let (client, config) = (client.clone(), config.clone());
            let span = tracing::info_span!(
                "webhook",
                message_id = %claim.message_id,
                event_id = %claim.id,
                attempt = claim.attempt
            );
            async move {
                let id = claim.id.clone();
                let outcome = deliver(&client, claim, &config).await;
                vec![DeliveryResult { id, outcome }]
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
            outbox::record_results,
        )
        .await;
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

/// Makes one attempt and decides what comes next.
async fn deliver(
    client: &HttpClient,
    claim: ClaimedWebhook,
    config: &WebhooksConfig,
) -> DeliveryOutcome {
    let attempt = claim.attempt;
    match attempt_once(client, claim, config).await {
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

async fn attempt_once(
    client: &HttpClient,
    claim: ClaimedWebhook,
    config: &WebhooksConfig,
) -> Result<hyper::StatusCode, AttemptError> {
    let Some(secret) = claim.secret else {
        return Err(AttemptError::Permanent(
            "the message's account has no webhook secret".into(),
        ));
    };
    let uri: Uri = claim
        .url
        .parse()
        .map_err(|err| AttemptError::Permanent(format!("invalid callback_url: {err}")))?;
    if !config.allow_private_networks
        && let Some(host) = uri.host()
    {
        check_host(host).map_err(|refused| AttemptError::Permanent(refused.to_string()))?;
    }
    let timestamp = crate::time::now_ms().div_euclid(1000);
    let signature = header_value(&secret, timestamp, claim.payload.as_bytes());
    let request = Request::post(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(Bytes::from(claim.payload)))
        .map_err(|err| AttemptError::Permanent(format!("invalid request: {err}")))?;
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
            return Ok(status);
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
