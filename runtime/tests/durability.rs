//! 202 means committed: kill -9 the real binary under load, restart it, and
//! every accepted message is there and carries on to delivery; the only
//! parts sent twice are those whose carrier hand-off was never acknowledged.

use crate::common;

use common::{BinaryServer, Client, wait_until};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const SENDERS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_kill_9_and_are_not_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::spawn(dir.path(), &[]).await;
    let tenant = common::new_tenant(&server.admin(), "durable").await;
    let developer = tenant.developer.clone();

    // Senders run until the process dies under them; each keeps the ids it got a 202 for.
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let client = developer.clone();
        let accepted = accepted.clone();
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let message_type = ["otp", "transactional", "marketing"][n % 3];
                let body = json!({
                    "to": format!("+8491{:07}", 1000 + sender * 100_000 + n),
                    "body": if n % 3 == 0 { "Mã OTP của bạn là 482913".to_owned() } else { format!("Your code is {n:06}") },
                    "type": message_type,
                });
                match try_send(&client, body).await {
                    Some(id) => accepted.lock().unwrap().push(id),
                    None => break,
                }
            }
        }));
    }
    wait_until("500 messages to be accepted", || async {
        (accepted.lock().unwrap().len() >= 500).then_some(())
    })
    .await;
    server.kill9().await;
    for sender in senders {
        sender.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();

    let server = BinaryServer::spawn(dir.path(), &[]).await;
    let developer = developer_on(&server, &developer);
    let mut resent = 0;
    for id in &accepted {
        let message = developer.wait_for_status(id, "delivered").await;
        resent += check_sent_once_unless_interrupted(&message);
    }
    eprintln!(
        "{} accepted before kill -9, all delivered; {resent} parts re-sent",
        accepted.len()
    );
    let exit = server.terminate().await;
    assert!(exit.success(), "{exit}");
}

/// Sends one message; `None` once the server is gone.
async fn try_send(client: &Client, body: Value) -> Option<String> {
    let bytes = Some(body.to_string().into_bytes());
    let reply = client
        .try_send(hyper::Method::POST, "/v1/messages", bytes, &[])
        .await
        .ok()?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    Some(reply.body["id"].as_str()?.to_owned())
}

fn developer_on(server: &BinaryServer, before: &Client) -> Client {
    let mut client = before.clone();
    client.addr = server.addr;
    client
}

/// A part may be handed to the carrier again only if the previous run
/// stopped between claiming it and recording the carrier's answer.
/// Returns how many parts were re-sent.
fn check_sent_once_unless_interrupted(message: &Value) -> usize {
    let mut resent = 0;
    let events = message["events"].as_array().unwrap();
    let parts = message["parts"].as_array().unwrap().len() as i64;
    for part in 0..parts {
        let of_part: Vec<&Value> = events.iter().filter(|e| e["part"] == part).collect();
        let sent = of_part.iter().filter(|e| e["status"] == "sent").count();
        let sending = of_part.iter().filter(|e| e["status"] == "sending").count();
        let requeued = of_part.iter().filter(|e| common::is_requeue(e)).count();
        assert_eq!(sent, 1, "part {part} sent {sent} times: {message}");
        assert_eq!(sending, 1 + requeued, "part {part}: {message}");
        resent += requeued;
    }
    resent
}
