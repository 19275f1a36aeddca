//! Status webhooks against a real receiver: a small hyper server on
//! 127.0.0.1 that records what it gets and answers with a programmable
//! status. Covers order, signatures, payloads, retries, giving up, cancels,
//! the SSRF guard, the per-message listing and restarts.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::receiver::{Received, Receiver, assert_signed};
use common::{Client, TestServer, wait_until};
use hyper::{Method, StatusCode};
use pigeon::config::Config;
use serde_json::{Value, json};

// ---- Accounts and helpers ----

/// An account made through the API, with its webhook secret as the
/// create-account answer gave it.
struct Account {
    id: String,
    secret: String,
    developer: Client,
    viewer: Client,
}

async fn new_account(server: &TestServer, name: &str) -> Account {
    let operator = server.admin();
    let (status, account) = operator.post("/v1/accounts", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let id = account["id"].as_str().unwrap().to_owned();
    let secret = account["webhook_secret"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    for role in ["developer", "viewer"] {
        let (status, key) = operator
            .post(&format!("/v1/accounts/{id}/keys"), json!({"role": role}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        keys.push(operator.with_key(key["key"].as_str().unwrap()));
    }
    let viewer = keys.pop().unwrap();
    let developer = keys.pop().unwrap();
    Account {
        id,
        secret,
        developer,
        viewer,
    }
}

/// Fast retries, so tests need not wait seconds.
fn fast_retries(config: &mut Config) {
    config.webhooks.retry_base_ms = 20;
    config.webhooks.retry_max_ms = 100;
}

async fn deliveries(client: &Client, message_id: &str) -> Vec<Value> {
    let (status, body) = client
        .get(&format!("/v1/messages/{message_id}/webhooks"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// Waits until the message's deliveries satisfy `done`.
async fn wait_for_deliveries(
    client: &Client,
    message_id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_until(what, || async {
        let list = deliveries(client, message_id).await;
        done(&list).then_some(list)
    })
    .await
}

fn all_in_state(list: &[Value], count: usize, state: &str) -> bool {
    list.len() == count && list.iter().all(|d| d["state"] == state)
}

fn statuses(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.json["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

async fn outbox_rows(data_dir: &Path) -> Vec<(String, String, i64)> {
    common::read_db(data_dir, |conn| {
        conn.prepare("SELECT message_id, state, attempts FROM webhook_outbox ORDER BY id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect()
    })
    .await
}

// ---- Tests ----

#[tokio::test]
async fn status_changes_are_posted_in_order_signed_and_complete() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let acme = new_account(&server, "Acme").await;
    assert!(
        acme.secret.starts_with("whsec_") && acme.secret.len() == 46,
        "{}",
        acme.secret
    );

    let id = acme
        .developer
        .send_message(json!({
            "to": "+84912345678",
            "from": "Pigeon",
            "body": "Your code is 123456",
            "callback_url": receiver.url("/hooks/sms?token=abc"),
            "metadata": {"order": "42"},
        }))
        .await;
    let requests = receiver.wait_for_requests(&id, 3).await;
    assert_eq!(statuses(&requests), ["sending", "sent", "delivered"]);
    let now = pigeon::time::now_ms();
    for request in &requests {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/hooks/sms?token=abc");
        assert_eq!(request.headers["content-type"], "application/json");
        let agent = request.headers["user-agent"].to_str().unwrap();
        assert_eq!(agent, format!("Pigeon/{}", env!("CARGO_PKG_VERSION")));
        assert_signed(request, &acme.secret);
        let payload = &request.json;
        assert_eq!(
            common::sorted_keys(payload),
            [
                "at",
                "error_code",
                "from",
                "id",
                "message_id",
                "metadata",
                "segments",
                "status",
                "to",
                "type"
            ]
        );
        assert_eq!(payload["type"], "message.status");
        assert!(payload["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(payload["message_id"], id.as_str());
        assert_eq!(payload["to"], "+84912345678");
        assert_eq!(payload["from"], "Pigeon");
        assert_eq!(payload["segments"], 1);
        assert_eq!(payload["error_code"], Value::Null);
        assert_eq!(payload["metadata"], json!({"order": "42"}));
        // When the change happened (a delivery report's own time may come
        // before the submit result is recorded, so no order is asserted).
        let at = pigeon::time::parse_rfc3339(payload["at"].as_str().unwrap()).unwrap();
        assert!((at - now).abs() < 60_000, "{payload}");
    }

    // The listing shows each delivery, done on the first attempt.
    let list = wait_for_deliveries(&acme.viewer, &id, "3 delivered webhooks", |list| {
        all_in_state(list, 3, "delivered")
    })
    .await;
    for (delivery, request) in list.iter().zip(&requests) {
        assert_eq!(delivery["id"], request.json["id"]);
        assert_eq!(delivery["status"], request.json["status"]);
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["last_error"], Value::Null);
        assert_eq!(delivery["next_attempt_at"], Value::Null);
        assert_eq!(
            delivery["url"],
            receiver.url("/hooks/sms?token=abc").as_str()
        );
        pigeon::time::parse_rfc3339(delivery["created_at"].as_str().unwrap()).unwrap();
    }

    // A failed delivery report names its error code.
    let id = acme
        .developer
        .send_message(json!({
            "to": "+84912340001",
            "body": "Hello",
            "callback_url": receiver.url("/hooks/sms"),
        }))
        .await;
    let requests = receiver.wait_for_requests(&id, 3).await;
    assert_eq!(statuses(&requests), ["sending", "sent", "undelivered"]);
    assert_eq!(requests[2].json["error_code"], "absent_subscriber");
    assert_eq!(requests[2].json["from"], Value::Null);
    assert_eq!(requests[2].json["metadata"], json!({}));

    // A retryable carrier failure puts the message back in the queue, and says so.
    let id = acme
        .developer
        .send_message(json!({
            "to": "+84912340003",
            "body": "Hello",
            "callback_url": receiver.url("/hooks/sms"),
        }))
        .await;
    let requests = receiver.wait_for_requests(&id, 5).await;
    assert_eq!(
        statuses(&requests),
        ["sending", "queued", "sending", "sent", "delivered"]
    );
}

#[tokio::test]
async fn a_failing_endpoint_gets_the_event_on_the_third_attempt() {
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500, 500]);
    let server = TestServer::start_with(fast_retries).await;
    let acme = new_account(&server, "Acme").await;
    let id = acme
        .developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hi", "callback_url": receiver.url("/")}),
        )
        .await;

    let list = wait_for_deliveries(&acme.developer, &id, "3 delivered webhooks", |list| {
        all_in_state(list, 3, "delivered")
    })
    .await;
    let requests = receiver.requests_for(&id);
    let answered: Vec<u16> = requests.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 500, 200, 200, 200]);
    // The first event was tried three times (the same event, signed afresh)
    // before the next one went out.
    assert_eq!(
        statuses(&requests),
        ["sending", "sending", "sending", "sent", "delivered"]
    );
    assert_eq!(requests[0].json, requests[2].json);
    for request in &requests {
        assert_signed(request, &acme.secret);
    }
    assert_eq!(list[0]["status"], "sending");
    assert_eq!(list[0]["attempts"], 3);
    let error = list[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("500") && error.contains("receiver says no"),
        "{error}"
    );
    assert_eq!(list[1]["attempts"], 1);
    assert_eq!(list[2]["attempts"], 1);
}

#[tokio::test]
async fn a_webhook_fails_once_its_attempts_are_exhausted() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(503);
    let server = TestServer::start_with(|config| {
        fast_retries(config);
        config.webhooks.max_attempts = 3;
    })
    .await;
    let acme = new_account(&server, "Acme").await;
    let id = acme
        .developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hi", "callback_url": receiver.url("/")}),
        )
        .await;

    let list = wait_for_deliveries(&acme.viewer, &id, "3 failed webhooks", |list| {
        all_in_state(list, 3, "failed")
    })
    .await;
    for delivery in &list {
        assert_eq!(delivery["attempts"], 3, "{delivery}");
        assert_eq!(delivery["next_attempt_at"], Value::Null);
        let error = delivery["last_error"].as_str().unwrap();
        assert!(
            error.contains("gave up after 3 attempts") && error.contains("503"),
            "{error}"
        );
    }
    let requests = receiver.requests_for(&id);
    assert_eq!(requests.len(), 9, "three attempts per event");
    assert_eq!(
        statuses(&requests),
        [
            "sending",
            "sending",
            "sending",
            "sent",
            "sent",
            "sent",
            "delivered",
            "delivered",
            "delivered"
        ]
    );
}

#[tokio::test]
async fn canceling_posts_a_canceled_webhook_and_scheduling_posts_none() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let acme = new_account(&server, "Acme").await;
    let send_at = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 3_600_000);
    let id = acme
        .developer
        .send_message(json!({
            "to": "+84912345678",
            "body": "Later",
            "send_at": send_at,
            "callback_url": receiver.url("/cancel"),
        }))
        .await;
    assert!(deliveries(&acme.developer, &id).await.is_empty());
    let (status, body) = acme
        .developer
        .post(&format!("/v1/messages/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let requests = receiver.wait_for_requests(&id, 1).await;
    assert_eq!(statuses(&requests), ["canceled"]);
    assert_eq!(requests[0].json["error_code"], Value::Null);
    assert_signed(&requests[0], &acme.secret);
    let list = wait_for_deliveries(&acme.developer, &id, "the delivered cancel", |list| {
        all_in_state(list, 1, "delivered")
    })
    .await;
    assert_eq!(list[0]["status"], "canceled");
}

#[tokio::test]
async fn messages_without_a_callback_url_add_nothing_to_the_outbox() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let acme = new_account(&server, "Acme").await;
    let quiet = acme
        .developer
        .send_message(json!({"to": "+84912345678", "body": "No hooks"}))
        .await;
    acme.developer.wait_for_status(&quiet, "delivered").await;
    let long = acme
        .developer
        .send_message(json!({"to": "+84912345678", "body": "x".repeat(300)}))
        .await;
    acme.developer.wait_for_status(&long, "delivered").await;
    assert!(deliveries(&acme.developer, &quiet).await.is_empty());
    assert!(outbox_rows(&server.data_dir).await.is_empty());

    // The table does fill for a message that has one.
    let hooked = acme
        .developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hooks", "callback_url": receiver.url("/")}),
        )
        .await;
    acme.developer.wait_for_status(&hooked, "delivered").await;
    let rows = outbox_rows(&server.data_dir).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|(message, _, _)| *message == hooked));
    receiver.wait_for_requests(&hooked, 3).await;
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.json["message_id"] == hooked.as_str())
    );
}

#[tokio::test]
async fn loopback_callback_urls_are_refused_unless_private_networks_are_allowed() {
    let receiver = Receiver::start().await;
    let server =
        TestServer::start_with(|config| config.webhooks.allow_private_networks = false).await;
    let acme = new_account(&server, "Acme").await;
    let port = receiver.addr.port();
    // IP literals are refused at submit, in any notation that reaches
    // loopback, and so are malformed URLs.
    let literals = [
        "127.0.0.1",
        "[::1]",
        "[::127.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[2002:7f00:1::1]",
        "[64:ff9b::7f00:1]",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.1",
    ]
    .map(|host| format!("http://{host}:{port}/hook"));
    let malformed = [
        "http://example.com:0/hook",
        "http://example.com:99999/hook",
        "http://exa_mple..com/",
    ]
    .map(str::to_owned);
    for url in literals.iter().chain(&malformed) {
        let body = json!({"to": "+84912345678", "body": "Hi", "callback_url": url});
        let reply = acme
            .developer
            .try_send(
                Method::POST,
                "/v1/messages",
                Some(body.to_string().into_bytes()),
                &[],
            )
            .await
            .unwrap();
        common::assert_422(&reply, "invalid_url", Some("callback_url"));
    }
    // A name is checked when it is resolved: accepted, then refused for good.
    {
        let url = format!("http://localhost:{port}/hook");
        let id = acme
            .developer
            .send_message(json!({"to": "+84912345678", "body": "Hi", "callback_url": url}))
            .await;
        let list = wait_for_deliveries(&acme.developer, &id, "3 refused webhooks", |list| {
            all_in_state(list, 3, "failed")
        })
        .await;
        for delivery in &list {
            assert_eq!(delivery["attempts"], 1, "refused at once: {delivery}");
            let error = delivery["last_error"].as_str().unwrap();
            assert!(
                error.contains("loopback") && error.contains("allow_private_networks"),
                "{url}: {error}"
            );
        }
    }
    assert_eq!(receiver.shared.arrived.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_listing_is_per_account() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let acme = new_account(&server, "Acme").await;
    let globex = new_account(&server, "Globex").await;
    let id = acme
        .developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hi", "callback_url": receiver.url("/")}),
        )
        .await;
    wait_for_deliveries(&acme.viewer, &id, "3 delivered webhooks", |list| {
        all_in_state(list, 3, "delivered")
    })
    .await;
    let (status, body) = globex
        .developer
        .get(&format!("/v1/messages/{id}/webhooks"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = acme
        .developer
        .get("/v1/messages/msg_00000000000000000000000000/webhooks")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = acme
        .developer
        .without_key()
        .get(&format!("/v1/messages/{id}/webhooks"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let reply = acme
        .developer
        .send(
            Method::POST,
            &format!("/v1/messages/{id}/webhooks"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        reply.body
    );
    assert_eq!(reply.headers["allow"], "GET");
}

#[tokio::test]
async fn account_secrets_are_shown_to_admins() {
    let server = TestServer::start().await;
    let acme = new_account(&server, "Acme").await;
    let (status, account) = server
        .admin()
        .get(&format!("/v1/accounts/{}", acme.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["webhook_secret"], acme.secret.as_str());
    let (status, _) = acme
        .developer
        .get(&format!("/v1/accounts/{}", acme.id))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let globex = new_account(&server, "Globex").await;
    assert_ne!(globex.secret, acme.secret);
}

#[tokio::test]
async fn pending_webhooks_are_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.answer_by_default(503);
    // Enough attempts that none runs out before the stop, however slow the machine.
    let adjust = |config: &mut Config| {
        fast_retries(config);
        config.webhooks.max_attempts = 10_000;
    };
    let server = TestServer::start_in(dir.path(), adjust).await;
    let acme = new_account(&server, "Acme").await;
    let id = acme
        .developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hi", "callback_url": receiver.url("/")}),
        )
        .await;
    acme.developer.wait_for_status(&id, "delivered").await;
    wait_for_deliveries(&acme.developer, &id, "3 webhooks, tried", |list| {
        all_in_state(list, 3, "pending") && list[0]["attempts"].as_i64() >= Some(1)
    })
    .await;
    server.stop().await;
    let rows = outbox_rows(dir.path()).await;
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|(_, state, _)| state == "pending"),
        "{rows:?}"
    );

    receiver.answer_by_default(200);
    let server = TestServer::start_in(dir.path(), adjust).await;
    let mut developer = acme.developer.clone();
    developer.addr = server.addr;
    wait_for_deliveries(&developer, &id, "3 delivered webhooks", |list| {
        all_in_state(list, 3, "delivered")
    })
    .await;
    let delivered: Vec<Received> = receiver
        .requests_for(&id)
        .into_iter()
        .filter(|r| r.answered == 200)
        .collect();
    assert_eq!(statuses(&delivered), ["sending", "sent", "delivered"]);
    for request in &delivered {
        assert_signed(request, &acme.secret);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_finishes_and_records_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.delay_answers(Duration::from_millis(300));
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let acme = new_account(&server, "Acme").await;
    let send_at = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 3_600_000);
    let id = acme
        .developer
        .send_message(json!({"to": "+84912345678", "body": "Later", "send_at": send_at, "callback_url": receiver.url("/")}))
        .await;
    let (status, body) = acme
        .developer
        .post(&format!("/v1/messages/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until("the webhook request to arrive", || async {
        (receiver.shared.arrived.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    server.stop().await;
    assert_eq!(
        outbox_rows(dir.path()).await,
        [(id, "delivered".to_owned(), 1)],
        "the answer that came during the stop was recorded"
    );
}

#[tokio::test]
async fn a_claim_the_process_died_holding_becomes_due_again() {
    use pigeon::store::webhooks::{Admission, ClaimWindow, claim_due};
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path());
    let now = pigeon::time::now_ms();
    let mut message = common::stored_message(pigeon::model::MessageType::Transactional, now);
    message.callback_url = Some("http://127.0.0.1:9/hook".into());
    let id = message.id.clone();
    common::insert_stored(&store, message).await;
    let account = "acc_store_test".to_owned();
    store
        .write(move |c| pigeon::store::messages::cancel_message(c, &account, &id, now))
        .await
        .unwrap();

    let now = pigeon::time::now_ms();
    let lease_until = now + 40_000;
    let claim = |now: i64, lease_until: i64| {
        let window = ClaimWindow {
            now,
            limit: 10,
            lease_until,
            defer_until: now,
        };
        store.write(move |c| Ok(claim_due(c, window, "", |_| Admission::Claim)?.0))
    };
    let first = claim(now, lease_until).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    // Claimed and never recorded (the process died): not due while leased...
    let again = claim(now + 1_000, now + 41_000).await.unwrap();
    assert!(again.is_empty());
    // ...and due again once the lease has run out.
    let retried = claim(lease_until, lease_until + 40_000).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].id, first[0].id);
    assert_eq!(retried[0].attempt, 2);
    store.close().await;
}

/// A TCP endpoint that accepts connections and never answers.
async fn black_hole() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counting = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counting.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_delays_no_one_else() {
    let (hole, held) = black_hole().await;
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(|config| {
        // Long enough that waiting behind the black hole would fail the test.
        config.webhooks.timeout_ms = 20_000;
        config.webhooks.concurrency = 32;
        config.webhooks.per_account_concurrency = 16;
        config.webhooks.per_endpoint_concurrency = 8;
    })
    .await;
    let careless = new_account(&server, "Careless").await;
    let other = new_account(&server, "Other").await;
    let hole_url = format!("http://{hole}/hook");
    let good_url = format!("http://{}/hook", receiver.addr);
    let batch = |url: &str, count: usize| {
        let messages: Vec<Value> = (0..count)
            .map(|i| json!({"to": format!("+8491234{i:04}"), "body": "Hi", "callback_url": url}))
            .collect();
        json!({ "messages": messages })
    };
    let (status, body) = careless
        .developer
        .post("/v1/messages/batch", batch(&hole_url, 200))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 200);
    wait_until("the black hole to fill its slots", || async {
        (held.load(Ordering::SeqCst) >= 8).then_some(())
    })
    .await;
    // The careless account's other endpoint, and another account.
    let (status, mine) = careless
        .developer
        .post("/v1/messages/batch", batch(&good_url, 5))
        .await;
    assert_eq!((status, &mine["accepted"]), (StatusCode::OK, &json!(5)));
    let (status, theirs) = other
        .developer
        .post("/v1/messages/batch", batch(&good_url, 20))
        .await;
    assert_eq!((status, &theirs["accepted"]), (StatusCode::OK, &json!(20)));
    for (client, body) in [(&careless.developer, &mine), (&other.developer, &theirs)] {
        for item in body["results"].as_array().unwrap() {
            let id = item["message"]["id"].as_str().unwrap();
            wait_for_deliveries(client, id, "webhooks past the black hole", |list| {
                let last = list
                    .last()
                    .map(|d| d["status"].as_str().unwrap_or_default());
                let final_status = matches!(last, Some("delivered" | "undelivered" | "failed"));
                final_status && list.iter().all(|d| d["state"] == "delivered")
            })
            .await;
        }
    }
    // The black hole got no more than its endpoint's share.
    assert!(held.load(Ordering::SeqCst) <= 8, "{held:?}");
    // No graceful stop: it would wait out the black hole's requests.
    drop(server);
}

// ---- Secret rotation ----

/// An admin key of `account`, made by the operator.
async fn admin_of(server: &TestServer, account: &Account) -> Client {
    let operator = server.admin();
    let (status, key) = operator
        .post(
            &format!("/v1/accounts/{}/keys", account.id),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    operator.with_key(key["key"].as_str().unwrap())
}

/// Sends a message to `receiver` and returns its three webhooks.
async fn three_webhooks(developer: &Client, receiver: &Receiver) -> Vec<Received> {
    let id = developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hi", "callback_url": receiver.url("/")}),
        )
        .await;
    receiver.wait_for_requests(&id, 3).await
}

async fn rotate(admin: &Client, grace_secs: u64) -> String {
    let (status, body) = admin
        .post(
            "/v1/account/webhook-secret/rotate",
            json!({"grace_secs": grace_secs}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["webhook_secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 46,
        "{secret}"
    );
    secret
}

#[tokio::test]
async fn after_a_rotation_webhooks_verify_with_either_secret_until_the_grace_ends() {
    use common::receiver::signed_with;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let acme = new_account(&server, "Acme").await;
    let admin = admin_of(&server, &acme).await;
    let old = acme.secret.clone();

    let new = rotate(&admin, 3600).await;
    assert_ne!(new, old);
    // The rotation is stored: it holds after a restart.
    server.stop().await;
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let developer = acme.developer.with_addr(server.addr);
    let admin = admin.with_addr(server.addr);
    for request in three_webhooks(&developer, &receiver).await {
        assert_eq!(signed_with(&request, &new), (true, 2), "new secret");
        assert_eq!(signed_with(&request, &old), (true, 2), "old secret");
    }

    // A short grace: after it, only the newest secret signs.
    let newest = rotate(&admin, 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for request in three_webhooks(&developer, &receiver).await {
        assert_eq!(signed_with(&request, &newest), (true, 1));
        assert_eq!(signed_with(&request, &new), (false, 1));
        assert_eq!(signed_with(&request, &old), (false, 1));
        assert_signed(&request, &newest);
    }
    // No grace: the replaced secret stops at once.
    let last = rotate(&admin, 0).await;
    for request in three_webhooks(&developer, &receiver).await {
        assert_eq!(signed_with(&request, &last), (true, 1));
    }
    server.stop().await;
}

#[tokio::test]
async fn only_admins_rotate_and_the_grace_is_checked() {
    let server = TestServer::start().await;
    let acme = new_account(&server, "Acme").await;
    let admin = admin_of(&server, &acme).await;
    let path = "/v1/account/webhook-secret/rotate";
    let (status, _) = acme.developer.post(path, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (body, code) in [
        (json!({"grace_secs": 604_801}), "invalid_grace"),
        (json!({"grace_secs": -1}), "invalid_type"),
        (json!({"grace_secs": "1h"}), "invalid_type"),
    ] {
        let (status, error) = admin.post(path, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert_eq!(error["error"]["field"], "grace_secs", "{error}");
    }
    // The default grace: a day, and the secret shown is the account's now.
    let (status, rotated) = admin.post(path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    let (_, account) = server
        .admin()
        .get(&format!("/v1/accounts/{}", acme.id))
        .await;
    assert_eq!(account["webhook_secret"], rotated["webhook_secret"]);
}

// ---- Dead letters and redelivery ----

#[tokio::test]
async fn a_webhook_that_failed_for_good_is_listed_and_redelivered() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(500);
    let server = TestServer::start_with(|config| {
        fast_retries(config);
        config.webhooks.max_attempts = 2;
    })
    .await;
    let acme = new_account(&server, "Acme").await;
    let globex = new_account(&server, "Globex").await;
    let id = acme
        .developer
        .send_message(
            json!({"to": "+84912345678", "body": "Hi", "callback_url": receiver.url("/dead")}),
        )
        .await;
    wait_for_deliveries(&acme.viewer, &id, "3 failed webhooks", |list| {
        all_in_state(list, 3, "failed")
    })
    .await;

    // Any role lists the dead letters, newest first, in pages.
    let (status, page) = acme.viewer.get("/v1/webhooks?state=failed&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{page}");
    assert_eq!(data[0]["status"], "delivered", "{page}");
    assert_eq!(data[0]["message_id"], id.as_str());
    assert_eq!(data[0]["url"], receiver.url("/dead"));
    assert_eq!(data[0]["attempts"], 2);
    assert!(
        data[0]["last_error"].as_str().unwrap().contains("500"),
        "{page}"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = acme
        .viewer
        .get(&format!(
            "/v1/webhooks?state=failed&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, none) = acme.viewer.get("/v1/webhooks?state=delivered").await;
    assert_eq!(none["data"], json!([]));
    let (_, other) = globex.viewer.get("/v1/webhooks?state=failed").await;
    assert_eq!(other["data"], json!([]), "another account's are not listed");
    let (status, error) = acme.viewer.get("/v1/webhooks?state=lost").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"]["code"], "invalid_state");
    assert_eq!(error["error"]["field"], "state");

    let webhook_id = data[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{webhook_id}/redeliver");
    let (status, _) = acme.viewer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers may not redeliver");
    let (status, _) = globex.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another account's webhook");

    // The endpoint is fixed; slow, so the redelivery is still in flight
    // when it is asked for again.
    receiver.answer_by_default(200);
    receiver.delay_answers(Duration::from_millis(500));
    let before = receiver.requests_for(&id).len();
    let (status, queued) = acme.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["state"], "pending");
    let (status, error) = acme.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["code"], "webhook_pending");

    let arrived = receiver.wait_for_requests(&id, before + 1).await;
    let last = arrived.last().unwrap();
    assert_eq!(last.json["status"], "delivered");
    assert_eq!(last.json["id"], webhook_id.as_str(), "the same event");
    assert_signed(last, &acme.secret);
    let list = wait_for_deliveries(&acme.viewer, &id, "the redelivered one delivered", |list| {
        list.iter()
            .any(|d| d["id"] == webhook_id.as_str() && d["state"] == "delivered")
    })
    .await;
    let redelivered = list
        .iter()
        .find(|d| d["id"] == webhook_id.as_str())
        .unwrap();
    assert_eq!(redelivered["attempts"], 1, "a fresh count: {redelivered}");
    let (_, failed) = acme.viewer.get("/v1/webhooks?state=failed").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 2, "{failed}");
    server.stop().await;
}
