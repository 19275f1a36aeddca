//! Data retention from the outside: bodies redacted when their period ends
//! (and on request), per-account periods, webhook rows and events deleted,
//! and OTP bodies masked for viewers.

use crate::common;

use common::{Client, Tenant, TestServer, new_tenant, own_number, wait_until};
use hyper::{Method, StatusCode};
use pigeon::compliance::retention::Period;
use pigeon::config::Config;
use serde_json::{Value, json};

fn period(text: &str) -> Period {
    Period::parse("test", text).unwrap()
}

/// Short periods where a test needs them, the sweep every second.
fn short(config: &mut Config, settings: &[(&str, &str)]) {
    config.retention.sweep_interval = period("1s");
    for (name, value) in settings {
        let value = period(value);
        match *name {
            "otp_body" => config.retention.otp_body = value,
            "message_body" => config.retention.message_body = value,
            "inbound_body" => config.retention.inbound_body = value,
            "webhook_rows" => config.retention.webhook_rows = value,
            "events" => config.retention.events = value,
            "audit" => config.retention.audit = value,
            other => panic!("no setting {other}"),
        }
    }
}

async fn patch(client: &Client, path: &str, body: Value) -> common::Reply {
    client
        .send(
            Method::PATCH,
            path,
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await
}

/// Waits until the message's body is gone; the message as it is then.
async fn wait_for_redaction(client: &Client, id: &str) -> Value {
    let path = format!("/v1/messages/{id}");
    wait_until(&format!("message {id} to be redacted"), || async {
        let (status, message) = client.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        message["body"].is_null().then_some(message)
    })
    .await
}

#[tokio::test]
async fn an_otp_is_redacted_when_its_retention_ends_and_the_rest_stays() {
    let server = TestServer::start_with(|c| short(c, &[("otp_body", "1s")])).await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let dev = &acme.developer;
    let otp = dev
        .send_message(json!({"to": "+84912345601", "body": "Your code is 482915", "type": "otp"}))
        .await;
    let alert = dev
        .send_message(json!({"to": "+84912345602", "body": "Your parcel is on its way"}))
        .await;
    dev.wait_for_status(&otp, "delivered").await;
    dev.wait_for_status(&alert, "delivered").await;

    let redacted = wait_for_redaction(dev, &otp).await;
    let at = redacted["redacted_at"].as_str().unwrap();
    assert!(pigeon::time::parse_rfc3339(at).is_some(), "{redacted}");
    assert_eq!(redacted["status"], "delivered");
    assert_eq!(redacted["type"], "otp");
    assert_eq!(redacted["parts"].as_array().unwrap().len(), 1, "{redacted}");
    assert_eq!(redacted["parts"][0]["status"], "delivered");
    assert!(
        common::event_statuses(&redacted).contains(&"delivered"),
        "{redacted}"
    );
    // The list says the same.
    let (_, list) = dev.get("/v1/messages").await;
    let listed: Vec<&Value> = list["data"].as_array().unwrap().iter().collect();
    let otp_listed = listed.iter().find(|m| m["id"] == otp.as_str()).unwrap();
    assert!(otp_listed["body"].is_null(), "{otp_listed}");
    assert_eq!(otp_listed["redacted_at"], at);

    // A message with the longer period keeps its body.
    let (_, kept) = dev.get(&format!("/v1/messages/{alert}")).await;
    assert_eq!(kept["body"], "Your parcel is on its way", "{kept}");
    assert!(kept["redacted_at"].is_null());

    // Analytics still count both.
    let (status, analytics) = dev.get("/v1/analytics/messages?group_by=type").await;
    assert_eq!(status, StatusCode::OK, "{analytics}");
    let otp_row = analytics["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "otp")
        .cloned()
        .unwrap_or_else(|| panic!("no otp row: {analytics}"));
    assert_eq!(otp_row["delivered"], 1, "{analytics}");
    server.stop().await;
}

#[tokio::test]
async fn an_account_may_keep_bodies_for_less_time_but_not_for_more() {
    let server = TestServer::start_with(|c| short(c, &[("message_body", "1h")])).await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let other = new_tenant(&server.admin(), "Other").await;

    let (status, me) = acme.admin.get("/v1/account").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["account"]["retention"]["message_body"], "1h", "{me}");
    assert_eq!(me["account"]["retention"]["otp_body"], "1h");
    assert_eq!(me["account"]["retention"]["inbound_body"], "30d");
    assert_eq!(me["account"]["retention"]["events"], "400d");

    for (body, code, field) in [
        (
            json!({"message_body": "2h"}),
            "retention_too_long",
            "retention.message_body",
        ),
        (
            json!({"otp_body": "soon"}),
            "invalid_duration",
            "retention.otp_body",
        ),
        (json!({"events": "1d"}), "unknown_field", "retention.events"),
        (
            json!({"inbound_body": 5}),
            "invalid_type",
            "retention.inbound_body",
        ),
        (json!("7d"), "invalid_type", "retention"),
    ] {
        let reply = patch(&acme.admin, "/v1/account", json!({"retention": body})).await;
        common::assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, code, Some(field));
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Only admins change account settings.
    let reply = patch(
        &acme.developer,
        "/v1/account",
        json!({"retention": {"message_body": "1s"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    let reply = patch(
        &acme.admin,
        "/v1/account",
        json!({"retention": {"message_body": "1s"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["account"]["retention"]["message_body"], "1s");
    assert_eq!(reply.body["account"]["retention"]["otp_body"], "1h");

    let mine = acme
        .developer
        .send_message(json!({"to": "+84912345611", "body": "Short-lived"}))
        .await;
    let theirs = other
        .developer
        .send_message(json!({"to": "+84912345612", "body": "Kept an hour"}))
        .await;
    acme.developer.wait_for_status(&mine, "delivered").await;
    other.developer.wait_for_status(&theirs, "delivered").await;
    let redacted = wait_for_redaction(&acme.developer, &mine).await;
    assert_eq!(redacted["status"], "delivered");
    let (_, kept) = other.developer.get(&format!("/v1/messages/{theirs}")).await;
    assert_eq!(kept["body"], "Kept an hour", "{kept}");

    // `null` goes back to the operator's period.
    let reply = patch(
        &acme.admin,
        "/v1/account",
        json!({"retention": {"message_body": null}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["account"]["retention"]["message_body"], "1h");
    server.stop().await;
}

/// A message of `tenant`, delivered.
async fn delivered(tenant: &Tenant, body: Value) -> String {
    let id = tenant.developer.send_message(body).await;
    tenant.developer.wait_for_status(&id, "delivered").await;
    id
}

#[tokio::test]
async fn redacting_on_request() {
    let server = TestServer::start().await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let other = new_tenant(&server.admin(), "Other").await;
    let id = delivered(
        &acme,
        json!({"to": "+84912345621", "body": "Account 7781 closed", "metadata": {"ticket": "T-1"}}),
    )
    .await;
    let path = format!("/v1/messages/{id}/redact");

    for client in [&acme.viewer, &acme.compliance] {
        let (status, body) = client.post(&path, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = other.admin.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, untouched) = acme.developer.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(untouched["body"], "Account 7781 closed");

    let (status, redacted) = acme.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{redacted}");
    assert!(redacted["body"].is_null(), "{redacted}");
    let at = redacted["redacted_at"].as_str().unwrap().to_owned();
    assert_eq!(redacted["metadata"]["ticket"], "T-1");
    assert_eq!(redacted["status"], "delivered");
    // Twice is fine: the same record.
    let (status, again) = acme.admin.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["redacted_at"], at.as_str());
    let (_, shown) = acme.viewer.get(&format!("/v1/messages/{id}")).await;
    assert!(shown["body"].is_null(), "{shown}");
    assert_eq!(shown["parts"][0]["status"], "delivered", "{shown}");

    // A message still to be sent keeps its body.
    let later = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 86_400_000);
    let scheduled = acme
        .developer
        .send_message(json!({"to": "+84912345622", "body": "Tomorrow", "send_at": later}))
        .await;
    let reply = acme
        .developer
        .send(
            Method::POST,
            &format!("/v1/messages/{scheduled}/redact"),
            Some(b"{}".to_vec()),
            &[],
        )
        .await;
    common::assert_error(&reply, StatusCode::CONFLICT, "message_not_final", None);
    let (status, _) = acme
        .developer
        .post("/v1/messages/msg_unknown/redact", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Inbound messages too, and the webhooks that carry them.
    let receiver = common::carrier_answering("200 OK").await;
    let reply = patch(
        &acme.admin,
        "/v1/account",
        json!({"inbound_url": format!("{receiver}/inbound")}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": "+84900000777", "kind": "long_code", "country": "VN"}),
    )
    .await;
    let (status, filed) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": "+84912345623", "to": "+84900000777", "body": "My PIN is 9931"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let inbound = filed["id"].as_str().unwrap().to_owned();
    assert!(filed["redacted_at"].is_null(), "{filed}");
    let path = format!("/v1/inbound/{inbound}/redact");
    for client in [&acme.viewer, &acme.compliance] {
        let (status, body) = client.post(&path, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = other.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, redacted) = acme.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{redacted}");
    assert!(redacted["body"].is_null(), "{redacted}");
    assert!(redacted["redacted_at"].is_string(), "{redacted}");
    assert_eq!(redacted["from"], "+84912345623");
    let (_, list) = acme.viewer.get("/v1/inbound").await;
    assert!(list["data"][0]["body"].is_null(), "{list}");
    let id = inbound.clone();
    let payloads: Vec<(Option<String>, Option<String>)> =
        common::read_db(&server.data_dir, move |db| {
            db.prepare(&format!(
                "SELECT {}, {} FROM webhook_outbox WHERE message_id = ?1",
                db.json_field("payload", "body"),
                db.json_field("payload", "redacted_at"),
            ))?
            .query_map([&id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
        })
        .await;
    assert_eq!(payloads.len(), 1, "the message.inbound webhook");
    assert_eq!(payloads[0].0, None, "its payload's body");
    assert!(payloads[0].1.is_some());
    let (status, _) = acme.developer.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn inbound_texts_webhook_rows_and_events_go_after_theirs() {
    let server = TestServer::start_with(|c| {
        short(
            c,
            &[
                ("inbound_body", "1s"),
                ("webhook_rows", "1s"),
                ("events", "1s"),
            ],
        )
    })
    .await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let receiver = common::carrier_answering("200 OK").await;
    let id = delivered(
        &acme,
        json!({"to": "+84912345631", "body": "Hello", "callback_url": format!("{receiver}/hook")}),
    )
    .await;
    let hooks = format!("/v1/messages/{id}/webhooks");
    wait_until("a webhook to be delivered", || async {
        let (_, list) = acme.developer.get(&hooks).await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["state"] == "delivered")
            .then_some(())
    })
    .await;
    wait_until("the webhook rows to be deleted", || async {
        let (_, list) = acme.developer.get(&hooks).await;
        list["data"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    // What remains is the acceptance, which is the message itself, not a
    // stored event.
    let message = wait_until("the events to be deleted", || async {
        let (_, message) = acme.developer.get(&format!("/v1/messages/{id}")).await;
        (common::event_statuses(&message) == ["queued"]).then_some(message)
    })
    .await;
    // The message itself, its status and body stay (message_body is 30d).
    assert_eq!(message["status"], "delivered", "{message}");
    assert_eq!(message["body"], "Hello");

    own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": "+84900000778", "kind": "long_code", "country": "VN"}),
    )
    .await;
    let (status, filed) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": "+84912345632", "to": "+84900000778", "body": "Call me"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let inbound = filed["id"].as_str().unwrap().to_owned();
    let gone = wait_until("the inbound text to be redacted", || async {
        let (_, found) = acme.developer.get(&format!("/v1/inbound/{inbound}")).await;
        found["body"].is_null().then_some(found)
    })
    .await;
    assert!(gone["redacted_at"].is_string(), "{gone}");
    assert_eq!(gone["to"], "+84900000778");
    server.stop().await;
}

#[tokio::test]
async fn viewers_see_an_otp_with_its_digits_masked() {
    let server = TestServer::start().await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let otp = delivered(
        &acme,
        json!({"to": "+84912345641", "body": "Code 4821, valid 5 min", "type": "otp"}),
    )
    .await;
    let alert = delivered(
        &acme,
        json!({"to": "+84912345642", "body": "Order 1234 shipped"}),
    )
    .await;
    let path = format!("/v1/messages/{otp}");
    let (_, seen) = acme.viewer.get(&path).await;
    assert_eq!(seen["body"], "Code ••••, valid • min", "{seen}");
    let (_, list) = acme.viewer.get("/v1/messages").await;
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == otp.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["body"], "Code ••••, valid • min");
    for client in [&acme.admin, &acme.developer, &acme.compliance] {
        let (_, seen) = client.get(&path).await;
        assert_eq!(seen["body"], "Code 4821, valid 5 min", "{seen}");
    }
    // Other types are not masked.
    let (_, seen) = acme.viewer.get(&format!("/v1/messages/{alert}")).await;
    assert_eq!(seen["body"], "Order 1234 shipped");
    server.stop().await;
}

/// The sweep on a store: messages still to be sent keep their bodies, sent
/// and final ones lose them, and more than one batch is swept in one go.
#[tokio::test]
async fn the_sweep_redacts_only_what_is_no_longer_needed_in_batches() {
    use pigeon::model::{MessageType, Status};
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path());
    let now = pigeon::time::now_ms();
    let long_ago = now - 10 * 3_600_000;
    let account = pigeon::store::AccountRecord {
        id: "acc_store_test".into(),
        name: "Store test".into(),
        operator: false,
        created_at: long_ago,
        webhook_secret: "whsec_test".into(),
    };
    store
        .write(move |c| pigeon::store::accounts::insert_account(c, &account))
        .await
        .unwrap();
    let in_state = |message_type, status| {
        let mut message = common::stored_message(message_type, long_ago);
        message.status = status;
        message
    };
    let mut messages: Vec<_> = [Status::Queued, Status::Scheduled, Status::Sending]
        .into_iter()
        .map(|status| in_state(MessageType::Transactional, status))
        .collect();
    let kept: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let sent = in_state(MessageType::Otp, Status::Sent);
    let sent_id = sent.id.clone();
    messages.push(sent);
    messages.extend((0..1100).map(|_| in_state(MessageType::Marketing, Status::Delivered)));
    store
        .write(move |c| {
            for message in &messages {
                pigeon::store::messages::insert_message(c, message, None)?;
                // The insert writes the initial state; the one the message
                // would have reached by now is set directly.
                c.execute(
                    "UPDATE messages SET status = ?2 WHERE id = ?1",
                    pigeon::store::db::params![message.id, message.status.as_str()],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();

    let config = pigeon::compliance::retention::RetentionConfig {
        message_body: period("1h"),
        ..Default::default()
    };
    let (_stop, running) = tokio::sync::watch::channel(false);
    let swept = pigeon::compliance::retention::sweep_once(&store, &config, &running)
        .await
        .unwrap();
    assert_eq!(swept, 1101, "1100 delivered and one sent");
    let again = pigeon::compliance::retention::sweep_once(&store, &config, &running)
        .await
        .unwrap();
    assert_eq!(again, 0, "nothing is due twice");

    let (redacted, kept_bodies) = store
        .read(move |c| {
            let count: i64 = c.query_row(
                "SELECT count(*) FROM messages WHERE redacted_at IS NOT NULL AND body = ''",
                [],
                |row| row.get(0),
            )?;
            let sent = pigeon::store::messages::get_message(c, "acc_store_test", &sent_id)?;
            let mut bodies = Vec::new();
            for id in &kept {
                bodies.push(pigeon::store::messages::get_message(
                    c,
                    "acc_store_test",
                    id,
                )?);
            }
            Ok((count, (sent, bodies)))
        })
        .await
        .unwrap();
    assert_eq!(redacted, 1101);
    let (sent, bodies) = kept_bodies;
    assert!(sent.unwrap().redacted_at.is_some());
    for message in bodies {
        let message = message.unwrap();
        assert!(message.redacted_at.is_none(), "{:?}", message.status);
        assert_eq!(message.body, "transactional message");
    }
    store.close().await;
}

#[tokio::test]
async fn redactions_are_audited_and_audit_entries_go_after_their_retention() {
    let server = TestServer::start_with(|c| short(c, &[("audit", "2s")])).await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let id = delivered(&acme, json!({"to": "+84912345622", "body": "Hello"})).await;
    let (status, _) = acme
        .developer
        .post(&format!("/v1/messages/{id}/redact"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, audit) = acme.admin.get("/v1/audit?action=message.redact").await;
    assert_eq!(audit["data"][0]["target"], id.as_str());
    assert_eq!(audit["data"][0]["role"], "developer");
    common::wait_until("the audit entries to be swept", || async {
        let (_, audit) = acme.admin.get("/v1/audit").await;
        audit["data"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}
