//! The number inventory over HTTP: operators add senders, accounts claim,
//! release and configure them, and no account sees another's.

use crate::common;

use common::{TestServer, assert_422, assert_error, new_tenant};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const VN_NUMBER: &str = "+84912340100";
const HK_NUMBER: &str = "+85261230100";

async fn add(server: &TestServer, body: Value) -> Value {
    let (status, number) = server.admin().post("/v1/numbers", body).await;
    assert_eq!(status, StatusCode::CREATED, "{number}");
    number
}

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn operators_add_senders_that_fit_their_kind_and_country() {
    let server = TestServer::start().await;
    let operator = server.admin();
    let number = add(
        &server,
        json!({"sender": VN_NUMBER, "kind": "long_code", "country": "vn"}),
    )
    .await;
    assert!(
        number["id"].as_str().unwrap().starts_with("num_"),
        "{number}"
    );
    assert_eq!(number["country"], "VN");
    assert_eq!(number["available"], true);
    assert_eq!(number["capabilities"], json!(["sms_mt", "sms_mo"]));
    let alpha = add(
        &server,
        json!({"sender": "Acme", "kind": "alphanumeric", "country": "GB"}),
    )
    .await;
    // Replies do not reach alphanumeric senders.
    assert_eq!(alpha["capabilities"], json!(["sms_mt"]));

    let post = |body: Value| {
        let operator = operator.clone();
        async move {
            operator
                .try_send(
                    Method::POST,
                    "/v1/numbers",
                    Some(body.to_string().into_bytes()),
                    &[],
                )
                .await
                .unwrap()
        }
    };
    let reply = post(json!({"sender": VN_NUMBER, "kind": "long_code", "country": "VN"})).await;
    assert_error(
        &reply,
        StatusCode::CONFLICT,
        "number_exists",
        Some("sender"),
    );
    let reply = post(json!({"sender": "0912340101", "kind": "long_code", "country": "VN"})).await;
    assert_422(&reply, "invalid_sender", Some("sender"));
    let reply = post(json!({"sender": HK_NUMBER, "kind": "long_code", "country": "VN"})).await;
    assert_422(&reply, "invalid_sender", Some("country"));
    let reply = post(json!({"sender": "Acme", "kind": "alphanumeric", "country": "US"})).await;
    assert_422(&reply, "sender_not_allowed_in_country", Some("kind"));
    let reply = post(json!({"sender": "8088", "kind": "short", "country": "US"})).await;
    assert_422(&reply, "invalid_kind", Some("kind"));
    let reply =
        post(json!({"sender": "8088", "kind": "short_code", "country": "US", "carrier": "nope"}))
            .await;
    assert_422(&reply, "unknown_carrier", Some("carrier"));
    let reply = post(
        json!({"sender": "8088", "kind": "short_code", "country": "US", "capabilities": ["fax"]}),
    )
    .await;
    assert_422(&reply, "invalid_capabilities", Some("capabilities"));

    // Only the operator's admins add to the inventory.
    let acme = new_tenant(&operator, "acme").await;
    let (status, _) = acme
        .admin
        .post(
            "/v1/numbers",
            json!({"sender": "8089", "kind": "short_code", "country": "US"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn accounts_claim_release_and_configure_only_their_own_numbers() {
    let server = TestServer::start().await;
    let operator = server.admin();
    let vn = add(
        &server,
        json!({"sender": VN_NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let hk = add(
        &server,
        json!({"sender": HK_NUMBER, "kind": "long_code", "country": "HK"}),
    )
    .await;
    let (vn_id, hk_id) = (vn["id"].as_str().unwrap(), hk["id"].as_str().unwrap());
    let acme = new_tenant(&operator, "acme").await;
    let globex = new_tenant(&operator, "globex").await;

    let (_, mine) = acme.viewer.get("/v1/numbers").await;
    assert!(ids(&mine).is_empty(), "{mine}");
    let (_, available) = acme
        .viewer
        .get("/v1/numbers?available=true&country=VN")
        .await;
    assert_eq!(ids(&available), [vn_id]);

    // Developers and viewers do not claim.
    let (status, _) = acme
        .developer
        .post(&format!("/v1/numbers/{vn_id}/claim"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, claimed) = acme
        .admin
        .post(&format!("/v1/numbers/{vn_id}/claim"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["account_id"], acme.account_id.as_str());
    assert_eq!(claimed["available"], false);

    let (_, mine) = acme.viewer.get("/v1/numbers").await;
    assert_eq!(ids(&mine), [vn_id]);
    // Another account: not listed, not readable, not claimable, not editable.
    let (_, theirs) = globex.viewer.get("/v1/numbers?available=true").await;
    assert_eq!(ids(&theirs), [hk_id]);
    let (status, _) = globex.viewer.get(&format!("/v1/numbers/{vn_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reply = globex
        .admin
        .send(
            Method::POST,
            &format!("/v1/numbers/{vn_id}/claim"),
            Some(b"{}".to_vec()),
            &[],
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "number_unavailable", None);
    let reply = globex
        .admin
        .send(
            Method::PATCH,
            &format!("/v1/numbers/{vn_id}"),
            Some(
                json!({"inbound_url": "https://hooks.example.com/in"})
                    .to_string()
                    .into_bytes(),
            ),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let (status, _) = globex
        .admin
        .post(&format!("/v1/numbers/{vn_id}/release"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = acme
        .viewer
        .get("/v1/numbers/num_00000000000000000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The owner sets where its replies go, with the callback_url checks.
    let patch = |body: Value| {
        let admin = acme.admin.clone();
        async move {
            admin
                .send(
                    Method::PATCH,
                    &format!("/v1/numbers/{vn_id}"),
                    Some(body.to_string().into_bytes()),
                    &[],
                )
                .await
        }
    };
    let reply = patch(json!({"inbound_url": "https://hooks.example.com/in"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["inbound_url"], "https://hooks.example.com/in");
    let reply = patch(json!({"inbound_url": "ftp://example.com"})).await;
    assert_422(&reply, "invalid_url", Some("inbound_url"));
    let reply = patch(json!({"colour": "red"})).await;
    assert_422(&reply, "unknown_field", Some("colour"));
    let (_, read) = operator.get(&format!("/v1/numbers/{vn_id}")).await;
    assert_eq!(read["inbound_url"], "https://hooks.example.com/in");

    // Released, it is available again, its settings gone.
    let (status, released) = acme
        .admin
        .post(&format!("/v1/numbers/{vn_id}/release"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["available"], true);
    assert_eq!(released["inbound_url"], Value::Null);
    let (status, claimed) = globex
        .admin
        .post(&format!("/v1/numbers/{vn_id}/claim"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    // The operator sees every number, owned or not.
    let (_, all) = operator.get("/v1/numbers").await;
    assert_eq!(ids(&all).len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_accounts_claiming_one_number_at_once_exactly_one_wins() {
    let server = TestServer::start().await;
    let operator = server.admin();
    let mut tenants = Vec::new();
    for name in ["a", "b", "c", "d"] {
        tenants.push(new_tenant(&operator, name).await);
    }
    for round in 0..5 {
        let sender = format!("+8491234{:04}", 200 + round);
        let number = add(
            &server,
            json!({"sender": sender, "kind": "long_code", "country": "VN"}),
        )
        .await;
        let path = format!("/v1/numbers/{}/claim", number["id"].as_str().unwrap());
        let claims = tenants.iter().map(|t| {
            let (admin, path) = (t.admin.clone(), path.clone());
            tokio::spawn(async move { admin.post(&path, json!({})).await })
        });
        let mut statuses = Vec::new();
        for claim in claims.collect::<Vec<_>>() {
            let (status, body) = claim.await.unwrap();
            if status == StatusCode::CONFLICT {
                assert_eq!(body["error"]["code"], "number_unavailable");
            }
            statuses.push(status);
        }
        let wins = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let losses = statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!((wins, losses), (1, 3), "{statuses:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn messages_go_only_from_senders_the_account_owns() {
    let server = TestServer::start_with(|c| c.senders.require_owned = true).await;
    let operator = server.admin();
    let number = add(
        &server,
        json!({"sender": VN_NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let acme = new_tenant(&operator, "acme").await;
    let globex = new_tenant(&operator, "globex").await;
    let send = |client: &common::Client, body: Value| {
        let client = client.clone();
        async move {
            client
                .try_send(
                    Method::POST,
                    "/v1/messages",
                    Some(body.to_string().into_bytes()),
                    &[],
                )
                .await
                .unwrap()
        }
    };
    let from_vn = json!({"to": "+84912345678", "body": "Hi", "from": VN_NUMBER});
    let reply = send(&acme.developer, from_vn.clone()).await;
    assert_422(&reply, "sender_not_owned", Some("from"));
    let reply = send(
        &acme.developer,
        json!({"to": "+84912345678", "body": "Hi", "from": "Acme"}),
    )
    .await;
    assert_422(&reply, "sender_not_owned", Some("from"));

    let id = number["id"].as_str().unwrap();
    let (status, _) = acme
        .admin
        .post(&format!("/v1/numbers/{id}/claim"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let reply = send(&acme.developer, from_vn.clone()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["from"], VN_NUMBER);
    // Not for another account, even though the number exists.
    let reply = send(&globex.developer, from_vn.clone()).await;
    assert_422(&reply, "sender_not_owned", Some("from"));
    // Without `from`, the carrier's default sender, as before.
    let reply = send(
        &globex.developer,
        json!({"to": "+84912345678", "body": "Hi"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);

    // In a batch, each item on its own.
    let (status, batch) = acme
        .developer
        .post(
            "/v1/messages/batch",
            json!({"messages": [from_vn, {"to": "+84912345678", "body": "Hi", "from": "Other"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["results"][0]["status"], 202, "{batch}");
    assert_eq!(batch["results"][1]["status"], 422, "{batch}");
    assert_eq!(
        batch["results"][1]["error"]["code"], "sender_not_owned",
        "{batch}"
    );
    assert_eq!(
        batch["results"][1]["error"]["field"], "messages[1].from",
        "{batch}"
    );

    // Sandbox keys may try any sender.
    let (status, key) = globex
        .admin
        .post(
            &format!("/v1/accounts/{}/keys", globex.account_id),
            json!({"role": "developer", "sandbox": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let sandbox = server.client(key["key"].as_str().unwrap());
    let reply = send(
        &sandbox,
        json!({"to": "+84912345678", "body": "Hi", "from": "Anything"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    // But no key sends an alphanumeric sender where the country forbids one.
    let reply = send(
        &sandbox,
        json!({"to": "+12025550123", "body": "Hi", "from": "Anything"}),
    )
    .await;
    assert_422(&reply, "sender_not_allowed_in_country", Some("from"));
    let alpha = add(
        &server,
        json!({"sender": "Acme", "kind": "alphanumeric", "country": "GB"}),
    )
    .await;
    let path = format!("/v1/numbers/{}/claim", alpha["id"].as_str().unwrap());
    let (status, _) = acme.admin.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let reply = send(
        &acme.developer,
        json!({"to": "+447911123456", "body": "Hi", "from": "Acme"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["number_id"], alpha["id"]);
    let reply = send(
        &acme.developer,
        json!({"to": "+12025550123", "body": "Hi", "from": "Acme"}),
    )
    .await;
    assert_422(&reply, "sender_not_allowed_in_country", Some("from"));
    server.stop().await;
}
