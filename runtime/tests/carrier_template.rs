//! The copyable adapter in `examples/carrier-template` works end to end:
//! built for wasm32-wasip2 by build.rs, configured as a `[[carriers]]` entry
//! by its `.wasm` path, it submits to a mock "Acme SMS" (a real HTTP server
//! on loopback speaking exactly the protocol `src/lib.rs` assumes), the mock
//! calls back with signed delivery reports on the URL the plugin gave it,
//! which is the carrier's callback URL that `GET /v1/carriers` shows, and
//! the messages reach `delivered`.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, new_tenant, wait_until};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pigeon::config::CarrierConfig;
use serde_json::{Value, json};
use sha2::Sha256;

const USERNAME: &str = "pigeon";
const PASSWORD: &str = "acme-password";
const WEBHOOK_SECRET: &str = "acme-webhook-secret";

/// One `POST /v1/sms` the mock received.
#[derive(Debug, Clone)]
struct Submitted {
    path: String,
    authorization: String,
    content_type: String,
    form: Vec<(String, String)>,
}

impl Submitted {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the mock saw: submissions, and the status Pigeon answered each
/// delivery report with.
#[derive(Default)]
struct Seen {
    submitted: Vec<Submitted>,
    report_statuses: Vec<u16>,
}

/// A mock Acme SMS. `POST /v1/sms` with the right basic auth answers
/// `200 {"id": "acme-<n>"}` and, shortly after, POSTs a signed `DELIVRD`
/// report for that id to the request's `callback_url`, as Acme would. Wrong
/// credentials are `401`, other paths `404`.
async fn mock_acme() -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(req, log).await) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    log: Arc<Mutex<Seen>>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let submitted = Submitted {
        path: req.uri().path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        form: Vec::new(),
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let submitted = Submitted {
        form: pigeon_sdk::form::Params::parse(&String::from_utf8_lossy(&body)).into_vec(),
        ..submitted
    };
    let reply = |status: u16, body: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    if submitted.path != "/v1/sms" {
        return reply(404, json!({"error": "not_found", "detail": "no such path"}));
    }
    if submitted.authorization != basic_auth(USERNAME, PASSWORD) {
        return reply(
            401,
            json!({"error": "unauthorized", "detail": "bad credentials"}),
        );
    }
    let callback_url = submitted.field("callback_url").map(str::to_owned);
    let id = {
        let mut seen = log.lock().unwrap();
        seen.submitted.push(submitted);
        format!("acme-{}", seen.submitted.len())
    };
    if let Some(url) = callback_url {
        tokio::spawn(report_delivered(url, id.clone(), log));
    }
    reply(200, json!({ "id": id }))
}

/// What Acme does once the handset has the SMS: a signed form POST.
async fn report_delivered(url: String, id: String, log: Arc<Mutex<Seen>>) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let body = format!("id={id}&status=DELIVRD&err=000&ts=1764201600");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let client: HyperClient<_, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let request = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-acme-signature", signature)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let status = client.request(request).await.unwrap().status();
    log.lock().unwrap().report_statuses.push(status.as_u16());
}

fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn wait_for_submissions(seen: &Arc<Mutex<Seen>>, count: usize) -> Vec<Submitted> {
    wait_until(&format!("{count} submission(s) at the mock"), || async {
        let submitted = seen.lock().unwrap().submitted.clone();
        (submitted.len() >= count).then_some(submitted)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carrier_template_sends_and_is_delivered_end_to_end() {
    assert_eq!(basic_auth("pigeon", "s3cret"), "Basic cGlnZW9uOnMzY3JldA==");
    let (mock, seen) = mock_acme().await;
    let server = TestServer::start_with(|c| {
        c.carriers.push(CarrierConfig {
            plugin: env!("PIGEON_CARRIER_TEMPLATE").into(),
            base_url: Some(mock),
            settings: json!({
                "username": USERNAME,
                "password": PASSWORD,
                "default_sender": "Pigeon",
                "webhook_secret": WEBHOOK_SECRET,
            }),
            ..CarrierConfig::new("template", "x")
        })
    })
    .await;

    // The operator sees the carrier, its plugin and its callback URL.
    let (status, list) = server.admin().get("/v1/carriers").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let carrier = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "template")
        .unwrap_or_else(|| panic!("no carrier `template` in {list}"))
        .clone();
    assert_eq!(carrier["state"], "active", "{carrier}");
    assert_eq!(carrier["plugin"]["name"], "acme", "{carrier}");
    assert_eq!(carrier["plugin"]["contract_version"], "0.3.0");
    assert_eq!(carrier["plugin"]["reload_error"], Value::Null);
    let callback_url = carrier["callback_url"].as_str().unwrap().to_owned();
    let prefix = format!("http://{}/v1/carriers/template/callback/", server.addr);
    assert!(callback_url.starts_with(&prefix), "{callback_url}");

    // A live developer key's message goes to the carrier (not the sandbox).
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let dev = &tenant.developer;
    let id = dev
        .send_message(json!({"to": "+84912345678", "body": "Your code is 123456", "type": "otp"}))
        .await;
    let submitted = wait_for_submissions(&seen, 1).await.remove(0);
    assert!(
        submitted
            .content_type
            .starts_with("application/x-www-form-urlencoded"),
        "{}",
        submitted.content_type
    );
    let report_url = format!("{callback_url}/dlr");
    for (name, value) in [
        ("to", "+84912345678"),
        ("from", "Pigeon"),
        ("text", "Your code is 123456"),
        ("callback_url", report_url.as_str()),
    ] {
        assert_eq!(submitted.field(name), Some(value), "form field {name}");
    }
    assert_eq!(submitted.field("udh"), None, "a single SMS has no UDH");

    // The mock's signed report makes it delivered.
    let delivered = dev.wait_for_status(&id, "delivered").await;
    let part = &delivered["parts"][0];
    assert_eq!(part["carrier"], "template", "{delivered}");
    assert_eq!(part["carrier_message_id"], "acme-1", "{delivered}");
    assert_eq!(part["attempts"], 1, "{delivered}");

    // A two-part message: one request per part, each with its UDH, the
    // continuation carrying the first id to the second call; a report each.
    let long = "Your order 4521 has shipped and will arrive tomorrow between 10:00 and 14:00. \
                Track it in the app, or reply STOP to stop these messages. Thank you for \
                shopping with us, we hope to see you again soon!";
    let id = dev
        .send_message(json!({"to": "+84912345679", "body": long, "from": "Shop"}))
        .await;
    let submitted = wait_for_submissions(&seen, 3).await;
    let parts = &submitted[1..];
    let udhs: Vec<&str> = parts.iter().map(|s| s.field("udh").unwrap()).collect();
    assert_eq!(udhs[0].len(), 12, "{udhs:?}");
    assert!(
        udhs[0].ends_with("0201") && udhs[1].ends_with("0202"),
        "{udhs:?}"
    );
    let text: String = parts.iter().map(|s| s.field("text").unwrap()).collect();
    assert_eq!(text, long);
    assert!(parts.iter().all(|s| s.field("from") == Some("Shop")));
    let delivered = dev.wait_for_status(&id, "delivered").await;
    let ids: Vec<&str> = delivered["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["carrier_message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme-2", "acme-3"], "{delivered}");

    // Pigeon took every report (the plugin answers 200 OK) and counted them.
    let carrier = wait_until("the carrier's counters", || async {
        let (_, list) = server.admin().get("/v1/carriers").await;
        let carrier = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "template")
            .cloned()
            .unwrap();
        let answered = seen.lock().unwrap().report_statuses.len();
        (carrier["counters"]["dlrs"] == 3 && answered == 3).then_some(carrier)
    })
    .await;
    assert_eq!(carrier["counters"]["submitted"], 2, "{carrier}");
    assert_eq!(carrier["counters"]["parts_submitted"], 3, "{carrier}");
    assert_eq!(carrier["counters"]["callbacks_rejected"], 0, "{carrier}");
    assert_eq!(seen.lock().unwrap().report_statuses, [200, 200, 200]);
    server.stop().await;
}
