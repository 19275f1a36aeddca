//! A carrier served by a plugin: the runtime's [`Carrier`] trait on top of
//! the plugin's sans-IO functions, with the host doing the HTTP.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::Store;

use super::bindings::{Carrier as Bindings, types};
use super::engine::{CallError, LoadError, Plugin};
use super::http::{HttpClient, HttpResponse, Upstream, UpstreamError};
use super::limits::{CallState, Caller};
use crate::carriers::{BoxFuture, Carrier, SubmitError, SubmitRequest};
use crate::encoding::Encoding;
use crate::model::MessageType;
use crate::store::{DeliveryReport, ReportState};

/// Most requests one submission may send (a plugin that keeps asking for
/// more is cut off). Enough for one request per part of the longest message
/// (10 parts), as plugins for per-part APIs such as Kannel's sendsms send.
const MAX_ROUND_TRIPS: usize = 16;

/// How long a plugin whose call could not run inline has its calls run on
/// the blocking pool instead of the async workers.
const QUARANTINE: Duration = Duration::from_secs(60);

std::thread_local! {
    /// Set while an inline plugin call runs: its panics are expected and
    /// handled, so the panic hook stays silent.
    static INLINE_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the panic hook silenced on this thread (installing, once,
/// a hook that defers to the previous one otherwise).
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !INLINE_CALL.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    INLINE_CALL.with(|flag| flag.set(true));
    let result = f();
    INLINE_CALL.with(|flag| flag.set(false));
    result
}

/// How one carrier uses a plugin.
#[derive(Debug, Clone)]
pub struct CarrierSpec {
    /// The carrier's name (ids, reports and logs are tagged with it).
    pub name: String,
    /// Every request goes under this URL, e.g. `https://rest.example.com/v1`.
    pub base_url: String,
    /// Handed to the plugin as JSON.
    pub settings: serde_json::Value,
    /// For one whole request: connect, send, and read the answer.
    pub timeout: Duration,
    /// Larger answers fail the request.
    pub max_response_bytes: usize,
    /// Where the carrier reaches Pigeon (`host.callback-url`).
    pub callback_url: String,
}

impl CarrierSpec {
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            settings: serde_json::Value::Object(Default::default()),
            timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            callback_url: String::new(),
        }
    }
}

/// A request the carrier made to Pigeon's callback URL.
#[derive(Debug, Clone)]
pub struct CallbackRequest {
    pub method: hyper::Method,
    /// The path after `/v1/carriers/{name}/callback/{secret}`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A message a handset sent, as a carrier reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub carrier: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub carrier_message_id: String,
    /// Unix milliseconds (when the carrier gave none, when it reached us).
    pub at: i64,
    /// Set when this is one part of a longer message.
    pub part: Option<InboundPart>,
}

/// Where a part stands in a message sent in several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundPart {
    pub reference: u32,
    pub count: u8,
    /// 1 to `count`.
    pub sequence: u8,
}

/// What a plugin made of a callback.
#[derive(Debug, Clone)]
pub struct CallbackOutcome {
    pub reports: Vec<DeliveryReport>,
    pub inbound: Vec<InboundMessage>,
    /// What to answer the carrier.
    pub response: HttpResponse,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallbackError {
    #[error("callback method {0} is not supported")]
    Method(hyper::Method),
    #[error(transparent)]
    Call(#[from] CallError),
    /// The plugin did not accept the request (bad signature, unknown shape).
    #[error("callback rejected: {0}")]
    Rejected(String),
}

/// A carrier whose protocol is a plugin's. The plugin may be shared with
/// other carriers.
///
/// Submissions to a plugin that takes batches (`max-batch` above 1) queue
/// up and go together ([`send_in_batches`]): a light load is one message
/// per request, a heavy one fills the batches. Other plugins' submissions
/// run in the caller's task.
pub struct PluginCarrier {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Queued>,
}

/// What the carrier's submissions and callbacks share with its batch task.
struct Shared {
    name: Arc<str>,
    caller: Caller,
    plugin: Arc<Plugin>,
    /// The settings as JSON, shared with the blocking calls.
    settings: Arc<String>,
    upstream: Upstream,
    client: HttpClient,
    /// HTTP requests sent to the carrier.
    requests: AtomicU64,
}

/// A submission waiting for the next batch.
struct Queued {
    message: types::Message,
    reply: oneshot::Sender<Submitted>,
}

/// What became of one message of a submission: the carrier's ids for its
/// parts, or why not.
pub type Submitted = Result<Vec<String>, SubmitError>;

/// Most batches of one carrier in flight at once (a carrier far away needs
/// several to keep up).
const BATCHES_IN_FLIGHT: usize = 4;

/// Longest a batch that is not full waits for the one out to come back:
/// about the time a carrier near by takes to answer one, and short enough
/// that a carrier slow to answer one request holds the others up no more.
const BATCH_HOLD: Duration = Duration::from_millis(20);

/// Sends the requests a plugin asks for: to the carrier's base URL, or (for
/// benchmarks) to a function that answers in its place.
trait Transport: Sync {
    fn send(
        &self,
        request: types::HttpRequest,
    ) -> impl Future<Output = Result<types::HttpResponse, UpstreamError>> + Send;
}

impl Transport for Shared {
    async fn send(
        &self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, UpstreamError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.upstream.send(&self.client, request).await
    }
}

/// Answers each request with `.0(path, body)`.
struct Answering<F>(F);

impl<F: Fn(&str, &[u8]) -> HttpResponse + Sync> Transport for Answering<F> {
    async fn send(
        &self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, UpstreamError> {
        let answer = (self.0)(&request.path, &request.body);
        Ok(types::HttpResponse {
            status: answer.status,
            headers: answer
                .headers
                .into_iter()
                .map(|(name, value)| types::Header { name, value })
                .collect(),
            body: answer.body,
        })
    }
}

impl PluginCarrier {
    /// Checks the base URL and has the plugin validate the settings.
    pub async fn new(
        spec: CarrierSpec,
        plugin: Arc<Plugin>,
        client: HttpClient,
    ) -> Result<Self, LoadError> {
        let upstream = Upstream::new(&spec.base_url, spec.timeout, spec.max_response_bytes)
            .map_err(|message| LoadError::BaseUrl {
                carrier: spec.name.clone(),
                url: spec.base_url.clone(),
                message,
            })?;
        let name: Arc<str> = spec.name.clone().into();
        let shared = Arc::new(Shared {
            caller: Caller::new(name.clone(), &spec.callback_url, &spec.settings),
            name,
            plugin,
            settings: Arc::new(spec.settings.to_string()),
            upstream,
            client,
            requests: AtomicU64::new(0),
        });
        let settings = shared.settings.clone();
        let checked = shared
            .call("validate-settings", move |b, s| {
                b.call_validate_settings(s, &settings)
            })
            .await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(problems)) => {
                return Err(LoadError::Settings {
                    carrier: spec.name,
                    problems,
                });
            }
            Err(source) => {
                return Err(LoadError::Validate {
                    carrier: spec.name,
                    source,
                });
            }
        }
        let (queue, queued) = mpsc::unbounded_channel();
        let (plugin, driver) = (shared.plugin.clone(), shared.clone());
        tokio::spawn(send_in_batches(
            move || plugin.max_batch(),
            queued,
            move |batch| run_batch(driver.clone(), batch),
        ));
        Ok(Self { shared, queue })
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.shared.plugin
    }

    /// HTTP requests sent to the carrier since start.
    pub fn requests_sent(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Submits `requests` together, as one batch (or one at a time, for a
    /// plugin that takes no batches), with `answer(path, body)` standing in
    /// for the carrier: the production driver without the network, for
    /// benchmarks and tools.
    pub async fn submit_offline(
        &self,
        requests: &[SubmitRequest],
        answer: impl Fn(&str, &[u8]) -> HttpResponse + Sync,
    ) -> Vec<Submitted> {
        let transport = Answering(answer);
        let messages: Vec<types::Message> = requests.iter().map(wit_message).collect();
        if self.shared.plugin.max_batch() > 1 {
            return self.shared.drive(messages, &transport).await;
        }
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.extend(self.shared.drive(vec![message], &transport).await);
        }
        outcomes
    }

    /// Hands a carrier's callback to the plugin: delivery reports (tagged
    /// with this carrier), inbound messages and the answer to give.
    pub async fn parse_callback(
        &self,
        request: CallbackRequest,
    ) -> Result<CallbackOutcome, CallbackError> {
        self.shared.parse_callback(request).await
    }
}

/// Sends what is queued in batches of up to `max_batch()`, as Nagle's
/// algorithm sends TCP segments: a batch goes at once when no batch is out
/// or when it is full, and otherwise once the one out is back or after
/// [`BATCH_HOLD`], at most [`BATCHES_IN_FLIGHT`] out at once. Each request
/// costs a plugin call and an exchange with the carrier, so under load
/// fewer, fuller batches go further. Ends when the queue does.
async fn send_in_batches<T, F, Fut>(
    max_batch: impl Fn() -> usize,
    mut queued: mpsc::UnboundedReceiver<T>,
    send: F,
) where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let returned = Arc::new(Notify::new());
    let mut batch: Vec<T> = Vec::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // What is left from the last batch (had `max_batch` shrunk) has
        // waited already.
        let mut hold_until = (!batch.is_empty()).then(Instant::now);
        loop {
            let max_batch = max_batch().max(1);
            // All the other slots are back: no batch is out.
            let idle = slots.available_permits() == BATCHES_IN_FLIGHT - 1;
            let held = hold_until.is_some_and(|until| Instant::now() >= until);
            if batch.len() >= max_batch || (!batch.is_empty() && (idle || held)) {
                break;
            }
            let wanted = max_batch - batch.len();
            let received = if batch.is_empty() {
                queued.recv_many(&mut batch, wanted).await
            } else {
                // Something waits while a batch is out.
                let until = hold_until.unwrap_or_else(|| Instant::now() + BATCH_HOLD);
                tokio::select! {
                    received = queued.recv_many(&mut batch, wanted) => received,
                    // A batch came back, or the hold is over: look again.
                    () = returned.notified() => continue,
                    () = tokio::time::sleep_until(until) => continue,
                }
            };
            if received == 0 {
                // The queue is closed: send what is left, then end.
                if batch.is_empty() {
                    return;
                }
                break;
            }
            hold_until.get_or_insert_with(|| Instant::now() + BATCH_HOLD);
        }
        // A plugin reloaded meanwhile may take fewer.
        let rest = batch.split_off(batch.len().min(max_batch().max(1)));
        let sent = send(std::mem::replace(&mut batch, rest));
        let returned = returned.clone();
        tokio::spawn(async move {
            sent.await;
            drop(slot);
            returned.notify_one();
        });
    }
}

/// Submits one batch and answers each of its submissions.
async fn run_batch(shared: Arc<Shared>, batch: Vec<Queued>) {
    let span = tracing::info_span!(
        "carrier_batch",
        carrier = &*shared.name,
        messages = batch.len()
    );
    async move {
        let (messages, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|q| (q.message, q.reply)).unzip();
        let outcomes = shared.drive(messages, &*shared).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
    .instrument(span)
    .await
}

impl Shared {
    /// Runs one plugin call, in the caller's span. A call takes about 10 µs,
    /// so it runs right here, on the async worker: handing it to another
    /// thread (`spawn_blocking`, `block_in_place`) costs more than the call.
    /// Two things cannot run here, and send a plugin's calls to the blocking
    /// pool for a while ([`QUARANTINE`]): a call that ran into its deadline
    /// (a looping plugin must not hold up the workers), and one that used
    /// WASI streams (a panic message on stderr), whose host functions panic
    /// on an async worker. Calls are pure functions of their arguments, so
    /// such a call is simply run again there.
    async fn call<R: Send + 'static>(
        &self,
        function: &'static str,
        f: impl Fn(&Bindings, &mut Store<CallState>) -> wasmtime::Result<R> + Clone + Send + 'static,
    ) -> Result<R, CallError> {
        let plugin = self.plugin.clone();
        let caller = self.caller.clone();
        if !plugin.quarantined(QUARANTINE) {
            let attempt = f.clone();
            let run = std::panic::AssertUnwindSafe(|| plugin.call(&caller, function, attempt));
            match quietly(|| std::panic::catch_unwind(run)) {
                Ok(result) => return result,
                Err(_) => {
                    tracing::debug!(function, "plugin call needs a blocking thread");
                    plugin.quarantine();
                }
            }
        }
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| plugin.call(&caller, function, f)))
            .await
            .unwrap_or_else(|e| {
                Err(CallError::Trap {
                    plugin: self.plugin.info().name,
                    function,
                    message: format!("host task failed: {e}"),
                })
            })
    }

    /// The one submission driver: `start-submit` (or `start-submit-batch`
    /// for several messages), then the requests the plugin asks for, each
    /// answer handed back with `resume-…`, until every message has an
    /// outcome. One outcome per message, in order.
    async fn drive(
        &self,
        messages: Vec<types::Message>,
        transport: &impl Transport,
    ) -> Vec<Submitted> {
        let parts: Vec<usize> = messages.iter().map(|m| m.parts.len()).collect();
        let all = |error: SubmitError| vec![Err(error); parts.len()];
        if messages.is_empty() {
            return Vec::new();
        }
        let batch = messages.len() > 1;
        let settings = self.settings.clone();
        // Kept out of what the plugin logs in every call of this submission.
        let texts: Arc<[String]> = messages.iter().map(|m| m.text.clone()).collect();
        let hidden = texts.clone();
        let mut step = match <[types::Message; 1]>::try_from(messages) {
            Ok([message]) => {
                self.call("start-submit", move |b, s| {
                    s.data_mut().hide_all(&hidden);
                    b.call_start_submit(s, &settings, &message).map(single)
                })
                .await
            }
            Err(messages) => {
                self.call("start-submit-batch", move |b, s| {
                    s.data_mut().hide_all(&hidden);
                    b.call_start_submit_batch(s, &settings, &messages)
                })
                .await
            }
        };
        let mut round_trips = 0;
        loop {
            let current = match step {
                Ok(Ok(current)) => current,
                Ok(Err(failure)) => return all(self.failure(failure)),
                Err(e) => return all(SubmitError::Retryable(e.to_string())),
            };
            let outgoing = match current {
                types::BatchStep::Done(outcomes) if outcomes.len() == parts.len() => {
                    return outcomes
                        .into_iter()
                        .zip(&parts)
                        .map(|(outcome, &parts)| self.outcome(outcome, parts))
                        .collect();
                }
                types::BatchStep::Done(outcomes) => {
                    tracing::error!(
                        outcomes = outcomes.len(),
                        messages = parts.len(),
                        "plugin answered the wrong number of outcomes"
                    );
                    return all(SubmitError::Retryable(format!(
                        "plugin answered {} outcomes for {} messages",
                        outcomes.len(),
                        parts.len()
                    )));
                }
                types::BatchStep::Send(outgoing) => outgoing,
            };
            round_trips += 1;
            if round_trips > MAX_ROUND_TRIPS {
                tracing::error!("plugin asked for more than {MAX_ROUND_TRIPS} requests");
                return all(SubmitError::Retryable(format!(
                    "plugin asked for more than {MAX_ROUND_TRIPS} requests"
                )));
            }
            let response = match transport.send(outgoing.request).await {
                Ok(response) => response,
                Err(e) if e.is_refusal() => {
                    tracing::error!(error = %e, "plugin request refused");
                    return all(SubmitError::Permanent {
                        code: "plugin_request_refused".into(),
                        reason: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "carrier request failed");
                    return all(SubmitError::Retryable(e.to_string()));
                }
            };
            let settings = self.settings.clone();
            let continuation = outgoing.continuation;
            let hidden = texts.clone();
            step = if batch {
                self.call("resume-submit-batch", move |b, s| {
                    s.data_mut().hide_all(&hidden);
                    b.call_resume_submit_batch(s, &settings, &continuation, &response)
                })
                .await
            } else {
                self.call("resume-submit", move |b, s| {
                    s.data_mut().hide_all(&hidden);
                    b.call_resume_submit(s, &settings, &continuation, &response)
                        .map(single)
                })
                .await
            };
        }
    }

    /// One message's outcome, with one carrier id per part.
    fn outcome(&self, outcome: Result<Vec<String>, types::Failure>, parts: usize) -> Submitted {
        match outcome {
            Ok(ids) if ids.len() == parts => Ok(ids),
            Ok(ids) => {
                tracing::error!(
                    ids = ids.len(),
                    parts,
                    "plugin accepted with the wrong number of carrier ids"
                );
                Err(SubmitError::Retryable(format!(
                    "plugin returned {} carrier ids for {parts} parts",
                    ids.len()
                )))
            }
            Err(failure) => Err(self.failure(failure)),
        }
    }

    fn failure(&self, failure: types::Failure) -> SubmitError {
        match failure {
            types::Failure::Retryable(reason) => SubmitError::Retryable(reason),
            types::Failure::Throttled(retry_after_ms) => SubmitError::Throttled { retry_after_ms },
            types::Failure::Permanent(p) => SubmitError::Permanent {
                code: p.code,
                reason: p.reason,
            },
            types::Failure::Misconfigured(reason) => {
                tracing::error!(%reason, "carrier is misconfigured");
                SubmitError::Misconfigured(reason)
            }
        }
    }

    async fn parse_callback(
        &self,
        request: CallbackRequest,
    ) -> Result<CallbackOutcome, CallbackError> {
        let span = tracing::info_span!("carrier_callback", carrier = &*self.name);
        async {
            let wit = wit_callback(&request).ok_or(CallbackError::Method(request.method))?;
            let settings = self.settings.clone();
            let reply = self
                .call("parse-callback", move |b, s| {
                    b.call_parse_callback(s, &settings, &wit)
                })
                .await?
                .map_err(CallbackError::Rejected)?;
            let now = crate::time::now_ms();
            let at = |ms: Option<u64>| ms.and_then(|ms| i64::try_from(ms).ok()).unwrap_or(now);
            Ok(CallbackOutcome {
                reports: reply
                    .reports
                    .into_iter()
                    .map(|r| DeliveryReport {
                        carrier: self.name.to_string(),
                        carrier_message_id: r.carrier_message_id,
                        state: report_state(r.state),
                        error_code: r.error_code,
                        raw_status: Some(r.raw_status),
                        at: at(r.at),
                    })
                    .collect(),
                inbound: reply
                    .inbound
                    .into_iter()
                    .map(|m| InboundMessage {
                        carrier: self.name.to_string(),
                        from: m.from,
                        to: m.to,
                        text: m.text,
                        carrier_message_id: m.carrier_message_id,
                        at: at(m.at),
                        part: m.part.map(|p| InboundPart {
                            reference: p.reference,
                            count: p.count,
                            sequence: p.sequence,
                        }),
                    })
                    .collect(),
                response: HttpResponse {
                    status: reply.response.status,
                    headers: reply
                        .response
                        .headers
                        .into_iter()
                        .map(|h| (h.name, h.value))
                        .collect(),
                    body: reply.response.body,
                },
            })
        }
        .instrument(span)
        .await
    }
}

impl Carrier for PluginCarrier {
    fn name(&self) -> &str {
        &self.shared.name
    }

    /// Runs in the caller's span (the dispatcher's names the message, the
    /// carrier and the attempt); a batch runs in its own, naming the carrier.
    fn submit<'a>(&'a self, request: &'a SubmitRequest) -> BoxFuture<'a, Submitted> {
        let message = wit_message(request);
        Box::pin(async move {
            if self.shared.plugin.max_batch() <= 1 {
                let mut outcomes = self.shared.drive(vec![message], &*self.shared).await;
                return outcomes
                    .pop()
                    .unwrap_or_else(|| Err(SubmitError::Retryable("no outcome".into())));
            }
            let (reply, outcome) = oneshot::channel();
            if self.queue.send(Queued { message, reply }).is_err() {
                return Err(SubmitError::Retryable(
                    "the carrier is shutting down".into(),
                ));
            }
            outcome
                .await
                .unwrap_or_else(|_| Err(SubmitError::Retryable("the batch was dropped".into())))
        })
    }
}

/// A single submission's step as a batch of one's.
fn single(step: Result<types::Step, types::Failure>) -> Result<types::BatchStep, types::Failure> {
    step.map(|step| match step {
        types::Step::Send(outgoing) => types::BatchStep::Send(outgoing),
        types::Step::Accepted(ids) => types::BatchStep::Done(vec![Ok(ids)]),
    })
}

pub(super) fn wit_message(request: &SubmitRequest) -> types::Message {
    types::Message {
        id: request.message_id.clone(),
        to: request.to.clone(),
        from: request.from.clone(),
        text: request.text.clone(),
        message_type: match request.message_type {
            MessageType::Otp => types::MessageType::Otp,
            MessageType::Transactional => types::MessageType::Transactional,
            MessageType::Marketing => types::MessageType::Marketing,
        },
        encoding: match request.encoding {
            Encoding::Gsm7 => types::Encoding::Gsm7,
            Encoding::Ucs2 => types::Encoding::Ucs2,
        },
        parts: request
            .parts
            .iter()
            .map(|p| types::Part {
                index: u32::try_from(p.index).unwrap_or(u32::MAX),
                text: p.text.clone(),
                udh: p.udh.clone(),
                payload: p.payload.clone(),
                units: u32::try_from(p.units).unwrap_or(u32::MAX),
            })
            .collect(),
    }
}

/// The request in the contract's terms; `None` for a method it has no name for.
pub(super) fn wit_callback(request: &CallbackRequest) -> Option<types::CallbackRequest> {
    Some(types::CallbackRequest {
        method: wit_method(&request.method)?,
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| types::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        body: request.body.clone(),
    })
}

pub(super) fn wit_method(method: &hyper::Method) -> Option<types::Method> {
    Some(match *method {
        hyper::Method::GET => types::Method::Get,
        hyper::Method::POST => types::Method::Post,
        hyper::Method::PUT => types::Method::Put,
        hyper::Method::PATCH => types::Method::Patch,
        hyper::Method::DELETE => types::Method::Delete,
        _ => return None,
    })
}

fn report_state(state: types::ReportState) -> ReportState {
    match state {
        types::ReportState::Enroute => ReportState::Enroute,
        types::ReportState::Delivered => ReportState::Delivered,
        types::ReportState::Expired => ReportState::Expired,
        types::ReportState::Undeliverable => ReportState::Undeliverable,
        types::ReportState::Rejected => ReportState::Rejected,
        types::ReportState::Unknown => ReportState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches as `send_in_batches` sends them, each with the sender that
    /// brings it back.
    type Sent = mpsc::UnboundedReceiver<(Vec<u32>, oneshot::Sender<()>)>;

    /// Starts `send_in_batches` with `max_batch`; returns its queue and the
    /// batches it sends, each out until its sender is used or dropped.
    fn batching(max_batch: usize) -> (mpsc::UnboundedSender<u32>, Sent) {
        batching_up_to(move || max_batch)
    }

    fn batching_up_to(
        max_batch: impl Fn() -> usize + Send + 'static,
    ) -> (mpsc::UnboundedSender<u32>, Sent) {
        let (queue, queued) = mpsc::unbounded_channel();
        let (sent_tx, sent) = mpsc::unbounded_channel();
        tokio::spawn(send_in_batches(max_batch, queued, move |batch| {
            let (back, out) = oneshot::channel();
            let _ = sent_tx.send((batch, back));
            async move {
                let _ = out.await;
            }
        }));
        (queue, sent)
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_wait_for_the_batch_out_and_go_together_when_it_is_back() {
        let start = Instant::now();
        let (queue, mut sent) = batching(100);
        queue.send(1).unwrap();
        let (first, back) = sent.recv().await.unwrap();
        assert_eq!(first, [1], "a lone submission goes at once");
        for n in [2, 3] {
            queue.send(n).unwrap();
            tokio::task::yield_now().await;
        }
        back.send(()).unwrap();
        let (next, _back) = sent.recv().await.unwrap();
        assert_eq!(next, [2, 3]);
        assert!(start.elapsed() < BATCH_HOLD, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_out_too_long_holds_the_next_for_the_hold_only() {
        let (queue, mut sent) = batching(100);
        queue.send(1).unwrap();
        let (_, _stuck) = sent.recv().await.unwrap();
        let waiting = Instant::now();
        queue.send(2).unwrap();
        let (next, _back) = sent.recv().await.unwrap();
        assert_eq!(next, [2]);
        assert_eq!(waiting.elapsed(), BATCH_HOLD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_while_another_is_out() {
        let start = Instant::now();
        let (queue, mut sent) = batching(3);
        queue.send(1).unwrap();
        let (_, _stuck) = sent.recv().await.unwrap();
        for n in 2..=5 {
            queue.send(n).unwrap();
        }
        let (full, _back) = sent.recv().await.unwrap();
        assert_eq!(full, [2, 3, 4]);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_batches_are_out_than_the_limit() {
        let (queue, mut sent) = batching(100);
        let mut out = Vec::new();
        for n in 0..BATCHES_IN_FLIGHT as u32 {
            queue.send(n).unwrap();
            let (batch, back) = sent.recv().await.unwrap();
            assert_eq!(batch, [n]);
            out.push(back);
        }
        queue.send(99).unwrap();
        let late = tokio::time::timeout(Duration::from_secs(60), sent.recv()).await;
        assert!(late.is_err(), "a batch went with {BATCHES_IN_FLIGHT} out");
        out.remove(0).send(()).unwrap();
        let (last, _back) = sent.recv().await.unwrap();
        assert_eq!(last, [99]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_plugin_taking_fewer_meanwhile_gets_no_more_than_it_takes() {
        let max = Arc::new(AtomicU64::new(100));
        let (queue, mut sent) = batching_up_to({
            let max = max.clone();
            move || max.load(Ordering::Relaxed) as usize
        });
        queue.send(1).unwrap();
        let (_, back) = sent.recv().await.unwrap();
        for n in 2..=4 {
            queue.send(n).unwrap();
            tokio::task::yield_now().await;
        }
        max.store(2, Ordering::Relaxed);
        back.send(()).unwrap();
        let (next, _back) = sent.recv().await.unwrap();
        assert_eq!(next, [2, 3]);
        let (rest, _back) = sent.recv().await.unwrap();
        assert_eq!(rest, [4]);
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_queued_when_the_queue_closes_still_goes() {
        let (queue, mut sent) = batching(100);
        queue.send(1).unwrap();
        let (_, _stuck) = sent.recv().await.unwrap();
        queue.send(2).unwrap();
        drop(queue);
        let (rest, _back) = sent.recv().await.unwrap();
        assert_eq!(rest, [2]);
    }
}
