//! Access control from the outside: the audit trail, keys limited to
//! networks and in time, rotation with a grace period, the request rate and
//! the daily quota (across a restart).

use crate::common;

use common::{Client, TestServer, new_tenant, wait_until};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

fn otp(to: &str) -> Value {
    json!({"to": to, "from": "Pigeon", "body": "Your code is 123456", "type": "otp"})
}

#[tokio::test]
async fn the_audit_trail_says_who_changed_what_from_where() {
    let server = TestServer::start().await;
    let operator = server.admin();
    let tenant = new_tenant(&operator, "acme").await;

    // The tenant's admin creates and revokes a key, and changes a setting.
    let account_keys = format!("/v1/accounts/{}/keys", tenant.account_id);
    let (status, created) = tenant
        .admin
        .post(&account_keys, json!({"role": "viewer"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key_id = created["id"].as_str().unwrap().to_owned();
    let plain = created["key"].as_str().unwrap().to_owned();
    let (status, _) = tenant.admin.delete(&format!("/v1/keys/{key_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = tenant
        .admin
        .patch("/v1/account", json!({"opt_out_scope": "pool"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Sending is not audited; a refused change is not either.
    tenant.developer.send_message(otp("+84912345678")).await;
    let (status, _) = tenant
        .developer
        .post(&account_keys, json!({"role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, audit) = tenant.compliance.get("/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Newest first; the account's creation by the operator is its too.
    assert_eq!(
        actions,
        [
            "account.update",
            "key.revoke",
            "key.create",
            "key.create",
            "key.create",
            "key.create",
            "key.create",
            "account.create"
        ]
    );
    let entries = audit["data"].as_array().unwrap();
    let revoke = &entries[1];
    assert_eq!(revoke["target"], key_id.as_str());
    assert_eq!(revoke["role"], "admin");
    assert_eq!(revoke["client_ip"], "127.0.0.1");
    assert!(revoke["key_id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(entries[2]["target"], key_id.as_str());
    assert_eq!(entries[2]["summary"]["role"], "viewer");
    assert_eq!(entries[0]["summary"]["account"]["opt_out_scope"], "pool");
    // Never a key or a webhook secret.
    let text = audit.to_string();
    assert!(!text.contains(&plain), "{text}");
    assert!(!text.contains("whsec_"), "{text}");

    // Filters and pages.
    let (_, only) = tenant.admin.get("/v1/audit?action=key.revoke").await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let (_, page) = tenant.admin.get("/v1/audit?limit=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = tenant
        .admin
        .get(&format!("/v1/audit?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next["data"][0]["action"], "key.create");
    let admin_key_id = revoke["key_id"].as_str().unwrap();
    let (_, by_key) = tenant
        .admin
        .get(&format!("/v1/audit?key={admin_key_id}"))
        .await;
    assert_eq!(by_key["data"].as_array().unwrap().len(), 3);

    // Developers and viewers may not read it; other accounts see nothing
    // of it; the operator sees it with `account=`.
    let (status, _) = tenant.developer.get("/v1/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = new_tenant(&operator, "other").await;
    let (_, theirs) = other.admin.get("/v1/audit").await;
    assert!(!theirs.to_string().contains(&key_id));
    let (status, _) = other
        .admin
        .get(&format!("/v1/audit?account={}", tenant.account_id))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, all) = operator
        .get(&format!(
            "/v1/audit?account={}&action=key.revoke",
            tenant.account_id
        ))
        .await;
    assert_eq!(all["data"][0]["target"], key_id.as_str());
    let (status, body) = operator.get("/v1/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "since");
    server.stop().await;
}

#[tokio::test]
async fn keys_work_only_from_their_networks_and_until_they_expire() {
    let server = TestServer::start_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let operator = server.admin();
    let tenant = new_tenant(&operator, "acme").await;
    let keys = format!("/v1/accounts/{}/keys", tenant.account_id);

    let (status, created) = tenant
        .admin
        .post(
            &keys,
            json!({"role": "developer", "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["allowed_ips"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    let key_id = created["id"].as_str().unwrap().to_owned();
    let office = operator.with_key(created["key"].as_str().unwrap());
    let (status, body) = office.get("/v1/messages").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "ip_not_allowed");
    // Behind a trusted proxy the client is the forwarded address.
    let via_proxy = |ip: &'static str| {
        let office = office.clone();
        async move {
            office
                .send(
                    Method::GET,
                    "/v1/messages",
                    None,
                    &[("x-forwarded-for", ip)],
                )
                .await
                .status
        }
    };
    assert_eq!(via_proxy("10.20.30.40").await, StatusCode::OK);
    assert_eq!(via_proxy("2001:db8:5::1").await, StatusCode::OK);
    assert_eq!(via_proxy("192.0.2.1").await, StatusCode::FORBIDDEN);

    // Allowed from here after a PATCH; a bad entry is a 422 naming it.
    let path = format!("/v1/keys/{key_id}");
    let (status, body) = tenant
        .admin
        .patch(&path, json!({"allowed_ips": ["127.0.0.0/8", "nonsense"]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "allowed_ips[1]");
    let (status, body) = tenant
        .admin
        .patch(&path, json!({"allowed_ips": ["127.0.0.0/8"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = office.get("/v1/messages").await;
    assert_eq!(status, StatusCode::OK);
    // Another account's key is not found.
    let other = new_tenant(&operator, "other").await;
    let (status, _) = other.admin.patch(&path, json!({"allowed_ips": []})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Expiry: in the past is refused; soon, and then it is a 401.
    let (status, body) = tenant
        .admin
        .patch(&path, json!({"expires_at": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "expires_at");
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let (status, body) = tenant
        .admin
        .patch(&path, json!({"expires_at": soon.to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = office.get("/v1/messages").await;
    assert_eq!(status, StatusCode::OK);
    let expired = wait_until("the key to expire", || async {
        let (status, body) = office.get("/v1/messages").await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;
    assert_eq!(expired["error"]["code"], "key_expired");
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_key_keeps_working_through_its_grace_period() {
    let server = TestServer::start().await;
    let operator = server.admin();
    let tenant = new_tenant(&operator, "acme").await;
    let (_, created) = tenant
        .admin
        .post(
            &format!("/v1/accounts/{}/keys", tenant.account_id),
            json!({"role": "developer", "allowed_ips": ["127.0.0.1"]}),
        )
        .await;
    let old_id = created["id"].as_str().unwrap().to_owned();
    let old = operator.with_key(created["key"].as_str().unwrap());

    let (status, rotated) = tenant
        .admin
        .post(
            &format!("/v1/keys/{old_id}/rotate"),
            json!({"grace_secs": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_ne!(rotated["id"], old_id.as_str());
    assert_eq!(rotated["role"], "developer");
    assert_eq!(rotated["allowed_ips"], json!(["127.0.0.1/32"]));
    let new = operator.with_key(rotated["key"].as_str().unwrap());
    // Both work during the grace period, then only the new one.
    assert_eq!(new.get("/v1/messages").await.0, StatusCode::OK);
    assert_eq!(old.get("/v1/messages").await.0, StatusCode::OK);
    wait_until("the old key to stop working", || async {
        (old.get("/v1/messages").await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(new.get("/v1/messages").await.0, StatusCode::OK);

    // Without a grace period the old key stops at once.
    let new_id = rotated["id"].as_str().unwrap();
    let (status, again) = tenant
        .admin
        .post(&format!("/v1/keys/{new_id}/rotate"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(new.get("/v1/messages").await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = tenant
        .admin
        .post(
            &format!("/v1/keys/{new_id}/rotate"),
            json!({"grace_secs": 99999999}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, audit) = tenant.admin.get("/v1/audit?action=key.rotate").await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_request_rate_and_the_daily_quota_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let operator = server.admin();
    let tenant = new_tenant(&operator, "acme").await;
    let account = format!("/v1/accounts/{}", tenant.account_id);

    // Only the operator sets limits; a zero is refused.
    let (status, _) = tenant
        .admin
        .patch(&account, json!({"limits": {"messages_per_day": 3}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = operator
        .patch(&account, json!({"limits": {"messages_per_day": 0}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "limits.messages_per_day");
    let (status, body) = operator
        .patch(&account, json!({"limits": {"messages_per_day": 3}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["limits"]["messages_per_day"], 3);

    tenant.developer.send_message(otp("+84912345001")).await;
    tenant.developer.send_message(otp("+84912345002")).await;
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let developer = server.client(&key_of(&tenant.developer));
    developer.send_message(otp("+84912345003")).await;
    let (status, body) = developer.post("/v1/messages", otp("+84912345004")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let (status, body) = developer
        .post(
            "/v1/messages/batch",
            json!({"messages": [otp("+84912345005")]}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (_, listed) = developer.get("/v1/messages?limit=100").await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        3,
        "nothing more stored"
    );

    // The request rate: a second's burst, then 429 with Retry-After.
    let operator = server.admin();
    let (status, _) = operator
        .patch(&account, json!({"limits": {"requests_per_second": 2}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut limited = None;
    for _ in 0..10 {
        let reply = developer.send(Method::GET, "/v1/messages", None, &[]).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the rate was never enforced");
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // Lifting both limits lets it send again.
    let (status, body) = operator
        .patch(
            &account,
            json!({"limits": {"requests_per_second": null, "messages_per_day": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    developer.send_message(otp("+84912345006")).await;
    server.stop().await;
}

/// The key a client sends (the tests' clients are made from keys).
fn key_of(client: &Client) -> String {
    client.key().unwrap().to_owned()
}
