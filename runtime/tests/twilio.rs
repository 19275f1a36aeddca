//! The Twilio-compatible door over HTTP, as an application moved from
//! Twilio uses it: Basic `AccountSid:AuthToken`, form bodies, Twilio's
//! resource and error shapes, Twilio-form status callbacks and inbound
//! webhooks signed as Twilio signs (checked here with HMAC-SHA1 computed
//! by the test, not by Pigeon's code), TwiML replies, and the JSON API's
//! rules holding on this door because both share one accept path.
//! `tests/python/test_twilio.py` drives the same door with Twilio's own
//! Python SDK.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use common::{Client, Reply, Tenant, TestServer, new_tenant, own_number, wait_until};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use serde_json::json;

const NUMBER: &str = "+84912340700";
const HANDSET: &str = "+84987650700";

/// An application's Twilio client: an account's credentials, against
/// Pigeon. `issue` makes them as the account's admin.
#[derive(Clone)]
struct Door {
    client: Client,
    sid: String,
    token: String,
}

impl Door {
    async fn issue(tenant: &Tenant) -> Self {
        let (status, created) = tenant
            .admin
            .post(
                &format!("/v1/accounts/{}/twilio-credentials", tenant.account_id),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        Self {
            client: tenant.developer.without_key(),
            sid: created["account_sid"].as_str().unwrap().to_owned(),
            token: created["auth_token"].as_str().unwrap().to_owned(),
        }
    }

    fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    fn messages(&self) -> String {
        format!("/2010-04-01/Accounts/{}/Messages.json", self.sid)
    }

    fn message(&self, message_sid: &str) -> String {
        format!(
            "/2010-04-01/Accounts/{}/Messages/{message_sid}.json",
            self.sid
        )
    }

    /// A request, form-encoded, with HTTP Basic `sid:token`.
    async fn request(&self, method: Method, path: &str, form: &[(&str, &str)]) -> Reply {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.sid, self.token));
        let body = (!form.is_empty()).then(|| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish()
                .into_bytes()
        });
        let headers = [
            ("authorization", format!("Basic {basic}")),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.client.send(method, path, body, &headers).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[]).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.request(Method::POST, path, form).await
    }

    /// `POST Messages.json`.
    async fn send(&self, form: &[(&str, &str)]) -> Reply {
        self.post(&self.messages(), form).await
    }
}

fn assert_twilio_error(reply: &Reply, status: StatusCode, code: u64) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert_eq!(reply.body["status"], status.as_u16(), "{}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
}

/// Twilio's signature, computed here: base64(HMAC-SHA1(token, url + sorted
/// name/value pairs)).
fn twilio_signature(token: &str, url: &str, form: &[(String, String)]) -> String {
    let mut sorted = form.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in &sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A form request a receiver got.
#[derive(Debug, Clone)]
struct FormRequest {
    path: String,
    content_type: String,
    signature: String,
    form: Vec<(String, String)>,
}

impl FormRequest {
    fn get(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An application's webhook endpoint: records form posts, answers each
/// with `answer` (TwiML or nothing).
struct App {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<FormRequest>>>,
}

impl App {
    async fn start(answer: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let recording = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recording = recording.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let recording = recording.clone();
                        async move {
                            let header = |name: &str| {
                                request
                                    .headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let (content_type, signature) =
                                (header("content-type"), header("x-twilio-signature"));
                            let path = request.uri().path().to_owned();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let form = form_urlencoded::parse(&body).into_owned().collect();
                            recording.lock().unwrap().push(FormRequest {
                                path,
                                content_type,
                                signature,
                                form,
                            });
                            let response = hyper::Response::builder()
                                .header("content-type", "text/xml")
                                .body(Full::new(Bytes::from_static(answer.as_bytes())))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, received }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn wait_for(&self, what: &str, matches: impl Fn(&FormRequest) -> bool) -> FormRequest {
        wait_until(what, || async {
            self.received
                .lock()
                .unwrap()
                .iter()
                .find(|r| matches(r))
                .cloned()
        })
        .await
    }
}

async fn acme(server: &TestServer) -> (Tenant, String) {
    let acme = new_tenant(&server.admin(), "acme").await;
    let number = own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    (acme, number)
}

async fn start() -> TestServer {
    TestServer::start_with(|config| config.senders.require_owned = true).await
}

#[tokio::test]
async fn credentials_are_shown_once_rotated_revoked_and_kept_to_their_account() {
    let server = start().await;
    let (acme, _) = acme(&server).await;
    let other = new_tenant(&server.admin(), "other").await;
    let path = format!("/v1/accounts/{}/twilio-credentials", acme.account_id);

    let (status, _) = acme.developer.post(&path, json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "developers do not make credentials"
    );
    let (status, _) = other.admin.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another account's admin");
    let (status, _) = acme.admin.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "none yet");

    let door = Door::issue(&acme).await;
    assert!(
        door.sid.starts_with("AC") && door.sid.len() == 34,
        "{}",
        door.sid
    );
    assert!(door.sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(door.token.len(), 32);
    let (status, shown) = acme.admin.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["account_sid"], door.sid.as_str());
    assert!(
        !shown.to_string().contains(&door.token),
        "the token is shown once"
    );

    let unauthenticated = StatusCode::UNAUTHORIZED;
    assert_eq!(door.get(&door.messages()).await.status, StatusCode::OK);
    let wrong = door.with_token(&"0".repeat(32));
    assert_twilio_error(&wrong.get(&door.messages()).await, unauthenticated, 20003);
    // Another account's SID in the path, with this account's credentials.
    let other_door = Door::issue(&other).await;
    assert_twilio_error(
        &door.get(&other_door.messages()).await,
        unauthenticated,
        20003,
    );

    // A new token: the same SID, the old token refused.
    let rotated = Door::issue(&acme).await;
    assert_eq!(rotated.sid, door.sid);
    assert_twilio_error(&door.get(&door.messages()).await, unauthenticated, 20003);
    assert_eq!(rotated.get(&door.messages()).await.status, StatusCode::OK);

    let (status, revoked) = acme.admin.delete(&path).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    assert_twilio_error(&rotated.get(&door.messages()).await, unauthenticated, 20003);
    let (status, _) = acme.admin.delete(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to revoke");

    let (status, audit) = acme
        .admin
        .get("/v1/audit?action=twilio_credential.create")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(audit["data"].as_array().unwrap().len(), 2, "{audit}");
    server.stop().await;
}

#[tokio::test]
async fn messages_are_sent_fetched_and_refused_as_twilio_does() {
    let server = start().await;
    let (acme, _) = acme(&server).await;
    let door = Door::issue(&acme).await;

    let created = door
        .send(&[
            ("To", HANDSET),
            ("From", NUMBER),
            ("Body", "Your code is 123456"),
        ])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let message = &created.body;
    let message_sid = message["sid"].as_str().unwrap().to_owned();
    assert!(
        message_sid.starts_with("SM") && message_sid.len() == 34,
        "{message}"
    );
    assert_eq!(message["account_sid"], door.sid.as_str());
    assert_eq!(message["to"], HANDSET);
    assert_eq!(message["from"], NUMBER);
    assert_eq!(message["body"], "Your code is 123456");
    assert_eq!(message["status"], "queued");
    assert_eq!(message["num_segments"], "1");
    assert_eq!(message["direction"], "outbound-api");
    assert_eq!(message["api_version"], "2010-04-01");
    assert!(message["error_code"].is_null() && message["price"].is_null());
    assert_eq!(message["uri"], door.message(&message_sid));
    assert!(
        message["date_created"]
            .as_str()
            .unwrap()
            .ends_with(" +0000"),
        "RFC 2822: {message}"
    );

    // Delivered, and the same message through the JSON API.
    let fetched = wait_until("the message delivered", || async {
        let fetched = door.get(&door.message(&message_sid)).await;
        assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.body);
        (fetched.body["status"] == "delivered").then_some(fetched.body)
    })
    .await;
    assert!(fetched["date_sent"].is_string());
    let (status, listed) = acme.developer.get("/v1/messages").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        pigeon::model::twilio::sid("SM", listed["data"][0]["id"].as_str().unwrap()),
        message_sid
    );

    // Twilio's codes for the accept path's refusals.
    let bad = StatusCode::BAD_REQUEST;
    let long = "x".repeat(2000);
    for (form, code) in [
        (
            vec![("To", "not a number"), ("From", NUMBER), ("Body", "hi")],
            21211,
        ),
        (vec![("To", HANDSET), ("From", NUMBER), ("Body", "")], 21602),
        (
            vec![("To", HANDSET), ("From", NUMBER), ("Body", long.as_str())],
            21617,
        ),
        (vec![("To", HANDSET), ("Body", "hi")], 21603),
        (
            vec![("To", HANDSET), ("From", "+84912349999"), ("Body", "hi")],
            21606,
        ),
    ] {
        assert_twilio_error(&door.send(&form).await, bad, code);
    }
    // An opt-out recorded through the JSON API holds here.
    let (status, _) = acme
        .compliance
        .post("/v1/suppressions", json!({"number": HANDSET}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let opted_out = door
        .send(&[("To", HANDSET), ("From", NUMBER), ("Body", "hi")])
        .await;
    assert_twilio_error(&opted_out, bad, 21610);

    // Another account's message is not found.
    let other = Door::issue(&new_tenant(&server.admin(), "other").await).await;
    let not_found = other.get(&other.message(&message_sid)).await;
    assert_twilio_error(&not_found, StatusCode::NOT_FOUND, 20404);
    server.stop().await;
}

#[tokio::test]
async fn smart_encoding_keeps_a_pasted_body_in_gsm7_on_both_doors() {
    let server = start().await;
    let (acme, _) = acme(&server).await;
    let door = Door::issue(&acme).await;
    let pasted = "Don\u{2019}t share it \u{2014} code\u{00A0}123456 \u{201C}now\u{201D}";
    let replaced = "Don't share it - code 123456 \"now\"";
    // Without it: as pasted (UCS-2).
    let plain = door
        .send(&[("To", HANDSET), ("From", NUMBER), ("Body", pasted)])
        .await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.body);
    assert_eq!(plain.body["body"], pasted);
    let smart = door
        .send(&[
            ("To", HANDSET),
            ("From", NUMBER),
            ("Body", pasted),
            ("SmartEncoded", "true"),
        ])
        .await;
    assert_eq!(smart.status, StatusCode::CREATED, "{}", smart.body);
    assert_eq!(smart.body["body"], replaced);

    let (status, sent) = acme
        .developer
        .post(
            "/v1/messages",
            json!({"to": HANDSET, "from": NUMBER, "body": pasted, "smart_encoding": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["encoding"], "gsm7");
    let (status, analysis) = acme
        .developer
        .post(
            "/v1/encoding/analyze",
            json!({"body": pasted, "smart_encoding": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(analysis["encoding"], "gsm7");
    assert_eq!(analysis["body"], replaced);
    server.stop().await;
}

#[tokio::test]
async fn status_callbacks_take_twilios_form_and_signature() {
    let server = start().await;
    let (acme, _) = acme(&server).await;
    let door = Door::issue(&acme).await;
    let app = App::start("").await;
    let callback = app.url("/status");
    let created = door
        .send(&[
            ("To", HANDSET),
            ("From", NUMBER),
            ("Body", "Your order shipped"),
            ("StatusCallback", &callback),
        ])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let message_sid = created.body["sid"].as_str().unwrap().to_owned();
    let delivered = app
        .wait_for("the delivered callback", |r| {
            r.get("MessageStatus") == Some("delivered")
        })
        .await;
    assert_eq!(delivered.path, "/status");
    assert_eq!(delivered.content_type, "application/x-www-form-urlencoded");
    for (name, value) in [
        ("MessageSid", message_sid.as_str()),
        ("SmsSid", &message_sid),
        ("SmsStatus", "delivered"),
        ("AccountSid", &door.sid),
        ("From", NUMBER),
        ("To", HANDSET),
        ("ApiVersion", "2010-04-01"),
    ] {
        assert_eq!(delivered.get(name), Some(value), "{name}");
    }
    assert_eq!(
        delivered.signature,
        twilio_signature(&door.token, &callback, &delivered.form)
    );
    // Every status on the way, in Twilio's words.
    let statuses: Vec<String> = app
        .received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.get("MessageStatus").map(str::to_owned))
        .collect();
    assert!(statuses.contains(&"sent".to_owned()), "{statuses:?}");
    server.stop().await;
}

#[tokio::test]
async fn inbound_messages_reach_sms_url_and_twiml_answers_are_sent_back() {
    let server = start().await;
    let (acme, number) = acme(&server).await;
    let door = Door::issue(&acme).await;
    let app = App::start(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks, we got it &amp; will call.</Message></Response>"#,
    )
    .await;
    let sms_url = app.url("/sms");
    let reply = acme
        .admin
        .send(
            Method::PATCH,
            &format!("/v1/numbers/{number}"),
            Some(json!({"sms_url": sms_url}).to_string().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["sms_url"], sms_url.as_str());

    let (status, inbound) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": HANDSET, "to": NUMBER, "body": "Where is my order?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inbound}");
    let hook = app
        .wait_for("the inbound webhook", |r| r.path == "/sms")
        .await;
    let inbound_sid = pigeon::model::twilio::sid("SM", inbound["id"].as_str().unwrap());
    for (name, value) in [
        ("Body", "Where is my order?"),
        ("From", HANDSET),
        ("To", NUMBER),
        ("AccountSid", &door.sid),
        ("NumSegments", "1"),
        ("MessageSid", &inbound_sid),
    ] {
        assert_eq!(hook.get(name), Some(value), "{name}");
    }
    assert_eq!(
        hook.signature,
        twilio_signature(&door.token, &sms_url, &hook.form)
    );

    // The TwiML answer went out from the number to the handset.
    let sent = wait_until("the TwiML reply", || async {
        let (_, listed) = acme.developer.get("/v1/messages").await;
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["body"] == "Thanks, we got it & will call.")
            .cloned()
    })
    .await;
    assert_eq!(sent["to"], HANDSET);
    assert_eq!(sent["from"], NUMBER);
    server.stop().await;
}

#[tokio::test]
async fn lists_page_and_filter_and_scheduled_messages_cancel() {
    let server = start().await;
    let (acme, _) = acme(&server).await;
    let door = Door::issue(&acme).await;
    let mut sids = Vec::new();
    for i in 0..5 {
        let to = format!("+8498765100{i}");
        let created = door
            .send(&[("To", &to), ("From", NUMBER), ("Body", "hello")])
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        sids.push(created.body["sid"].as_str().unwrap().to_owned());
    }
    // Newest first, two a page, following next_page_uri.
    let mut seen = Vec::new();
    let mut uri = format!("{}?PageSize=2", door.messages());
    loop {
        let page = door.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body["page_size"], 2);
        seen.extend(
            page.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["sid"].as_str().unwrap().to_owned()),
        );
        match page.body["next_page_uri"].as_str() {
            Some(next) => uri = next.to_owned(),
            None => break,
        }
    }
    sids.reverse();
    assert_eq!(seen, sids);

    let count = |query: String| {
        let door = door.clone();
        async move {
            let page = door.get(&format!("{}?{query}", door.messages())).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            page.body["messages"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("To=%2B84987651003".into()).await, 1);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(count(format!("DateSent={today}")).await, 5);
    assert_eq!(count(format!("DateSent%3E={today}")).await, 5);
    assert_eq!(count("DateSent%3C=2020-01-01".into()).await, 0);

    // A scheduled message is canceled; a delivered one cannot be.
    let send_at = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let scheduled = door
        .send(&[
            ("To", HANDSET),
            ("From", NUMBER),
            ("Body", "Reminder"),
            ("SendAt", &send_at),
            ("ScheduleType", "fixed"),
        ])
        .await;
    assert_eq!(scheduled.status, StatusCode::CREATED, "{}", scheduled.body);
    assert_eq!(scheduled.body["status"], "scheduled");
    let scheduled_uri = scheduled.body["uri"].as_str().unwrap().to_owned();
    let canceled = door.post(&scheduled_uri, &[("Status", "canceled")]).await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    assert_eq!(canceled.body["status"], "canceled");
    let without_type = door
        .send(&[
            ("To", HANDSET),
            ("From", NUMBER),
            ("Body", "x"),
            ("SendAt", &send_at),
        ])
        .await;
    assert_twilio_error(&without_type, StatusCode::BAD_REQUEST, 35111);

    // Redacting: Body= on a finished message empties it.
    let first = door.message(&sids[4]);
    wait_until("the first message delivered", || async {
        (door.get(&first).await.body["status"] == "delivered").then_some(())
    })
    .await;
    let redacted = door.post(&first, &[("Body", "")]).await;
    assert_eq!(redacted.status, StatusCode::OK, "{}", redacted.body);
    assert_eq!(redacted.body["body"], "");
    let not_cancelable = door.post(&first, &[("Status", "canceled")]).await;
    assert_twilio_error(&not_cancelable, StatusCode::BAD_REQUEST, 30409);
    server.stop().await;
}

#[test]
fn sids_and_ids_map_both_ways() {
    let id = pigeon::ids::new_id("msg");
    let sid = pigeon::model::twilio::sid("SM", &id);
    assert_eq!(
        pigeon::model::twilio::id(&sid, "SM", "msg").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(pigeon::model::twilio::id(&sid, "MG", "pool"), None);
}
