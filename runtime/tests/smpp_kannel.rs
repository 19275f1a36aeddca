//! Kannel's bearerbox as an ESME of Pigeon's SMPP server: an `smsc = smpp`
//! connection (a transceiver bind with an account's SMPP credential). A
//! message sent through smsbox's `sendsms` with a `dlr-mask` and a
//! `dlr-url` travels Kannel → Pigeon (submit_sm) → the sandbox carrier,
//! and its delivery report comes back the same way (deliver_sm receipt →
//! bearerbox → smsbox) to the dlr-url, a receiver in this test.
//!
//! Needs `apt-get install kannel` (bearerbox and smsbox); without the
//! binaries it fails and says so.

use crate::common::{self, kannel};

use common::receiver::Receiver;
use common::{TestServer, new_tenant, own_number, wait_until};
use hyper::StatusCode;
use kannel::{Kannel, KannelPorts, Smsc};
use serde_json::json;

const NUMBER: &str = "+84912340300";
const HANDSET: &str = "+84987654421";

/// Every byte but the unreserved ones as `%XX`, for a URL in a query.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_sends_through_pigeon_and_gets_its_delivery_report() {
    let server = TestServer::start_with(|config| config.senders.require_owned = true).await;
    let tenant = new_tenant(&server.admin(), "kannel-esme").await;
    own_number(
        &server.admin(),
        &tenant.admin,
        json!({"sender": NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let (status, credential) = tenant
        .admin
        .post(
            &format!("/v1/accounts/{}/smpp-credentials", tenant.account_id),
            json!({"system_id": "kannel"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{credential}");
    let smsc = Smsc::Smpp {
        port: server.smpp_addr.unwrap().port(),
        system_id: "kannel".into(),
        password: credential["password"].as_str().unwrap().to_owned(),
    };
    let dlrs = Receiver::start().await;
    let kannel =
        tokio::task::spawn_blocking(move || Kannel::start_with(KannelPorts::free(), None, smsc))
            .await
            .unwrap();

    let dlr_url = dlrs.url("/dlr?type=%d&smsc=%i&to=%p");
    let path = format!(
        "/cgi-bin/sendsms?username={}&password={}&from={}&to={}&text={}&dlr-mask=3&dlr-url={}",
        kannel::USERNAME,
        kannel::PASSWORD,
        escape(NUMBER),
        HANDSET.trim_start_matches('+'),
        escape("Hello from Kannel"),
        escape(&dlr_url),
    );
    let (status, body) = kannel.sendsms_get(&path);
    assert_eq!(status, 202, "{body}\n{}", kannel.diagnostics());

    // Pigeon stored it, from the SMPP door, and the sandbox delivered it.
    let message = wait_until("the message in Pigeon", || async {
        let (_, listed) = tenant.developer.get("/v1/messages").await;
        listed["data"]
            .as_array()?
            .iter()
            .find(|m| m["to"] == HANDSET)
            .cloned()
    })
    .await;
    assert_eq!(message["body"], "Hello from Kannel");
    assert_eq!(message["from"], NUMBER);
    let id = message["id"].as_str().unwrap();
    tenant.developer.wait_for_status(id, "delivered").await;

    // The receipt went back to bearerbox, and smsbox called the dlr-url
    // with type 1 (delivered to the phone).
    let report = wait_until("Kannel's delivery report", || async {
        dlrs.requests()
            .into_iter()
            .find(|r| r.path.starts_with("/dlr?type=1&"))
    })
    .await;
    assert!(
        report
            .path
            .contains(&format!("smsc={}", kannel::SMPP_SMSC_ID)),
        "{}\n{}",
        report.path,
        kannel.diagnostics()
    );
    drop(kannel);
    server.stop().await;
}
