//! Dispatch through the HTTP API, with the sandbox carrier's outcomes picked
//! by number suffix (`…0001` undeliverable, `…0002` rejected, `…0003` fails
//! once), plus the queue's priority order and restarts.

use crate::common;

use common::{
    Client, TestServer, event_statuses, insert_stored, new_tenant, open_store, stored_message,
    wait_until,
};
use hyper::StatusCode;
use pigeon::config::Config;
use pigeon::model::{MessageType, Status};
use pigeon::store::CancelOutcome;
use pigeon::store::messages::{cancel_message, get_message};
use pigeon::store::queue::{SubmitOutcome, SubmitResult, claim_due, record_results};
use pigeon::time::{now_ms, to_rfc3339};
use serde_json::{Value, json};

/// Starts Pigeon with `adjust` and returns it with a developer client.
async fn start_with(adjust: impl FnOnce(&mut Config)) -> (TestServer, Client) {
    let server = TestServer::start_with(adjust).await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    (server, tenant.developer)
}

/// Sends `body` to `to` and waits for the message to end as `status`.
async fn send_until(client: &Client, to: &str, body: &str, status: &str) -> Value {
    let id = client.send_message(json!({"to": to, "body": body})).await;
    client.wait_for_status(&id, status).await
}

fn parts(message: &Value) -> &Vec<Value> {
    message["parts"].as_array().unwrap()
}

#[tokio::test]
async fn an_absent_subscriber_ends_undelivered() {
    let (_server, dev) = start_with(|_| {}).await;
    let message = send_until(&dev, "+84912340001", "Hello", "undelivered").await;
    assert_eq!(
        event_statuses(&message),
        ["queued", "sending", "sent", "undelivered"]
    );
    let part = &parts(&message)[0];
    assert_eq!(part["status"], "undelivered");
    assert_eq!(part["error_code"], "absent_subscriber");
    assert_eq!(part["carrier"], "sandbox");
    assert!(
        part["carrier_message_id"]
            .as_str()
            .unwrap()
            .starts_with("sim-")
    );
    assert_eq!(
        message["events"][3]["detail"],
        "carrier status undeliverable"
    );

    // Every part of a longer message reports the same.
    let message = send_until(&dev, "+84912340001", &"a".repeat(300), "undelivered").await;
    assert_eq!(parts(&message).len(), 2);
    for part in parts(&message) {
        assert_eq!(part["status"], "undelivered");
        assert_eq!(part["error_code"], "absent_subscriber");
    }
}

#[tokio::test]
async fn a_carrier_rejection_fails_the_message() {
    let (_server, dev) = start_with(|_| {}).await;
    let message = send_until(&dev, "+84912340002", "Hello", "failed").await;
    assert_eq!(event_statuses(&message), ["queued", "sending", "failed"]);
    let part = &parts(&message)[0];
    assert_eq!(part["error_code"], "carrier_rejected");
    assert_eq!(part["attempts"], 1, "a permanent failure is not retried");
    assert_eq!(part["carrier"], "sandbox");
    assert_eq!(part["carrier_message_id"], Value::Null);
    assert_eq!(message["events"][2]["carrier"], "sandbox");
    let detail = message["events"][2]["detail"].as_str().unwrap();
    assert!(detail.contains("0002"), "{detail}");
}

#[tokio::test]
async fn a_retryable_failure_is_retried_and_then_delivered() {
    let (_server, dev) = start_with(|_| {}).await;
    let message = send_until(&dev, "+84912340003", "Hello", "delivered").await;
    assert_eq!(
        event_statuses(&message),
        [
            "queued",
            "sending",
            "queued",
            "sending",
            "sent",
            "delivered"
        ]
    );
    let retry = &message["events"][2];
    assert_eq!(retry["part"], 0);
    assert_eq!(retry["carrier"], "sandbox");
    let detail = retry["detail"].as_str().unwrap();
    assert!(detail.contains("failing once"), "{detail}");
    let part = &parts(&message)[0];
    assert_eq!(part["attempts"], 2);
    assert_eq!(part["error_code"], Value::Null);
}

#[tokio::test]
async fn exhausted_retries_fail_the_message() {
    let (_server, dev) = start_with(|c| c.dispatch.max_attempts = 1).await;
    let message = send_until(&dev, "+84912340003", "Hello", "failed").await;
    assert_eq!(event_statuses(&message), ["queued", "sending", "failed"]);
    let part = &parts(&message)[0];
    assert_eq!(part["error_code"], "retries_exhausted");
    assert_eq!(part["attempts"], 1);
    let detail = message["events"][2]["detail"].as_str().unwrap();
    assert!(
        detail.contains("gave up after 1 attempts") && detail.contains("failing once"),
        "{detail}"
    );

    // The last attempt allowed may still succeed.
    let (_server, dev) = start_with(|c| c.dispatch.max_attempts = 2).await;
    let message = send_until(&dev, "+84912340003", "Hello", "delivered").await;
    assert_eq!(parts(&message)[0]["attempts"], 2);
}

#[tokio::test]
async fn the_queue_hands_out_otp_then_transactional_then_marketing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let now = now_ms();
    let newer_marketing = stored_message(MessageType::Marketing, now - 1_000);
    let older_marketing = stored_message(MessageType::Marketing, now - 5_000);
    let transactional = stored_message(MessageType::Transactional, now - 500);
    let otp = stored_message(MessageType::Otp, now - 100);
    let mut scheduled_otp = stored_message(MessageType::Otp, now - 100);
    scheduled_otp.send_at = Some(now + 60_000);
    let expected: Vec<String> = [&otp, &transactional, &older_marketing, &newer_marketing]
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let scheduled_id = scheduled_otp.id.clone();
    for message in [
        newer_marketing,
        older_marketing,
        transactional,
        otp,
        scheduled_otp,
    ] {
        insert_stored(&store, message).await;
    }

    let mut claimed = Vec::new();
    for _ in 0..5 {
        let claims = store
            .write(move |c| claim_due(c, "node_test", now, 1, |_| false))
            .await
            .unwrap();
        assert!(claims.len() <= 1);
        for claim in claims {
            assert_eq!(claim.parts, [0]);
            assert_eq!(claim.attempt, 1);
            claimed.push(claim.message.id);
        }
    }
    assert_eq!(claimed, expected, "the scheduled OTP is not due yet");

    let later = now + 60_000;
    let claims = store
        .write(move |c| claim_due(c, "node_test", later, 10, |_| false))
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].message.id, scheduled_id);
    assert_eq!(claims[0].message.status, Status::Scheduled);
    store.close().await;
}

#[tokio::test]
async fn messages_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let (status, key) = acme
        .admin
        .post(
            &format!("/v1/accounts/{}/keys", acme.account_id),
            json!({"role": "developer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let dev = server.client(&key);
    let send_at = to_rfc3339(now_ms() + 3_600_000);
    let scheduled = dev
        .send_message(json!({"to": "+84912345678", "body": "Later", "send_at": send_at}))
        .await;
    let before = send_until(&dev, "+84912345678", "Now", "delivered").await;
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let dev = server.client(&key);
    let (status, message) = dev.get(&format!("/v1/messages/{scheduled}")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["status"], "scheduled");
    assert_eq!(message["send_at"], send_at.as_str());
    assert_eq!(parts(&message)[0]["status"], "scheduled");
    assert_eq!(event_statuses(&message), ["scheduled"]);
    let (_, after) = dev
        .get(&format!("/v1/messages/{}", before["id"].as_str().unwrap()))
        .await;
    assert_eq!(after, before, "a delivered message is kept as it was");

    // The restarted server dispatches, and the scheduled message can still be canceled.
    send_until(&dev, "+84912345678", "After", "delivered").await;
    let (status, canceled) = dev
        .post(&format!("/v1/messages/{scheduled}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    server.stop().await;
}

#[tokio::test]
async fn two_hundred_messages_all_reach_delivered() {
    let (_server, dev) = start_with(|_| {}).await;
    let items: Vec<Value> = (0..200)
        .map(|n| {
            let message_type = ["otp", "transactional", "marketing"][n % 3];
            json!({"to": format!("+8491{n:03}5678"), "body": format!("Message {n}"), "type": message_type})
        })
        .collect();
    let (status, batch) = dev
        .post("/v1/messages/batch", json!({"messages": items}))
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["accepted"], 200, "{batch}");

    let delivered = wait_until("200 messages to be delivered", || async {
        let delivered = dev.list_all_messages("status=delivered&limit=100").await;
        (delivered.len() == 200).then_some(delivered)
    })
    .await;
    let mut ids: Vec<&str> = delivered
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(dev.list_all_messages("limit=100").await.len(), 200);
}

#[tokio::test]
async fn a_canceled_message_never_leaves_canceled() {
    // With one part claimed and the other still queued, cancel must either
    // be refused, or hold: the part in flight must not carry the message
    // out of its final state.
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let now = now_ms();
    let mut message = stored_message(MessageType::Transactional, now);
    message.body = "a".repeat(200);
    message.segments = 2;
    let (id, account) = (message.id.clone(), message.account_id.clone());
    insert_stored(&store, message).await;

    let claims = store
        .write(move |c| claim_due(c, "node_test", now, 1, |_| false))
        .await
        .unwrap();
    assert_eq!(claims[0].parts, [0], "one part in flight");
    let (cancel_id, cancel_account) = (id.clone(), account.clone());
    let canceled = store
        .write(move |c| cancel_message(c, &cancel_account, &cancel_id, now))
        .await
        .unwrap();
    let result = SubmitResult {
        message_id: id.clone(),
        index: 0,
        segments: 2,
        carrier: "sandbox".into(),
        outcome: SubmitOutcome::Accepted {
            carrier_message_id: "lb_1".into(),
        },
        bookings: Vec::new(),
    };
    store
        .write(move |c| record_results(c, std::slice::from_ref(&result), now + 1))
        .await
        .unwrap();
    let status = store
        .read(move |c| Ok(get_message(c, &account, &id)?.unwrap().status))
        .await
        .unwrap();
    match canceled {
        CancelOutcome::Canceled(_) => assert_eq!(status, Status::Canceled),
        CancelOutcome::NotCancelable(_) => assert_eq!(status, Status::Sending),
        CancelOutcome::NotFound => panic!("the message is there"),
    }
    store.close().await;
}

/// Messages in flight together reach the sandbox carrier in batches (one
/// `POST /submit-batch` for many), and each still gets its own outcome:
/// delivered, undeliverable, rejected without a request, failed once and
/// retried, throttled once and retried.
#[tokio::test]
async fn messages_in_flight_together_are_submitted_in_batches_each_with_its_outcome() {
    let (server, dev) = start_with(|c| {
        c.sandbox.settings = json!({"outcomes_by_suffix": {"0005": "throttle_once"}});
    })
    .await;
    let mut messages: Vec<Value> = (0..200)
        .map(|n| json!({"to": format!("+8491234{:04}", 1000 + n), "body": format!("Code {n}")}))
        .collect();
    for suffix in ["0001", "0002", "0003", "0005"] {
        messages.push(json!({"to": format!("+8491234{suffix}"), "body": "Edge"}));
    }
    let (status, reply) = dev
        .post("/v1/messages/batch", json!({ "messages": messages }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["accepted"], 204);
    let ids: Vec<String> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["message"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 204);

    let expect = |n: usize| match n {
        200 => "undelivered",
        201 => "failed",
        _ => "delivered",
    };
    for (n, id) in ids.iter().enumerate() {
        let message = dev.wait_for_status(id, expect(n)).await;
        if n >= 202 {
            // Refused once inside the batch, then taken.
            let statuses = event_statuses(&message);
            assert_eq!(statuses[..3], ["queued", "sending", "queued"], "{message}");
            assert_eq!(parts(&message)[0]["attempts"], 2);
        }
    }
    let (_, carriers) = server.admin().get("/v1/carriers").await;
    let counters = &carriers["data"][0]["counters"];
    let submitted = counters["submitted"].as_u64().unwrap();
    let requests = counters["requests"].as_u64().unwrap();
    assert_eq!(submitted, 203, "{counters}");
    assert!(
        requests * 2 < submitted,
        "{requests} requests for {submitted} messages"
    );
}
