//! `pigeon-loadgen`: a closed-loop load generator for Pigeon's `POST /v1/messages`.
//!
//! It opens `--connections` persistent HTTP/1.1 keep-alive connections, each driven by
//! its own task that sends one message after another, discards the first `--warmup`
//! seconds, then measures for `--duration` seconds (or until `--requests` measured
//! requests have been sent) and reports accepted messages per second (HTTP 202) and
//! latency percentiles. It is a benchmark tool (it fills `docs/benchmarks.md`), not a test.
//!
//! Authenticate with a developer key (`--key` or `PIGEON_KEY`), or with an admin key
//! (`--admin-key` or `PIGEON_ADMIN_KEY`), in which case an account `loadgen-<unix time>`
//! and a developer key for it are created first. If both are given, `--key` wins.
//!
//! ```text
//! cargo build --release -p pigeon-loadgen
//! PIGEON_ADMIN_KEY=... target/release/pigeon-loadgen \
//!     --url http://127.0.0.1:8080 --connections 64 --duration 10 --warmup 2 \
//!     --type mixed --threads 1
//! target/release/pigeon-loadgen --key "$PIGEON_KEY" --requests 100000 --warmup 0 --json
//! ```
//!
//! Messages go to valid mobile numbers in Vietnam, Hong Kong, the UK and the US, with
//! short OTP / alert / promotional bodies in English, Vietnamese, Chinese and Japanese
//! (the latter three need UCS-2) and one English body that needs two SMS parts.
//! Latencies are those of every request that got an HTTP response, whatever its status.
//! Transport errors are failed or timed-out requests and failed reconnection attempts
//! (retried every 100 ms); a connection closed by the server with `Connection: close`
//! is reopened without counting an error.
//! The process exits non-zero, printing the first error seen, if nothing was accepted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Pause after a failed connection attempt, so a dead server doesn't make us spin.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    name = "pigeon-loadgen",
    about = "Drive POST /v1/messages on a Pigeon server; report accepted/s and latency"
)]
struct Args {
    /// Base URL of the Pigeon server (plain http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,

    /// Developer API key used to send messages.
    #[arg(long, value_name = "KEY", env = "PIGEON_KEY", hide_env_values = true)]
    key: Option<String>,

    /// Admin API key: create an account `loadgen-<unix time>` and a developer key first.
    #[arg(
        long,
        value_name = "KEY",
        env = "PIGEON_ADMIN_KEY",
        hide_env_values = true
    )]
    admin_key: Option<String>,

    /// Number of keep-alive connections, each with its own closed-loop sender task.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,

    /// Seconds of measurement (after the warmup).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Seconds of warmup whose results are discarded.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    warmup: u64,

    /// Measure exactly this many requests (after the warmup) instead of --duration.
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Message type to send; `mixed` picks otp, transactional or marketing uniformly.
    #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = MessageMix::Mixed)]
    message_type: MessageMix,

    /// Tokio worker threads (keep low when sharing the machine with the server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,

    /// Per-request timeout in seconds; a timeout counts as a transport error.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Schedule every message this many seconds ahead (`send_at`), so the
    /// server only accepts and stores: measures the accept path alone.
    #[arg(long, value_name = "SECS")]
    schedule_in: Option<u64>,

    /// Send this many messages per request, to `POST /v1/messages/batch`
    /// (1: one message per `POST /v1/messages`). Counts and rates are of
    /// messages; latencies are of requests.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    batch: u32,

    /// Offer this many messages per second in all (open loop, spread over
    /// the connections) instead of sending as fast as answers come back.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    rate: Option<u32>,

    /// After the load, wait until no message is left queued, sending or
    /// sent (awaiting its delivery report), and report the end-to-end rate:
    /// messages accepted / time from the start until the last one was final.
    /// Use with `--warmup 0`.
    #[arg(long, conflicts_with = "schedule_in")]
    drain: bool,

    /// Print a single JSON object instead of the human-readable report.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MessageMix {
    Otp,
    Transactional,
    Marketing,
    Mixed,
}

impl MessageMix {
    fn name(self) -> &'static str {
        match self {
            MessageMix::Mixed => "mixed",
            MessageMix::Otp => Kind::Otp.name(),
            MessageMix::Transactional => Kind::Transactional.name(),
            MessageMix::Marketing => Kind::Marketing.name(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pigeon-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::parse(&args.url).await?;
    let key = match (&args.key, &args.admin_key) {
        (Some(key), _) => key.clone(),
        (None, Some(admin_key)) => provision(&target, admin_key).await?,
        (None, None) => bail!(
            "give a developer key (--key / PIGEON_KEY) or an admin key (--admin-key / PIGEON_ADMIN_KEY)"
        ),
    };
    let auth = bearer(&key)?;

    let mut conns = Vec::with_capacity(args.connections as usize);
    for _ in 0..args.connections {
        conns.push(
            connect(&target.addrs)
                .await
                .with_context(|| format!("connecting to {}", args.url))?,
        );
    }

    let stop = match args.requests {
        Some(limit) => Stop::Budget {
            limit,
            issued: AtomicU64::new(0),
        },
        None => Stop::Deadline(Duration::from_secs(args.duration)),
    };
    eprintln!(
        "pigeon-loadgen: {} connections, {} thread(s), type {}, warmup {} s, then {}",
        args.connections,
        args.threads,
        args.message_type.name(),
        args.warmup,
        match args.requests {
            Some(n) => format!("{n} requests"),
            None => format!("{} s", args.duration),
        }
    );
    let measure_start = Instant::now() + Duration::from_secs(args.warmup);
    let shared = Arc::new(Shared {
        messages_uri: target.uri("/v1/messages")?,
        batch_uri: target.uri("/v1/messages/batch")?,
        batch: args.batch,
        request_interval: args.rate.map(|rate| {
            Duration::from_secs_f64(
                f64::from(args.connections) * f64::from(args.batch) / f64::from(rate.max(1)),
            )
        }),
        target,
        auth,
        mix: args.message_type,
        bodies: Kind::ALL.map(Kind::json_bodies),
        extra_fields: match args.schedule_in {
            Some(secs) => {
                let at = chrono::Utc::now() + chrono::Duration::seconds(secs as i64);
                format!(
                    r#","send_at":"{}""#,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }
            None => String::new(),
        },
        measure_start,
        stop,
        timeout: Duration::from_secs(args.timeout),
        first_error: OnceLock::new(),
    });

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(worker(shared.clone(), conn, seed ^ (i as u64 + 1))))
        .collect();
    let mut stats = Stats::default();
    for handle in workers {
        stats.merge(handle.await.context("sender task panicked")??);
    }
    let elapsed = measure_start.elapsed();

    let mut report = Report::new(stats, elapsed);
    if args.drain {
        wait_until_final(&shared).await?;
        report.final_after_s = Some(measure_start.elapsed().as_secs_f64());
    }
    if args.json {
        println!("{}", report.json(&args));
    } else {
        report.print(&args);
    }
    if report.accepted == 0 {
        let first = shared
            .first_error
            .get()
            .map_or("(none recorded)", String::as_str);
        bail!("no message was accepted; first error: {first}");
    }
    Ok(())
}

/// Polls the message list until no message is queued, sending or sent
/// (gives up after 5 minutes).
async fn wait_until_final(shared: &Shared) -> anyhow::Result<()> {
    let mut conn = connect(&shared.target.addrs).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    'poll: loop {
        ensure!(
            Instant::now() < deadline,
            "messages still in flight after 5 minutes"
        );
        for status in ["queued", "sending", "sent"] {
            let uri = shared
                .target
                .uri(&format!("/v1/messages?status={status}&limit=1"))?;
            let request = shared
                .target
                .request(Method::GET, uri, &shared.auth, String::new())?;
            let reply = send(&mut conn, request).await?;
            ensure!(
                reply.status == StatusCode::OK,
                "listing {status} messages answered {}",
                reply.status
            );
            let list: Value = serde_json::from_slice(&reply.body)?;
            if list["data"].as_array().is_some_and(|d| !d.is_empty()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'poll;
            }
        }
        return Ok(());
    }
}

/// Where the server is: resolved socket addresses, `Host` header and base path.
struct Target {
    addrs: Vec<SocketAddr>,
    authority: HeaderValue,
    base_path: String,
}

impl Target {
    async fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid --url {url:?}"))?;
        ensure!(
            uri.scheme_str() == Some("http"),
            "--url must start with http:// (no TLS support): {url}"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("--url has no host: {url}"))?;
        let host_port = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let addrs: Vec<_> = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("resolving {host_port}"))?
            .collect();
        ensure!(!addrs.is_empty(), "{host_port} resolves to no address");
        Ok(Target {
            addrs,
            authority: HeaderValue::from_str(authority.as_str())?,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        let full = format!("{}{path}", self.base_path);
        full.parse()
            .with_context(|| format!("invalid request path {full:?}"))
    }

    fn request(
        &self,
        method: Method,
        uri: Uri,
        auth: &HeaderValue,
        body: String,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        Ok(Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?)
    }
}

fn bearer(key: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
        .context("API key is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

type Sender = SendRequest<Full<Bytes>>;

/// Opens one HTTP/1.1 connection (TCP_NODELAY) and spawns its driver task.
async fn connect(addrs: &[SocketAddr]) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addrs).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Connection errors also surface on the sender, where they are counted.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A complete response; `close` is set when the server asked to close the connection.
struct Reply {
    status: StatusCode,
    body: Bytes,
    close: bool,
}

async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let close = response
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        body,
        close,
    })
}

/// Makes one admin call on a fresh connection and returns its JSON body.
async fn admin_call(
    target: &Target,
    auth: &HeaderValue,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let request = target.request(Method::POST, target.uri(path)?, auth, body.to_string())?;
    let mut conn = connect(&target.addrs).await?;
    let reply = send(&mut conn, request).await?;
    ensure!(
        reply.status == StatusCode::CREATED,
        "POST {path}: HTTP {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body)
        .with_context(|| format!("POST {path}: response is not JSON"))
}

/// Creates an account `loadgen-<unix time>` and a developer key; returns the key.
async fn provision(target: &Target, admin_key: &str) -> anyhow::Result<String> {
    let admin = bearer(admin_key)?;
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("loadgen-{unix}");
    let account = admin_call(target, &admin, "/v1/accounts", json!({ "name": name }))
        .await
        .context("creating the load-test account")?;
    let id = account["id"]
        .as_str()
        .context("account response has no \"id\"")?;
    let key = admin_call(
        target,
        &admin,
        &format!("/v1/accounts/{id}/keys"),
        json!({ "role": "developer" }),
    )
    .await
    .context("creating a developer key")?;
    let secret = key["key"].as_str().context("key response has no \"key\"")?;
    eprintln!(
        "created account {id} ({name}), developer key {} (sandbox: {})",
        key["id"].as_str().unwrap_or("?"),
        key["sandbox"]
    );
    Ok(secret.to_owned())
}

/// When measurement ends.
enum Stop {
    /// This long after the warmup.
    Deadline(Duration),
    /// After this many measured requests (shared by all tasks).
    Budget { limit: u64, issued: AtomicU64 },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Done,
}

/// Read-only run state shared by all sender tasks.
struct Shared {
    target: Target,
    messages_uri: Uri,
    batch_uri: Uri,
    /// Messages per request.
    batch: u32,
    /// With `--rate`: how often each connection sends a request.
    request_interval: Option<Duration>,
    auth: HeaderValue,
    mix: MessageMix,
    /// JSON-encoded bodies for each `Kind`, indexed by `Kind as usize`.
    bodies: [Vec<String>; 3],
    /// Extra JSON fields for every message (e.g. `,"send_at":"…"`).
    extra_fields: String,
    measure_start: Instant,
    stop: Stop,
    timeout: Duration,
    first_error: OnceLock<String>,
}

impl Shared {
    /// The phase for the next attempt; in `--requests` mode, `Measure` takes one from the budget.
    fn next_phase(&self) -> Phase {
        let now = Instant::now();
        if now < self.measure_start {
            return Phase::Warmup;
        }
        let more = match &self.stop {
            Stop::Deadline(d) => now < self.measure_start + *d,
            Stop::Budget { limit, issued } => issued.fetch_add(1, Ordering::Relaxed) < *limit,
        };
        if more { Phase::Measure } else { Phase::Done }
    }

    /// Whether measurement is over (without taking from the budget).
    fn finished(&self) -> bool {
        match &self.stop {
            Stop::Deadline(d) => Instant::now() >= self.measure_start + *d,
            Stop::Budget { limit, issued } => issued.load(Ordering::Relaxed) >= *limit,
        }
    }

    fn note_error(&self, error: impl FnOnce() -> String) {
        if self.first_error.get().is_none() {
            let _ = self.first_error.set(error());
        }
    }

    fn message_request(&self, rng: &mut Rng) -> anyhow::Result<Request<Full<Bytes>>> {
        if self.batch > 1 {
            let items: Vec<String> = (0..self.batch).map(|_| self.message_json(rng)).collect();
            let json = format!(r#"{{"messages":[{}]}}"#, items.join(","));
            return self
                .target
                .request(Method::POST, self.batch_uri.clone(), &self.auth, json);
        }
        let json = self.message_json(rng);
        self.target
            .request(Method::POST, self.messages_uri.clone(), &self.auth, json)
    }

    fn message_json(&self, rng: &mut Rng) -> String {
        let kind = match self.mix {
            MessageMix::Otp => Kind::Otp,
            MessageMix::Transactional => Kind::Transactional,
            MessageMix::Marketing => Kind::Marketing,
            MessageMix::Mixed => Kind::ALL[rng.below(Kind::ALL.len())],
        };
        let bodies = &self.bodies[kind as usize];
        let body = &bodies[rng.below(bodies.len())];
        let to = phone_number(rng);
        format!(
            r#"{{"to":"{to}","body":{body},"type":"{}"{}}}"#,
            kind.name(),
            self.extra_fields
        )
    }
}

/// How many items of a batch answer were accepted.
fn count_accepted(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["results"]
                .as_array()
                .map(|r| r.iter().filter(|i| i["status"] == 202).count() as u64)
        })
        .unwrap_or(0)
}

/// Per-task results, merged at the end.
#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    reconnects: u64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.reconnects += other.reconnects;
    }
}

/// One closed-loop sender: one request at a time on its connection, reconnecting on failure.
async fn worker(shared: Arc<Shared>, conn: Sender, seed: u64) -> anyhow::Result<Stats> {
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    let mut initial = Some(conn);
    let mut pace = shared.request_interval.map(|period| {
        // Connections start spread over one period, not all at once.
        let offset = period.mul_f64((seed % 1000) as f64 / 1000.0);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    'connection: loop {
        let mut sender = match initial.take() {
            Some(sender) => sender,
            None if shared.finished() => break,
            None => match connect(&shared.target.addrs).await {
                Ok(sender) => {
                    stats.reconnects += 1;
                    sender
                }
                Err(e) => {
                    shared.note_error(|| format!("connect: {e:#}"));
                    match shared.next_phase() {
                        Phase::Done => break,
                        Phase::Measure => stats.transport_errors += 1,
                        Phase::Warmup => {}
                    }
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            },
        };
        loop {
            let phase = shared.next_phase();
            if phase == Phase::Done {
                break 'connection;
            }
            if let Some(pace) = pace.as_mut() {
                pace.tick().await;
            }
            let request = shared.message_request(&mut rng)?;
            let started = Instant::now();
            let outcome = tokio::time::timeout(shared.timeout, send(&mut sender, request)).await;
            let latency = started.elapsed();
            let reply = match outcome {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    shared.note_error(|| format!("request: {e:#}"));
                    stats.transport_errors += u64::from(phase == Phase::Measure);
                    continue 'connection;
                }
                Err(_) => {
                    shared.note_error(|| format!("request timed out after {:?}", shared.timeout));
                    stats.transport_errors += u64::from(phase == Phase::Measure);
                    continue 'connection;
                }
            };
            // A batch answers 200 with a result per message.
            let accepted_status = if shared.batch > 1 {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            if reply.status != accepted_status {
                shared.note_error(|| {
                    format!(
                        "HTTP {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )
                });
            }
            if phase == Phase::Measure {
                stats.latencies_us.push(latency.as_micros() as u64);
                if reply.status == StatusCode::OK && shared.batch > 1 {
                    let accepted = count_accepted(&reply.body);
                    *stats.statuses.entry(202).or_default() += accepted;
                    let refused = u64::from(shared.batch) - accepted;
                    if refused > 0 {
                        *stats.statuses.entry(422).or_default() += refused;
                    }
                } else {
                    *stats.statuses.entry(reply.status.as_u16()).or_default() += 1;
                }
            }
            if reply.close {
                continue 'connection;
            }
        }
    }
    Ok(stats)
}

/// The merged results, ready to print.
struct Report {
    requests: u64,
    accepted: u64,
    other_statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    reconnects: u64,
    elapsed_s: f64,
    /// p50, p90, p99, p99.9 and max, in milliseconds; `None` when nothing was measured.
    latency_ms: Option<[f64; 5]>,
    /// With `--drain`: seconds from the start until every message was final.
    final_after_s: Option<f64>,
}

const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("max", 100.0),
];

impl Report {
    fn new(mut stats: Stats, elapsed: Duration) -> Report {
        stats.latencies_us.sort_unstable();
        let sorted = &stats.latencies_us;
        let latency_ms = (!sorted.is_empty()).then(|| {
            PERCENTILES.map(|(_, p)| {
                // Nearest-rank percentile.
                let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
                sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
            })
        });
        let accepted = stats
            .statuses
            .remove(&StatusCode::ACCEPTED.as_u16())
            .unwrap_or(0);
        let responses: u64 = stats.statuses.values().sum::<u64>() + accepted;
        Report {
            requests: responses + stats.transport_errors,
            accepted,
            other_statuses: stats.statuses,
            transport_errors: stats.transport_errors,
            reconnects: stats.reconnects,
            elapsed_s: elapsed.as_secs_f64(),
            latency_ms,
            final_after_s: None,
        }
    }

    fn end_to_end_per_s(&self) -> Option<f64> {
        self.final_after_s
            .filter(|s| *s > 0.0)
            .map(|s| self.accepted as f64 / s)
    }

    fn accepted_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.accepted as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    fn print(&self, args: &Args) {
        let others = if self.other_statuses.is_empty() {
            "none".to_owned()
        } else {
            let parts: Vec<_> = self
                .other_statuses
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            parts.join(", ")
        };
        println!(
            "target            {}/v1/messages",
            args.url.trim_end_matches('/')
        );
        println!(
            "setup             {} connections, {} thread(s), type {}, warmup {} s",
            args.connections,
            args.threads,
            args.message_type.name(),
            args.warmup
        );
        println!("requests          {}", self.requests);
        println!("accepted (202)    {}", self.accepted);
        println!("other statuses    {others}");
        println!(
            "transport errors  {} ({} reconnects)",
            self.transport_errors, self.reconnects
        );
        println!("elapsed           {:.3} s", self.elapsed_s);
        println!("throughput        {:.1} accepted/s", self.accepted_per_s());
        if let (Some(after), Some(rate)) = (self.final_after_s, self.end_to_end_per_s()) {
            println!("all final after   {after:.3} s");
            println!("end to end        {rate:.1} messages/s");
        }
        match &self.latency_ms {
            Some(values) => {
                let parts: Vec<_> = PERCENTILES
                    .iter()
                    .zip(values)
                    .map(|((name, _), ms)| format!("{name} {ms:.3}"))
                    .collect();
                println!("latency (ms)      {}", parts.join("  "));
            }
            None => println!("latency (ms)      n/a (no responses)"),
        }
    }

    fn json(&self, args: &Args) -> Value {
        let round = |x: f64, digits: i32| {
            let scale = 10f64.powi(digits);
            (x * scale).round() / scale
        };
        let latency = match &self.latency_ms {
            Some(values) => {
                let map: serde_json::Map<_, _> = PERCENTILES
                    .iter()
                    .zip(values)
                    .map(|((name, _), ms)| (name.replace('.', "_"), json!(round(*ms, 3))))
                    .collect();
                Value::Object(map)
            }
            None => Value::Null,
        };
        let others: serde_json::Map<_, _> = self
            .other_statuses
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "url": args.url,
            "connections": args.connections,
            "threads": args.threads,
            "type": args.message_type.name(),
            "warmup_s": args.warmup,
            "duration_s": if args.requests.is_some() { Value::Null } else { json!(args.duration) },
            "requests_limit": args.requests,
            "requests": self.requests,
            "accepted": self.accepted,
            "other_statuses": others,
            "transport_errors": self.transport_errors,
            "reconnects": self.reconnects,
            "elapsed_s": round(self.elapsed_s, 3),
            "accepted_per_s": round(self.accepted_per_s(), 1),
            "latency_ms": latency,
            "final_after_s": self.final_after_s.map(|s| round(s, 3)),
            "end_to_end_per_s": self.end_to_end_per_s().map(|r| round(r, 1)),
        })
    }
}

/// The concrete message types Pigeon knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Otp = 0,
    Transactional = 1,
    Marketing = 2,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Otp, Kind::Transactional, Kind::Marketing];

    fn name(self) -> &'static str {
        match self {
            Kind::Otp => "otp",
            Kind::Transactional => "transactional",
            Kind::Marketing => "marketing",
        }
    }

    fn texts(self) -> &'static [&'static str] {
        match self {
            Kind::Otp => &[
                "Your Pigeon verification code is 482913. It expires in 5 minutes. Never share this code.",
                "G-305817 is your sign-in code.",
                "Mã xác thực của bạn là 258046. Mã có hiệu lực trong 5 phút.",
                "【Pigeon】您的验证码是604218，5分钟内有效，请勿泄露给他人。",
                "[Pigeon] 認証コード：731905（10分間有効）。このコードは他人に教えないでください。",
            ],
            Kind::Transactional => &[
                "Your order A1029384 has shipped and should arrive on Thursday. Track it at https://pgn.example/t/A1029384",
                "Payment of HKD 1,280.00 to CityMart was approved on your card ending 4421. Not you? Call 2111 0000.",
                "Reminder: your appointment with Dr. Lam is tomorrow at 10:30. Reply C to confirm.",
                "您的账户于14:32在新设备上登录。如非本人操作，请立即修改密码。",
                "ご予約を承りました。5月12日 19:00 渋谷店 2名様。変更はアプリからどうぞ。",
            ],
            Kind::Marketing => &[
                "Weekend sale: 20% off everything in store and online until Sunday. Reply STOP to opt out.",
                // 2 SMS parts in GSM-7 (more than 160 characters).
                "Pigeon Rewards: you have 1,250 points expiring on 30 June. Redeem them for vouchers, \
                 flight miles or charity donations in the app before they are gone. See this month's \
                 partner offers at https://pgn.example/r Reply STOP to opt out.",
                "618年中大促：全场满299减50，会员再享9折，仅限6月18日。回复TD退订",
            ],
        }
    }

    fn json_bodies(self) -> Vec<String> {
        self.texts()
            .iter()
            .map(|text| Value::from(*text).to_string())
            .collect()
    }
}

/// Mobile number prefixes (with the number of random digits that follow) that
/// libphonenumber's metadata (checked with phonenumber 0.3.10; Pigeon now uses
/// rlibphonenumber, which follows the same metadata) considers valid mobile (for the US,
/// fixed-line-or-mobile) numbers of that country; each was checked on random samples.
/// Not all of +852 5/6/9 is mobile (e.g. 515x, 900x are not), and the UK drama range
/// +44 7700 900xxx is *not* valid for libphonenumber (nor is most of +44 7700), while
/// +44 7911 parses as Guernsey.
const NUMBERING: &[&[(&str, u32)]] = &[
    // Vietnam: 9 digits after +84.
    &[
        ("+8491", 7),
        ("+8498", 7),
        ("+8432", 7),
        ("+8486", 7),
        ("+8470", 7),
    ],
    // Hong Kong: 8 digits after +852.
    &[
        ("+85261", 6),
        ("+85264", 6),
        ("+85294", 6),
        ("+85296", 6),
        ("+85297", 6),
        ("+852516", 5),
        ("+852590", 5),
    ],
    // United Kingdom: 10 digits after +44.
    &[("+447400", 6), ("+447701", 6), ("+447900", 6)],
    // United States: 555-01xx numbers.
    &[("+120155501", 2), ("+121255501", 2), ("+141555501", 2)],
];

fn phone_number(rng: &mut Rng) -> String {
    let country = NUMBERING[rng.below(NUMBERING.len())];
    let (prefix, digits) = country[rng.below(country.len())];
    let subscriber = rng.next() % 10u64.pow(digits);
    format!("{prefix}{subscriber:0width$}", width = digits as usize)
}

/// xorshift64*: plenty for picking numbers and bodies.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // One splitmix64 step spreads nearby seeds apart; xorshift state must be non-zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
