//! Carriers from configuration: routing by country and price, pacing, the
//! callback route (secrets, duplicates, out-of-order and early reports,
//! inbound messages), `GET /v1/carriers`, misbehaving plugins contained, and
//! a plugin reloaded under load.

use crate::common;

use common::{TestServer, new_tenant, wait_until};
use hyper::{Method, StatusCode};
use pigeon::config::CarrierConfig;
use serde_json::{Value, json};

/// A carrier served by the simulator plugin against the in-process fake
/// carrier, for the given countries.
fn simulator(name: &str, countries: &[&str]) -> CarrierConfig {
    let mut carrier = CarrierConfig::new(name, "simulator");
    carrier.countries = countries.iter().map(|c| c.to_string()).collect();
    carrier.settings = json!({"dlr_delay_ms": 5});
    carrier
}

/// A carrier served by the host's test guest in the given mode.
fn test_guest(name: &str, mode: &str, countries: &[&str]) -> CarrierConfig {
    let mut carrier = CarrierConfig::new(name, env!("PIGEON_TEST_GUEST"));
    carrier.base_url = Some("http://127.0.0.1:9".into());
    carrier.countries = countries.iter().map(|c| c.to_string()).collect();
    carrier.settings = json!({ "mode": mode });
    carrier
}

async fn carriers(server: &TestServer) -> Vec<Value> {
    let (status, body) = server.admin().get("/v1/carriers").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn carrier(server: &TestServer, name: &str) -> Value {
    carriers(server)
        .await
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no carrier {name}"))
}

/// The path of a carrier's callback URL on this server.
async fn callback_path(server: &TestServer, name: &str) -> String {
    let url = carrier(server, name).await["callback_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = format!("http://{}", server.addr);
    url.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} is not on {prefix}"))
        .to_owned()
}

fn part_carrier(message: &Value) -> &str {
    message["parts"][0]["carrier"].as_str().unwrap()
}

#[tokio::test]
async fn messages_go_to_the_cheapest_carrier_serving_their_country() {
    let server = TestServer::start_with(|config| {
        let mut vn_dear = simulator("vn-dear", &["VN"]);
        vn_dear.price = [("VN".to_owned(), 0.05)].into();
        let mut vn_cheap = simulator("vn-cheap", &["VN", "HK"]);
        vn_cheap.price = [("VN".to_owned(), 0.03), ("default".to_owned(), 0.09)].into();
        let mut anywhere = simulator("anywhere", &["*"]);
        anywhere.price = [("default".to_owned(), 0.04)].into();
        config.carriers = vec![vn_dear, vn_cheap, anywhere, simulator("us-only", &["US"])];
    })
    .await;
    let tenant = new_tenant(&server.admin(), "acme").await;
    let dev = &tenant.developer;

    let cases = [
        ("+84912345678", "vn-cheap"),  // 0.03 beats 0.05 and 0.04
        ("+85291234567", "anywhere"),  // 0.04 beats vn-cheap's default 0.09
        ("+12025550123", "anywhere"),  // priced beats unpriced
        ("+447911123456", "anywhere"), // the only one serving GB
    ];
    for (to, expected) in cases {
        let id = dev.send_message(json!({"to": to, "body": "hi"})).await;
        let message = dev.wait_for_status(&id, "delivered").await;
        assert_eq!(part_carrier(&message), expected, "{to}");
    }

    // Sandbox keys always use the sandbox carrier.
    let (status, key) = server
        .admin()
        .post(
            &format!("/v1/accounts/{}/keys", tenant.account_id),
            json!({"role": "developer", "sandbox": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let sandboxed = dev.with_key(key["key"].as_str().unwrap());
    let id = sandboxed
        .send_message(json!({"to": "+84912345678", "body": "hi"}))
        .await;
    let message = sandboxed.wait_for_status(&id, "delivered").await;
    assert_eq!(part_carrier(&message), "sandbox");
}

#[tokio::test]
async fn a_destination_no_carrier_serves_fails_with_no_route() {
    let server =
        TestServer::start_with(|config| config.carriers = vec![simulator("vn", &["VN"])]).await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let id = dev
        .send_message(json!({"to": "+12025550123", "body": "hi"}))
        .await;
    let message = dev.wait_for_status(&id, "failed").await;
    assert_eq!(message["parts"][0]["error_code"], "no_route");
    let detail = message["events"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("US"), "{detail}");
}

#[tokio::test]
async fn the_carrier_list_shows_plugins_counters_and_is_for_the_operator() {
    let server =
        TestServer::start_with(|config| config.carriers = vec![simulator("sim", &["*"])]).await;
    let tenant = new_tenant(&server.admin(), "acme").await;
    let dev = &tenant.developer;
    for to in ["+84912345678", "+84912340001", "+84912340002"] {
        dev.send_message(json!({"to": to, "body": "hi"})).await;
    }
    // A report may beat its part's carrier id: it counts once applied.
    let sim = wait_until("the carrier's counters and statistics", || async {
        let sim = carrier(&server, "sim").await;
        let counted = sim["counters"]["dlrs"] == 2 && sim["counters"]["failed"] == 1;
        (counted && sim["stats"]["last_24_hours"]["reports"] == 2).then_some(sim)
    })
    .await;
    assert_eq!(sim["state"], "active");
    assert_eq!(sim["plugin"]["name"], "simulator");
    assert_eq!(sim["plugin"]["contract_version"], "0.3.0");
    assert_eq!(sim["counters"]["submitted"], 2);
    assert_eq!(sim["countries"], json!(["*"]));
    assert_eq!(sim["tps"], 100);
    assert!(sim["plugin_calls"]["calls"].as_u64().unwrap() >= 5, "{sim}");
    // One delivered, one undeliverable, one refused at submission.
    let recent = &sim["stats"]["last_15_minutes"];
    assert_eq!(recent["delivery_rate"], 0.5, "{sim}");
    assert_eq!(recent["submissions"], 3);
    assert!((recent["error_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!(recent["median_dlr_latency_ms"].as_f64().is_some(), "{sim}");
    assert_eq!(sim["stats"]["last_24_hours"]["reports"], 2);
    let names: Vec<Value> = carriers(&server)
        .await
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["sandbox", "sim"]);

    // Carriers are the operator's business: not even a tenant's admin sees them.
    for client in [&tenant.admin, dev, &tenant.viewer] {
        let (status, body) = client.get("/v1/carriers").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
}

#[tokio::test]
async fn callbacks_need_the_right_secret_and_a_known_carrier() {
    let server =
        TestServer::start_with(|config| config.carriers = vec![simulator("sim", &["*"])]).await;
    let path = callback_path(&server, "sim").await;
    let anonymous = server.admin().without_key();
    let report = json!({"id": "nope", "status": "delivered"}).to_string();
    let ok = anonymous
        .send(
            Method::POST,
            &format!("{path}/dlr"),
            Some(report.clone().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);

    let wrong_secret = path.rsplit_once('/').unwrap().0.to_owned() + "/not-the-secret/dlr";
    let unknown_carrier = path.replace("/sim/", "/nobody/") + "/dlr";
    for bad in [wrong_secret, unknown_carrier] {
        let reply = anonymous
            .send(Method::POST, &bad, Some(report.clone().into_bytes()), &[])
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(reply.body["error"]["code"], "not_found");
    }

    // What the plugin cannot read is a 400 with its reason, and counted.
    let reply = anonymous
        .send(
            Method::POST,
            &format!("{path}/dlr"),
            Some(b"not json".to_vec()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "callback_rejected");
    assert_eq!(
        carrier(&server, "sim").await["counters"]["callbacks_rejected"],
        1
    );
}

#[tokio::test]
async fn reports_that_repeat_arrive_out_of_order_or_early_do_not_regress_a_message() {
    let server = TestServer::start_with(|config| {
        let mut slow = simulator("slow", &["*"]);
        // The fake carrier's own report comes much later than ours.
        slow.settings = json!({"dlr_delay_ms": 3_600_000});
        config.carriers = vec![slow];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let path = format!("{}/dlr", callback_path(&server, "slow").await);
    let anonymous = server.admin().without_key();
    let post = |body: Value| {
        let (anonymous, path) = (anonymous.clone(), path.clone());
        async move {
            let reply = anonymous
                .send(
                    Method::POST,
                    &path,
                    Some(body.to_string().into_bytes()),
                    &[],
                )
                .await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
        }
    };

    let id = dev
        .send_message(json!({"to": "+84912345678", "body": "hi"}))
        .await;
    let message = dev.wait_for_status(&id, "sent").await;
    let carrier_id = message["parts"][0]["carrier_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(json!({"id": carrier_id, "status": "enroute"})).await;
    post(json!([
        {"id": carrier_id, "status": "delivered"},
        {"id": carrier_id, "status": "delivered"},
    ]))
    .await;
    post(json!({"id": carrier_id, "status": "undeliverable"})).await;
    post(json!({"id": carrier_id, "status": "enroute"})).await;
    let message = dev.wait_for_status(&id, "delivered").await;
    let delivered = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "delivered")
        .count();
    assert_eq!(delivered, 1, "{message}");
    assert_eq!(message["parts"][0]["status"], "delivered");

    // A report for an id no part has (yet) is kept, not an error.
    post(json!({"id": "sim-from-the-future", "status": "delivered"})).await;
    assert_eq!(carrier(&server, "slow").await["counters"]["dlrs"], 6);
}

#[tokio::test]
async fn inbound_messages_are_filed_under_the_owner_of_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |config| {
        config.carriers = vec![simulator("sim", &["*"])]
    })
    .await;
    let acme = new_tenant(&server.admin(), "acme").await;
    let other = new_tenant(&server.admin(), "other").await;
    let number = "+84912340200";
    common::own_number(
        &server.admin(),
        &acme.admin,
        json!({"sender": number, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let id = acme
        .developer
        .send_message(json!({"to": "+84912345678", "from": number, "body": "Reply YES to confirm"}))
        .await;
    acme.developer.wait_for_status(&id, "delivered").await;
    // Another account wrote to the handset last: that does not make the
    // handset's message to acme's number its.
    let later = other
        .developer
        .send_message(json!({"to": "+84912345678", "body": "Hello"}))
        .await;
    other.developer.wait_for_status(&later, "delivered").await;

    let path = format!("{}/inbound", callback_path(&server, "sim").await);
    let anonymous = server.admin().without_key();
    let post = |body: Value| {
        let (anonymous, path) = (anonymous.clone(), path.clone());
        async move {
            let reply = anonymous
                .send(
                    Method::POST,
                    &path,
                    Some(body.to_string().into_bytes()),
                    &[],
                )
                .await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
        }
    };
    // Carriers drop the `+`, and repeat themselves: stored once.
    let inbound = json!({"id": "mo-1", "from": "84912345678", "to": "84912340200", "text": "YES"});
    post(inbound.clone()).await;
    post(inbound).await;
    post(json!({"id": "mo-2", "from": "+12025550123", "to": "Pigeon", "text": "who?"})).await;

    let (status, list) = acme.viewer.get("/v1/inbound").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    assert_eq!(data[0]["from"], "+84912345678");
    assert_eq!(data[0]["to"], number);
    assert_eq!(data[0]["body"], "YES");
    assert_eq!(data[0]["in_reply_to"], id.as_str());
    assert_eq!(data[0]["carrier"], "sim");
    assert_eq!(data[0]["carrier_message_id"], "mo-1");
    assert!(data[0]["number_id"].as_str().unwrap().starts_with("num_"));
    let inbound_id = data[0]["id"].as_str().unwrap().to_owned();
    let (status, one) = acme.viewer.get(&format!("/v1/inbound/{inbound_id}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["body"], "YES");

    let (_, list) = other.admin.get("/v1/inbound").await;
    assert_eq!(list["data"], json!([]), "another account sees none of it");
    let (status, _) = other.admin.get(&format!("/v1/inbound/{inbound_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The operator sees everything, including what went to no account's number.
    let (_, list) = server.admin().get("/v1/inbound?limit=10").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    assert_eq!(data[0]["account_id"], Value::Null, "{list}");
    let (status, body) = server.admin().get("/v1/inbound?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "limit");

    // After a restart, a reply still answers what was sent.
    server.stop().await;
    let server = TestServer::start_in(dir.path(), |config| {
        config.carriers = vec![simulator("sim", &["*"])]
    })
    .await;
    let path = format!("{}/inbound", callback_path(&server, "sim").await);
    let again = json!({"id": "mo-3", "from": "+84912345678", "to": number, "text": "STOP"});
    let reply = server
        .admin()
        .without_key()
        .send(
            Method::POST,
            &path,
            Some(again.to_string().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    let mut viewer = acme.viewer.clone();
    viewer.addr = server.addr;
    let (_, list) = viewer.get("/v1/inbound").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    assert_eq!(data[0]["body"], "STOP");
    assert_eq!(data[0]["in_reply_to"], id.as_str());
}

#[tokio::test]
async fn a_carrier_over_its_rate_puts_parts_back_in_the_queue_unattempted() {
    let server = TestServer::start_with(|config| {
        let mut slow = simulator("slow", &["*"]);
        slow.tps = 2;
        slow.window = 1;
        config.carriers = vec![slow];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            dev.send_message(json!({"to": format!("+849123{i}5678"), "body": "hi"}))
                .await,
        );
    }
    for id in &ids {
        let message = dev.wait_for_status(id, "delivered").await;
        assert_eq!(message["parts"][0]["attempts"], 1, "{message}");
    }
    let counters = carrier(&server, "slow").await["counters"].clone();
    assert_eq!(counters["submitted"], 6);
    assert!(counters["deferred"].as_u64().unwrap() >= 1, "{counters}");
}

#[tokio::test]
async fn a_looping_or_trapping_plugin_costs_its_calls_not_the_server() {
    let server = TestServer::start_with(|config| {
        config.dispatch.max_attempts = 2;
        config.carriers = vec![
            test_guest("looper", "loop", &["VN"]),
            test_guest("trapper", "trap", &["HK"]),
            simulator("good", &["*"]),
        ];
        // Only the broken carriers serve VN and HK.
        config.carriers[2].countries = vec!["US".into()];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let looped = dev
        .send_message(json!({"to": "+84912345678", "body": "hi"}))
        .await;
    let trapped = dev
        .send_message(json!({"to": "+85291234567", "body": "hi"}))
        .await;
    let fine = dev
        .send_message(json!({"to": "+12025550123", "body": "hi"}))
        .await;
    dev.wait_for_status(&fine, "delivered").await;
    for id in [&looped, &trapped] {
        let message = dev.wait_for_status(id, "failed").await;
        assert_eq!(message["parts"][0]["error_code"], "retries_exhausted");
    }
    let looper = carrier(&server, "looper").await;
    assert_eq!(looper["plugin_calls"]["deadlines"], 2, "{looper}");
    let trapper = carrier(&server, "trapper").await;
    assert_eq!(trapper["plugin_calls"]["traps"], 2, "{trapper}");
    // Still serving.
    let again = dev
        .send_message(json!({"to": "+12025550123", "body": "still here?"}))
        .await;
    dev.wait_for_status(&again, "delivered").await;
}

#[tokio::test]
async fn a_plugin_replaced_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("sim-copy.wasm");
    std::fs::copy(env!("PIGEON_PLUGIN_SIMULATOR"), &wasm).unwrap();
    let plugin_path = wasm.to_str().unwrap().to_owned();
    let server = TestServer::start_with(|config| {
        config.plugins.reload_interval_ms = 50;
        let mut carrier = simulator("reloading", &["*"]);
        carrier.plugin = plugin_path;
        config.carriers = vec![carrier];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;

    let sender = {
        let dev = dev.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..300 {
                let to = format!("+8491{i:03}5678");
                ids.push(dev.send_message(json!({"to": to, "body": "load"})).await);
            }
            ids
        })
    };
    // Replace the file twice while messages flow: once with a good copy,
    // once with garbage (which must leave the loaded version running).
    wait_until("some messages to be sent", || async {
        let c = carrier(&server, "reloading").await;
        (c["counters"]["submitted"].as_u64().unwrap() >= 20).then_some(())
    })
    .await;
    let replacement = dir.path().join("next.wasm");
    std::fs::copy(env!("PIGEON_PLUGIN_SIMULATOR"), &replacement).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&replacement)
        .unwrap();
    std::fs::rename(&replacement, &wasm).unwrap();
    wait_until("the plugin to reload", || async {
        let c = carrier(&server, "reloading").await;
        (c["plugin_calls"]["reloads"].as_u64().unwrap() >= 1).then_some(())
    })
    .await;
    std::fs::write(&wasm, b"not a component").unwrap();
    let broken = wait_until("the bad file to be refused", || async {
        let c = carrier(&server, "reloading").await;
        (c["plugin_calls"]["reload_failures"].as_u64().unwrap() >= 1).then_some(c)
    })
    .await;
    assert!(
        broken["plugin"]["reload_error"]
            .as_str()
            .unwrap()
            .contains("not a usable carrier component"),
        "{broken}"
    );

    let ids = sender.await.unwrap();
    for id in &ids {
        dev.wait_for_status(id, "delivered").await;
    }
}

#[tokio::test]
async fn a_misconfigured_carrier_keeps_messages_waiting_and_says_so() {
    let base_url = common::carrier_answering("401 Unauthorized").await;
    let server = TestServer::start_with(|config| {
        let mut carrier = test_guest("bad-creds", "ok", &["*"]);
        carrier.base_url = Some(base_url);
        config.dispatch.max_attempts = 1;
        config.carriers = vec![carrier];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let id = dev
        .send_message(json!({"to": "+84912345678", "body": "hi"}))
        .await;
    let carrier = wait_until("the carrier to be flagged", || async {
        let c = carrier(&server, "bad-creds").await;
        (c["state"] == "misconfigured").then_some(c)
    })
    .await;
    assert!(carrier["counters"]["retried"].as_u64().unwrap() >= 1);
    // Even with max_attempts = 1 the message is not failed: it waits for
    // the operator, its attempt not counted.
    let message = wait_until("the part to be queued again", || async {
        let (_, m) = dev.get(&format!("/v1/messages/{id}")).await;
        (m["parts"][0]["status"] == "queued").then_some(m)
    })
    .await;
    assert_eq!(message["parts"][0]["attempts"], 0, "{message}");
    let detail = message["events"].as_array().unwrap().last().unwrap()["detail"].clone();
    assert!(
        detail.as_str().unwrap().contains("carrier misconfigured"),
        "{detail}"
    );
}

#[tokio::test]
async fn inbound_text_is_kept_to_the_ten_part_maximum() {
    let server =
        TestServer::start_with(|config| config.carriers = vec![simulator("sim", &["*"])]).await;
    let path = format!("{}/inbound", callback_path(&server, "sim").await);
    let text = "x".repeat(1_000_000);
    let inbound = json!({"id": "mo-huge", "from": "+12025550123", "to": "Pigeon", "text": text});
    let reply = server
        .admin()
        .without_key()
        .send(
            Method::POST,
            &path,
            Some(inbound.to_string().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    let stored = common::wait_for_inbound(&server.admin(), "mo-huge").await;
    assert_eq!(
        stored["body"].as_str().unwrap().len(),
        pigeon::tracking::MAX_INBOUND_CHARS
    );
    let counters = &carrier(&server, "sim").await["counters"];
    assert_eq!(counters["inbound_truncated"], 1, "{counters}");
    assert_eq!(counters["inbound"], 1, "{counters}");
}

/// A message from a number a carrier provides goes only through that
/// carrier, whether the cheapest-carrier rule or the shipped routing policy
/// picks the route; a message from an unbound sender goes the usual way.
#[tokio::test]
async fn a_number_bound_to_a_carrier_sends_only_through_it() {
    let policies = common::shipped_policies_copy();
    for with_policies in [false, true] {
        let server = TestServer::start_with(|config| {
            let mut cheap = simulator("cheap", &["VN"]);
            cheap.price = [("VN".to_owned(), 0.01)].into();
            let mut dear = simulator("dear", &["VN"]);
            dear.price = [("VN".to_owned(), 0.09)].into();
            config.carriers = vec![cheap, dear, simulator("us-only", &["US"])];
            config.senders.require_owned = true;
            if with_policies {
                config.policies.dir = policies.path().to_owned();
            }
        })
        .await;
        let acme = new_tenant(&server.admin(), "acme").await;
        for (sender, carrier) in [("+84912340500", "dear"), ("+84912340501", "us-only")] {
            common::own_number(
                &server.admin(),
                &acme.admin,
                json!({"sender": sender, "kind": "long_code", "country": "VN", "carrier": carrier}),
            )
            .await;
        }
        common::own_number(
            &server.admin(),
            &acme.admin,
            json!({"sender": "+84912340502", "kind": "long_code", "country": "VN"}),
        )
        .await;
        let send = |from: &str| {
            acme.developer.send_message(
                json!({"to": "+84987650000", "from": from, "body": "Your code is 123456"}),
            )
        };
        let bound = send("+84912340500").await;
        let unbound = send("+84912340502").await;
        let message = acme.developer.wait_for_status(&bound, "delivered").await;
        assert_eq!(part_carrier(&message), "dear", "policies: {with_policies}");
        let message = acme.developer.wait_for_status(&unbound, "delivered").await;
        assert_eq!(part_carrier(&message), "cheap", "policies: {with_policies}");
        // Its carrier does not serve the country: the message fails, saying why.
        let stuck = send("+84912340501").await;
        let message = acme.developer.wait_for_status(&stuck, "failed").await;
        assert_eq!(message["parts"][0]["error_code"], "no_route", "{message}");
        let reason = message["events"].to_string();
        assert!(reason.contains("provided by carrier us-only"), "{message}");
        server.stop().await;
    }
}
