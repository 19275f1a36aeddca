//! A webhook receiver for tests: a small hyper server on 127.0.0.1 that
//! records what it gets and answers with a programmable status, and the
//! check of Pigeon's signature, computed here rather than by Pigeon's code.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;

use super::wait_until;

#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Value,
    /// The status the receiver answered with.
    pub answered: u16,
}

pub struct Shared {
    pub requests: Mutex<Vec<Received>>,
    /// Statuses to answer with, in order; then `fallback`.
    pub script: Mutex<VecDeque<u16>>,
    pub fallback: AtomicU16,
    /// How long to wait before answering.
    pub delay_ms: AtomicU64,
    /// Requests that have arrived (counted before any delay).
    pub arrived: AtomicUsize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            requests: Mutex::default(),
            script: Mutex::default(),
            fallback: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            arrived: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next answers, in order, before falling back to the default.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    pub fn answer_by_default(&self, status: u16) {
        self.shared.fallback.store(status, Ordering::SeqCst);
    }

    pub fn delay_answers(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests about one message, in the order they arrived.
    pub fn requests_for(&self, message_id: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.json["message_id"] == message_id)
            .collect()
    }

    pub async fn wait_for_requests(&self, message_id: &str, count: usize) -> Vec<Received> {
        wait_until(
            &format!("{count} webhook requests for {message_id}"),
            || async {
                let got = self.requests_for(message_id);
                (got.len() >= count).then_some(got)
            },
        )
        .await
    }
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    shared.arrived.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let answered = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.fallback.load(Ordering::SeqCst));
    shared.requests.lock().unwrap().push(Received {
        method: parts.method,
        path: parts.uri.to_string(),
        headers: parts.headers,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body,
        answered,
    });
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let text = if answered < 300 {
        "ok"
    } else {
        "receiver says no"
    };
    Response::builder()
        .status(answered)
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// Checks `Pigeon-Signature: t=<secs>,v1=<hex HMAC-SHA256("<t>.<body>")>`
/// with an HMAC computed here, not by Pigeon's code.
pub fn assert_signed(request: &Received, secret: &str) {
    let header = request
        .headers
        .get("pigeon-signature")
        .expect("a Pigeon-Signature header")
        .to_str()
        .unwrap();
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature header {header:?}"));
    let t: i64 = t.parse().unwrap();
    let now = pigeon::time::now_ms() / 1000;
    assert!(
        (now - t).abs() < 300,
        "signature time {t} is not now ({now})"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "signature of {}", request.json);
}

/// Whether any `v1` signature of the request's `Pigeon-Signature` header is
/// the HMAC under `secret` (computed here), and how many `v1` it carries.
pub fn signed_with(request: &Received, secret: &str) -> (bool, usize) {
    let header = request
        .headers
        .get("pigeon-signature")
        .expect("a Pigeon-Signature header")
        .to_str()
        .unwrap();
    let mut items = header.split(',');
    let t = items
        .next()
        .and_then(|t| t.strip_prefix("t="))
        .unwrap_or_else(|| panic!("malformed signature header {header:?}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signatures: Vec<&str> = items
        .map(|v| {
            v.strip_prefix("v1=")
                .unwrap_or_else(|| panic!("{header:?}"))
        })
        .collect();
    (signatures.contains(&expected.as_str()), signatures.len())
}
