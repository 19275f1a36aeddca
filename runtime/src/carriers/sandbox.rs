//! The fake carrier behind the sandbox: a real HTTP server on a loopback
//! port that answers the `simulator` plugin's `POST /{carrier}/submit` like
//! a carrier would, and later calls that carrier's callback URL on Pigeon's
//! own API with the delivery reports (batched, as a JSON array on
//! `POST …/dlr`). The wire shape is in plugins/simulator/README.md.
//!
//! The plugin decides each message's fate and writes it into the request;
//! the endpoint only does what it says. It keeps that fate in the carrier
//! ids it hands out (`sim-<id>-<status>`), so after a restart the reports
//! still owed can be sent from the ids alone ([`SandboxEndpoint::resume`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::plugins::HttpClient;

/// Most reports sent in one callback request.
const REPORTS_PER_CALLBACK: usize = 1000;
/// Message ids remembered for `fail_once` before the oldest are forgotten.
const FAILED_ONCE_MEMORY: usize = 100_000;

/// The fake carrier; stops when dropped.
pub struct SandboxEndpoint {
    addr: SocketAddr,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

struct State {
    /// Carrier name → its callback URL on Pigeon's API.
    callbacks: Mutex<HashMap<String, String>>,
    failed_once: Mutex<FailedOnce>,
    /// Reports to send, by when (Unix ms).
    due: Mutex<BTreeMap<i64, Vec<Report>>>,
    wake: Notify,
    client: HttpClient,
}

#[derive(Default)]
struct FailedOnce {
    ids: HashSet<String>,
    order: std::collections::VecDeque<String>,
}

#[derive(Debug, Clone)]
struct Report {
    carrier: String,
    id: String,
    status: String,
    error_code: Option<String>,
    /// Failed callback attempts so far.
    attempts: u32,
}

#[derive(Deserialize)]
struct SubmitBody {
    message_id: String,
    parts: Vec<serde_json::Value>,
    report: ReportPlan,
    #[serde(default)]
    fail_once: Option<String>,
}

/// `POST /submit-batch` body.
#[derive(Deserialize)]
struct BatchBody {
    messages: Vec<SubmitBody>,
}

#[derive(Deserialize)]
struct ReportPlan {
    status: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    delay_ms: u64,
}

impl SandboxEndpoint {
    /// Listens on a free loopback port.
    pub async fn start(client: HttpClient) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            callbacks: Mutex::default(),
            failed_once: Mutex::default(),
            due: Mutex::default(),
            wake: Notify::new(),
            client,
        });
        let tasks = vec![
            tokio::spawn(serve(listener, state.clone())),
            tokio::spawn(send_reports(state.clone())),
        ];
        Ok(Self { addr, state, tasks })
    }

    /// Makes `carrier` known and returns its base URL; its reports go to
    /// `callback_url` + `/dlr`.
    pub fn register(&self, carrier: &str, callback_url: String) -> String {
        lock(&self.state.callbacks).insert(carrier.to_owned(), callback_url);
        format!("http://{}/{carrier}", self.addr)
    }

    /// Whether `carrier` sends to this fake carrier.
    pub fn serves(&self, carrier: &str) -> bool {
        lock(&self.state.callbacks).contains_key(carrier)
    }

    /// Sends a handset's message to `carrier`'s callback, as a carrier
    /// would: `POST …/inbound` once per part (`messages`, each the JSON the
    /// simulator plugin reads), in the order given. Fails unless every
    /// request is answered 2xx.
    pub async fn send_inbound(
        &self,
        carrier: &str,
        messages: Vec<serde_json::Value>,
    ) -> Result<(), String> {
        let url = lock(&self.state.callbacks)
            .get(carrier)
            .map(|callback| format!("{callback}/inbound"))
            .ok_or_else(|| format!("the sandbox does not serve carrier {carrier}"))?;
        for message in messages {
            let request = Request::post(&url)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(message.to_string())))
                .map_err(|e| e.to_string())?;
            let response = self
                .state
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let _ = response.into_body().collect().await;
            if !status.is_success() {
                return Err(format!("the callback answered {status}"));
            }
        }
        Ok(())
    }

    /// Sends the reports still owed for parts accepted before a restart.
    pub fn resume(&self, carrier: &str, carrier_ids: Vec<String>) {
        let reports: Vec<Report> = carrier_ids
            .into_iter()
            .filter_map(|id| {
                let status = id.rsplit('-').next()?.to_owned();
                let error_code = error_code_for(&status).map(str::to_owned);
                Some(Report {
                    carrier: carrier.to_owned(),
                    id,
                    status,
                    error_code,
                    attempts: 0,
                })
            })
            .collect();
        if !reports.is_empty() {
            tracing::info!(
                carrier,
                count = reports.len(),
                "sandbox: resending delivery reports owed before the restart"
            );
            self.state.schedule(crate::time::now_ms(), reports);
        }
    }
}

impl Drop for SandboxEndpoint {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl State {
    fn schedule(&self, at: i64, reports: Vec<Report>) {
        let mut due = lock(&self.due);
        // The sender sleeps until the earliest due time: wake it only when
        // this one is earlier.
        let earlier = due.keys().next().is_none_or(|&first| at < first);
        due.entry(at).or_default().extend(reports);
        drop(due);
        if earlier {
            self.wake.notify_one();
        }
    }

    /// True the first time `message_id` asks to fail once.
    fn first_failure(&self, message_id: &str) -> bool {
        let mut memory = lock(&self.failed_once);
        if !memory.ids.insert(message_id.to_owned()) {
            return false;
        }
        memory.order.push_back(message_id.to_owned());
        if memory.order.len() > FAILED_ONCE_MEMORY
            && let Some(oldest) = memory.order.pop_front()
        {
            memory.ids.remove(&oldest);
        }
        true
    }

    fn submit(&self, carrier: &str, body: &[u8]) -> (StatusCode, serde_json::Value) {
        if let Some(unknown) = self.unknown_carrier(carrier) {
            return unknown;
        }
        match serde_json::from_slice::<SubmitBody>(body) {
            Ok(submit) => self.submit_one(carrier, submit),
            Err(e) => bad_request(e),
        }
    }

    /// `POST /submit-batch`: each message as `/submit` would take it; a
    /// message it would refuse gets that answer's status (and
    /// `retry_after_ms` for 429) in its place in `results`.
    fn submit_batch(&self, carrier: &str, body: &[u8]) -> (StatusCode, serde_json::Value) {
        if let Some(unknown) = self.unknown_carrier(carrier) {
            return unknown;
        }
        let batch: BatchBody = match serde_json::from_slice(body) {
            Ok(batch) => batch,
            Err(e) => return bad_request(e),
        };
        let results: Vec<serde_json::Value> = batch
            .messages
            .into_iter()
            .map(|submit| match self.submit_one(carrier, submit) {
                (StatusCode::OK, ids) => ids,
                (status, mut error) => {
                    error["status"] = status.as_u16().into();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        error["retry_after_ms"] = 1000.into();
                    }
                    error
                }
            })
            .collect();
        (StatusCode::OK, json!({ "results": results }))
    }

    fn unknown_carrier(&self, carrier: &str) -> Option<(StatusCode, serde_json::Value)> {
        (!lock(&self.callbacks).contains_key(carrier)).then(|| {
            (
                StatusCode::NOT_FOUND,
                json!({"code": "unknown_carrier", "message": format!("no sandbox carrier `{carrier}`")}),
            )
        })
    }

    fn submit_one(&self, carrier: &str, submit: SubmitBody) -> (StatusCode, serde_json::Value) {
        match submit.fail_once.as_deref() {
            Some("retryable") if self.first_failure(&submit.message_id) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"code": "busy", "message": "failing once, as asked"}),
                );
            }
            Some("throttled") if self.first_failure(&submit.message_id) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"code": "throttled", "message": "throttling once, as asked"}),
                );
            }
            _ => {}
        }
        let status = submit.report.status;
        if status.contains('-') || status.is_empty() {
            return (
                StatusCode::BAD_REQUEST,
                json!({"code": "bad_request", "message": "report.status must be a plain word"}),
            );
        }
        let ids: Vec<String> = submit
            .parts
            .iter()
            .map(|_| format!("sim-{}-{status}", crate::ids::new_id("p")))
            .collect();
        let reports = ids
            .iter()
            .map(|id| Report {
                carrier: carrier.to_owned(),
                id: id.clone(),
                status: status.clone(),
                error_code: submit.report.error_code.clone(),
                attempts: 0,
            })
            .collect();
        let delay = submit.report.delay_ms.min(3_600_000) as i64;
        self.schedule(crate::time::now_ms() + delay, reports);
        (StatusCode::OK, json!({"ids": ids}))
    }
}

fn bad_request(e: impl std::fmt::Display) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"code": "bad_request", "message": e.to_string()}),
    )
}

fn error_code_for(status: &str) -> Option<&'static str> {
    match status {
        "undeliverable" => Some("absent_subscriber"),
        "expired" => Some("validity_expired"),
        _ => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let (status, body) = match (request.method(), path.trim_matches('/').split_once('/')) {
        (&Method::POST, Some((carrier, route @ ("submit" | "submit-batch")))) => {
            match Limited::new(request.into_body(), 1 << 20).collect().await {
                Ok(body) if route == "submit" => state.submit(carrier, &body.to_bytes()),
                Ok(body) => state.submit_batch(carrier, &body.to_bytes()),
                Err(e) => bad_request(e),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"code": "not_found", "message": format!("no route {path}")}),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Sends reports as they fall due, in batches per carrier. A callback that
/// fails is tried again a second later, up to 30 times.
async fn send_reports(state: Arc<State>) {
    loop {
        let now = crate::time::now_ms();
        let (due, next): (Vec<Report>, Option<i64>) = {
            let mut pending = lock(&state.due);
            let later = pending.split_off(&(now + 1));
            let due = std::mem::replace(&mut *pending, later);
            (
                due.into_values().flatten().collect(),
                pending.keys().next().copied(),
            )
        };
        if due.is_empty() {
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis((at - now).max(1) as u64)
            });
            tokio::select! {
                _ = state.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut by_carrier: HashMap<String, Vec<Report>> = HashMap::new();
        for report in due {
            by_carrier
                .entry(report.carrier.clone())
                .or_default()
                .push(report);
        }
        let mut sends = Vec::new();
        for (carrier, reports) in by_carrier {
            let Some(url) = lock(&state.callbacks).get(&carrier).cloned() else {
                continue;
            };
            for chunk in reports.chunks(REPORTS_PER_CALLBACK) {
                sends.push(send_batch(
                    state.clone(),
                    format!("{url}/dlr"),
                    chunk.to_vec(),
                ));
            }
        }
        // One request per carrier and chunk, all at once.
        let sends: Vec<_> = sends.into_iter().map(tokio::spawn).collect();
        for send in sends {
            let _ = send.await;
        }
    }
}

async fn send_batch(state: Arc<State>, url: String, reports: Vec<Report>) {
    let at = crate::time::now_ms();
    let body: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| json!({"id": r.id, "status": r.status, "error_code": r.error_code, "at": at}))
        .collect();
    let request = Request::post(&url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::Value::from(body).to_string(),
        )));
    let outcome = match request {
        Ok(request) => match state.client.request(request).await {
            Ok(response) if response.status().is_success() => {
                let _ = response.into_body().collect().await;
                return;
            }
            Ok(response) => format!("answered {}", response.status()),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let retry: Vec<Report> = reports
        .into_iter()
        .filter(|r| r.attempts < 30)
        .map(|mut r| {
            r.attempts += 1;
            r
        })
        .collect();
    // The carrier's name, not the URL: the URL holds its callback secret.
    let carrier = retry.first().map(|r| r.carrier.clone()).unwrap_or_default();
    tracing::warn!(%carrier, error = %outcome, retrying = retry.len(), "sandbox: delivery report callback failed");
    state.schedule(crate::time::now_ms() + 1000, retry);
}
