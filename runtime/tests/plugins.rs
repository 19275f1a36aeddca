//! The carrier-plugin host against the test guest (`tests/guests/`, built
//! for wasm32-wasip2 by build.rs) and a mock carrier on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pigeon::carriers::{Carrier, SubmitError, SubmitRequest};
use pigeon::model::MessageType;
use pigeon::plugins::{
    CallError, CallbackError, CallbackRequest, CarrierSpec, Limits, LoadError, Plugin,
    PluginCarrier, PluginEngine,
};
use pigeon::store::ReportState;
use serde_json::json;

const GUEST: &str = env!("PIGEON_TEST_GUEST");

/// What the mock carrier saw: (path and query, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A carrier that answers like the test guest expects: on `/api/submit` one
/// id per part line; `/api/status/<code>` answers that status.
async fn mock_carrier() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let path = req.uri().path_and_query().unwrap().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            log.lock().unwrap().push((path.clone(), body.clone()));
                            let (status, answer) = if path == "/api/submit" {
                                let parts = body.lines().count() - 1;
                                let ids: Vec<String> =
                                    (0..parts).map(|i| format!("c-{i}")).collect();
                                (200, ids.join(","))
                            } else if let Some(code) = path.strip_prefix("/api/status/") {
                                (code.parse().unwrap(), format!("status {code}"))
                            } else {
                                (404, "no such path".to_owned())
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(answer)))
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
    (format!("http://{addr}/api"), seen)
}

fn engine() -> PluginEngine {
    PluginEngine::new().unwrap()
}

fn load(engine: &PluginEngine, limits: Limits) -> Arc<Plugin> {
    Plugin::load(engine, GUEST, limits).unwrap()
}

/// The default limits with a deadline no loaded CI machine reaches: for
/// tests whose calls must not be cut off by a slow scheduler.
fn unhurried() -> Limits {
    Limits {
        deadline: Duration::from_secs(10),
        ..Limits::default()
    }
}

async fn carrier(
    plugin: &Arc<Plugin>,
    name: &str,
    base: &str,
    settings: serde_json::Value,
) -> PluginCarrier {
    let mut spec = CarrierSpec::new(name, base);
    spec.settings = settings;
    spec.timeout = Duration::from_secs(5);
    PluginCarrier::new(
        spec,
        plugin.clone(),
        pigeon::plugins::http_client().unwrap(),
    )
    .await
    .unwrap()
}

fn request(text: &str) -> SubmitRequest {
    let encoded = pigeon::encoding::encode(text, 7);
    SubmitRequest {
        message_id: "msg_test".into(),
        to: "+84912345678".into(),
        from: Some("Pigeon".into()),
        text: text.into(),
        message_type: MessageType::Transactional,
        encoding: encoded.encoding,
        parts: encoded.parts,
        attempt: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_validate_settings_at_load() {
    let engine = engine();
    let plugin = load(&engine, unhurried());
    let info = plugin.info();
    assert_eq!(info.name, "test-guest");
    assert_eq!(info.contract_version, pigeon::plugins::CONTRACT_VERSION);

    let mut spec = CarrierSpec::new("bad", "http://127.0.0.1:9");
    spec.settings = json!({"mode": "bogus"});
    let client = pigeon::plugins::http_client().unwrap();
    let err = PluginCarrier::new(spec, plugin.clone(), client.clone())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::Settings { problems, .. } if problems == &["unknown mode `bogus`"]),
        "{err}"
    );

    for base in [
        "127.0.0.1:9",
        "ftp://x.example",
        "https://user:pw@x.example",
    ] {
        let err = PluginCarrier::new(
            CarrierSpec::new("bad", base),
            plugin.clone(),
            client.clone(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, LoadError::BaseUrl { .. }), "{base}: {err}");
    }

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let err = Plugin::load(&engine, &junk, Limits::default()).unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
    let err =
        Plugin::load(&engine, dir.path().join("missing.wasm"), Limits::default()).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_through_a_mock_carrier_is_accepted() {
    let (base, seen) = mock_carrier().await;
    let engine = engine();
    let plugin = load(&engine, unhurried());
    let carrier = carrier(&plugin, "mock", &base, json!({"mode": "ok"})).await;
    assert_eq!(carrier.name(), "mock");

    // 200 GSM-7 characters: two parts, each with a concatenation UDH.
    let request = request(&"a".repeat(200));
    assert_eq!(request.parts.len(), 2);
    let ids = carrier.submit(&request).await.unwrap();
    assert_eq!(ids, ["c-0", "c-1"]);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (path, body) = &seen[0];
    assert_eq!(path, "/api/submit");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "msg_test");
    // UDH: 05 00 03 <ref 07> <total 02> <seq>.
    assert!(lines[1].starts_with("0500030702"), "{}", lines[1]);
    assert!(lines[2].starts_with("0500030702"), "{}", lines[2]);
    assert_eq!(plugin.stats().calls, 3, "validate, start, resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_failures_map_to_submit_errors() {
    let (base, _seen) = mock_carrier().await;
    let engine = engine();
    let plugin = load(&engine, unhurried());
    let cases = [
        (
            "/status/429",
            SubmitError::Throttled {
                retry_after_ms: 1500,
            },
        ),
        ("/status/503", SubmitError::Retryable("status 503".into())),
        (
            "/status/400",
            SubmitError::Permanent {
                code: "rejected".into(),
                reason: "status 400".into(),
            },
        ),
        (
            "/status/401",
            SubmitError::Misconfigured("carrier said status 401".into()),
        ),
    ];
    for (path, expected) in cases {
        let carrier = carrier(&plugin, "mock", &base, json!({"path": path})).await;
        let err = carrier.submit(&request("hello")).await.unwrap_err();
        assert_eq!(err, expected, "{path}");
    }

    // Nobody listening: retryable.
    let carrier = carrier(&plugin, "down", "http://127.0.0.1:9", json!({})).await;
    let err = carrier.submit(&request("hello")).await.unwrap_err();
    assert!(matches!(err, SubmitError::Retryable(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_path_escaping_the_base_url_is_refused() {
    let (base, seen) = mock_carrier().await;
    let engine = engine();
    let plugin = load(&engine, unhurried());
    for path in [
        "//evil.example/submit",
        "/../submit",
        "/%2e%2e/submit",
        "submit",
    ] {
        let carrier = carrier(&plugin, "mock", &base, json!({"path": path})).await;
        let err = carrier.submit(&request("hello")).await.unwrap_err();
        assert!(
            matches!(&err, SubmitError::Permanent { code, .. } if code == "plugin_request_refused"),
            "{path}: {err}"
        );
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_fails_its_call_at_the_deadline_and_others_keep_working() {
    let (base, seen) = mock_carrier().await;
    let engine = engine();
    // Long enough that loading (which calls describe) is never cut off on a
    // busy machine; the looping call still ends at it.
    let deadline = Duration::from_millis(500);
    let looping = load(
        &engine,
        Limits {
            deadline,
            ..Limits::default()
        },
    );
    let good = load(&engine, unhurried());
    let looper = Arc::new(carrier(&looping, "looper", &base, json!({"mode": "loop"})).await);
    let worker = carrier(&good, "worker", &base, json!({"mode": "ok"})).await;

    let started = Instant::now();
    let stuck = tokio::spawn({
        let looper = looper.clone();
        async move { looper.submit(&request("hello")).await }
    });
    // While the looping call runs, the other plugin serves several messages.
    for _ in 0..5 {
        assert_eq!(worker.submit(&request("hello")).await.unwrap(), ["c-0"]);
    }
    let err = stuck.await.unwrap().unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, SubmitError::Retryable(reason) if reason.contains("deadline")),
        "{err}"
    );
    assert!(
        // Cut off at the deadline (an upper bound loose enough for a busy machine).
        elapsed >= deadline - Duration::from_millis(10) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(looping.stats().deadlines, 1);
    assert_eq!(good.stats().deadlines, 0);
    assert_eq!(seen.lock().unwrap().len(), 5);

    // The same plugin answers its next call normally.
    let fixed = carrier(&looping, "fixed", &base, json!({"mode": "ok"})).await;
    assert_eq!(fixed.submit(&request("hello")).await.unwrap(), ["c-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_fails_its_call_and_is_counted() {
    let (base, _seen) = mock_carrier().await;
    let engine = engine();
    let plugin = load(&engine, unhurried());
    let trapper = carrier(&plugin, "trapper", &base, json!({"mode": "trap"})).await;
    for expected in 1..=2 {
        let err = trapper.submit(&request("hello")).await.unwrap_err();
        assert!(
            matches!(&err, SubmitError::Retryable(reason) if reason.contains("trapped in start-submit")
                && reason.contains("test guest told to trap")),
            "{err}"
        );
        assert_eq!(plugin.stats().traps, expected);
    }
    let worker = carrier(&plugin, "worker", &base, json!({})).await;
    assert_eq!(worker.submit(&request("hello")).await.unwrap(), ["c-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_cap_fails_a_greedy_call() {
    let (base, _seen) = mock_carrier().await;
    let engine = engine();
    // The guest allocates 64 MiB: over the default 32 MiB cap...
    let capped = load(&engine, unhurried());
    let greedy = carrier(&capped, "greedy", &base, json!({"mode": "alloc"})).await;
    let err = greedy.submit(&request("hello")).await.unwrap_err();
    assert!(
        matches!(&err, SubmitError::Retryable(reason) if reason.contains("memory cap")),
        "{err}"
    );
    assert_eq!(capped.stats().memory_exceeded, 1);
    assert_eq!(capped.stats().traps, 0);

    // ...and within a 128 MiB one.
    let roomy = load(
        &engine,
        Limits {
            memory_bytes: 128 << 20,
            ..unhurried()
        },
    );
    let greedy = carrier(&roomy, "greedy", &base, json!({"mode": "alloc"})).await;
    assert_eq!(greedy.submit(&request("hello")).await.unwrap(), ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_reach_no_files_environment_or_network() {
    let engine = engine();
    let plugin = load(&engine, unhurried());
    let prying = carrier(
        &plugin,
        "prying",
        "http://127.0.0.1:9",
        json!({"mode": "sandbox"}),
    )
    .await;
    let err = prying.submit(&request("hello")).await.unwrap_err();
    assert_eq!(
        err,
        SubmitError::Permanent {
            code: "sandbox".into(),
            reason: "file: denied; env: 0; args: 0; tcp: denied".into(),
        }
    );
}

/// The bundled simulator (when it builds) speaks this host's contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_simulator_loads() {
    let Some(path) = option_env!("PIGEON_PLUGIN_SIMULATOR") else {
        eprintln!("plugins/simulator did not build; see the build script's warnings");
        return;
    };
    let plugin = Plugin::load(&engine(), path, unhurried()).unwrap();
    assert_eq!(plugin.info().name, "simulator");
    assert_eq!(
        plugin.info().contract_version,
        pigeon::plugins::CONTRACT_VERSION
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_become_delivery_reports() {
    let engine = engine();
    let plugin = load(&engine, unhurried());
    let carrier = carrier(&plugin, "mock", "http://127.0.0.1:9", json!({})).await;
    let callback = |query: &str| CallbackRequest {
        method: hyper::Method::GET,
        path: "/".into(),
        query: query.into(),
        headers: vec![],
        body: vec![],
    };
    let outcome = carrier
        .parse_callback(callback("id=c-0&status=delivered"))
        .await
        .unwrap();
    assert_eq!(outcome.reports.len(), 1);
    let report = &outcome.reports[0];
    assert_eq!(report.carrier, "mock");
    assert_eq!(report.carrier_message_id, "c-0");
    assert_eq!(report.state, ReportState::Delivered);
    assert_eq!(report.raw_status.as_deref(), Some("delivered"));
    assert_eq!(report.at, 1_700_000_000_000);
    assert!(outcome.inbound.is_empty());
    assert_eq!(outcome.response.status, 200);
    assert_eq!(outcome.response.body, b"OK");

    let err = carrier
        .parse_callback(callback("status=delivered"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallbackError::Rejected(r) if r == "no id"),
        "{err}"
    );
    let mut head = callback("id=x&status=delivered");
    head.method = hyper::Method::HEAD;
    let err = carrier.parse_callback(head).await.unwrap_err();
    assert!(matches!(err, CallbackError::Method(_)), "{err}");
}

fn copy_guest(to: &Path, modified: std::time::SystemTime) {
    std::fs::copy(GUEST, to).unwrap();
    let file = std::fs::File::options().write(true).open(to).unwrap();
    file.set_modified(modified).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_plugin_file_is_reloaded_and_a_broken_one_keeps_the_old() {
    let (base, _seen) = mock_carrier().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.wasm");
    let t0 = std::time::SystemTime::now() - Duration::from_secs(60);
    copy_guest(&path, t0);
    let engine = engine();
    let plugin = Plugin::load(&engine, &path, unhurried()).unwrap();
    let carrier = carrier(&plugin, "mock", &base, json!({})).await;
    assert!(!plugin.reload_if_changed(), "unchanged");

    // A broken file: the old version keeps serving, the error is kept.
    std::fs::write(&path, b"\0asm broken").unwrap();
    assert!(!plugin.reload_if_changed());
    assert!(plugin.reload_error().is_some());
    assert_eq!(plugin.stats().reload_failures, 1);
    assert_eq!(carrier.submit(&request("hello")).await.unwrap(), ["c-0"]);
    assert!(
        !plugin.reload_if_changed(),
        "the same broken file is not retried"
    );

    // A good file again: swapped in, error cleared.
    copy_guest(&path, t0 + Duration::from_secs(30));
    assert!(plugin.reload_if_changed());
    assert_eq!(plugin.reload_error(), None);
    assert_eq!(plugin.stats().reloads, 1);
    assert_eq!(carrier.submit(&request("hello")).await.unwrap(), ["c-0"]);

    // The watcher does the same in the background.
    let watcher = pigeon::plugins::watch(vec![plugin.clone()], Duration::from_millis(20), None);
    copy_guest(&path, t0 + Duration::from_secs(40));
    let deadline = Instant::now() + Duration::from_secs(20);
    while plugin.stats().reloads < 2 {
        assert!(Instant::now() < deadline, "the watcher did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();
}

#[test]
fn call_errors_read_well() {
    let err = CallError::Deadline {
        plugin: "kannel".into(),
        function: "start-submit",
        deadline_ms: 100,
    };
    assert_eq!(
        err.to_string(),
        "plugin `kannel` ran past its 100 ms deadline in start-submit"
    );
}
