//! Test harness: a Pigeon server in-process on 127.0.0.1:0 or the real
//! `pigeon` binary, and a small JSON-over-HTTP client.
#![allow(dead_code)]

pub mod kannel;
pub mod postgres;
pub mod receiver;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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

/// The PostgreSQL database of the node whose data directory is
/// `data_dir` when the tests run on that engine (`PIGEON_TEST_STORE=postgres`),
/// made on first use and kept with the directory, so that a restart on
/// the same directory finds the same database; `None` on SQLite.
pub fn test_database_url(data_dir: &Path) -> Option<String> {
    if std::env::var("PIGEON_TEST_STORE").ok()? != "postgres" {
        return None;
    }
    let kept = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let url = postgres::new_database();
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&kept, &url).unwrap();
    Some(url)
}

/// Config for tests: fast retries and delivery reports.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    config.store.url = test_database_url(data_dir);
    config.store.synchronous = Synchronous::Normal;
    config.dispatch.retry_base_ms = 20;
    config.dispatch.retry_max_ms = 200;
    config.dispatch.poll_interval_ms = 20;
    config.sandbox.settings = json!({"dlr_delay_ms": 10});
    // Test receivers listen on 127.0.0.1, which webhooks refuse by default.
    config.webhooks.allow_private_networks = true;
    config.webhooks.poll_interval_ms = 20;
    // Tests from before the number inventory send from any sender; the
    // ones about ownership turn this back on.
    config.senders.require_owned = false;
    // Many servers run at once: none may take SMPP's 2775.
    config.smpp.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// Pigeon running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where its SMPP server listens, when enabled.
    pub smpp_addr: Option<SocketAddr>,
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
        // `PIGEON_TEST_LOG=warn` (a tracing filter) shows the server's log.
        if let Ok(filter) = std::env::var("PIGEON_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let mut config = test_config(data_dir);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        config.listen = addr;
        let pigeon = Pigeon::start(&config, Some(ADMIN_KEY.into()))
            .await
            .unwrap();
        let smpp_addr = pigeon.smpp_addr();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(pigeon.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            smpp_addr,
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

    /// The same key against another server (the same data, restarted).
    pub fn with_addr(&self, addr: SocketAddr) -> Self {
        Self {
            addr,
            ..self.clone()
        }
    }

    /// The key this client sends, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
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

    /// A GET whose answer is text (metrics, CSV): status, content type, body.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String, String) {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = self
            .http
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("request failed");
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, String::from_utf8_lossy(&bytes).into_owned())
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

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let reply = self
            .send(
                Method::PATCH,
                path,
                Some(body.to_string().into_bytes()),
                &[],
            )
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

/// Whether a message's event is a part's requeue after its node stopped
/// before the carrier's answer was recorded.
pub fn is_requeue(event: &Value) -> bool {
    event["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("requeued: interrupted"))
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
    /// Every line it has written to stderr.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl BinaryServer {
    pub async fn spawn(data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::spawn_logging(data_dir, extra_args, "warn").await
    }

    /// Started with `PIGEON_LOG=level`.
    pub async fn spawn_logging(data_dir: &Path, extra_args: &[&str], level: &str) -> Self {
        let url = test_database_url(data_dir);
        Self::spawn_on(data_dir, url.as_deref(), extra_args, level).await
    }

    /// Started on the PostgreSQL database `database_url` (SQLite when `None`).
    pub async fn spawn_on(
        data_dir: &Path,
        database_url: Option<&str>,
        extra_args: &[&str],
        level: &str,
    ) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pigeon"));
        if let Some(url) = database_url {
            command.env("PIGEON_DATABASE_URL", url);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("PIGEON_ADMIN_KEY", ADMIN_KEY)
            .env("PIGEON_LOG", level)
            // Many servers run at once: none may take SMPP's 2775.
            .env("PIGEON_SMPP_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the pigeon binary");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if let Some(addr) = line.strip_prefix("pigeon: listening on http://") {
                    return addr.parse::<SocketAddr>().unwrap();
                }
            }
            panic!("pigeon exited before listening");
        })
        .await
        .expect("pigeon did not start listening within 30 s");
        // Keep draining stderr so the child never blocks on a full pipe.
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Self { addr, child, log }
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

// ---- Helpers for the API, accounts and dispatch tests ----

impl Client {
    /// POSTs `body` as JSON with extra headers and returns the whole reply.
    pub async fn post_with_headers(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send(
            Method::POST,
            path,
            Some(body.to_string().into_bytes()),
            headers,
        )
        .await
    }

    /// Every message `GET /v1/messages?{query}` lists, following
    /// `next_cursor` from page to page.
    pub async fn list_all_messages(&self, query: &str) -> Vec<Value> {
        let mut messages = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let path = match &cursor {
                Some(cursor) => format!("/v1/messages?{query}&cursor={cursor}"),
                None => format!("/v1/messages?{query}"),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            messages.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return messages,
            }
        }
        panic!("listing {query} did not end after 1000 pages");
    }
}

/// Asserts that `reply` is a JSON error `{"error": {"code", "message",
/// "field"}}` with this status, code and field.
pub fn assert_error(reply: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    let body = &reply.body;
    assert_eq!(reply.status, status, "{body}");
    assert_eq!(
        reply.headers.get(hyper::header::CONTENT_TYPE).unwrap(),
        "application/json",
        "{body}"
    );
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["error"], "{body}");
    let mut keys: Vec<&str> = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "field", "message"], "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"].as_str(), field, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().is_empty(),
        "{body}"
    );
}

/// Asserts a 422 error with this code and field.
pub fn assert_422(reply: &Reply, code: &str, field: Option<&str>) {
    assert_error(reply, StatusCode::UNPROCESSABLE_ENTITY, code, field);
}

/// Runs `query` on the database of the node at `data_dir`, whichever
/// engine it is on, through a store of its own (as a second node would).
pub async fn read_db<R: Send + 'static>(
    data_dir: &Path,
    query: impl FnOnce(&pigeon::store::Connection) -> pigeon::store::Result<R> + Send + 'static,
) -> R {
    let store = open_store(data_dir);
    let result = store.read(query).await.unwrap();
    store.close().await;
    result
}

/// Runs `job` in a write on the database of the node at `data_dir`.
pub async fn write_db<R: Send + 'static>(
    data_dir: &Path,
    job: impl Fn(&pigeon::store::Connection) -> pigeon::store::Result<R> + Send + 'static,
) -> R {
    let store = open_store(data_dir);
    let result = store.write(job).await.unwrap();
    store.close().await;
    result
}

/// Opens a store on `dir` directly, as the runtime does.
pub fn open_store(dir: &Path) -> pigeon::store::Store {
    let config = pigeon::config::StoreConfig {
        url: test_database_url(dir),
        synchronous: Synchronous::Normal,
        ..Default::default()
    };
    pigeon::store::Store::open(dir, &config).unwrap()
}

/// A one-part GSM-7 message of `message_type`, created at `created_at`, due
/// at once and valid for an hour; adjust its public fields as needed.
pub fn stored_message(
    message_type: pigeon::model::MessageType,
    created_at: i64,
) -> pigeon::store::MessageRecord {
    pigeon::store::MessageRecord {
        // An id of its creation time, as Pigeon makes them (unique: a counter).
        id: {
            static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{}{n:08}", pigeon::ids::first_id_at("msg", created_at))
        },
        account_id: "acc_store_test".into(),
        status: pigeon::model::Status::Queued,
        to: "+84912345678".into(),
        from: None,
        country: Some("VN".into()),
        body: format!("{} message", message_type.as_str()),
        message_type,
        encoding: pigeon::encoding::Encoding::Gsm7,
        segments: 1,
        concat_ref: 0,
        callback_url: None,
        send_at: None,
        expires_at: created_at + 3_600_000,
        metadata: None,
        sandbox: false,
        policy_digest: None,
        sender: None,
        auto_reply: None,
        redacted_at: None,
        origin: Default::default(),
        created_at,
        updated_at: created_at,
    }
}

/// Writes `message` through the store's writer.
pub async fn insert_stored(store: &pigeon::store::Store, message: pigeon::store::MessageRecord) {
    let outcome = store
        .write(move |conn| pigeon::store::messages::insert_message(conn, &message, None))
        .await
        .unwrap();
    assert!(matches!(outcome, pigeon::store::InsertOutcome::Created(_)));
}

/// Sends `head` (request line and headers, ending in a blank line) and then
/// `body` over a fresh TCP connection, writing and reading at once, and
/// returns the answer's status and JSON body. For requests the hyper client
/// will not make (chunked uploads, raw header bytes).
pub async fn raw_request(addr: SocketAddr, head: Vec<u8>, body: Vec<u8>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        // The server may answer and close before reading everything.
        if writer.write_all(&head).await.is_ok() {
            let _ = writer.write_all(&body).await;
        }
        writer
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let (status, json) = loop {
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("no answer within 10 s")
            .expect("reading the answer");
        answer.extend_from_slice(&buf[..read]);
        if let Some(parsed) = parse_raw_answer(&answer) {
            break parsed;
        }
        assert!(read > 0, "connection closed mid-answer: {answer:?}");
    };
    drop(writing);
    (status, json)
}

/// A complete `Content-Length` answer's status and JSON body, if all of it is here.
fn parse_raw_answer(answer: &[u8]) -> Option<(u16, Value)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&answer[..end]).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("answer without Content-Length");
    let body = answer.get(end..end + length)?;
    Some((status, serde_json::from_slice(body).unwrap()))
}

/// An object's keys, sorted.
pub fn sorted_keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The statuses of a message's events, in order.
pub fn event_statuses(message: &Value) -> Vec<&str> {
    message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

/// A copy of the shipped `policies/` in a temporary directory, to edit.
pub fn shipped_policies_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        dir.path(),
    );
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A carrier on 127.0.0.1:0 that answers every request with `status_line`
/// (e.g. `401 Unauthorized`) and an empty body; its base URL.
pub async fn carrier_answering(status_line: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 {status_line}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Waits until `GET /v1/inbound` (as `client`) lists the message the carrier
/// called `carrier_message_id`, and returns it.
pub async fn wait_for_inbound(client: &Client, carrier_message_id: &str) -> Value {
    wait_until("the inbound message to be listed", || async {
        let (status, list) = client.get("/v1/inbound").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["data"]
            .as_array()
            .and_then(|d| {
                d.iter()
                    .find(|m| m["carrier_message_id"] == carrier_message_id)
            })
            .cloned()
    })
    .await
}

/// Adds a sender to the inventory as the operator (`number` is the body of
/// `POST /v1/numbers`) and has `owner` (an account admin) claim it; its id.
pub async fn own_number(operator: &Client, owner: &Client, number: Value) -> String {
    let (status, added) = operator.post("/v1/numbers", number).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let (status, claimed) = owner
        .post(&format!("/v1/numbers/{id}/claim"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    id
}
