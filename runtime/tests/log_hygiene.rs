//! What reaches the log: never a carrier's callback secret, never a
//! message's text. Runs the real binary with debug logging and reads its
//! whole log.

mod common;

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
