//! Test harness: a Pigeon server in-process on 127.0.0.1:0 or the real
//! `pigeon` binary, and a small JSON-over-HTTP client.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pigeon::config::{Config, Synchronous};
use pigeon::runtime::Pigeon;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_KEY: &str = "pgn_live_TESTADMINKEY0000000000000000000000";

/// Config for tests: fast retries and delivery reports.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_owned();
    config.store.synchronous = Synchronous::Normal;
    config.dispatch.retry_base_ms = 20;
    config.dispatch.retry_max_ms = 200;
    config.dispatch.poll_interval_ms = 20;
    config.loopback.delivery_delay_ms = 10;
    config
}

/// Pigeon running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(dir.path(), adjust).await;
        server._dir = Some(dir);
        server
    }

    /// Starts on an existing data directory (kept by the caller).
    pub async fn start_in(data_dir: &Path, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(data_dir);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pigeon = Pigeon::start(&config, Some(ADMIN_KEY.into()))
            .await
            .unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(pigeon.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            data_dir: data_dir.to_owned(),
            shutdown: Some(shutdown),
            task: Some(task),
            _dir: None,
        }
    }

    pub fn client(&self, key: &str) -> Client {
        Client::new(self.addr, Some(key))
    }

    pub fn admin(&self) -> Client {
        self.client(ADMIN_KEY)
    }

    /// Graceful stop, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// An account with one key of each role.
pub struct Tenant {
    pub account_id: String,
    pub admin: Client,
    pub developer: Client,
    pub compliance: Client,
    pub viewer: Client,
}

/// Creates an account (as the operator) and a key per role.
pub async fn new_tenant(operator: &Client, name: &str) -> Tenant {
    let (status, account) = operator.post("/v1/accounts", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let account_id = account["id"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    for role in ["admin", "developer", "compliance", "viewer"] {
        let (status, key) = operator
            .post(
                &format!("/v1/accounts/{account_id}/keys"),
                json!({"role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        keys.push(operator.with_key(key["key"].as_str().unwrap()));
    }
    let mut keys = keys.into_iter();
    Tenant {
        account_id,
        admin: keys.next().unwrap(),
        developer: keys.next().unwrap(),
        compliance: keys.next().unwrap(),
        viewer: keys.next().unwrap(),
    }
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    key: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Client {
    pub fn new(addr: SocketAddr, key: Option<&str>) -> Self {
        Self {
            addr,
            key: key.map(str::to_owned),
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn with_key(&self, key: &str) -> Self {
        let mut client = self.clone();
        client.key = Some(key.to_owned());
        client
    }

    pub fn without_key(&self) -> Self {
        let mut client = self.clone();
        client.key = None;
        client
    }

    /// Sends raw bytes; the answer's body is parsed as JSON (or `Null`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_send(method, path, body, headers)
            .await
            .expect("request failed")
    }

    /// As [`Client::send`], but a transport failure (server gone) is an `Err`.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON answer ({status}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let reply = self.send(Method::GET, path, None, &[]).await;
        (reply.status, reply.body)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let reply = self
            .send(Method::POST, path, Some(body.to_string().into_bytes()), &[])
            .await;
        (reply.status, reply.body)
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let reply = self.send(Method::DELETE, path, None, &[]).await;
        (reply.status, reply.body)
    }

    /// Sends a message; panics unless it is accepted. Returns its id.
    pub async fn send_message(&self, body: Value) -> String {
        let (status, reply) = self.post("/v1/messages", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        reply["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the message reaches `status` (panics after 10 s).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let path = format!("/v1/messages/{id}");
        wait_until(&format!("message {id} to be {status}"), || async {
            let (_, message) = self.get(&path).await;
            (message["status"] == status).then_some(message)
        })
        .await
    }
}

/// Polls `check` until it yields a value; panics after 10 seconds.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real `pigeon` binary, serving on a port of its choosing.
pub struct BinaryServer {
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
}

impl BinaryServer {
    pub async fn spawn(data_dir: &Path, extra_args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pigeon"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("PIGEON_ADMIN_KEY", ADMIN_KEY)
            .env("PIGEON_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the pigeon binary");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(addr) = line.strip_prefix("pigeon: listening on http://") {
                    return addr.parse::<SocketAddr>().unwrap();
                }
            }
            panic!("pigeon exited before listening");
        })
        .await
        .expect("pigeon did not start listening within 30 s");
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { addr, child }
    }

    pub fn admin(&self) -> Client {
        Client::new(self.addr, Some(ADMIN_KEY))
    }

    /// SIGKILL: no shutdown, no flush.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("pigeon did not exit within 20 s of SIGTERM")
            .unwrap()
    }
}
