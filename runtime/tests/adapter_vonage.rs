//! The `vonage` plugin end to end, against a mock Vonage SMS API on
//! loopback: Pigeon submits to `POST /sms/json` as Vonage documents it, the
//! mock answers like Vonage (one `message-id` per part, or an error
//! `status`), and then calls Pigeon's callback URL as Vonage would, with
//! delivery receipts (`…/dlr`) and an inbound SMS (`…/inbound`).

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{TestServer, new_tenant, wait_until};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pigeon::config::CarrierConfig;
use serde_json::{Value, json};

const CARRIER: &str = "vonage-gb";
const SECRET: &str = "vonagecallbacksecret0123456789";
const API_KEY: &str = "abcd1234";
const API_SECRET: &str = "s3cr3tV0nage";

/// One request the mock received: path and decoded form fields.
#[derive(Debug, Clone)]
struct Submitted {
    path: String,
    content_type: String,
    form: Vec<(String, String)>,
}

impl Submitted {
    fn field(&self, name: &str) -> &str {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no form field {name} in {:?}", self.form))
    }
}

/// Vonage's splitting: GSM 160/153 characters, unicode 70/67.
fn vonage_parts(text: &str, unicode: bool) -> usize {
    let units = if unicode {
        text.encode_utf16().count()
    } else {
        text.chars().count()
    };
    let (single, multi) = if unicode { (70, 67) } else { (160, 153) };
    if units <= single {
        1
    } else {
        units.div_ceil(multi)
    }
}

/// A mock of `POST /sms/json`. Recipients ending in `0007` are barred
/// (status 7); others are accepted with one id per part.
async fn mock_vonage() -> (String, Arc<Mutex<Vec<Submitted>>>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Submitted>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let form: Vec<(String, String)> =
                                pigeon_sdk::form::Params::parse(&String::from_utf8_lossy(&body))
                                    .into_vec();
                            let submitted = Submitted {
                                path: path.clone(),
                                content_type,
                                form,
                            };
                            let answer = answer(&submitted, log.lock().unwrap().len());
                            log.lock().unwrap().push(submitted);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(if path == "/sms/json" { 200 } else { 404 })
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// Vonage's answer to a submission.
fn answer(request: &Submitted, seq: usize) -> Value {
    let to = request.field("to").to_owned();
    if to.ends_with("0007") {
        return json!({"message-count": "1", "messages": [
            {"to": to, "status": "7", "error-text": "Number barred."}
        ]});
    }
    let parts = vonage_parts(request.field("text"), request.field("type") == "unicode");
    let messages: Vec<Value> = (0..parts)
        .map(|i| {
            json!({
                "to": to,
                "message-id": format!("0A00{seq:04}{i:04}"),
                "status": "0",
                "remaining-balance": "3.14159265",
                "message-price": "0.03330000",
                "network": "23410",
            })
        })
        .collect();
    json!({"message-count": parts.to_string(), "messages": messages})
}

/// Pigeon with one `vonage` carrier for Great Britain, pointed at the mock.
async fn pigeon_with_vonage(base_url: String) -> TestServer {
    TestServer::start_with(move |config| {
        let mut carrier = CarrierConfig::new(CARRIER, "vonage");
        carrier.base_url = Some(base_url);
        carrier.settings = json!({
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "default_from": "Pigeon",
        });
        carrier.countries = vec!["GB".into()];
        carrier.callback_secret = Some(SECRET.into());
        config.carriers.push(carrier);
    })
    .await
}

fn callback_base(server: &TestServer) -> String {
    format!(
        "http://{}/v1/carriers/{CARRIER}/callback/{SECRET}",
        server.addr
    )
}

/// What Vonage does to call a webhook: a plain HTTP request.
async fn call_pigeon(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: String,
) -> StatusCode {
    let client: HyperClient<_, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    response.status()
}

async fn wait_for_submissions(seen: &Arc<Mutex<Vec<Submitted>>>, count: usize) -> Vec<Submitted> {
    wait_until(&format!("{count} submission(s) at the mock"), || async {
        let seen = seen.lock().unwrap().clone();
        (seen.len() >= count).then_some(seen)
    })
    .await
}

/// Encodes pairs as a query string or form body.
fn query(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_out_as_documented_and_is_delivered() {
    let (base_url, seen) = mock_vonage().await;
    let server = pigeon_with_vonage(base_url).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let id = tenant
        .developer
        .send_message(json!({"to": "+447400123456", "body": "Your code is 123456", "type": "otp"}))
        .await;

    let submitted = wait_for_submissions(&seen, 1).await.remove(0);
    assert_eq!(submitted.path, "/sms/json");
    assert!(
        submitted
            .content_type
            .starts_with("application/x-www-form-urlencoded"),
        "{}",
        submitted.content_type
    );
    let callback = format!("{}/dlr", callback_base(&server));
    for (name, value) in [
        ("api_key", API_KEY),
        ("api_secret", API_SECRET),
        ("from", "Pigeon"),
        ("to", "447400123456"),
        ("text", "Your code is 123456"),
        ("type", "text"),
        ("status-report-req", "1"),
        ("callback", callback.as_str()),
        ("client-ref", id.as_str()),
    ] {
        assert_eq!(submitted.field(name), value, "form field {name}");
    }

    let sent = tenant.developer.wait_for_status(&id, "sent").await;
    let vonage_id = sent["parts"][0]["carrier_message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no carrier id: {sent}"))
        .to_owned();
    assert_eq!(vonage_id, "0A0000000000");
    assert_eq!(sent["parts"][0]["carrier"], CARRIER);

    // Vonage's delivery receipt: a GET with the documented fields.
    let receipt = query(&[
        ("msisdn", "447400123456"),
        ("to", "Pigeon"),
        ("network-code", "23410"),
        ("messageId", &vonage_id),
        ("price", "0.03330000"),
        ("status", "delivered"),
        ("scts", "2001011400"),
        ("err-code", "0"),
        ("api-key", API_KEY),
        ("client-ref", &id),
        ("message-timestamp", "2020-01-01 12:00:00"),
    ]);
    let status = call_pigeon("GET", &format!("{callback}?{receipt}"), None, String::new()).await;
    assert_eq!(status, StatusCode::OK);
    let delivered = tenant.developer.wait_for_status(&id, "delivered").await;
    assert_eq!(delivered["parts"][0]["status"], "delivered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_unicode_message_is_one_request_with_one_id_per_part() {
    let (base_url, seen) = mock_vonage().await;
    let server = pigeon_with_vonage(base_url).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let body = "Привет! Ваш заказ №4521 отправлен и прибудет завтра между 10:00 и 14:00. Спасибо за покупку!";
    let id = tenant
        .developer
        .send_message(json!({"to": "+447400123457", "body": body}))
        .await;
    let submitted = wait_for_submissions(&seen, 1).await.remove(0);
    assert_eq!(submitted.field("type"), "unicode");
    assert_eq!(submitted.field("text"), body);

    let sent = tenant.developer.wait_for_status(&id, "sent").await;
    assert_eq!(sent["encoding"], "ucs2");
    assert_eq!(sent["segments"], 2, "{sent}");
    let ids: Vec<String> = sent["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["carrier_message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["0A0000000000", "0A0000000001"]);

    // One receipt per part, as POSTed JSON (the dashboard's other option).
    let callback = format!("{}/dlr", callback_base(&server));
    for vonage_id in &ids {
        let receipt = json!({
            "msisdn": "447400123457", "to": "Pigeon", "network-code": "23410",
            "messageId": vonage_id, "price": "0.03330000", "status": "delivered",
            "scts": "2001011400", "err-code": "0", "api-key": API_KEY, "client-ref": id,
            "message-timestamp": "2020-01-01 12:00:00",
        });
        let status = call_pigeon(
            "POST",
            &callback,
            Some("application/json"),
            receipt.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    tenant.developer.wait_for_status(&id, "delivered").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barred_number_fails_and_a_failed_receipt_is_undelivered() {
    let (base_url, seen) = mock_vonage().await;
    let server = pigeon_with_vonage(base_url).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;

    // Status 7 (Number Barred): permanent, the message never left.
    let barred = tenant
        .developer
        .send_message(json!({"to": "+447400120007", "body": "hello"}))
        .await;
    let failed = tenant.developer.wait_for_status(&barred, "failed").await;
    assert_eq!(
        failed["parts"][0]["error_code"], "number_barred",
        "{failed}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a permanent failure is not retried"
    );

    // Accepted, then a `failed` receipt with err-code 2 (absent subscriber), as a form POST.
    let lost = tenant
        .developer
        .send_message(json!({"to": "+447400123458", "body": "hello again"}))
        .await;
    let sent = tenant.developer.wait_for_status(&lost, "sent").await;
    let vonage_id = sent["parts"][0]["carrier_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let receipt = query(&[
        ("msisdn", "447400123458"),
        ("messageId", &vonage_id),
        ("status", "failed"),
        ("err-code", "2"),
        ("client-ref", &lost),
        ("message-timestamp", "2020-01-01 12:00:00"),
    ]);
    let status = call_pigeon(
        "POST",
        &format!("{}/dlr", callback_base(&server)),
        Some("application/x-www-form-urlencoded"),
        receipt,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let undelivered = tenant.developer.wait_for_status(&lost, "undelivered").await;
    assert_eq!(undelivered["parts"][0]["error_code"], "2", "{undelivered}");

    // A receipt the plugin cannot read is refused, so Vonage retries it.
    let status = call_pigeon(
        "GET",
        &format!("{}/dlr?status=delivered", callback_base(&server)),
        None,
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_sms_is_listed() {
    let (base_url, _seen) = mock_vonage().await;
    let server = pigeon_with_vonage(base_url).await;
    let inbound = query(&[
        ("msisdn", "447400123456"),
        ("to", "447700900000"),
        ("messageId", "0A0000001234567B"),
        ("text", "Hello from a phone"),
        ("type", "text"),
        ("keyword", "HELLO"),
        ("api-key", API_KEY),
        ("message-timestamp", "2020-01-01 12:00:00"),
    ]);
    let url = format!("{}/inbound?{inbound}", callback_base(&server));
    assert_eq!(
        call_pigeon("GET", &url, None, String::new()).await,
        StatusCode::OK
    );

    let listed = common::wait_for_inbound(&server.admin(), "0A0000001234567B").await;
    assert_eq!(listed["carrier"], CARRIER);
    assert_eq!(listed["from"], "+447400123456");
    assert_eq!(listed["to"], "+447700900000");
    assert_eq!(listed["body"], "Hello from a phone");
    server.stop().await;
}
