//! The API over HTTPS: a self-signed certificate made here, HTTP/2 or
//! HTTP/1.1 by ALPN, plain HTTP refused, bad files named at start, and the
//! sandbox's delivery reports still reaching Pigeon's own HTTPS listener.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{ADMIN_KEY, Client, TestServer, test_config};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pigeon::runtime::Pigeon;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as
/// `cert.pem` and `key.pem` into `dir`; returns the certificate.
fn self_signed(dir: &Path) -> CertificateDer<'static> {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
    made.cert.der().clone()
}

async fn https_server(dir: &Path) -> (TestServer, CertificateDer<'static>) {
    let certificate = self_signed(dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let server = TestServer::start_with(|config| {
        config.server.tls_cert = Some(cert);
        config.server.tls_key = Some(key);
    })
    .await;
    (server, certificate)
}

/// Opens a TLS connection that trusts `certificate`, offering `alpn`.
async fn connect(
    addr: SocketAddr,
    certificate: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn request(method: Method, path: &str, body: Option<Value>) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("authorization", format!("Bearer {ADMIN_KEY}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    request.body(Full::new(Bytes::from(body))).unwrap()
}

/// An HTTP/1.1 connection over TLS (no ALPN offered).
struct Https1(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Https1 {
    async fn open(addr: SocketAddr, certificate: &CertificateDer<'static>) -> Self {
        let tls = connect(addr, certificate, &[]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), None);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self(sender)
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let response = self
            .0
            .send_request(request(method, path, body))
            .await
            .unwrap();
        assert_eq!(response.version(), Version::HTTP_11);
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_when_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (server, certificate) = https_server(dir.path()).await;
    let tls = connect(server.addr, &certificate, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    // Two requests on the one connection.
    for _ in 0..2 {
        let response = sender
            .send_request(request(Method::GET, "/v1/account", None))
            .await
            .unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let account: Value = serde_json::from_slice(&body).unwrap();
        assert!(account["account"]["id"].is_string(), "{account}");
    }
    server.stop().await;
}

#[tokio::test]
async fn http1_is_served_when_alpn_is_not_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (server, certificate) = https_server(dir.path()).await;
    let mut client = Https1::open(server.addr, &certificate).await;
    for _ in 0..2 {
        let (status, account) = client.send(Method::GET, "/v1/account", None).await;
        assert_eq!(status, StatusCode::OK, "{account}");
    }
    // The JSON answers of the guarded stream hold under TLS too.
    let (status, error) = client.send(Method::GET, "/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"]["code"].is_string(), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = https_server(dir.path()).await;
    let plain = Client::new(server.addr, Some(ADMIN_KEY));
    let reply = plain.try_send(Method::GET, "/v1/account", None, &[]).await;
    assert!(
        reply.is_err(),
        "plain HTTP got an answer: {:?}",
        reply.map(|r| r.status)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_at_the_header_deadline() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let server = TestServer::start_with(|config| {
        config.server.tls_cert = Some(cert);
        config.server.tls_key = Some(key);
        config.server.header_read_timeout_ms = 200;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection was not closed: {read:?}"
    );
    server.stop().await;
}

/// Pigeon::start's error for a config (it never starts).
async fn start_error(adjust: impl FnOnce(&mut pigeon::config::Config)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    adjust(&mut config);
    match Pigeon::start(&config, Some(ADMIN_KEY.into())).await {
        Ok(_) => panic!("Pigeon started"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn bad_certificate_or_key_files_are_clear_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path());
    let cert = dir.path().join("cert.pem");
    let missing = dir.path().join("missing-key.pem");
    let err = start_error(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(missing.clone());
    })
    .await;
    assert!(
        err.contains("server.tls_key") && err.contains("missing-key.pem"),
        "{err}"
    );
    // A key file holding a certificate.
    let err = start_error(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(cert.clone());
    })
    .await;
    assert!(
        err.contains("server.tls_key") && err.contains("PRIVATE KEY"),
        "{err}"
    );
    // A key that is not the certificate's.
    let other = tempfile::tempdir().unwrap();
    self_signed(other.path());
    let err = start_error(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(other.path().join("key.pem"));
    })
    .await;
    assert!(err.contains("server.tls_cert and server.tls_key"), "{err}");
}

#[tokio::test]
async fn a_sandbox_message_is_delivered_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (server, certificate) = https_server(dir.path()).await;
    let mut client = Https1::open(server.addr, &certificate).await;
    let (status, accepted) = client
        .send(
            Method::POST,
            "/v1/messages",
            Some(json!({"to": "+84912345678", "body": "hello over TLS"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    // Delivered means the fake carrier's report came back over HTTPS.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, message) = client
            .send(Method::GET, &format!("/v1/messages/{id}"), None)
            .await;
        if message["status"] == "delivered" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered: {message}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_slow_request_head_over_tls_gets_the_json_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let certificate = self_signed(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let server = TestServer::start_with(|config| {
        config.server.tls_cert = Some(cert);
        config.server.tls_key = Some(key);
        config.server.header_read_timeout_ms = 300;
    })
    .await;
    let mut tls = connect(server.addr, &certificate, &[]).await;
    tls.write_all(b"GET /v1/account HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    server.stop().await;
}

/// The connection to PostgreSQL (whichever store the suite runs on): the
/// test server's certificate is checked as `sslmode` says, and a node that
/// cannot trust it says so at start.
#[tokio::test]
async fn the_databases_certificate_is_checked_as_sslmode_says() {
    let url = common::postgres::new_database();
    let ca = common::postgres::server().ca_file();
    // Mozilla's roots do not know the test server's CA.
    let unverified = format!("{url}?sslmode=verify-full");
    let err = start_error(|c| c.store.url = Some(unverified)).await;
    assert!(
        err.contains("invalid peer certificate") && err.contains("sslrootcert"),
        "{err}"
    );
    let err = start_error(|c| c.store.url = Some(format!("{url}?sslmode=always"))).await;
    assert!(
        err.contains("store.url") && err.contains("sslmode \"always\""),
        "{err}"
    );
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let server = TestServer::start_with(|config| config.store.url = Some(verified)).await;
    let (status, accepted) = server
        .admin()
        .post(
            "/v1/messages",
            json!({"to": "+84987654321", "body": "over TLS to the database"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    server
        .admin()
        .wait_for_status(accepted["id"].as_str().unwrap(), "delivered")
        .await;
}
