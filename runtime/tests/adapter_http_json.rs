//! The `http-json` plugin end to end, configured (by settings only) for a
//! mock carrier shaped like Telnyx's Messaging API on loopback: Pigeon posts
//! the rendered JSON body to `/v2/messages` with a bearer token, the mock
//! answers `{"data": {"id": …}}` or a documented error, and then posts
//! status webhooks to the `webhook_url` it was given and an inbound message
//! to `…/inbound`, as the carrier would.

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

const CARRIER: &str = "telnyx-us";
const SECRET: &str = "httpjsoncallbacksecret01234567";
const TOKEN: &str = "KEY0123456789ABCDEF";
/// The mock refuses this recipient as Telnyx refuses an invalid `to`.
const REFUSED: &str = "+12015550199";

/// The carrier's configuration: the README's worked example.
fn settings() -> Value {
    json!({
        "path": "/v2/messages",
        "bearer_token": TOKEN,
        "body": {
            "from": "{{from}}", "to": "{{to}}", "text": "{{text}}", "type": "SMS",
            "webhook_url": "{{callback_url}}/dlr", "use_profile_webhooks": false
        },
        "response": {"id_path": "data.id", "success_status": [200]},
        "errors": {
            "code_path": "errors.0.code", "reason_path": "errors.0.detail",
            "by_code": {"40300": "permanent", "40006": "throttled"}
        },
        "dlr": {
            "id_path": "data.payload.id",
            "status_path": "data.payload.to.0.status",
            "status_map": {
                "queued": "enroute", "sending": "enroute", "sent": "enroute",
                "delivered": "delivered", "sending_failed": "rejected",
                "delivery_failed": "undeliverable", "delivery_unconfirmed": "unknown"
            },
            "error_code_path": "data.payload.errors.0.code",
            "timestamp_path": "data.occurred_at"
        },
        "inbound": {
            "from_path": "data.payload.from.phone_number",
            "to_path": "data.payload.to.0.phone_number",
            "text_path": "data.payload.text",
            "id_path": "data.payload.id",
            "timestamp_path": "data.payload.received_at"
        }
    })
}

/// One request the mock received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    body: Value,
}

/// A mock of `POST /v2/messages`.
async fn mock_carrier() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
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
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (authorization, content_type) =
                                (header("authorization"), header("content-type"));
                            let method = req.method().to_string();
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let seq = {
                                let mut log = log.lock().unwrap();
                                log.push(Seen {
                                    method,
                                    path: path.clone(),
                                    authorization: authorization.clone(),
                                    content_type,
                                    body: body.clone(),
                                });
                                log.len() - 1
                            };
                            let (status, answer) = answer(&path, &authorization, &body, seq);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
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

/// The carrier's answer, as its documentation shows them.
fn answer(path: &str, authorization: &str, body: &Value, seq: usize) -> (u16, Value) {
    if path != "/v2/messages" {
        return (
            404,
            json!({"errors": [{"code": "10005", "title": "Resource not found"}]}),
        );
    }
    if authorization != format!("Bearer {TOKEN}") {
        return (
            401,
            json!({"errors": [{"code": "10009", "title": "Authentication failed"}]}),
        );
    }
    let to = body["to"].as_str().unwrap_or_default();
    if to == REFUSED {
        return (
            400,
            json!({"errors": [{
                "code": "40310",
                "title": "Invalid 'to' address",
                "detail": "The 'to' address is not a valid phone number."
            }]}),
        );
    }
    (
        200,
        json!({"data": {
            "record_type": "message",
            "direction": "outbound",
            "id": format!("tx-{seq}"),
            "type": "SMS",
            "from": {"phone_number": body["from"]},
            "to": [{"phone_number": to, "status": "queued"}],
            "text": body["text"],
            "parts": 1,
            "webhook_url": body["webhook_url"],
        }}),
    )
}

/// A status webhook for message `id`.
fn status_event(id: &str, to: &str, status: &str, error: Option<&str>) -> Value {
    let errors: Vec<Value> = error
        .map(|code| json!({"code": code, "title": "Undeliverable"}))
        .into_iter()
        .collect();
    json!({
        "data": {
            "event_type": "message.finalized",
            "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
            "occurred_at": "2024-05-01T10:00:00.000+00:00",
            "payload": {
                "id": id,
                "direction": "outbound",
                "to": [{"phone_number": to, "status": status}],
                "errors": errors,
            },
            "record_type": "event"
        },
        "meta": {"attempt": 1}
    })
}

async fn pigeon_with_carrier(base_url: String) -> TestServer {
    TestServer::start_with(move |config| {
        let mut carrier = CarrierConfig::new(CARRIER, "http-json");
        carrier.base_url = Some(base_url);
        carrier.settings = settings();
        carrier.countries = vec!["US".into()];
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

/// What the carrier does to call a webhook: POST JSON.
async fn post_json(url: &str, body: &Value) -> StatusCode {
    let client: HyperClient<_, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let request = Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client.request(request).await.unwrap().status()
}

async fn wait_for_requests(seen: &Arc<Mutex<Vec<Seen>>>, count: usize) -> Vec<Seen> {
    wait_until(&format!("{count} request(s) at the mock"), || async {
        let seen = seen.lock().unwrap().clone();
        (seen.len() >= count).then_some(seen)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_out_as_configured_and_is_delivered() {
    let (base_url, seen) = mock_carrier().await;
    let server = pigeon_with_carrier(base_url).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let id = tenant
        .developer
        .send_message(json!({"to": "+12015550123", "from": "+12015550100", "body": "Your code is 123456", "type": "otp"}))
        .await;

    let request = wait_for_requests(&seen, 1).await.remove(0);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v2/messages");
    assert_eq!(request.authorization, format!("Bearer {TOKEN}"));
    assert_eq!(request.content_type, "application/json");
    let webhook_url = format!("{}/dlr", callback_base(&server));
    assert_eq!(
        request.body,
        json!({
            "from": "+12015550100", "to": "+12015550123", "text": "Your code is 123456",
            "type": "SMS", "webhook_url": webhook_url, "use_profile_webhooks": false
        })
    );

    let sent = tenant.developer.wait_for_status(&id, "sent").await;
    assert_eq!(sent["parts"][0]["carrier_message_id"], "tx-0", "{sent}");
    assert_eq!(sent["parts"][0]["carrier"], CARRIER);

    // message.sent first (intermediate), then message.finalized delivered.
    let status = post_json(
        &webhook_url,
        &status_event("tx-0", "+12015550123", "sent", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let status = post_json(
        &webhook_url,
        &status_event("tx-0", "+12015550123", "delivered", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let delivered = tenant.developer.wait_for_status(&id, "delivered").await;
    assert_eq!(delivered["parts"][0]["status"], "delivered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_failures_and_failed_reports_to_undelivered() {
    let (base_url, seen) = mock_carrier().await;
    let server = pigeon_with_carrier(base_url).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;

    // 400 with code 40310: permanent, with the carrier's code, not retried.
    let refused = tenant
        .developer
        .send_message(json!({"to": REFUSED, "body": "hello"}))
        .await;
    let failed = tenant.developer.wait_for_status(&refused, "failed").await;
    assert_eq!(failed["parts"][0]["error_code"], "40310", "{failed}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a permanent failure is not retried"
    );

    // Accepted, then delivery_failed with code 40008.
    let lost = tenant
        .developer
        .send_message(json!({"to": "+12015550124", "body": "hello again"}))
        .await;
    let sent = tenant.developer.wait_for_status(&lost, "sent").await;
    let carrier_id = sent["parts"][0]["carrier_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = post_json(
        &format!("{}/dlr", callback_base(&server)),
        &status_event(
            &carrier_id,
            "+12015550124",
            "delivery_failed",
            Some("40008"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let undelivered = tenant.developer.wait_for_status(&lost, "undelivered").await;
    assert_eq!(
        undelivered["parts"][0]["error_code"], "40008",
        "{undelivered}"
    );

    // A webhook the settings cannot read is refused.
    let status = post_json(
        &format!("{}/dlr", callback_base(&server)),
        &json!({"data": {"payload": {"to": []}}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_message_is_listed() {
    let (base_url, _seen) = mock_carrier().await;
    let server = pigeon_with_carrier(base_url).await;
    let event = json!({
        "data": {
            "event_type": "message.received",
            "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
            "occurred_at": "2024-05-01T10:00:00.588+00:00",
            "payload": {
                "direction": "inbound",
                "id": "84cca175-9755-4859-b67f-4730d7f58aa3",
                "type": "SMS",
                "from": {"phone_number": "+12015550123", "carrier": "T-Mobile USA", "line_type": "long_code"},
                "to": [{"phone_number": "+12015550100", "status": "webhook_delivered"}],
                "text": "Hello from a phone",
                "received_at": "2024-05-01T10:00:00.503+00:00",
                "parts": 1
            },
            "record_type": "event"
        }
    });
    let status = post_json(&format!("{}/inbound", callback_base(&server)), &event).await;
    assert_eq!(status, StatusCode::OK);

    let listed =
        common::wait_for_inbound(&server.admin(), "84cca175-9755-4859-b67f-4730d7f58aa3").await;
    assert_eq!(listed["carrier"], CARRIER);
    assert_eq!(listed["from"], "+12015550123");
    assert_eq!(listed["to"], "+12015550100");
    assert_eq!(listed["body"], "Hello from a phone");
    server.stop().await;
}
