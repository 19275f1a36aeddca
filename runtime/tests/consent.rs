//! Consent and opt-out over HTTP: handsets reply STOP (in many languages)
//! through the sandbox carrier and get one confirmation and nothing more,
//! not even what was already scheduled, until START; suppression lists
//! with CSV import; consent records, required for marketing, with their
//! history; all of it kept across a restart.

use crate::common;

use std::path::Path;

use common::{Client, Tenant, TestServer, assert_422, new_tenant, own_number, wait_until};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const NUMBER: &str = "+84912340400";
const OTHER_NUMBER: &str = "+84912340401";

async fn start_in(dir: &Path) -> TestServer {
    TestServer::start_in(dir, |config| config.senders.require_owned = true).await
}

async fn request(client: &Client, method: Method, path: &str, body: Value) -> common::Reply {
    client
        .try_send(method, path, Some(body.to_string().into_bytes()), &[])
        .await
        .unwrap()
}

async fn acme(server: &TestServer) -> (Tenant, String) {
    let acme = new_tenant(&server.admin(), "Acme").await;
    let number = own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    (acme, number)
}

/// The handset `from` sends `body` to `to` through the sandbox carrier.
async fn reply(tenant: &Tenant, from: &str, to: &str, body: &str) -> Value {
    let (status, filed) = tenant
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": from, "to": to, "body": body}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    filed
}

/// Pigeon's automatic replies to `handset`, oldest first.
async fn auto_replies(client: &Client, handset: &str) -> Vec<Value> {
    let (_, list) = client
        .get(&format!(
            "/v1/messages?to={}&limit=100",
            handset.replace('+', "%2B")
        ))
        .await;
    let mut replies: Vec<Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metadata"]["auto_reply"].is_string())
        .cloned()
        .collect();
    replies.reverse();
    replies
}

async fn wait_for_replies(client: &Client, handset: &str, count: usize) -> Vec<Value> {
    wait_until(&format!("{count} replies to {handset}"), || async {
        let replies = auto_replies(client, handset).await;
        (replies.len() >= count).then_some(replies)
    })
    .await
}

async fn send(client: &Client, body: Value) -> common::Reply {
    request(client, Method::POST, "/v1/messages", body).await
}

#[tokio::test]
async fn stop_in_any_default_language_is_confirmed_once_and_then_nothing_goes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, _) = acme(&server).await;
    let keywords = [
        "STOP",
        "stopall",
        "Unsubscribe",
        "cancel",
        "End.",
        "QUIT",
        "optout",
        "Revoke",
        "TD",
        "t",
        "退订",
        "取消",
        "HUY",
        "Hủy!",
        "Từ chối",
        "TU CHOI",
        "配信停止",
        "停止。",
        "ＳＴＯＰ",
    ];
    for (i, keyword) in keywords.iter().enumerate() {
        let handset = format!("+8498765{:04}", 4000 + i);
        reply(&acme, &handset, NUMBER, keyword).await;
        let replies = wait_for_replies(&acme.viewer, &handset, 1).await;
        let confirmation = &replies[0];
        assert_eq!(
            confirmation["metadata"]["auto_reply"], "opt_out",
            "{keyword}"
        );
        assert_eq!(confirmation["from"], NUMBER);
        assert_eq!(confirmation["type"], "transactional");
        assert!(
            confirmation["body"].as_str().unwrap().starts_with("Acme:"),
            "{confirmation}"
        );
        // The confirmation goes out although the handset opted out.
        acme.viewer
            .wait_for_status(confirmation["id"].as_str().unwrap(), "delivered")
            .await;
        let refused = send(
            &acme.developer,
            json!({"to": handset, "from": NUMBER, "body": "Flash sale today"}),
        )
        .await;
        assert_422(&refused, "recipient_opted_out", Some("to"));
        let (status, entry) = acme
            .viewer
            .get(&format!("/v1/suppressions/{handset}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{keyword}: {entry}");
        assert_eq!(entry["data"][0]["source"], "keyword");
        assert!(
            entry["data"][0]["evidence"]
                .as_str()
                .unwrap()
                .starts_with("in_")
        );
    }
    // The refused attempt is on record, as rejected.
    let handset = "+84987654000";
    let (_, list) = acme
        .viewer
        .get(&format!(
            "/v1/messages?to=%2B{}&status=rejected",
            &handset[1..]
        ))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    // Not a keyword: filed, no reply, no opt-out.
    reply(&acme, "+84987659999", NUMBER, "please stop by tomorrow").await;
    assert!(auto_replies(&acme.viewer, "+84987659999").await.is_empty());
    let ok = send(
        &acme.developer,
        json!({"to": "+84987659999", "from": NUMBER, "body": "See you"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);

    // After a restart, still opted out.
    server.stop().await;
    let server = start_in(dir.path()).await;
    let refused = send(
        &acme.developer.with_addr(server.addr),
        json!({"to": handset, "from": NUMBER, "body": "We miss you"}),
    )
    .await;
    assert_422(&refused, "recipient_opted_out", Some("to"));
    server.stop().await;
}

#[tokio::test]
async fn what_was_scheduled_before_stop_is_not_sent_and_start_lifts_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, _) = acme(&server).await;
    let handset = "+84987651111";
    let soon = pigeon::time::to_rfc3339(pigeon::time::now_ms() + 1500);
    let scheduled = send(
        &acme.developer,
        json!({"to": handset, "from": NUMBER, "body": "Reminder", "send_at": soon}),
    )
    .await;
    assert_eq!(scheduled.status, StatusCode::ACCEPTED, "{}", scheduled.body);
    let inbound = reply(&acme, handset, NUMBER, "STOP").await;
    let id = scheduled.body["id"].as_str().unwrap();
    let message = acme.viewer.wait_for_status(id, "rejected").await;
    assert_eq!(message["parts"][0]["error_code"], "recipient_opted_out");

    // HELP is answered; START lifts the opt-out and is answered.
    reply(&acme, handset, NUMBER, "help").await;
    reply(&acme, handset, NUMBER, "START").await;
    let replies = wait_for_replies(&acme.viewer, handset, 3).await;
    let kinds: Vec<&str> = replies
        .iter()
        .map(|r| r["metadata"]["auto_reply"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opt_out", "help", "opt_in"]);
    let ok = send(
        &acme.developer,
        json!({"to": handset, "from": NUMBER, "body": "Welcome back"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let (status, _) = acme
        .viewer
        .get(&format!("/v1/suppressions/{handset}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The history tells it in order, with the evidence.
    let (_, history) = acme
        .viewer
        .get(&format!("/v1/consents/{handset}/history"))
        .await;
    let kinds: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opt_out", "opt_in"], "{history}");
    assert_eq!(history["data"][0]["evidence"], inbound["id"]);
    assert_eq!(history["data"][0]["source"], "keyword");
    assert_eq!(history["data"][0]["actor"], handset);
    server.stop().await;
}

#[tokio::test]
async fn keywords_and_replies_are_the_accounts_and_the_pools_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, number) = acme(&server).await;
    let (_, defaults) = acme.viewer.get("/v1/account/keywords").await;
    assert_eq!(defaults["custom"], false);
    assert!(
        defaults["opt_out"]
            .as_array()
            .unwrap()
            .contains(&json!("HỦY"))
    );
    let reply_of = |k: &str| defaults[k].as_str().unwrap().to_owned();
    assert!(reply_of("opt_out_reply").starts_with("Acme:"));

    let put = request(
        &acme.compliance,
        Method::PUT,
        "/v1/account/keywords",
        json!({"opt_out": ["BASTA", "Arrêt"], "opt_out_reply": "Ciao from Acme"}),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["custom"], true);
    assert_eq!(put.body["opt_in"], defaults["opt_in"], "the rest stays");
    let refused = request(
        &acme.developer,
        Method::PUT,
        "/v1/account/keywords",
        json!({"opt_out": ["X"]}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad = request(
        &acme.admin,
        Method::PUT,
        "/v1/account/keywords",
        json!({"help": "HELP"}),
    )
    .await;
    assert_422(&bad, "invalid_keywords", Some("help"));

    reply(&acme, "+84987652001", NUMBER, "STOP").await;
    reply(&acme, "+84987652002", NUMBER, "arret!").await;
    let replies = wait_for_replies(&acme.viewer, "+84987652002", 1).await;
    assert_eq!(replies[0]["body"], "Ciao from Acme");
    assert!(auto_replies(&acme.viewer, "+84987652001").await.is_empty());
    let ok = send(
        &acme.developer,
        json!({"to": "+84987652001", "from": NUMBER, "body": "hi"}),
    )
    .await;
    assert_eq!(
        ok.status,
        StatusCode::ACCEPTED,
        "STOP is no longer a keyword here"
    );

    // A pool's own settings win for its numbers; an empty reply sends none.
    let (_, pool) = acme
        .admin
        .post(
            "/v1/sender-pools",
            json!({"name": "Quiet", "senders": [number]}),
        )
        .await;
    let pool = pool["id"].as_str().unwrap();
    let put = request(
        &acme.admin,
        Method::PUT,
        &format!("/v1/sender-pools/{pool}/keywords"),
        json!({"opt_out": ["STOP"], "opt_out_reply": ""}),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    reply(&acme, "+84987652003", NUMBER, "STOP").await;
    let refused = send(
        &acme.developer,
        json!({"to": "+84987652003", "pool": pool, "body": "hi"}),
    )
    .await;
    assert_422(&refused, "recipient_opted_out", Some("to"));
    assert!(auto_replies(&acme.viewer, "+84987652003").await.is_empty());
    let (status, _) = acme.viewer.get("/v1/sender-pools/pool_nope/keywords").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn a_pool_scoped_opt_out_leaves_the_accounts_other_senders_free() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, number) = acme(&server).await;
    let other = own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": OTHER_NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let mut pools = Vec::new();
    for (name, member) in [("Promos", &number), ("Alerts", &other)] {
        let (_, pool) = acme
            .admin
            .post(
                "/v1/sender-pools",
                json!({"name": name, "senders": [member]}),
            )
            .await;
        pools.push(pool["id"].as_str().unwrap().to_owned());
    }
    let patch = request(
        &acme.compliance,
        Method::PATCH,
        "/v1/account",
        json!({"opt_out_scope": "pool"}),
    )
    .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN, "admins only");
    let patch = request(
        &acme.admin,
        Method::PATCH,
        "/v1/account",
        json!({"opt_out_scope": "pool"}),
    )
    .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    assert_eq!(patch.body["account"]["opt_out_scope"], "pool");

    let handset = "+84987653001";
    reply(&acme, handset, NUMBER, "STOP").await;
    let refused = send(
        &acme.developer,
        json!({"to": handset, "pool": pools[0], "body": "sale"}),
    )
    .await;
    assert_422(&refused, "recipient_opted_out", Some("to"));
    let refused = send(
        &acme.developer,
        json!({"to": handset, "from": NUMBER, "body": "sale"}),
    )
    .await;
    assert_422(&refused, "recipient_opted_out", Some("to"));
    let ok = send(
        &acme.developer,
        json!({"to": handset, "pool": pools[1], "body": "Your card was used"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let (_, entry) = acme
        .viewer
        .get(&format!("/v1/suppressions/{handset}"))
        .await;
    assert_eq!(entry["data"][0]["scope"], "pool");
    assert_eq!(entry["data"][0]["pool_id"], pools[0].as_str());
    server.stop().await;
}

#[tokio::test]
async fn suppressions_are_managed_and_imported_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, _) = acme(&server).await;
    let globex = new_tenant(&server.admin(), "Globex").await;

    let added = request(
        &acme.compliance,
        Method::POST,
        "/v1/suppressions",
        json!({"number": "+84987654401", "reason": "unsubscribe page"}),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["source"], "api");
    assert!(added.body["evidence"].as_str().unwrap().starts_with("key_"));
    let again = request(
        &acme.compliance,
        Method::POST,
        "/v1/suppressions",
        json!({"number": "+84987654401"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "already suppressed");
    for (client, status) in [(&acme.viewer, 403), (&acme.developer, 403)] {
        let reply = request(
            client,
            Method::POST,
            "/v1/suppressions",
            json!({"number": "+84987654402"}),
        )
        .await;
        assert_eq!(reply.status.as_u16(), status);
    }
    let bad = request(
        &acme.admin,
        Method::POST,
        "/v1/suppressions",
        json!({"number": "0987654402"}),
    )
    .await;
    assert_422(&bad, "invalid_number", Some("number"));

    let csv = "number,reason\n+84987654402,old list\n\n+84987654403\nnot-a-number,x\n+849,short\n+84987654401,dup\n";
    let import = acme
        .admin
        .try_send(
            Method::POST,
            "/v1/suppressions/import",
            Some(csv.as_bytes().to_vec()),
            &[("content-type", "text/csv")],
        )
        .await
        .unwrap();
    assert_eq!(import.status, StatusCode::OK, "{}", import.body);
    assert_eq!(import.body["imported"], 2, "{}", import.body);
    assert_eq!(import.body["already_suppressed"], 1);
    assert_eq!(import.body["rejected"], 2);
    let lines: Vec<i64> = import.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [5, 6]);

    let (_, page) = acme.viewer.get("/v1/suppressions?limit=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().replace('+', "%2B");
    let (_, rest) = acme
        .viewer
        .get(&format!("/v1/suppressions?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    let (_, theirs) = globex.viewer.get("/v1/suppressions").await;
    assert_eq!(theirs["data"], json!([]), "one account's list is its own");
    let ok = send(
        &globex.developer,
        json!({"to": "+84987654402", "body": "hi"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let refused = send(&acme.developer, json!({"to": "+84987654402", "body": "hi"})).await;
    assert_422(&refused, "recipient_opted_out", Some("to"));
    // In a batch, per item.
    let (_, batch) = acme
        .developer
        .post(
            "/v1/messages/batch",
            json!({"messages": [{"to": "+84987654403", "body": "hi"}, {"to": "+84987654499", "body": "hi"}]}),
        )
        .await;
    assert_eq!(batch["results"][0]["error"]["code"], "recipient_opted_out");
    assert_eq!(batch["results"][0]["error"]["field"], "messages[0].to");
    assert_eq!(batch["results"][1]["status"], 202);

    // Kept across a restart.
    server.stop().await;
    let server = start_in(dir.path()).await;
    let developer = acme.developer.with_addr(server.addr);
    let refused = send(&developer, json!({"to": "+84987654403", "body": "hi"})).await;
    assert_422(&refused, "recipient_opted_out", Some("to"));
    let compliance = acme.compliance.with_addr(server.addr);
    let (status, _) = compliance.delete("/v1/suppressions/+84987654403").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = compliance.delete("/v1/suppressions/+84987654403").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let ok = send(&developer, json!({"to": "+84987654403", "body": "hi"})).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn marketing_needs_consent_when_the_account_says_so_and_the_history_keeps_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path()).await;
    let (acme, _) = acme(&server).await;
    let handset = "+84987655001";
    let marketing =
        json!({"to": handset, "body": "Sale! Reply STOP to opt out", "type": "marketing"});
    let ok = send(&acme.developer, marketing.clone()).await;
    assert_eq!(
        ok.status,
        StatusCode::ACCEPTED,
        "off by default: {}",
        ok.body
    );
    let patch = request(
        &acme.admin,
        Method::PATCH,
        "/v1/account",
        json!({"require_marketing_consent": true}),
    )
    .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    let refused = send(&acme.developer, marketing.clone()).await;
    assert_422(&refused, "no_consent", Some("to"));
    let transactional = send(
        &acme.developer,
        json!({"to": handset, "body": "Your order shipped"}),
    )
    .await;
    assert_eq!(transactional.status, StatusCode::ACCEPTED);

    let (status, consent) = acme
        .compliance
        .post(
            "/v1/consents",
            json!({"number": handset, "purpose": "marketing", "source": "web_form",
                   "evidence": "signup form, IP 203.0.113.7", "collected_at": "2026-11-30T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{consent}");
    assert_eq!(consent["active"], true);
    let bad = request(
        &acme.compliance,
        Method::POST,
        "/v1/consents",
        json!({"number": handset, "purpose": "marketing", "source": "telepathy"}),
    )
    .await;
    assert_422(&bad, "invalid_source", Some("source"));
    let ok = send(&acme.developer, marketing.clone()).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let (_, list) = acme
        .viewer
        .get(&format!(
            "/v1/consents?number={}&purpose=marketing",
            handset.replace('+', "%2B")
        ))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // Kept across a restart; withdrawn, marketing is refused again.
    server.stop().await;
    let server = start_in(dir.path()).await;
    let developer = acme.developer.with_addr(server.addr);
    let compliance = acme.compliance.with_addr(server.addr);
    let ok = send(&developer, marketing.clone()).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let id = consent["id"].as_str().unwrap();
    let (status, withdrawn) = compliance.delete(&format!("/v1/consents/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{withdrawn}");
    assert_eq!(withdrawn["active"], false);
    let refused = send(&developer, marketing.clone()).await;
    assert_422(&refused, "no_consent", Some("to"));

    // An opt-out and an opt-in join the history, oldest first.
    let tenant = Tenant {
        admin: acme.admin.with_addr(server.addr),
        developer: developer.clone(),
        ..acme
    };
    reply(&tenant, handset, NUMBER, "STOP").await;
    let (status, _) = compliance
        .delete(&format!("/v1/suppressions/{handset}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = compliance
        .get(&format!("/v1/consents/{handset}/history"))
        .await;
    let kinds: Vec<(&str, &str)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("consent", "web_form"),
            ("withdrawal", "api"),
            ("opt_out", "keyword"),
            ("opt_in", "api")
        ],
        "{history}"
    );
    assert_eq!(history["data"][0]["evidence"], consent["id"]);
    assert!(
        history["data"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("key_")
    );
    server.stop().await;
}

/// A frequency cap ("at most 2 a day per recipient") is not reset by a
/// restart: the slow buckets are kept with the submit results and reloaded.
#[tokio::test]
async fn a_daily_cap_holds_across_a_restart() {
    let policies = common::shipped_policies_copy();
    std::fs::remove_dir_all(policies.path().join("tests")).unwrap();
    std::fs::write(
        policies.path().join("pacing.rhai"),
        "fn pace(msg, carrier) {\n    [limit(\"recipient:\" + msg.to, per_day(2), 2)]\n}\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &Path| {
        let policies = policies.path().to_owned();
        let dir = dir.to_owned();
        async move { TestServer::start_in(&dir, move |config| config.policies.dir = policies).await }
    };
    let server = start(dir.path()).await;
    let acme = new_tenant(&server.admin(), "Acme").await;
    let handset = "+84987656001";
    let body = json!({"to": handset, "body": "Your order shipped"});
    for _ in 0..2 {
        let id = acme.developer.send_message(body.clone()).await;
        acme.developer.wait_for_status(&id, "delivered").await;
    }
    let third = acme.developer.send_message(body.clone()).await;
    wait_for_deferral(&acme.viewer, &third).await;

    server.stop().await;
    let server = start(dir.path()).await;
    let developer = acme.developer.with_addr(server.addr);
    let fourth = developer.send_message(body.clone()).await;
    let message = wait_for_deferral(&developer, &fourth).await;
    assert_eq!(message["parts"][0]["status"], "queued", "{message}");
    // Another recipient is not held back.
    let other = developer
        .send_message(json!({"to": "+84987656002", "body": "Your order shipped"}))
        .await;
    developer.wait_for_status(&other, "delivered").await;
    server.stop().await;
}

/// Waits until the pacing policy has put the message back for later.
async fn wait_for_deferral(client: &Client, id: &str) -> Value {
    wait_until(&format!("{id} to be deferred"), || async {
        let (_, message) = client.get(&format!("/v1/messages/{id}")).await;
        assert_ne!(message["status"], "delivered", "the cap let {id} through");
        let deferred = message["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["detail"] == "deferred by the pacing policy")
        });
        deferred.then_some(message)
    })
    .await
}
