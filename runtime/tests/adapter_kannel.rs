//! The `kannel` plugin against a real Kannel (bearerbox + smsbox + the fake
//! SMSC client fakesmsc) on loopback: messages go out through smsbox's
//! sendsms, reach the fake SMSC part by part, and come back delivered
//! through Kannel's dlr-url; an MO that fakesmsc injects reaches
//! `GET /v1/inbound` through the sms-service get-url.
//!
//! How delivery reports flow here: Pigeon's plugin asks for `dlr-mask=31`
//! with a `dlr-url` naming the part. bearerbox reports type 8 (SMSC
//! accepted, `ACK/`) once the fake connection took the part, and the fake
//! connection reports type 1 (delivered) as soon as fakesmsc has it, so the
//! message ends `delivered`. The fake SMSC cannot report failures; those are
//! covered by the plugin's fixtures.
//!
//! These tests need `apt-get install kannel kannel-extras`; without the
//! binaries they fail and say so.

use crate::common::{self, kannel};

use std::time::Duration;

use common::{TestServer, new_tenant};
use hyper::StatusCode;
use kannel::{Kannel, KannelPorts, SmscMessage};
use pigeon::config::CarrierConfig;
use serde_json::{Value, json};

const CARRIER: &str = "kannel-vn";
const SECRET: &str = "kannelcallbacksecret0123456789";
const TO: &str = "+84912345678";

/// Pigeon with one `kannel` carrier for Vietnam, pointed at `ports`.
async fn pigeon_with_kannel(ports: &KannelPorts) -> TestServer {
    let base_url = ports.base_url();
    TestServer::start_with(move |config| {
        let mut carrier = CarrierConfig::new(CARRIER, "kannel");
        carrier.base_url = Some(base_url);
        carrier.settings = json!({"username": kannel::USERNAME, "password": kannel::PASSWORD});
        carrier.countries = vec!["VN".into()];
        carrier.callback_secret = Some(SECRET.into());
        config.carriers.push(carrier);
    })
    .await
}

/// The sms-service get-url that hands MOs to Pigeon (as in the plugin's README).
fn mo_url(server: &TestServer) -> String {
    format!(
        "http://{}/v1/carriers/{CARRIER}/callback/{SECRET}/inbound?from=%p&to=%P&text=%b&coding=%c&charset=%C&id=%I&at=%T",
        server.addr
    )
}

/// Pigeon and Kannel wired to each other.
async fn start() -> (TestServer, Kannel) {
    let ports = KannelPorts::free();
    let server = pigeon_with_kannel(&ports).await;
    let mo_url = mo_url(&server);
    let kannel = tokio::task::spawn_blocking(move || Kannel::start(ports, Some(&mo_url)))
        .await
        .unwrap();
    (server, kannel)
}

/// How long a step may take: generous, since CI's two cores run the whole
/// suite at once (a passing run never waits it out).
const PATIENCE: Duration = Duration::from_secs(60);

fn wait_for_smsc(kannel: &Kannel, count: usize) -> Vec<SmscMessage> {
    tokio::task::block_in_place(|| kannel.wait_for_messages(count, PATIENCE))
}

/// Waits for the message to be `delivered`, with Kannel's logs if it is not.
async fn wait_delivered(client: &common::Client, kannel: &Kannel, id: &str) -> Value {
    let path = format!("/v1/messages/{id}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, message) = client.get(&path).await;
        if message["status"] == "delivered" {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id} not delivered: {message:#}\n{}",
            kannel.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each part went through Kannel under the plugin's id for it.
fn assert_parts(message: &Value, id: &str, count: usize) {
    let parts = message["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), count, "{message:#}");
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["status"], "delivered", "{message:#}");
        assert_eq!(part["carrier"], CARRIER, "{message:#}");
        assert_eq!(
            part["carrier_message_id"],
            format!("{id}.{i}"),
            "{message:#}"
        );
    }
}

/// The concatenation UDH of part `seq` of `total` (8-bit reference).
fn concat_udh(message: &SmscMessage, total: u8, seq: u8) -> u8 {
    assert_eq!(message.udh.len(), 6, "{message:?}");
    assert_eq!(message.udh[..3], [0x05, 0x00, 0x03], "{message:?}");
    assert_eq!(message.udh[4], total, "{message:?}");
    assert_eq!(message.udh[5], seq, "{message:?}");
    message.udh[3]
}

#[test]
fn the_harness_drives_a_real_kannel() {
    let kannel = Kannel::start(KannelPorts::free(), None);
    let (status, body) = kannel.sendsms_get(&format!(
        "/cgi-bin/sendsms?username={}&password={}&to=%2B84900000001&from=Test&text=hello+kannel",
        kannel::USERNAME,
        kannel::PASSWORD
    ));
    assert_eq!((status, body.trim()), (202, "0: Accepted for delivery"));
    let received = kannel.wait_for_messages(1, PATIENCE);
    assert_eq!(received[0].from, "Test");
    assert_eq!(received[0].to, "+84900000001");
    assert_eq!(received[0].kind, "text");
    assert_eq!(received[0].text(), "hello kannel");
    let (status, body) = kannel.sendsms_get(
        "/cgi-bin/sendsms?username=pigeon&password=wrong&to=%2B84900000001&from=Test&text=x",
    );
    assert_eq!(
        (status, body.trim()),
        (403, "Authorization failed for sendsms")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_part_message_is_delivered_through_kannel() {
    let (server, kannel) = start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    let id = tenant
        .developer
        .send_message(
            json!({"to": TO, "from": "Pigeon", "body": "Your code is 123456", "type": "otp"}),
        )
        .await;

    let received = wait_for_smsc(&kannel, 1);
    assert_eq!(received.len(), 1);
    let sms = &received[0];
    assert_eq!(
        (sms.from.as_str(), sms.to.as_str()),
        ("Pigeon", TO),
        "{sms:?}"
    );
    assert_eq!(sms.kind, "text", "{sms:?}");
    assert_eq!(sms.text(), "Your code is 123456");

    let message = wait_delivered(&tenant.developer, &kannel, &id).await;
    assert_parts(&message, &id, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_part_gsm_and_ucs2_messages_are_delivered_part_by_part() {
    let (server, kannel) = start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;

    // GSM-7, three parts (153 + 153 + the rest), with extension characters.
    let gsm: String = (0..30)
        .map(|i| format!("Line {i:02} {{ok}} "))
        .collect::<String>()
        .trim_end()
        .to_owned();
    let gsm_id = tenant
        .developer
        .send_message(json!({"to": TO, "from": "Pigeon", "body": gsm}))
        .await;
    let received = wait_for_smsc(&kannel, 3);
    let reference = concat_udh(&received[0], 3, 1);
    let mut joined = String::new();
    for (i, sms) in received.iter().enumerate() {
        assert_eq!(
            concat_udh(sms, 3, i as u8 + 1),
            reference,
            "one reference for all parts"
        );
        assert_eq!(sms.kind, "udh", "{sms:?}");
        joined.push_str(&String::from_utf8(sms.data.clone()).unwrap());
    }
    assert_eq!(joined, gsm, "the parts carry the whole text, in order");
    let message = wait_delivered(&tenant.developer, &kannel, &gsm_id).await;
    assert_eq!(message["encoding"], "gsm7");
    assert_parts(&message, &gsm_id, 3);

    // UCS-2, two parts (67 + the rest UTF-16 units).
    let ucs2 = "Đơn hàng #4711 của quý khách đang được giao hôm nay. Người giao hàng sẽ gọi trước khi đến. Cảm ơn! 📦";
    let ucs2_id = tenant
        .developer
        .send_message(json!({"to": TO, "from": "Shop", "body": ucs2}))
        .await;
    let received = wait_for_smsc(&kannel, 5);
    let parts = &received[3..];
    let reference = concat_udh(&parts[0], 2, 1);
    assert_eq!(concat_udh(&parts[1], 2, 2), reference);
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.data.clone()).collect();
    assert_eq!(kannel::utf16be(&bytes), ucs2, "UTF-16BE payloads, in order");
    assert_eq!(
        parts[0].data.len(),
        134,
        "67 UTF-16 units in the first part"
    );
    let message = wait_delivered(&tenant.developer, &kannel, &ucs2_id).await;
    assert_eq!(message["encoding"], "ucs2");
    assert_parts(&message, &ucs2_id, 2);

    // A single-part UCS-2 message goes without UDH, as `ucs-2` data.
    let short_id = tenant
        .developer
        .send_message(json!({"to": TO, "from": "Shop", "body": "Привет 😀"}))
        .await;
    let received = wait_for_smsc(&kannel, 6);
    assert_eq!(received[5].kind, "ucs-2", "{:?}", received[5]);
    assert_eq!(received[5].text(), "Привет 😀");
    let message = wait_delivered(&tenant.developer, &kannel, &short_id).await;
    assert_parts(&message, &short_id, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_message_goes_out_in_ten_sendsms_requests() {
    let (server, kannel) = start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    // 1 400 GSM-7 characters: ten parts, so ten sendsms round trips.
    let body: String = (0..140).map(|i| format!("word{:05} ", i)).collect();
    let body = body.trim_end().to_owned() + "!";
    let id = tenant
        .developer
        .send_message(json!({"to": TO, "from": "Pigeon", "body": body}))
        .await;
    let received = wait_for_smsc(&kannel, 10);
    let reference = concat_udh(&received[0], 10, 1);
    let joined: Vec<u8> = received
        .iter()
        .enumerate()
        .flat_map(|(i, sms)| {
            assert_eq!(concat_udh(sms, 10, i as u8 + 1), reference);
            sms.data.clone()
        })
        .collect();
    assert_eq!(String::from_utf8(joined).unwrap(), body);
    let message = wait_delivered(&tenant.developer, &kannel, &id).await;
    assert_eq!(message["segments"], 10, "{message:#}");
    assert_parts(&message, &id, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_reach_the_inbound_api() {
    let (server, mut kannel) = start().await;
    let tenant = new_tenant(&server.admin(), "Acme").await;
    // The account owns the short code, so what handsets send to it is the
    // account's, and answers what it sent from it.
    common::own_number(
        &server.admin(),
        &tenant.admin,
        json!({"sender": "8088", "kind": "short_code", "country": "VN", "carrier": CARRIER}),
    )
    .await;
    let handset = "+84911111111";
    let id = tenant
        .developer
        .send_message(json!({"to": handset, "from": "8088", "body": "Reply YES to confirm"}))
        .await;
    wait_delivered(&tenant.developer, &kannel, &id).await;

    // Kannel's smsbox posts MOs to Pigeon concurrently, so two sent back to
    // back may be filed in either order: the second goes once the first is in.
    kannel.send_mo_text(handset, "8088", "YES please");
    wait_inbound(&tenant.developer, &kannel, 1).await;
    kannel.send_mo_ucs2(handset, "8088", "Đồng ý 👍");
    let inbound = wait_inbound(&tenant.developer, &kannel, 2).await;
    // Newest first.
    let texts: Vec<&str> = inbound
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Đồng ý 👍", "YES please"], "{inbound:#?}");
    for m in &inbound {
        assert_eq!(m["from"], handset, "{m}");
        assert_eq!(m["to"], "8088", "{m}");
        assert_eq!(m["carrier"], CARRIER, "{m}");
        assert_eq!(m["in_reply_to"], id.as_str(), "{m}");
        assert_eq!(m["account_id"], tenant.account_id.as_str(), "{m}");
        // Kannel's own id (%I), a UUID.
        assert_eq!(m["carrier_message_id"].as_str().unwrap().len(), 36, "{m}");
    }
    server.stop().await;
}

/// Polls the inbound API until it lists at least `count` messages.
async fn wait_inbound(client: &common::Client, kannel: &Kannel, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, page) = client.get("/v1/inbound").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if data.len() >= count {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} inbound messages did not arrive: {page:#}\n{}",
            kannel.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
