//! Policies in a running server: the shipped set deciding content and
//! routes, an edit picked up while serving, a broken edit keeping the old
//! set, routing failover across two carriers, pacing deferral, and the
//! compliance endpoints.

use crate::common;

use std::path::Path;

use common::{TestServer, new_tenant, wait_until};
use hyper::StatusCode;
use pigeon::config::CarrierConfig;
use serde_json::{Value, json};

/// A simulator carrier serving VN and HK at `price` a segment.
fn simulator(name: &str, price: f64) -> CarrierConfig {
    let mut carrier = CarrierConfig::new(name, "simulator");
    carrier.countries = vec!["VN".into(), "HK".into()];
    carrier.price = [("default".to_owned(), price)].into();
    carrier.settings = json!({"dlr_delay_ms": 5});
    carrier
}

/// Starts Pigeon on a copy of the shipped policies (returned, to edit).
async fn with_shipped_policies() -> (TestServer, tempfile::TempDir) {
    let dir = common::shipped_policies_copy();
    let policies = dir.path().to_owned();
    let server = TestServer::start_with(move |config| {
        config.policies.dir = policies;
        config.policies.debounce_ms = 50;
        config.carriers = vec![simulator("dear", 0.05), simulator("cheap", 0.03)];
    })
    .await;
    (server, dir)
}

/// Writes a file the way editors do: a new file renamed over the old.
fn save(path: &Path, text: &str) {
    let temporary = path.with_extension("rhai.swp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test]
async fn the_shipped_policies_decide_content_and_route_and_are_recorded() {
    let (server, _dir) = with_shipped_policies().await;
    let tenant = new_tenant(&server.admin(), "acme").await;
    let dev = &tenant.developer;

    let (status, policies) = tenant.compliance.get("/v1/policies").await;
    assert_eq!(status, StatusCode::OK, "{policies}");
    let digest = policies["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest.len(), 64);
    assert!(
        policies["files"]
            .as_array()
            .unwrap()
            .contains(&json!("routing.rhai"))
    );
    for forbidden in [dev, &tenant.viewer] {
        let (status, _) = forbidden.get("/v1/policies").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // Marketing without opt-out text: 422 with the policy's code, kept as rejected.
    let (status, body) = dev
        .post(
            "/v1/messages",
            json!({"to": "+84912345678", "body": "50% off today!", "type": "marketing"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "missing_opt_out");
    assert_eq!(body["error"]["field"], "body");
    let (_, list) = dev.get("/v1/messages?status=rejected").await;
    let rejected = &list["data"][0];
    assert_eq!(rejected["status"], "rejected", "{list}");
    assert_eq!(rejected["policy_digest"], digest.as_str());

    // In a batch, the refused item alone.
    let (status, batch) = dev
        .post(
            "/v1/messages/batch",
            json!({"messages": [
                {"to": "+84912345678", "body": "Code 123456 https://bit.ly/x", "type": "otp"},
                {"to": "+84912345678", "body": "Your code is 123456", "type": "otp"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["results"][0]["error"]["code"], "otp_link_shortener");
    assert_eq!(batch["results"][0]["error"]["field"], "messages[0].body");
    assert_eq!(batch["results"][1]["status"], 202);

    // An allowed message goes to the cheaper carrier, and says which set decided.
    let id = dev
        .send_message(json!({"to": "+84912345678", "body": "Your order shipped"}))
        .await;
    let message = dev.wait_for_status(&id, "delivered").await;
    assert_eq!(message["parts"][0]["carrier"], "cheap");
    assert_eq!(message["policy_digest"], digest.as_str());
}

#[tokio::test]
async fn an_edit_applies_within_seconds_and_a_broken_one_keeps_the_old_set() {
    let (server, dir) = with_shipped_policies().await;
    let tenant = new_tenant(&server.admin(), "acme").await;
    let dev = &tenant.developer;
    let (_, before) = tenant.compliance.get("/v1/policies").await;

    let content = dir.path().join("content.rhai");
    let shipped = std::fs::read_to_string(&content).unwrap();
    let edited = shipped.replacen(
        "fn check(msg) {",
        "fn check(msg) {\n    if msg.text.contains(\"lottery\") { return reject(\"no_lottery\", \"No lotteries\"); }",
        1,
    );
    save(&content, &edited);
    let started = std::time::Instant::now();
    wait_until("the edit to apply", || async {
        let (status, body) = dev
            .post(
                "/v1/messages",
                json!({"to": "+84912345678", "body": "You won the lottery"}),
            )
            .await;
        (status == StatusCode::UNPROCESSABLE_ENTITY && body["error"]["code"] == "no_lottery")
            .then_some(())
    })
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (_, after) = tenant.compliance.get("/v1/policies").await;
    assert_ne!(after["digest"], before["digest"]);

    // A typo: the last good set keeps running, and the error says where.
    let broken = format!("{edited}\nfn broken( {{\n");
    save(&content, &broken);
    let status = wait_until("the broken edit to be reported", || async {
        let (_, status) = tenant.compliance.get("/v1/policies").await;
        status["last_error"].as_str().is_some().then_some(status)
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.starts_with("content.rhai:"), "{error}");
    let position: Vec<&str> = error.splitn(4, ':').collect();
    assert!(
        position[1].parse::<u32>().is_ok() && position[2].parse::<u32>().is_ok(),
        "{error}"
    );
    assert_eq!(status["digest"], after["digest"]);
    let (status, body) = dev
        .post(
            "/v1/messages",
            json!({"to": "+84912345678", "body": "lottery again"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "no_lottery");
    dev.send_message(json!({"to": "+84912345678", "body": "still sending"}))
        .await;

    let (_, history) = tenant.compliance.get("/v1/policies/history").await;
    let results: Vec<&Value> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["result"])
        .collect();
    assert!(results.len() >= 3, "{history}");
    assert_ne!(results[0], "loaded", "{history}");

    // Both reloads are in the audit trail, as platform events.
    let audit = common::wait_until("the reloads to be audited", || async {
        let (_, audit) = server.admin().get("/v1/audit?action=policy.reload").await;
        (audit["data"].as_array().unwrap().len() >= 2).then_some(audit)
    })
    .await;
    let outcomes: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["summary"]["outcome"])
        .collect();
    assert!(outcomes.contains(&&json!("loaded")), "{audit}");
    assert!(outcomes.contains(&&json!("failed")), "{audit}");
    assert_eq!(audit["data"][0]["role"], "system");
    assert_eq!(audit["data"][0]["account_id"], Value::Null);
    let (_, theirs) = tenant.admin.get("/v1/audit?action=policy.reload").await;
    assert_eq!(
        theirs["data"],
        json!([]),
        "platform events are the operator's"
    );
}

/// A policies directory with these scripts (and no tests).
fn custom_policies(routing: &str, pacing: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("content.rhai"),
        "fn check(msg) { allow() }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("routing.rhai"), routing).unwrap();
    std::fs::write(dir.path().join("pacing.rhai"), pacing).unwrap();
    dir
}

#[tokio::test]
async fn a_retryable_failure_moves_to_the_next_carrier_in_the_route() {
    let dir = custom_policies(
        "fn route(msg, carriers) { route_to([\"flaky\", \"steady\"]) }\n",
        "fn pace(msg, carrier) { [limit(\"c:\" + carrier.name, per_second(1000), 1000)] }\n",
    );
    let flaky_url = common::carrier_answering("503 Service Unavailable").await;
    let policies = dir.path().to_owned();
    let server = TestServer::start_with(move |config| {
        let mut flaky = CarrierConfig::new("flaky", env!("PIGEON_TEST_GUEST"));
        flaky.base_url = Some(flaky_url);
        config.policies.dir = policies;
        config.carriers = vec![flaky, simulator("steady", 0.05)];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let id = dev
        .send_message(json!({"to": "+84912345678", "body": "hello"}))
        .await;
    let message = dev.wait_for_status(&id, "delivered").await;
    assert_eq!(message["parts"][0]["carrier"], "steady");
    assert_eq!(message["parts"][0]["attempts"], 2);
    let retried_on: Vec<&Value> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "queued" && e["part"] == 0)
        .map(|e| &e["carrier"])
        .collect();
    assert_eq!(retried_on, [&json!("flaky")], "{message}");
}

#[tokio::test]
async fn a_pacing_deferral_holds_the_message_without_using_an_attempt() {
    let dir = custom_policies(
        "fn route(msg, carriers) { route_to([\"sim\"]) }\n",
        "fn pace(msg, carrier) {\n  if msg.type == \"marketing\" { return defer_until(next_local_hour(msg, (msg.local_hour + 2) % 24)); }\n  [limit(\"c\", per_second(1000), 1000)]\n}\n",
    );
    let policies = dir.path().to_owned();
    let server = TestServer::start_with(move |config| {
        config.policies.dir = policies;
        config.carriers = vec![simulator("sim", 0.01)];
    })
    .await;
    let dev = new_tenant(&server.admin(), "acme").await.developer;
    let marketing = dev
        .send_message(json!({"to": "+84912345678", "body": "Sale! Reply STOP to opt out", "type": "marketing"}))
        .await;
    let other = dev
        .send_message(json!({"to": "+84912345678", "body": "Your receipt"}))
        .await;
    dev.wait_for_status(&other, "delivered").await;
    let message = wait_until("the marketing message to be deferred", || async {
        let (_, m) = dev.get(&format!("/v1/messages/{marketing}")).await;
        m["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"] == "deferred by the pacing policy")
            .then_some(m)
    })
    .await;
    assert_eq!(message["status"], "queued", "{message}");
    assert_eq!(message["parts"][0]["attempts"], 0);
}

#[tokio::test]
async fn simulate_shows_the_decisions_for_drafts_without_sending() {
    let (server, _dir) = with_shipped_policies().await;
    let tenant = new_tenant(&server.admin(), "acme").await;
    let request = json!({
        "message": {"to": "+85261234567", "body": "Sale! Reply STOP to opt out", "type": "marketing"},
    });
    let (status, trace) = tenant
        .compliance
        .post("/v1/policies/simulate", request.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    assert_eq!(trace["content"]["decision"], "allow");
    assert_eq!(
        trace["route"]["carriers"],
        json!(["cheap", "dear"]),
        "{trace}"
    );
    assert_eq!(trace["draft"], false);
    assert!(trace["pacing"]["carrier"] == "cheap", "{trace}");

    let mut draft = request.clone();
    draft["sources"] =
        json!({"content.rhai": "fn check(msg) { reject(\"closed\", \"We are closed\") }"});
    let (status, trace) = tenant.compliance.post("/v1/policies/simulate", draft).await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    assert_eq!(trace["draft"], true);
    assert_eq!(trace["content"]["code"], "closed");

    let mut broken = request.clone();
    broken["sources"] = json!({"routing.rhai": "fn route(msg, carriers) {"});
    let (status, body) = tenant
        .compliance
        .post("/v1/policies/simulate", broken)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("routing.rhai:"),
        "{body}"
    );

    let (status, _) = tenant
        .developer
        .post("/v1/policies/simulate", request)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = tenant.admin.get("/v1/messages").await;
    assert_eq!(list["data"], json!([]), "simulating stores nothing");
}

/// The shipped policies with one more content rule: `word` is refused with `code`.
fn shipped_refusing(to: &Path, word: &str, code: &str) {
    common::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        to,
    );
    let content = to.join("content.rhai");
    let shipped = std::fs::read_to_string(&content).unwrap();
    let edited = shipped.replacen(
        "fn check(msg) {",
        &format!(
            "fn check(msg) {{\n    if msg.text.contains(\"{word}\") {{ return reject(\"{code}\", \"No\"); }}"
        ),
        1,
    );
    std::fs::write(&content, edited).unwrap();
}

#[tokio::test]
async fn a_deploy_that_replaces_the_whole_directory_is_picked_up() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("policies");
    shipped_refusing(&live, "lottery", "no_lottery");
    let dir = live.clone();
    let server = TestServer::start_with(move |config| {
        config.policies.dir = dir;
        config.policies.debounce_ms = 50;
    })
    .await;
    let tenant = new_tenant(&server.admin(), "acme").await;
    let refused = |word: &'static str, code: &'static str| {
        let dev = tenant.developer.clone();
        async move {
            wait_until(&format!("policies refusing {word}"), || async {
                let (status, body) = dev
                    .post("/v1/messages", json!({"to": "+84912345678", "body": word}))
                    .await;
                (status == StatusCode::UNPROCESSABLE_ENTITY && body["error"]["code"] == code)
                    .then_some(())
            })
            .await
        }
    };
    refused("lottery", "no_lottery").await;

    // Deleted and created again, as `git checkout` or `rsync --delete` does.
    std::fs::remove_dir_all(&live).unwrap();
    shipped_refusing(&live, "casino", "no_casino");
    refused("casino", "no_casino").await;

    // A new directory renamed into place.
    let staged = base.path().join("policies.new");
    shipped_refusing(&staged, "bingo", "no_bingo");
    std::fs::rename(&live, base.path().join("policies.old")).unwrap();
    std::fs::rename(&staged, &live).unwrap();
    refused("bingo", "no_bingo").await;

    // A symlink to a release, swapped for another atomically.
    let (v1, v2) = (base.path().join("v1"), base.path().join("v2"));
    shipped_refusing(&v1, "poker", "no_poker");
    shipped_refusing(&v2, "raffle", "no_raffle");
    std::fs::remove_dir_all(&live).unwrap();
    std::os::unix::fs::symlink(&v1, &live).unwrap();
    refused("poker", "no_poker").await;
    let next = base.path().join("policies.next");
    std::os::unix::fs::symlink(&v2, &next).unwrap();
    std::fs::rename(&next, &live).unwrap();
    refused("raffle", "no_raffle").await;

    let (_, status) = tenant.compliance.get("/v1/policies").await;
    assert!(status["last_error"].is_null(), "{status}");
    server.stop().await;
}
