//! The README's walk-through, against the real binary: create an account and
//! a key, send a message, and watch it go queued → sending → sent → delivered.

use crate::common;

use common::BinaryServer;
use serde_json::json;

#[tokio::test]
async fn newcomer_walkthrough_reaches_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::spawn(dir.path(), &[]).await;
    let admin = server.admin();

    let (status, health) = admin.without_key().get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    let (status, ready) = admin.without_key().get("/readyz").await;
    assert_eq!(status, 200, "{ready}");

    let tenant = common::new_tenant(&admin, "Acme").await;
    let id = tenant
        .developer
        .send_message(json!({"to": "+84912345678", "body": "Your code is 123456", "type": "otp"}))
        .await;
    let message = tenant.developer.wait_for_status(&id, "delivered").await;

    let statuses: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "sending", "sent", "delivered"]);
    assert_eq!(message["parts"][0]["carrier"], "sandbox");
    assert_eq!(message["country"], "VN");

    let exit = server.terminate().await;
    assert!(exit.success(), "pigeon exited with {exit}");
}

/// The README's "Receiving messages" walk-through, against the real binary
/// on its defaults (senders must be owned): numbers claimed, pooled, a
/// local sender for each recipient, a reply simulated and filed under the
/// account, with its webhook queued to the account's URL.
#[tokio::test]
async fn a_business_sends_from_its_pool_and_hears_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::spawn(dir.path(), &[]).await;
    let operator = server.admin();
    let acme = common::new_tenant(&operator, "Acme").await;
    let vn = common::own_number(
        &operator,
        &acme.admin,
        json!({"sender": "+84912340100", "kind": "long_code", "country": "VN"}),
    )
    .await;
    let hk = common::own_number(
        &operator,
        &acme.admin,
        json!({"sender": "+85261230100", "kind": "long_code", "country": "HK"}),
    )
    .await;
    let (status, pool) = acme
        .admin
        .post(
            "/v1/sender-pools",
            json!({"name": "Support", "senders": [vn, hk]}),
        )
        .await;
    assert_eq!(status, 201, "{pool}");
    let pool = pool["id"].as_str().unwrap();
    let body = "Your table for 2 is booked. Reply YES to confirm.";
    let mut sent = Vec::new();
    for (to, from) in [
        ("+84987654321", "+84912340100"),
        ("+85291234567", "+85261230100"),
    ] {
        let (status, message) = acme
            .developer
            .post(
                "/v1/messages",
                json!({"pool": pool, "to": to, "body": body}),
            )
            .await;
        assert_eq!(status, 202, "{message}");
        assert_eq!(message["from"], from, "{message}");
        sent.push(message["id"].as_str().unwrap().to_owned());
    }
    let (status, refused) = acme
        .developer
        .post(
            "/v1/messages",
            json!({"from": "+84912340999", "to": "+84987654321", "body": "hi"}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "sender_not_owned");

    let settings = json!({"inbound_url": "https://hooks.example.com/sms/inbound"});
    let reply = acme
        .admin
        .send(
            hyper::Method::PATCH,
            "/v1/account",
            Some(settings.to_string().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (status, reply) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": "+84987654321", "to": "+84912340100", "body": "YES"}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["in_reply_to"], sent[0].as_str());
    assert_eq!(reply["pool_id"], pool);
    let (_, inbox) = acme.viewer.get("/v1/inbound").await;
    assert_eq!(inbox["data"][0]["id"], reply["id"], "{inbox}");
    let (_, hooks) = acme
        .viewer
        .get(&format!(
            "/v1/inbound/{}/webhooks",
            reply["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(hooks["data"][0]["type"], "message.inbound", "{hooks}");
    assert_eq!(
        hooks["data"][0]["url"],
        "https://hooks.example.com/sms/inbound"
    );

    let exit = server.terminate().await;
    assert!(exit.success(), "pigeon exited with {exit}");
}
