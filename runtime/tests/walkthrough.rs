//! The README's walk-through, against the real binary: create an account and
//! a key, send a message, and watch it go queued → sending → sent → delivered.

mod common;

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
