//! What reaches the log: never a carrier's callback secret, never a
//! message's text. Runs the real binary with debug logging and reads its
//! whole log.

use crate::common;

use common::BinaryServer;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn callback_secrets_and_message_text_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::spawn_logging(dir.path(), &[], "debug").await;
    let admin = server.admin();
    let (status, carriers) = admin.get("/v1/carriers").await;
    assert_eq!(status, StatusCode::OK, "{carriers}");
    let callback_url = carriers["data"][0]["callback_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = callback_url
        .split('/')
        .skip_while(|s| *s != "callback")
        .nth(1)
        .unwrap()
        .to_owned();
    let callback_path = callback_url
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();

    // A body the plugin refuses, quoting it in its reason.
    let otp_in_callback = "Your code is 483920";
    let body = json!({"from": "+84912345678", "to": "Pigeon", "text": otp_in_callback, "id": 5});
    let reply = admin
        .try_send(
            Method::POST,
            &format!("{callback_path}/inbound"),
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "callback_rejected");

    // A wrong secret is a 404 that does not repeat the path it was given.
    let wrong = callback_path.replace(&secret, "WrongSecretWrongSecret");
    let reply = admin
        .try_send(
            Method::POST,
            &format!("{wrong}/dlr"),
            Some(b"[]".to_vec()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(
        !reply.body.to_string().contains("WrongSecret"),
        "{}",
        reply.body
    );

    // A message sent and delivered, its text an OTP.
    let otp_sent = "Your Pigeon code is 771204";
    let id = admin
        .send_message(json!({"to": "+84912345678", "body": otp_sent, "type": "otp"}))
        .await;
    admin.wait_for_status(&id, "delivered").await;

    let log = server.log.clone();
    let exit = server.terminate().await;
    assert!(exit.success(), "{exit}");
    let log = log.lock().unwrap().join("\n");
    assert!(log.lines().count() > 10, "debug logging was on: {log}");
    for needle in [secret.as_str(), "code is 483920", "code is 771204"] {
        let found: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert!(found.is_empty(), "{needle:?} reached the log: {found:#?}");
    }
}

#[tokio::test]
async fn a_policy_printing_in_a_loop_writes_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let config = dir.path().join("pigeon.toml");
    std::fs::write(
        &config,
        // A generous deadline: the draft's 5,000 prints must finish on a
        // loaded machine too; what is measured is how few lines reach the log.
        format!(
            "[policies]\ndir = {:?}\ndeadline_ms = 2000\n",
            policies.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config_arg = config.display().to_string();
    let server = BinaryServer::spawn_logging(&data, &["--config", &config_arg], "info").await;
    let draft =
        "fn check(msg) {\n    for i in 0..5000 { print(`flood line ${i}`); }\n    allow()\n}\n";
    let request = json!({
        "message": {"to": "+84912345678", "body": "Hi"},
        "sources": {"content.rhai": draft},
    });
    for _ in 0..4 {
        let (status, trace) = server
            .admin()
            .post("/v1/policies/simulate", request.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{trace}");
        assert_eq!(trace["content"]["decision"], "allow", "{trace}");
    }
    let log = server.log.clone();
    let exit = server.terminate().await;
    assert!(exit.success(), "{exit}");
    let printed = log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("flood line"))
        .count();
    // 8 lines a call at most, 4 calls.
    assert!((1..=32).contains(&printed), "{printed} lines printed");
}

/// At trace level, with a careless plugin that logs its settings, every
/// message it is given and every callback it parses: an OTP's body, a new
/// API key, the account's webhook secret and the carrier's credential must
/// still not reach the log.
#[tokio::test]
async fn secrets_stay_out_of_a_trace_log_even_when_a_plugin_echoes_them() {
    let dir = tempfile::tempdir().unwrap();
    let credential = "CarrierCred-xQvTzKpW";
    let config = dir.path().join("pigeon.toml");
    std::fs::write(
        &config,
        format!(
            "[[carriers]]\nname = \"echo\"\nplugin = {:?}\nbase_url = \"http://127.0.0.1:9\"\n\
             settings = {{ mode = \"echo\", api_secret = {credential:?} }}\n",
            env!("PIGEON_TEST_GUEST")
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config_arg = config.display().to_string();
    // Everything at trace, but the code generator compiling the plugins:
    // it sees WebAssembly code, never data, and its trace output alone
    // takes longer than the start-up allows.
    let level = "trace,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info,\
                 wasmtime_cranelift=info,wasmtime_internal_cranelift=info,wasmtime_environ=info";
    let server = BinaryServer::spawn_logging(&data, &["--config", &config_arg], level).await;
    let admin = server.admin();

    let (status, account) = admin.post("/v1/accounts", json!({"name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let account_id = account["id"].as_str().unwrap();
    let webhook_secret = account["webhook_secret"].as_str().unwrap().to_owned();
    let (status, key) = admin
        .post(
            &format!("/v1/accounts/{account_id}/keys"),
            json!({"role": "developer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let api_key = key["key"].as_str().unwrap().to_owned();
    let developer = admin.with_key(&api_key);

    let otp = "Your login code is 660914";
    let id = developer
        .send_message(json!({"to": "+84912345678", "body": otp, "type": "otp"}))
        .await;
    developer.wait_for_status(&id, "sent").await;

    // A callback to the echo carrier, which logs what it was sent.
    let (_, carriers) = admin.get("/v1/carriers").await;
    let callback_url = carriers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "echo")
        .and_then(|c| c["callback_url"].as_str())
        .unwrap()
        .to_owned();
    let callback_path = callback_url
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();
    let reply = admin
        .try_send(
            Method::POST,
            &format!("{callback_path}/dlr?id=echo-{id}-0&status=delivered"),
            Some(b"inbound text: my code is 551177".to_vec()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    developer.wait_for_status(&id, "delivered").await;

    let log = server.log.clone();
    let exit = server.terminate().await;
    assert!(exit.success(), "{exit}");
    let log = log.lock().unwrap().join("\n");
    assert!(
        log.lines()
            .any(|l| l.contains("TRACE") && l.contains("pigeon::plugin") && l.contains("settings")),
        "the plugin's trace line echoing its request was logged: {log}"
    );
    for needle in [
        otp,
        // Not the bare digits: a timestamp's microseconds may hold them.
        "is 660914",
        "is 551177",
        api_key.as_str(),
        webhook_secret.as_str(),
        credential,
    ] {
        let found: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert!(found.is_empty(), "{needle:?} reached the log: {found:#?}");
    }
}
