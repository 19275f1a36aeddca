//! The SMPP server, end to end over loopback TCP: a small ESME written
//! here binds with an account's credential, submits, and reads the
//! receipts and inbound messages Pigeon sends it.

use crate::common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use common::{BinaryServer, Client, Tenant, TestServer, new_tenant, own_number, wait_until};
use hyper::StatusCode;
use pigeon::smpp::pdu::{self, Bind, Pdu, ShortMessage, command, status, tag};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NUMBER: &str = "+84912340300";
const HANDSET: &str = "+84987654401";

/// An ESME: sends PDUs and reads Pigeon's, keeping `deliver_sm`s that
/// arrive while it waits for something else.
struct Esme {
    stream: TcpStream,
    sequence: u32,
    delivered: VecDeque<Pdu>,
}

impl Esme {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            sequence: 0,
            delivered: VecDeque::new(),
        }
    }

    async fn send(&mut self, command_id: u32, body: Vec<u8>) -> u32 {
        self.sequence += 1;
        let pdu = Pdu::new(command_id, 0, self.sequence, body);
        self.stream.write_all(&pdu.to_bytes()).await.unwrap();
        self.sequence
    }

    /// The next PDU Pigeon sends; `None` when it closed the connection.
    async fn read(&mut self) -> Option<Pdu> {
        tokio::time::timeout(Duration::from_secs(10), pdu::read_pdu(&mut self.stream))
            .await
            .expect("no PDU within 10 s")
            .ok()
            .flatten()
    }

    /// The response to `sequence`, keeping deliver_sms that come first.
    async fn response(&mut self, sequence: u32) -> Pdu {
        loop {
            let pdu = self.read().await.expect("connection closed");
            if pdu.command_id == command::DELIVER_SM {
                self.delivered.push_back(pdu);
            } else if pdu.sequence == sequence {
                return pdu;
            }
        }
    }

    async fn bind(&mut self, command_id: u32, system_id: &str, password: &str) -> Pdu {
        let body = Bind {
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            interface_version: 0x34,
        }
        .encode();
        let sequence = self.send(command_id, body).await;
        self.response(sequence).await
    }

    async fn submit(&mut self, sm: &ShortMessage) -> Pdu {
        let sequence = self.send(command::SUBMIT_SM, sm.encode()).await;
        let resp = self.response(sequence).await;
        assert_eq!(resp.command_id, command::SUBMIT_SM | command::RESP);
        resp
    }

    /// The next deliver_sm, unacknowledged.
    async fn deliver_sm(&mut self) -> (Pdu, ShortMessage) {
        let pdu = match self.delivered.pop_front() {
            Some(pdu) => pdu,
            None => loop {
                let pdu = self.read().await.expect("connection closed");
                if pdu.command_id == command::DELIVER_SM {
                    break pdu;
                }
            },
        };
        let sm = ShortMessage::decode(&pdu.body).unwrap();
        (pdu, sm)
    }

    async fn ack(&mut self, deliver: &Pdu) {
        let resp = Pdu::new(
            command::DELIVER_SM | command::RESP,
            status::ROK,
            deliver.sequence,
            pdu::id_body(""),
        );
        self.stream.write_all(&resp.to_bytes()).await.unwrap();
    }
}

fn gsm(from: &str, to: &str, text: &str) -> ShortMessage {
    ShortMessage {
        source_ton: 1,
        source_npi: 1,
        source_addr: from.into(),
        dest_ton: 1,
        dest_npi: 1,
        destination_addr: to.into(),
        short_message: pigeon::encoding::septets_of_text(text).unwrap(),
        ..ShortMessage::default()
    }
}

fn message_id(resp: &Pdu) -> String {
    assert_eq!(resp.status, status::ROK, "status {:#x}", resp.status);
    pdu::read_id(&resp.body).unwrap()
}

async fn start(adjust: impl FnOnce(&mut pigeon::config::Config)) -> TestServer {
    TestServer::start_with(|config| {
        config.senders.require_owned = true;
        config.smpp.response_timeout_secs = 1;
        adjust(config);
    })
    .await
}

/// A tenant owning [`NUMBER`], with an SMPP credential: (tenant, system_id, password).
async fn tenant_with_credential(server: &TestServer) -> (Tenant, String, String) {
    tenant_with_credential_via(&server.admin()).await
}

async fn tenant_with_credential_via(operator: &Client) -> (Tenant, String, String) {
    let tenant = new_tenant(operator, "acme").await;
    own_number(
        operator,
        &tenant.admin,
        json!({"sender": NUMBER, "kind": "long_code", "country": "VN"}),
    )
    .await;
    let (status, created) = tenant
        .admin
        .post(
            &format!("/v1/accounts/{}/smpp-credentials", tenant.account_id),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let system_id = created["system_id"].as_str().unwrap().to_owned();
    let password = created["password"].as_str().unwrap().to_owned();
    (tenant, system_id, password)
}

async fn bound(server: &TestServer, mode: u32, system_id: &str, password: &str) -> Esme {
    let mut esme = Esme::connect(server.smpp_addr.unwrap()).await;
    let resp = esme.bind(mode, system_id, password).await;
    assert_eq!(resp.command_id, mode | command::RESP);
    assert_eq!(resp.status, status::ROK);
    esme
}

#[tokio::test]
async fn credentials_are_shown_once_and_binds_need_them() {
    let server = start(|_| {}).await;
    let (tenant, system_id, password) = tenant_with_credential(&server).await;
    assert_eq!(
        password.len(),
        8,
        "SMPP 3.4 passwords are at most 8 characters"
    );
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    let (status, listed) = tenant
        .admin
        .get(&format!(
            "/v1/accounts/{}/smpp-credentials",
            tenant.account_id
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"][0]["system_id"], system_id.as_str());
    assert!(listed["data"][0].get("password").is_none(), "{listed}");
    // Developers cannot make credentials.
    let (status, _) = tenant
        .developer
        .post(
            &format!("/v1/accounts/{}/smpp-credentials", tenant.account_id),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut esme = Esme::connect(server.smpp_addr.unwrap()).await;
    let wrong = esme
        .bind(command::BIND_TRANSCEIVER, &system_id, "wrong123")
        .await;
    assert_eq!(wrong.status, status::RBINDFAIL);
    let unknown = esme
        .bind(command::BIND_TRANSCEIVER, "nobody", &password)
        .await;
    assert_eq!(unknown.status, status::RBINDFAIL);
    // Before a bind, submit_sm is refused by bind state.
    let refused = esme.submit(&gsm(NUMBER, HANDSET, "hi")).await;
    assert_eq!(refused.status, status::RINVBNDSTS);
    let ok = esme
        .bind(command::BIND_TRANSCEIVER, &system_id, &password)
        .await;
    assert_eq!(ok.status, status::ROK);
    assert_eq!(pdu::read_id(&ok.body).as_deref(), Some("pigeon"));
    let again = esme
        .bind(command::BIND_TRANSCEIVER, &system_id, &password)
        .await;
    assert_eq!(again.status, status::RALYBND);
    let sequence = esme.send(command::ENQUIRE_LINK, Vec::new()).await;
    let link = esme.response(sequence).await;
    assert_eq!(link.command_id, command::ENQUIRE_LINK | command::RESP);
    assert_eq!(link.status, status::ROK);

    // A second bind of the same credential, as a transmitter.
    let mut second = bound(&server, command::BIND_TRANSMITTER, &system_id, &password).await;
    let sequence = second.send(command::UNBIND, Vec::new()).await;
    let unbound = second.response(sequence).await;
    assert_eq!(unbound.command_id, command::UNBIND | command::RESP);
    assert!(second.read().await.is_none(), "closed after unbind");

    // Revoking the credential unbinds its open binds and refuses new ones.
    let (status, revoked) = tenant
        .admin
        .get(&format!(
            "/v1/accounts/{}/smpp-credentials",
            tenant.account_id
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = revoked["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = tenant
        .admin
        .delete(&format!("/v1/smpp-credentials/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unbind = esme.read().await.expect("an unbind");
    assert_eq!(unbind.command_id, command::UNBIND);
    let mut late = Esme::connect(server.smpp_addr.unwrap()).await;
    let refused = late
        .bind(command::BIND_TRANSCEIVER, &system_id, &password)
        .await;
    assert_eq!(refused.status, status::RBINDFAIL);
    // Both changes are in the audit trail, without the password.
    let (_, audit) = server.admin().get("/v1/audit").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"smpp_credential.create"), "{audit}");
    assert!(actions.contains(&"smpp_credential.revoke"), "{audit}");
    assert!(!audit.to_string().contains(&password));
    server.stop().await;
}

#[tokio::test]
async fn submit_sm_goes_through_the_accept_path() {
    let server = start(|_| {}).await;
    let (tenant, system_id, password) = tenant_with_credential(&server).await;
    let mut esme = bound(&server, command::BIND_TRANSMITTER, &system_id, &password).await;

    // Accepted: the answer comes once the message is stored.
    let resp = esme
        .submit(&gsm(NUMBER, "84987654402", "Hello from SMPP @"))
        .await;
    let id = message_id(&resp);
    assert!(id.starts_with("msg_") && id.len() < 65, "{id}");
    let (status, message) = tenant.developer.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["body"], "Hello from SMPP @");
    assert_eq!(message["to"], "+84987654402");
    assert_eq!(message["from"], NUMBER);

    // UCS-2, and the text in message_payload.
    let mut ucs2 = gsm(NUMBER, "+84987654402", "");
    ucs2.data_coding = 8;
    ucs2.short_message = Vec::new();
    ucs2.tlvs.insert(
        tag::MESSAGE_PAYLOAD,
        "Xin chào 中文"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect(),
    );
    let id = message_id(&esme.submit(&ucs2).await);
    let (_, message) = tenant.developer.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(message["body"], "Xin chào 中文");
    assert_eq!(message["encoding"], "ucs2");

    let bad_destination = esme.submit(&gsm(NUMBER, "not-a-number", "hi")).await;
    assert_eq!(bad_destination.status, status::RINVDSTADR);
    let unowned = esme.submit(&gsm("+84912340399", HANDSET, "hi")).await;
    assert_eq!(unowned.status, status::RINVSRCADR);
    let empty = esme.submit(&gsm(NUMBER, HANDSET, "")).await;
    assert_eq!(empty.status, status::RINVMSGLEN);
    let mut scheduled_past = gsm(NUMBER, HANDSET, "late");
    scheduled_past.schedule_delivery_time = "200101000000000+".into();
    assert_eq!(esme.submit(&scheduled_past).await.status, status::RINVSCHED);

    let (status, body) = tenant
        .admin
        .post("/v1/suppressions", json!({"number": HANDSET}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let opted_out = esme.submit(&gsm(NUMBER, HANDSET, "hi")).await;
    assert_eq!(opted_out.status, status::RSUBMITFAIL);

    // A receiver bind may not submit.
    let mut receiver = bound(&server, command::BIND_RECEIVER, &system_id, &password).await;
    let refused = receiver.submit(&gsm(NUMBER, HANDSET, "hi")).await;
    assert_eq!(refused.status, status::RINVBNDSTS);

    // A sandbox credential sends from any sender, as a sandbox key does.
    let (status, sandbox) = tenant
        .admin
        .post(
            &format!("/v1/accounts/{}/smpp-credentials", tenant.account_id),
            json!({"system_id": "acme-test", "sandbox": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sandbox}");
    let mut test = bound(
        &server,
        command::BIND_TRANSMITTER,
        "acme-test",
        sandbox["password"].as_str().unwrap(),
    )
    .await;
    message_id(
        &test
            .submit(&gsm("+84912340399", "84987654402", "test"))
            .await,
    );

    // Over the account's daily quota: throttled.
    let reply = server
        .admin()
        .send(
            hyper::Method::PATCH,
            &format!("/v1/accounts/{}", tenant.account_id),
            Some(
                json!({"limits": {"messages_per_day": 1}})
                    .to_string()
                    .into_bytes(),
            ),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let throttled = esme.submit(&gsm(NUMBER, "84987654402", "more")).await;
    assert_eq!(throttled.status, status::RTHROTTLED);
    server.stop().await;
}

#[tokio::test]
async fn receipts_are_kept_until_a_receiver_binds_and_resent_until_acknowledged() {
    let server = start(|_| {}).await;
    let (tenant, system_id, password) = tenant_with_credential(&server).await;
    let mut transmitter = bound(&server, command::BIND_TRANSMITTER, &system_id, &password).await;
    let mut sm = gsm(NUMBER, "84987654403", "Your code is 1234, thanks");
    sm.registered_delivery = 1;
    let id = message_id(&transmitter.submit(&sm).await);
    let unreported = message_id(
        &transmitter
            .submit(&gsm(NUMBER, "84987654403", "no receipt"))
            .await,
    );
    for id in [&id, &unreported] {
        tenant.developer.wait_for_status(id, "delivered").await;
    }

    // Delivered while no receiver was bound: it waited in the outbox.
    let mut receiver = bound(&server, command::BIND_RECEIVER, &system_id, &password).await;
    let (first, receipt) = receiver.deliver_sm().await;
    assert_eq!(receipt.esm_class, 0x04);
    let text = String::from_utf8(receipt.short_message.clone()).unwrap();
    assert!(
        text.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:")),
        "{text}"
    );
    assert!(
        text.ends_with(" stat:DELIVRD err:000 text:Your code is 1234, t"),
        "{text}"
    );
    assert_eq!(
        receipt.tlvs[&tag::RECEIPTED_MESSAGE_ID],
        format!("{id}\0").into_bytes()
    );
    assert_eq!(receipt.tlvs[&tag::MESSAGE_STATE], vec![2]);
    assert_eq!(receipt.tlvs[&tag::NETWORK_ERROR_CODE], vec![3, 0, 0]);
    assert_eq!(receipt.source_addr, "84987654403");
    assert_eq!(receipt.destination_addr, NUMBER.trim_start_matches('+'));

    // Not acknowledged: sent again after smpp.response_timeout_secs.
    let (again, resent) = receiver.deliver_sm().await;
    assert_ne!(again.sequence, first.sequence);
    assert_eq!(
        resent.tlvs[&tag::RECEIPTED_MESSAGE_ID],
        receipt.tlvs[&tag::RECEIPTED_MESSAGE_ID]
    );
    receiver.ack(&again).await;
    let sequence = receiver.send(command::UNBIND, Vec::new()).await;
    assert_eq!(receiver.response(sequence).await.status, status::ROK);
    assert!(receiver.delivered.is_empty(), "only the one receipt");
    let data_dir = server.data_dir.clone();
    let account_id = tenant.account_id.clone();
    server.stop().await;
    // Acknowledged: gone from the outbox (and none for the message
    // that did not ask for a receipt).
    let store = common::open_store(&data_dir);
    let left = store
        .read(move |conn| pigeon::store::smpp::outbox_len(conn, &account_id))
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn inbound_messages_go_to_a_receiver_bind() {
    let server = start(|_| {}).await;
    let (tenant, system_id, password) = tenant_with_credential(&server).await;
    let mut esme = bound(&server, command::BIND_TRANSCEIVER, &system_id, &password).await;
    let (status, inbound) = tenant
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": "+84987654404", "to": NUMBER, "body": "Hello Pigeon"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inbound}");
    let (pdu, mo) = esme.deliver_sm().await;
    assert_eq!(mo.esm_class, 0);
    assert_eq!(mo.data_coding, 0);
    assert_eq!(
        pigeon::encoding::text_of_septets(&mo.short_message),
        "Hello Pigeon"
    );
    assert_eq!(mo.source_addr, "84987654404");
    assert_eq!(mo.destination_addr, NUMBER.trim_start_matches('+'));
    esme.ack(&pdu).await;
    // Other characters come as UCS-2.
    tenant
        .developer
        .post(
            "/v1/sandbox/inbound",
            json!({"from": "+84987654404", "to": NUMBER, "body": "Cảm ơn"}),
        )
        .await;
    let (pdu, mo) = esme.deliver_sm().await;
    assert_eq!(mo.data_coding, 8);
    let units: Vec<u16> = mo
        .short_message
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), "Cảm ơn");
    esme.ack(&pdu).await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_gets_generic_nack_and_the_server_goes_on() {
    let server = start(|_| {}).await;
    let (_tenant, system_id, password) = tenant_with_credential(&server).await;
    let mut esme = bound(&server, command::BIND_TRANSCEIVER, &system_id, &password).await;
    // An unknown command id.
    let sequence = esme.send(0x0000_0099, Vec::new()).await;
    let nack = esme.response(sequence).await;
    assert_eq!(nack.command_id, command::GENERIC_NACK);
    assert_eq!(nack.status, status::RINVCMDID);
    // A submit_sm whose body ends in the middle.
    let mut body = gsm(NUMBER, HANDSET, "hi").encode();
    body.truncate(10);
    let sequence = esme.send(command::SUBMIT_SM, body).await;
    let nack = esme.response(sequence).await;
    assert_eq!(nack.command_id, command::GENERIC_NACK);
    assert_eq!(nack.status, status::RINVCMDLEN);
    // Still bound and serving.
    let resp = esme.submit(&gsm(NUMBER, "84987654405", "still here")).await;
    message_id(&resp);
    // A length no PDU has: nacked and closed.
    esme.stream
        .write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9])
        .await
        .unwrap();
    let nack = esme.read().await.expect("a generic_nack");
    assert_eq!(nack.command_id, command::GENERIC_NACK);
    assert_eq!(nack.status, status::RINVCMDLEN);
    assert!(esme.read().await.is_none(), "closed");
    // Random bytes on another connection, then a short length.
    let mut raw = TcpStream::connect(server.smpp_addr.unwrap()).await.unwrap();
    raw.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut buf)).await;
    // And the server still binds a new ESME.
    bound(&server, command::BIND_TRANSCEIVER, &system_id, &password).await;
    server.stop().await;
}

/// The parts of `text` with an 8-bit reference UDH (or the SAR TLVs with
/// a 16-bit one), in the order of `order` (1-based).
fn split(text: &str, sar: bool, order: &[u8]) -> Vec<ShortMessage> {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(150).collect();
    let total = chunks.len() as u8;
    order
        .iter()
        .map(|&seq| {
            let chunk = chunks[usize::from(seq) - 1];
            let mut sm = gsm(NUMBER, "84987654406", "");
            sm.data_coding = 3;
            if sar {
                sm.short_message = chunk.to_vec();
                sm.tlvs.insert(tag::SAR_MSG_REF_NUM, vec![0x12, 0x34]);
                sm.tlvs.insert(tag::SAR_TOTAL_SEGMENTS, vec![total]);
                sm.tlvs.insert(tag::SAR_SEGMENT_SEQNUM, vec![seq]);
            } else {
                sm.esm_class = 0x40;
                sm.short_message = [5, 0x00, 3, 0x42, total, seq].to_vec();
                sm.short_message.extend_from_slice(chunk);
            }
            sm
        })
        .collect()
}

#[tokio::test]
async fn client_split_messages_are_joined_into_one() {
    let server = start(|_| {}).await;
    let (tenant, system_id, password) = tenant_with_credential(&server).await;
    let mut esme = bound(&server, command::BIND_TRANSMITTER, &system_id, &password).await;
    let text: String = (0..400)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for sar in [false, true] {
        let mut ids = Vec::new();
        for part in split(&text, sar, &[3, 1, 2]) {
            ids.push(message_id(&esme.submit(&part).await));
        }
        assert!(
            ids[0].starts_with("smp_") && ids[1].starts_with("smp_"),
            "{ids:?}"
        );
        let id = &ids[2];
        assert!(
            id.starts_with("msg_"),
            "the completing part has the message id: {ids:?}"
        );
        let (status, message) = tenant.developer.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        assert_eq!(message["body"], text.as_str(), "sar: {sar}");
        assert_eq!(message["segments"], 3);
    }
    // One message per split text, no more.
    let (_, listed) = tenant.developer.get("/v1/messages?to=%2B84987654406").await;
    let count = listed["data"]
        .as_array()
        .map(|d| d.iter().filter(|m| m["to"] == "+84987654406").count());
    assert_eq!(count, Some(2), "{listed}");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_bind_is_unbound() {
    let server = start(|config| config.smpp.idle_timeout_secs = 1).await;
    let (_tenant, system_id, password) = tenant_with_credential(&server).await;
    let mut esme = bound(&server, command::BIND_TRANSCEIVER, &system_id, &password).await;
    let unbind = esme.read().await.expect("an unbind");
    assert_eq!(unbind.command_id, command::UNBIND);
    let resp = Pdu::new(
        command::UNBIND | command::RESP,
        0,
        unbind.sequence,
        Vec::new(),
    );
    esme.stream.write_all(&resp.to_bytes()).await.unwrap();
    assert!(esme.read().await.is_none(), "closed");
    server.stop().await;
}

#[tokio::test]
async fn with_a_certificate_smpp_is_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |c| c.senders.require_owned = true).await;
    let (_tenant, system_id, password) = tenant_with_credential(&server).await;
    server.stop().await;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let server = TestServer::start_in(dir.path(), |config| {
        config.server.tls_cert = Some(cert);
        config.server.tls_key = Some(key);
    })
    .await;
    let addr = server.smpp_addr.unwrap();
    let bind = Pdu::new(
        command::BIND_TRANSCEIVER,
        0,
        1,
        Bind {
            system_id: system_id.clone(),
            password: password.clone(),
            system_type: String::new(),
            interface_version: 0x34,
        }
        .encode(),
    )
    .to_bytes();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake");
    tls.write_all(&bind).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), pdu::read_pdu(&mut tls))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.command_id, command::BIND_TRANSCEIVER | command::RESP);
    assert_eq!(resp.status, status::ROK);

    // In the clear, the password is never read as a bind.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(&bind).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(15), pdu::read_pdu(&mut plain))
        .await
        .expect("closed");
    assert!(
        !matches!(&answer, Ok(Some(p)) if p.command_id == command::BIND_TRANSCEIVER | command::RESP),
        "{answer:?}"
    );
    server.stop().await;
}

/// The SMPP address a `pigeon serve` printed.
async fn smpp_addr_of(server: &BinaryServer) -> SocketAddr {
    wait_until("the SMPP address in the log", || async {
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("pigeon: SMPP listening on "))
            .and_then(|a| a.parse().ok())
    })
    .await
}

#[tokio::test]
async fn an_acknowledged_part_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::spawn(dir.path(), &[]).await;
    let (tenant, system_id, password) = tenant_with_credential_via(&server.admin()).await;
    let text: String = (0..200)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    let parts = split(&text, false, &[2, 1]);
    let mut esme = Esme::connect(smpp_addr_of(&server).await).await;
    let bind = esme
        .bind(command::BIND_TRANSMITTER, &system_id, &password)
        .await;
    assert_eq!(bind.status, status::ROK);
    let part_id = message_id(&esme.submit(&parts[0]).await);
    assert!(part_id.starts_with("smp_"), "{part_id}");
    server.kill9().await;

    let server = BinaryServer::spawn(dir.path(), &[]).await;
    let mut esme = Esme::connect(smpp_addr_of(&server).await).await;
    let bind = esme
        .bind(command::BIND_TRANSMITTER, &system_id, &password)
        .await;
    assert_eq!(bind.status, status::ROK);
    let id = message_id(&esme.submit(&parts[1]).await);
    assert!(id.starts_with("msg_"), "{id}");
    let developer = tenant.developer.with_addr(server.addr);
    let (status, message) = developer.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["body"], text.as_str());
    server.terminate().await;
}

#[tokio::test]
async fn a_bind_has_at_most_window_deliver_sm_unacknowledged() {
    let server = start(|config| {
        config.smpp.window = 2;
        config.smpp.response_timeout_secs = 30;
    })
    .await;
    let (tenant, system_id, password) = tenant_with_credential(&server).await;
    // Three inbound messages wait while no receiver is bound.
    for body in ["one", "two", "three"] {
        let (status, reply) = tenant
            .developer
            .post(
                "/v1/sandbox/inbound",
                json!({"from": "+84987654407", "to": NUMBER, "body": body}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let mut esme = bound(&server, command::BIND_RECEIVER, &system_id, &password).await;
    // The bind sends what its window allows at once; the enquire_link's
    // answer comes after them, so by then any more would have come too.
    let sequence = esme.send(command::ENQUIRE_LINK, Vec::new()).await;
    esme.response(sequence).await;
    assert_eq!(esme.delivered.len(), 2, "a window of 2");
    let (first, _) = esme.deliver_sm().await;
    esme.ack(&first).await;
    let (_, second) = esme.deliver_sm().await;
    // Only now is there room for the third.
    let (_, third) = esme.deliver_sm().await;
    let texts: Vec<String> = [second, third]
        .iter()
        .map(|mo| pigeon::encoding::text_of_septets(&mo.short_message))
        .collect();
    assert_eq!(texts, ["two", "three"]);
    server.stop().await;
}
