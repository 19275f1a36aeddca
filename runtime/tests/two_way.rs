//! Sender pools and two-way messaging over HTTP: a business claims numbers,
//! pools them, sends through the pool (each recipient gets a local sender,
//! the same one next time, across restarts), and receives its recipients'
//! replies in its own inbox and on its own signed webhook — never another
//! account's.

use crate::common;

use std::path::Path;

use common::receiver::{Receiver, assert_signed};
use common::{Client, Tenant, TestServer, assert_422, assert_error, new_tenant, own_number};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const VN_NUMBER: &str = "+84912340300";
const HK_NUMBER: &str = "+85261230300";
const VN_HANDSET: &str = "+84987654321";
const VN_HANDSET_2: &str = "+84987654322";
const HK_HANDSET: &str = "+85291234567";
const GB_HANDSET: &str = "+447911123456";

async fn start_in(dir: &Path) -> TestServer {
    TestServer::start_in(dir, |config| {
        config.senders.require_owned = true;
        config.inbound.part_timeout_ms = 300;
    })
    .await
}

async fn request(client: &Client, method: Method, path: &str, body: Value) -> common::Reply {
    client
        .try_send(method, path, Some(body.to_string().into_bytes()), &[])
        .await
        .unwrap()
}

/// Acme with a Vietnamese and a Hong Kong number: (tenant, vn id, hk id).
async fn acme_with_numbers(server: &TestServer) -> (Tenant, String, String) {
    let acme = new_tenant(&server.admin(), "acme").await;
    let vn = own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": VN_NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let hk = own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": HK_NUMBER, "kind": "long_code", "country": "HK"}),
    )
    .await;
    (acme, vn, hk)
}

async fn new_pool(client: &Client, body: Value) -> String {
    let (status, pool) = client.post("/v1/sender-pools", body).await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    assert!(pool["id"].as_str().unwrap().starts_with("pool_"), "{pool}");
    pool["id"].as_str().unwrap().to_owned()
}

/// The sender Pigeon picked for a message sent through `pool`.
async fn sender_for(client: &Client, pool: &str, to: &str) -> String {
    let (status, message) = client
        .post(
            "/v1/messages",
            json!({"pool": pool, "to": to, "body": "Your code is 123456"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{message}");
    assert_eq!(message["pool_id"], pool, "{message}");
    message["from"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_pool_gives_each_recipient_a_local_sender_and_the_same_one_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, vn, hk) = acme_with_numbers(&server).await;
    let pool = new_pool(
        &acme.admin,
        json!({"name": "OTP", "senders": [vn, hk], "sticky_sender": true, "geo_match": true}),
    )
    .await;
    let dev = &acme.developer;
    assert_eq!(sender_for(dev, &pool, VN_HANDSET).await, VN_NUMBER);
    assert_eq!(sender_for(dev, &pool, HK_HANDSET).await, HK_NUMBER);
    assert_eq!(sender_for(dev, &pool, VN_HANDSET).await, VN_NUMBER);
    // No British sender: with fallback "any" (the default), one of the pool's.
    let gb = sender_for(dev, &pool, GB_HANDSET).await;
    assert!([VN_NUMBER, HK_NUMBER].contains(&gb.as_str()), "{gb}");

    // A recipient that got the Hong Kong number while it was the pool's
    // only one keeps it when a local number joins, even after a restart.
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/sender-pools/{pool}"),
        json!({"senders": [hk]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(sender_for(dev, &pool, VN_HANDSET_2).await, HK_NUMBER);
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/sender-pools/{pool}"),
        json!({"senders": [vn, hk]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["senders"], json!([vn, hk]));
    server.stop().await;
    let server = start_in(dir.path()).await;
    let dev = dev.with_addr(server.addr);
    let admin = acme.admin.with_addr(server.addr);
    assert_eq!(sender_for(&dev, &pool, VN_HANDSET_2).await, HK_NUMBER);
    assert_eq!(sender_for(&dev, &pool, VN_HANDSET).await, VN_NUMBER);
    assert_eq!(sender_for(&dev, &pool, GB_HANDSET).await, gb);

    // Not sticky: the local sender again. Fallback "none": no sender for GB.
    let reply = request(
        &admin,
        Method::PATCH,
        &format!("/v1/sender-pools/{pool}"),
        json!({"sticky_sender": false, "fallback": "none"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(sender_for(&dev, &pool, VN_HANDSET_2).await, VN_NUMBER);
    let reply = request(
        &dev,
        Method::POST,
        "/v1/messages",
        json!({"pool": pool, "to": GB_HANDSET, "body": "hi"}),
    )
    .await;
    assert_422(&reply, "no_sender_for_country", Some("to"));
    // In a batch, the same refusal for that item alone.
    let (status, batch) = dev
        .post(
            "/v1/messages/batch",
            json!({"messages": [
                {"pool": pool, "to": HK_HANDSET, "body": "hi"},
                {"pool": pool, "to": GB_HANDSET, "body": "hi"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["results"][0]["message"]["from"], HK_NUMBER, "{batch}");
    assert_eq!(
        batch["results"][1]["error"]["code"], "no_sender_for_country",
        "{batch}"
    );
    server.stop().await;
}

#[tokio::test]
async fn pools_hold_only_the_accounts_own_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, vn, hk) = acme_with_numbers(&server).await;
    let globex = new_tenant(&server.admin(), "globex").await;
    let theirs = own_number(
        &server.admin(),
        &globex.admin,
        json!({"sender": "+84912340399", "kind": "long_code", "country": "VN"}),
    )
    .await;

    let reply = request(
        &acme.admin,
        Method::POST,
        "/v1/sender-pools",
        json!({"name": "Mine", "senders": [vn, theirs]}),
    )
    .await;
    assert_422(&reply, "unknown_number", Some("senders[1]"));
    let reply = request(
        &acme.admin,
        Method::POST,
        "/v1/sender-pools",
        json!({"senders": [vn]}),
    )
    .await;
    assert_422(&reply, "missing_field", Some("name"));
    let reply = request(
        &acme.admin,
        Method::POST,
        "/v1/sender-pools",
        json!({"name": "x", "fallback": "sometimes"}),
    )
    .await;
    assert_422(&reply, "invalid_fallback", Some("fallback"));
    let reply = request(
        &acme.developer,
        Method::POST,
        "/v1/sender-pools",
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    let pool = new_pool(&acme.admin, json!({"name": "Mine", "senders": [vn]})).await;
    let other = new_pool(&acme.admin, json!({"name": "Other"})).await;
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/sender-pools/{other}"),
        json!({"senders": [vn]}),
    )
    .await;
    assert_error(
        &reply,
        StatusCode::CONFLICT,
        "number_in_another_pool",
        Some("senders[0]"),
    );
    // A number joins a pool from its own side too.
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/numbers/{hk}"),
        json!({"pool_id": pool}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["pool_id"], pool.as_str());
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/numbers/{hk}"),
        json!({"pool_id": "pool_nope"}),
    )
    .await;
    assert_422(&reply, "unknown_pool", Some("pool_id"));
    let (_, read) = acme.viewer.get(&format!("/v1/sender-pools/{pool}")).await;
    assert_eq!(read["senders"], json!([vn, hk]), "{read}");
    let (_, list) = acme.viewer.get("/v1/sender-pools").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");

    // Another account's pool does not exist for globex.
    let path = format!("/v1/sender-pools/{pool}");
    let (status, _) = globex.admin.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reply = request(
        &globex.admin,
        Method::PATCH,
        &path,
        json!({"name": "Mine now"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let (status, _) = globex.admin.delete(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = globex.admin.get("/v1/sender-pools").await;
    assert_eq!(list["data"], json!([]));
    let reply = request(
        &globex.developer,
        Method::POST,
        "/v1/messages",
        json!({"pool": pool, "to": VN_HANDSET, "body": "hi"}),
    )
    .await;
    assert_422(&reply, "unknown_pool", Some("pool"));
    let reply = request(
        &acme.developer,
        Method::POST,
        "/v1/messages",
        json!({"pool": pool, "from": VN_NUMBER, "to": VN_HANDSET, "body": "hi"}),
    )
    .await;
    assert_422(&reply, "conflicting_fields", Some("pool"));

    // The account's default pool serves messages that name no sender.
    let reply = request(
        &acme.admin,
        Method::PATCH,
        "/v1/account",
        json!({"default_pool": pool}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["account"]["default_pool"], pool.as_str());
    let reply = request(
        &acme.admin,
        Method::PATCH,
        "/v1/account",
        json!({"default_pool": theirs}),
    )
    .await;
    assert_422(&reply, "unknown_pool", Some("default_pool"));
    let (status, message) = acme
        .developer
        .post("/v1/messages", json!({"to": HK_HANDSET, "body": "hi"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{message}");
    assert_eq!(message["from"], HK_NUMBER);
    assert_eq!(message["pool_id"], pool.as_str());

    // Deleted, its numbers stay the account's, out of any pool, and the
    // default is gone: messages go with the carrier's default sender.
    let (status, _) = acme.admin.delete(&path).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = acme.viewer.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, number) = acme.viewer.get(&format!("/v1/numbers/{vn}")).await;
    assert_eq!(number["pool_id"], Value::Null);
    assert_eq!(number["account_id"], acme.account_id.as_str());
    let (_, whoami) = acme.viewer.get("/v1/account").await;
    assert_eq!(whoami["account"]["default_pool"], Value::Null);
    let (status, message) = acme
        .developer
        .post("/v1/messages", json!({"to": HK_HANDSET, "body": "hi"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{message}");
    assert_eq!(message["from"], Value::Null);
    server.stop().await;
}

/// The account's webhook secret, as its admin reads it.
async fn webhook_secret(tenant: &Tenant) -> String {
    let (_, account) = tenant
        .admin
        .get(&format!("/v1/accounts/{}", tenant.account_id))
        .await;
    account["webhook_secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_reply_reaches_the_owners_inbox_and_webhook_and_no_one_elses() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let receiver = Receiver::start().await;
    let (acme, vn, hk) = acme_with_numbers(&server).await;
    let globex = new_tenant(&server.admin(), "globex").await;
    // Where each number's messages go: the number's URL, else its pool's,
    // else the account's.
    let pool = new_pool(
        &acme.admin,
        json!({"name": "Support", "senders": [vn, hk], "inbound_url": receiver.url("/pool")}),
    )
    .await;
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/numbers/{vn}"),
        json!({"inbound_url": receiver.url("/vn")}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = request(
        &acme.admin,
        Method::PATCH,
        "/v1/account",
        json!({"inbound_url": receiver.url("/account")}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["account"]["inbound_url"],
        receiver.url("/account")
    );
    let sent = acme
        .developer
        .send_message(json!({"pool": pool, "to": VN_HANDSET, "body": "Reply YES"}))
        .await;
    acme.developer.wait_for_status(&sent, "delivered").await;
    // Globex wrote to the same handset since; the reply is still acme's.
    globex
        .developer
        .send_message(json!({"to": VN_HANDSET, "body": "Hello"}))
        .await;

    let (status, reply) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": "0987654321", "to": VN_NUMBER, "body": "YES"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["from"], VN_HANDSET, "read with the number's country");
    assert_eq!(reply["to"], VN_NUMBER);
    assert_eq!(reply["body"], "YES");
    assert_eq!(reply["account_id"], acme.account_id.as_str());
    assert_eq!(reply["number_id"], vn.as_str());
    assert_eq!(reply["pool_id"], pool.as_str());
    assert_eq!(reply["in_reply_to"], sent.as_str());
    let inbound_id = reply["id"].as_str().unwrap().to_owned();

    let secret = webhook_secret(&acme).await;
    let hook = common::wait_until("the inbound webhook", || async {
        receiver
            .requests()
            .into_iter()
            .find(|r| r.json["id"] == inbound_id.as_str())
    })
    .await;
    assert_eq!(hook.path, "/vn");
    assert_signed(&hook, &secret);
    assert_eq!(hook.json["type"], "message.inbound");
    assert_eq!(hook.json["from"], VN_HANDSET);
    assert_eq!(hook.json["to"], VN_NUMBER);
    assert_eq!(hook.json["body"], "YES");
    assert_eq!(hook.json["number_id"], vn.as_str());
    assert_eq!(hook.json["pool_id"], pool.as_str());
    assert_eq!(hook.json["in_reply_to"], sent.as_str());
    assert!(hook.json["received_at"].as_str().is_some(), "{}", hook.json);
    let deliveries = common::wait_until("the delivery to be recorded", || async {
        let (_, list) = acme
            .viewer
            .get(&format!("/v1/inbound/{inbound_id}/webhooks"))
            .await;
        (list["data"][0]["state"] == "delivered").then_some(list)
    })
    .await;
    assert_eq!(deliveries["data"][0]["url"], receiver.url("/vn"));

    // The HK number has no URL of its own: its pool's. Out of the pool: the account's.
    let (_, to_hk) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": HK_HANDSET, "to": HK_NUMBER, "body": "hello"}),
        )
        .await;
    let reply = request(
        &acme.admin,
        Method::PATCH,
        &format!("/v1/numbers/{hk}"),
        json!({"pool_id": null}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let (_, to_hk_later) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": HK_HANDSET, "to": HK_NUMBER, "body": "again"}),
        )
        .await;
    for (inbound, path) in [(&to_hk, "/pool"), (&to_hk_later, "/account")] {
        let hook = common::wait_until("an inbound webhook", || async {
            receiver
                .requests()
                .into_iter()
                .find(|r| r.json["id"] == inbound["id"])
        })
        .await;
        assert_eq!(hook.path, path, "{}", hook.json);
        assert_signed(&hook, &secret);
    }

    // Globex sees none of it, and cannot make acme's number receive.
    let (_, list) = globex.admin.get("/v1/inbound").await;
    assert_eq!(list["data"], json!([]), "{list}");
    for path in [
        format!("/v1/inbound/{inbound_id}"),
        format!("/v1/inbound/{inbound_id}/webhooks"),
    ] {
        let (status, _) = globex.admin.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let reply = request(
        &globex.developer,
        Method::POST,
        "/v1/sandbox/inbound",
        json!({"from": VN_HANDSET, "to": VN_NUMBER, "body": "spoof"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let reply = request(
        &acme.viewer,
        Method::POST,
        "/v1/sandbox/inbound",
        json!({"from": VN_HANDSET, "to": VN_NUMBER, "body": "hi"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let (_, acme_inbox) = acme.viewer.get("/v1/inbound").await;
    assert_eq!(acme_inbox["data"].as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn messages_to_unowned_numbers_are_the_operators_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let acme = new_tenant(&server.admin(), "acme").await;
    let (status, number) = server
        .admin()
        .post(
            "/v1/numbers",
            json!({"sender": VN_NUMBER, "kind": "long_code", "country": "VN"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{number}");
    // Not owned: the sandbox will not play it for acme.
    let reply = request(
        &acme.developer,
        Method::POST,
        "/v1/sandbox/inbound",
        json!({"from": VN_HANDSET, "to": VN_NUMBER, "body": "hi"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

    // A carrier delivers to it anyway.
    let callback = sandbox_callback(&server).await;
    let reply = request(
        &server.admin().without_key(),
        Method::POST,
        &format!("{callback}/inbound"),
        json!({"id": "mo-unowned", "from": "84987654321", "to": "84912340300", "text": "hi"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    let (_, list) = server.admin().get("/v1/inbound").await;
    let filed = &list["data"][0];
    assert_eq!(filed["carrier_message_id"], "mo-unowned", "{list}");
    assert_eq!(filed["account_id"], Value::Null);
    assert_eq!(filed["number_id"], number["id"]);
    assert_eq!(filed["from"], VN_HANDSET);
    assert_eq!(filed["to"], VN_NUMBER);
    let (_, list) = acme.admin.get("/v1/inbound").await;
    assert_eq!(list["data"], json!([]));
    server.stop().await;
}

/// The sandbox carrier's callback path, with its secret.
async fn sandbox_callback(server: &TestServer) -> String {
    let (_, carriers) = server.admin().get("/v1/carriers").await;
    let sandbox = carriers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sandbox")
        .unwrap_or_else(|| panic!("no sandbox in {carriers}"));
    let url = sandbox["callback_url"].as_str().unwrap();
    url.strip_prefix(&format!("http://{}", server.addr))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_long_reply_in_parts_is_filed_as_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let receiver = Receiver::start().await;
    let (acme, _, _) = acme_with_numbers(&server).await;
    let reply = request(
        &acme.admin,
        Method::PATCH,
        "/v1/account",
        json!({"inbound_url": receiver.url("/in")}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Three parts, sent by the sandbox last part first.
    let long: String = (0..40).map(|i| format!("word{i} ")).collect();
    let (status, filed) = acme
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": VN_HANDSET, "to": VN_NUMBER, "body": long}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    assert_eq!(filed["body"], long.as_str());
    let hook = common::wait_until("the webhook of the joined message", || async {
        receiver
            .requests()
            .into_iter()
            .find(|r| r.json["id"] == filed["id"])
    })
    .await;
    assert_eq!(hook.json["body"], long.as_str());

    // A part that never comes: what came is filed after the timeout.
    let callback = sandbox_callback(&server).await;
    for (id, sequence, text) in [("mo-p3", 3, "three"), ("mo-p1", 1, "one ")] {
        let reply = request(
            &server.admin().without_key(),
            Method::POST,
            &format!("{callback}/inbound"),
            json!({"id": id, "from": VN_HANDSET, "to": VN_NUMBER, "text": text,
                   "part": {"reference": 7, "count": 3, "sequence": sequence}}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    let partial = common::wait_until("the partial message", || async {
        let (_, list) = acme.viewer.get("/v1/inbound").await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["carrier_message_id"] == "mo-p1")
            .cloned()
    })
    .await;
    assert_eq!(partial["body"], "one three");
    // A carrier repeating a part already filed adds nothing.
    let (_, list) = acme.viewer.get("/v1/inbound").await;
    let before = list["data"].as_array().unwrap().len();
    let reply = request(
        &server.admin().without_key(),
        Method::POST,
        &format!("{callback}/inbound"),
        json!({"id": "mo-p1", "from": VN_HANDSET, "to": VN_NUMBER, "text": "one ",
               "part": {"reference": 7, "count": 3, "sequence": 1}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let (_, list) = acme.viewer.get("/v1/inbound").await;
    assert_eq!(list["data"].as_array().unwrap().len(), before);
    server.stop().await;
}
