//! Three `pigeon serve` processes on one PostgreSQL database (always
//! PostgreSQL, whatever `PIGEON_TEST_STORE` says), with the shipped
//! policies, sending through one
//! mock carrier that counts every submission (and those in flight) and posts each delivery
//! report to whichever node is next, as a carrier behind a load balancer
//! would. Load goes to all three; one is killed with `kill -9` mid-load.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BinaryServer, Client, postgres};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const NODES: usize = 3;
/// The carrier's rate, for the three nodes together.
const TPS: u32 = 50;
const SECRET: &str = "clustercallbacksecret0123456789ab";
/// Messages sent in all; the kill comes once the carrier has seen `KILL_AT`.
const MESSAGES: usize = 600;
const KILL_AT: usize = 350;
/// How long the carrier takes to answer a submission.
const ANSWER_DELAY: Duration = Duration::from_millis(500);
/// The carrier's window, for the nodes together: room for the 25 in
/// flight its rate needs at `ANSWER_DELAY`, however unevenly the nodes
/// claim the work.
const WINDOW: usize = 60;
/// A dead node's claims come back after this (`store.node_lease_ms`).
const LEASE_MS: u64 = 3_000;

/// The mock carrier: the nodes' submissions, in arrival order. Each node
/// is configured with its own path under the carrier's URL (`/node{n}`),
/// so the carrier knows which node a submission came from.
#[derive(Default)]
struct Carrier {
    submissions: Mutex<Vec<(Instant, String)>>,
    /// Submissions not answered yet, by node.
    in_flight: [AtomicUsize; NODES],
    /// Submissions answered, by node.
    answered: [AtomicUsize; NODES],
    /// Submissions not answered yet, from all nodes: now and at most.
    in_flight_total: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Where delivery reports go, round robin: the nodes alive.
    nodes: Mutex<Vec<SocketAddr>>,
    next_node: AtomicUsize,
}

impl Carrier {
    /// Posts the report for `id` to the next node alive, trying the
    /// others when one does not answer.
    async fn report(self: Arc<Self>, callback_path: String, id: String) {
        let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let body = json!({"id": id, "status": "delivered"}).to_string();
        for _ in 0..50 {
            let node = {
                let nodes = self.nodes.lock().unwrap();
                nodes[self.next_node.fetch_add(1, Ordering::Relaxed) % nodes.len()]
            };
            let request = Request::post(format!("http://{node}{callback_path}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            if let Ok(reply) = http.request(request).await
                && reply.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no node took the delivery report for {id}");
    }

    fn submissions_to(&self, to: &str) -> usize {
        let submissions = self.submissions.lock().unwrap();
        submissions.iter().filter(|(_, t)| t == to).count()
    }
}

async fn start_carrier() -> (String, Arc<Carrier>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let carrier = Arc::new(Carrier::default());
    let shared = carrier.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let carrier = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let carrier = carrier.clone();
                    async move {
                        let node: usize = req
                            .uri()
                            .path()
                            .strip_prefix("/node")
                            .and_then(|rest| rest.split('/').next())
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        carrier.in_flight[node].fetch_add(1, Ordering::SeqCst);
                        let now_in_flight =
                            carrier.in_flight_total.fetch_add(1, Ordering::SeqCst) + 1;
                        carrier
                            .most_in_flight
                            .fetch_max(now_in_flight, Ordering::SeqCst);
                        let body: hyper::body::Incoming = req.into_body();
                        let body = body.collect().await.unwrap().to_bytes();
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let to = body["to"].as_str().unwrap_or_default().to_owned();
                        let seq = {
                            let mut submissions = carrier.submissions.lock().unwrap();
                            submissions.push((Instant::now(), to));
                            submissions.len()
                        };
                        let id = format!("mc-{seq}");
                        // A carrier's answer takes a moment: each node has
                        // submissions in flight when one is killed.
                        tokio::time::sleep(ANSWER_DELAY).await;
                        carrier.in_flight[node].fetch_sub(1, Ordering::SeqCst);
                        carrier.in_flight_total.fetch_sub(1, Ordering::SeqCst);
                        carrier.answered[node].fetch_add(1, Ordering::SeqCst);
                        let webhook = body["webhook_url"].as_str().unwrap_or_default();
                        // The path only: the report goes to any node.
                        let path = webhook.splitn(4, '/').nth(3).unwrap_or_default();
                        tokio::spawn(carrier.clone().report(format!("/{path}"), id.clone()));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(json!({"id": id}).to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), carrier)
}

fn write_config(dir: &Path, carrier_url: &str) -> String {
    let path = dir.join("pigeon.toml");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let policies = policies.display();
    let config = format!(
        r#"
[store]
node_lease_ms = {LEASE_MS}

[policies]
dir = "{policies}"

[senders]
require_owned = false

[[carriers]]
name = "mock"
plugin = "http-json"
base_url = "{carrier_url}"
tps = {TPS}
window = {WINDOW}
price = {{ default = 0.01 }}
callback_secret = "{SECRET}"

[carriers.settings]
path = "/send"
body = {{ to = "{{{{to}}}}", text = "{{{{text}}}}", webhook_url = "{{{{callback_url}}}}/dlr" }}
response = {{ id_path = "id", success_status = [200] }}
dlr = {{ id_path = "id", status_path = "status", status_map = {{ delivered = "delivered" }} }}
"#
    );
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

/// Waits until the `servers`' shares of the carrier's window add up to it,
/// none more than one above another.
async fn wait_for_window_shares(servers: &[BinaryServer]) {
    common::wait_until("the nodes to split the carrier's window", || async {
        let mut shares = Vec::new();
        for server in servers {
            let (_, carriers) = server.admin().get("/v1/carriers").await;
            let mock = carriers["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "mock")
                .unwrap()
                .clone();
            shares.push(mock["window_share"].as_u64().unwrap() as usize);
        }
        let even = shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1;
        (shares.iter().sum::<usize>() == WINDOW && even).then_some(())
    })
    .await;
}

/// Polls `GET /metrics` until the node counts `nodes` nodes alive.
async fn wait_for_nodes(server: &BinaryServer, nodes: usize) {
    let admin = server.admin();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, text) = admin.get_text("/metrics").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        if text
            .lines()
            .any(|line| line == format!("pigeon_cluster_nodes {nodes}"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} never saw {nodes} nodes: {:?}\n{}",
            server.addr,
            text.lines()
                .filter(|l| l.contains("cluster"))
                .collect::<Vec<_>>(),
            server.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the nodes logged (warnings and errors), for a failure's message.
fn logs(servers: &[BinaryServer]) -> String {
    let mut text = String::new();
    for server in servers {
        text.push_str(&format!("--- node {}\n", server.addr));
        for line in server.log.lock().unwrap().iter().rev().take(40).rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn on(server: &BinaryServer, client: &Client) -> Client {
    let mut client = client.clone();
    client.addr = server.addr;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_work_the_rate_and_a_revocation_and_survive_a_kill_9() {
    let url = postgres::new_database();
    let (carrier_url, carrier) = start_carrier().await;
    let dirs: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let config = write_config(dir.path(), &format!("{carrier_url}/node{n}"));
        let args = ["--config", config.as_str()];
        if n > 0 {
            // The nodes hash keys and seal tokens with one secret.
            std::fs::copy(
                dirs[0].path().join("pigeon.secret"),
                dir.path().join("pigeon.secret"),
            )
            .unwrap();
        }
        servers.push(BinaryServer::spawn_on(dir.path(), Some(&url), &args, "warn").await);
    }
    *carrier.nodes.lock().unwrap() = servers.iter().map(|s| s.addr).collect();
    for server in &servers {
        wait_for_nodes(server, NODES).await;
    }
    wait_for_window_shares(&servers).await;
    let tenant = common::new_tenant(&servers[0].admin(), "cluster").await;

    // A key made and revoked on node A is refused on node C within a second.
    let (status, key) = servers[0]
        .admin()
        .post(
            &format!("/v1/accounts/{}/keys", tenant.account_id),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let viewer_on_c = Client::new(servers[2].addr, key["key"].as_str());
    let deadline = Instant::now() + Duration::from_secs(1);
    while viewer_on_c.get("/v1/messages").await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "node C did not take a new key within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let revoke = format!("/v1/keys/{}", key["id"].as_str().unwrap());
    let (status, body) = on(&servers[0], &tenant.admin).delete(&revoke).await;
    assert!(status.is_success(), "{status} {body}");
    let revoked_at = Instant::now();
    while viewer_on_c.get("/v1/messages").await.0 != StatusCode::UNAUTHORIZED {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "node C still took a key revoked on node A after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("revocation reached node C in {:?}", revoked_at.elapsed());

    // An opt-out recorded on node B holds on node A at once too.
    let (status, body) = on(&servers[1], &tenant.compliance)
        .post("/v1/suppressions", json!({"number": "+84987650000"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let developer_on_a = on(&servers[0], &tenant.developer);
    let added_at = Instant::now();
    loop {
        let reply = developer_on_a
            .try_send(
                Method::POST,
                "/v1/messages",
                Some(
                    json!({"to": "+84987650000", "body": "hi"})
                        .to_string()
                        .into_bytes(),
                ),
                &[],
            )
            .await
            .unwrap();
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(
                reply.body["error"]["code"], "recipient_opted_out",
                "{}",
                reply.body
            );
            break;
        }
        assert!(
            added_at.elapsed() < Duration::from_secs(1),
            "node A still sent to a number opted out on node B after 1 s: {}",
            reply.body
        );
        // Sent before node A knew: it stops at the claim, not at the carrier.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The shipped pacing policy's "5 codes an hour per number" holds for
    // the three nodes together: 7 codes, sent to each node in turn.
    let handset = "+84987650100";
    let mut codes = Vec::new();
    for n in 0..7 {
        let developer = on(&servers[n % NODES], &tenant.developer);
        let body = json!({"to": handset, "type": "otp", "body": format!("Code {n:06}")});
        codes.push((developer.send_message(body).await, developer));
    }
    for (id, developer) in &codes {
        common::wait_until(&format!("{id} to be sent or deferred"), || async {
            let (_, message) = developer.get(&format!("/v1/messages/{id}")).await;
            let deferred = message["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["detail"] == "deferred by the pacing policy")
            });
            (deferred || message["status"] == "delivered").then_some(())
        })
        .await;
    }
    assert_eq!(
        carrier.submissions_to(handset),
        5,
        "the nodes together sent more than 5 codes an hour to one number"
    );

    // A daily quota counts every node's messages: 15 sent at once to the
    // three nodes, 10 stored.
    let quota = common::new_tenant(&servers[0].admin(), "quota").await;
    let account = format!("/v1/accounts/{}", quota.account_id);
    let (status, body) = servers[0]
        .admin()
        .patch(&account, json!({"limits": {"messages_per_day": 10}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for server in &servers {
        common::wait_until("every node to know the quota", || async {
            let (_, body) = server.admin().get(&account).await;
            (body["limits"]["messages_per_day"] == 10).then_some(())
        })
        .await;
    }
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..15 {
        let developer = on(&servers[n % NODES], &quota.developer);
        let body = json!({"to": format!("+8498765{n:04}"), "body": "Your order shipped"});
        sends.spawn(async move { developer.post("/v1/messages", body).await });
    }
    let replies = sends.join_all().await;
    let stored = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    for (status, body) in &replies {
        assert!(
            *status == StatusCode::ACCEPTED
                || (*status == StatusCode::TOO_MANY_REQUESTS
                    && body["error"]["code"] == "quota_exceeded"),
            "{status} {body}"
        );
    }
    assert_eq!(
        stored, 10,
        "the nodes together stored {stored} of a quota of 10"
    );
    let before_load = carrier.submissions.lock().unwrap().len();

    // Load on all three nodes; node B dies under it.
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let alive: Arc<Vec<AtomicBool>> = Arc::new((0..NODES).map(|_| AtomicBool::new(true)).collect());
    let mut senders = Vec::new();
    for sender in 0..NODES * 4 {
        let (accepted, alive) = (accepted.clone(), alive.clone());
        let clients: Vec<Client> = servers.iter().map(|s| on(s, &tenant.developer)).collect();
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let node = (sender + n) % NODES;
                if !alive[node].load(Ordering::Relaxed) {
                    continue;
                }
                if accepted.lock().unwrap().len() >= MESSAGES {
                    return;
                }
                let to = format!("+8491{:07}", sender * 100_000 + n);
                let body = json!({"to": to, "body": format!("Your code is {n:06}")});
                let bytes = Some(body.to_string().into_bytes());
                // A request to the node being killed may fail: not accepted.
                let Ok(reply) = clients[node]
                    .try_send(Method::POST, "/v1/messages", bytes, &[])
                    .await
                else {
                    continue;
                };
                assert_eq!(reply.status, 202, "{}", reply.body);
                let id = reply.body["id"].as_str().unwrap().to_owned();
                accepted.lock().unwrap().push((id, to));
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while carrier.submissions.lock().unwrap().len() < before_load + KILL_AT {
        assert!(
            Instant::now() < deadline,
            "the carrier never saw {KILL_AT} submissions"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Killed while the carrier has submissions of its in hand.
    while carrier.in_flight[1].load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "node B never had a submission in flight"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    alive[1].store(false, Ordering::Relaxed);
    let killed_at = Instant::now();
    let victim = servers.remove(1);
    victim.kill9().await;
    *carrier.nodes.lock().unwrap() = servers.iter().map(|s| s.addr).collect();
    for sender in senders {
        if let Err(error) = sender.await {
            panic!("{error}\n{}", logs(&servers));
        }
    }

    // The rate, from the carrier's clock: past the first second's burst
    // and up to the kill, all three nodes sending.
    let submissions = carrier.submissions.lock().unwrap()[before_load..].to_vec();
    let start = submissions[0].0 + Duration::from_millis(1_500);
    let steady: Vec<Instant> = submissions
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at >= start && *at <= killed_at)
        .collect();
    let seconds = (*steady.last().unwrap() - steady[0]).as_secs_f64();
    let per_second: Vec<usize> = (0..seconds.ceil() as u64)
        .map(|s| {
            let from = steady[0] + Duration::from_secs(s);
            steady
                .iter()
                .filter(|at| **at >= from && **at < from + Duration::from_secs(1))
                .count()
        })
        .collect();
    eprintln!("submissions per second: {per_second:?}");
    let rate = (steady.len() - 1) as f64 / seconds;
    eprintln!(
        "carrier rate with three nodes: {rate:.1}/s over {seconds:.1} s (tps {TPS}), {} submissions before the kill",
        steady.len()
    );
    // Never over the rate by more than 10%; and the nodes together use
    // nearly all of it (a fixed third each, with the work unevenly spread,
    // gave 77%), though on a 2-core machine running the whole suite beside
    // this test some seconds fall short.
    assert!(
        rate <= f64::from(TPS) * 1.1,
        "the carrier saw {rate:.1} parts/s, over {TPS} by more than 10%"
    );
    assert!(
        rate >= f64::from(TPS) * 0.85,
        "the carrier saw only {rate:.1} parts/s of {TPS}"
    );
    // The window holds for the carrier too: the nodes split it.
    let most_in_flight = carrier.most_in_flight.load(Ordering::SeqCst);
    eprintln!("at most {most_in_flight} submissions in flight at the carrier (window {WINDOW})");
    assert!(
        most_in_flight <= WINDOW,
        "the carrier had {most_in_flight} submissions in flight at once, window {WINDOW}"
    );

    // Every message answered 202 is delivered, whichever node took it;
    // none recorded `sent` went to the carrier twice.
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= MESSAGES, "{}", accepted.len());
    let developer = on(&servers[0], &tenant.developer);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut resent, mut requeued_parts) = (0, 0);
    for (id, to) in &accepted {
        let message = loop {
            let (status, message) = developer.get(&format!("/v1/messages/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{message}");
            if message["status"] == "delivered" {
                break message;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} did not reach delivered: {message:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let events = message["events"].as_array().unwrap();
        let requeued = events.iter().filter(|e| common::is_requeue(e)).count();
        // Attempts that reached the carrier and came back to be tried again
        // without an answer recorded (a plugin past its deadline on a
        // starved machine, say): the carrier may have taken them.
        let retried = events
            .iter()
            .filter(|e| {
                e["status"] == "queued" && !e["carrier"].is_null() && !common::is_requeue(e)
            })
            .count();
        let submitted = carrier.submissions_to(to);
        // One submission, or one more for each time a dead node's claim or
        // a retried attempt came back without a recorded acknowledgement:
        // nothing recorded `sent` goes again.
        assert!(
            submitted >= 1 && submitted <= 1 + requeued + retried,
            "{to} was submitted {submitted} times, requeued {requeued}, retried {retried}: \
             {message:#}"
        );
        resent += submitted - 1;
        requeued_parts += requeued;
    }
    eprintln!(
        "{} messages accepted by three nodes, one killed: all delivered; {requeued_parts} parts \
         the dead node held were queued again, {resent} of them had reached the carrier",
        accepted.len()
    );
    // The killed node held claims (at least the submissions the carrier had
    // not answered), and they came back.
    assert!(requeued_parts > 0, "the killed node held no claims");

    // Routing on node A sees the carrier's statistics from every node: at
    // least the submissions of the two nodes alive (and what the killed
    // one shared before it died).
    let answered = |node: usize| carrier.answered[node].load(Ordering::SeqCst) as u64;
    let alive_sent = answered(0) + answered(2);
    let total: u64 = (0..NODES).map(answered).sum();
    common::wait_until("node A to see every node's submissions", || async {
        let (_, carriers) = servers[0].admin().get("/v1/carriers").await;
        let mock = carriers["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "mock");
        let seen = mock.unwrap()["stats"]["last_15_minutes"]["submissions"]
            .as_u64()
            .unwrap();
        assert!(seen <= total, "node A counts {seen} submissions of {total}");
        (seen >= alive_sent).then_some(())
    })
    .await;
    // The survivors split the window between them once the dead node's
    // lease is over.
    wait_for_window_shares(&servers).await;
    for server in servers {
        let exit = server.terminate().await;
        assert!(exit.success(), "{exit}");
    }
}
