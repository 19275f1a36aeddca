//! The cost of one call into a carrier plugin: the bundled simulator's
//! `describe`, `validate-settings`, `start-submit`, `resume-submit` and
//! `parse-callback`, each on a fresh instance within the default limits,
//! made as a carrier makes them but with no HTTP around them (submissions go
//! through the carrier's own driver, `PluginCarrier::submit_offline`, alone
//! and in batches of [`BATCH`]). Then what it costs to make a call from
//! async code, on a tokio runtime.
//!
//! ```sh
//! cargo run --release -p pigeon-runtime --example plugin_call_bench [-- CALLS RUNS]
//! ```
//!
//! Every figure is the median of RUNS runs (default 7) of CALLS calls per
//! thread (default 2000), on one thread and on two at once. "µs/call" is the
//! time a call takes as its caller sees it; "CPU µs" is the CPU time (user
//! and system, every thread involved) per call, read from /proc (0 where
//! there is none).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pigeon::carriers::SubmitRequest;
use pigeon::model::MessageType;
use pigeon::plugins::{
    CallbackRequest, CarrierSpec, HttpResponse, Limits, Plugin, PluginCarrier, PluginEngine,
    http_client,
};

const SETTINGS: &str = r#"{"dlr_delay_ms": 50}"#;
/// Messages per batch submission.
const BATCH: usize = 100;

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(2000, |a| a.parse().expect("CALLS"));
    let runs: usize = args.next().map_or(7, |a| a.parse().expect("RUNS"));

    let engine = PluginEngine::new().expect("engine");
    let plugin = Plugin::load(&engine, env!("PIGEON_PLUGIN_SIMULATOR"), Limits::default())
        .expect("simulator plugin");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut spec = CarrierSpec::new("bench", "http://127.0.0.1:9");
    spec.settings = serde_json::from_str(SETTINGS).unwrap();
    let carrier = runtime
        .block_on(PluginCarrier::new(
            spec,
            plugin.clone(),
            http_client().unwrap(),
        ))
        .expect("carrier");
    let input = Input {
        message: message(0),
        batch: (0..BATCH).map(message).collect(),
        callback: callback(),
        carrier,
    };
    input.check(&plugin);

    let info = plugin.info();
    println!(
        "plugin `{}` {}: {calls} calls per thread per run, median of {runs} runs",
        info.name, info.version
    );
    println!(
        "{:<18} {:>9} {:>7} {:>9} | {:>9} {:>7} {:>9}",
        "", "1 thread", "CPU", "calls/s", "2 threads", "CPU", "calls/s"
    );
    for function in Function::ALL {
        let one = median(runs, || run(&plugin, function, calls, 1, &input));
        let two = median(runs, || run(&plugin, function, calls, 2, &input));
        println!(
            "{:<18} {:>7.1}µs {:>5.1}µs {:>9.0} | {:>7.1}µs {:>5.1}µs {:>9.0}",
            function.name(),
            one.micros,
            one.cpu_micros,
            one.per_sec,
            two.micros,
            two.cpu_micros,
            two.per_sec
        );
        if function == Function::Submit {
            for (name, one, two) in [
                ("  start-submit", one.start_micros, two.start_micros),
                ("  resume-submit", one.resume_micros, two.resume_micros),
            ] {
                println!(
                    "{name:<18} {one:>7.1}µs {:>7} {:>9} | {two:>7.1}µs {:>7} {:>9}",
                    "", "", "", ""
                );
            }
        }
    }

    from_async(&plugin, calls, runs);
}

#[derive(Clone, Copy, PartialEq)]
enum Function {
    Describe,
    ValidateSettings,
    /// A submission: start-submit, the simulator endpoint's answer,
    /// resume-submit (two calls).
    Submit,
    /// A batch of [`BATCH`] submissions (two calls for all), per message.
    SubmitBatch,
    ParseCallback,
}

impl Function {
    const ALL: [Function; 5] = [
        Function::Describe,
        Function::ValidateSettings,
        Function::Submit,
        Function::SubmitBatch,
        Function::ParseCallback,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::Describe => "describe",
            Function::ValidateSettings => "validate-settings",
            Function::Submit => "submission (2 calls)",
            Function::SubmitBatch => "batched, per message",
            Function::ParseCallback => "parse-callback",
        }
    }
}

struct Input {
    message: SubmitRequest,
    batch: Vec<SubmitRequest>,
    callback: CallbackRequest,
    carrier: PluginCarrier,
}

#[derive(Clone, Copy, Default)]
struct Figure {
    /// Time one call takes, as its thread sees it.
    micros: f64,
    /// CPU time per call.
    cpu_micros: f64,
    /// Calls per second over all threads.
    per_sec: f64,
    /// For submissions, the time of each of the two calls.
    start_micros: f64,
    resume_micros: f64,
}

fn median(runs: usize, mut f: impl FnMut() -> Figure) -> Figure {
    let mut figures: Vec<Figure> = (0..runs).map(|_| f()).collect();
    figures.sort_by(|a, b| a.micros.total_cmp(&b.micros));
    figures[figures.len() / 2]
}

/// What one thread measured.
#[derive(Default)]
struct Tally {
    busy: Duration,
    cpu: Duration,
    start: Duration,
    resume: Duration,
}

/// `calls` calls of `function` on each of `threads` threads at once.
fn run(plugin: &Plugin, function: Function, calls: usize, threads: usize, input: &Input) -> Figure {
    let started = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| timed_calls(plugin, function, calls, input)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let total = (calls * threads) as f64;
    let sum = |f: fn(&Tally) -> Duration| {
        tallies.iter().map(f).sum::<Duration>().as_secs_f64() * 1e6 / total
    };
    Figure {
        micros: sum(|t| t.busy),
        cpu_micros: sum(|t| t.cpu),
        per_sec: total / wall,
        start_micros: sum(|t| t.start),
        resume_micros: sum(|t| t.resume),
    }
}

/// `calls` calls of `function` on this thread.
fn timed_calls(plugin: &Plugin, function: Function, calls: usize, input: &Input) -> Tally {
    let mut tally = Tally::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cpu = thread_cpu();
    let started = Instant::now();
    let rounds = if function == Function::SubmitBatch {
        calls / BATCH
    } else {
        calls
    };
    for _ in 0..rounds {
        match function {
            Function::Describe => {
                std::hint::black_box(plugin.describe_now().unwrap());
            }
            Function::ValidateSettings => {
                plugin.validate_settings_now(SETTINGS).unwrap().unwrap();
            }
            Function::Submit => {
                let start = Instant::now();
                let asked = std::sync::Mutex::new(start);
                let submission =
                    input
                        .carrier
                        .submit_offline(std::slice::from_ref(&input.message), |_, _| {
                            *asked.lock().unwrap() = Instant::now();
                            accepted()
                        });
                let ids = runtime.block_on(submission);
                std::hint::black_box(ids);
                let asked = asked.into_inner().unwrap();
                tally.start += asked - start;
                tally.resume += asked.elapsed();
            }
            Function::SubmitBatch => {
                let submission = input
                    .carrier
                    .submit_offline(&input.batch, |_, _| batch_accepted());
                std::hint::black_box(runtime.block_on(submission));
            }
            Function::ParseCallback => {
                let reports = plugin.parse_callback_now(SETTINGS, &input.callback);
                assert_eq!(reports.unwrap(), Ok(1));
            }
        }
    }
    tally.busy = started.elapsed();
    tally.cpu = thread_cpu() - cpu;
    tally
}

/// validate-settings from async tasks on a 2-worker tokio runtime, the call
/// made inline on the worker, handed to a blocking thread, or made in place
/// with `block_in_place`.
fn from_async(plugin: &Arc<Plugin>, calls: usize, runs: usize) {
    #[derive(Clone, Copy)]
    enum How {
        Inline,
        SpawnBlocking,
        BlockInPlace,
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("\nvalidate-settings from async code: 2 tasks at once on a 2-worker tokio runtime");
    println!(
        "{:<16} {:>9} {:>7} {:>9}",
        "how", "µs/call", "CPU", "calls/s"
    );
    for (name, how) in [
        ("inline", How::Inline),
        ("spawn_blocking", How::SpawnBlocking),
        ("block_in_place", How::BlockInPlace),
    ] {
        let figure = median(runs, || {
            runtime.block_on(async {
                let cpu = process_cpu();
                let started = Instant::now();
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let plugin = plugin.clone();
                        tokio::spawn(async move {
                            let validate = |plugin: &Plugin| {
                                plugin.validate_settings_now(SETTINGS).unwrap().unwrap();
                            };
                            for _ in 0..calls {
                                match how {
                                    How::Inline => validate(&plugin),
                                    How::SpawnBlocking => {
                                        let plugin = plugin.clone();
                                        tokio::task::spawn_blocking(move || validate(&plugin))
                                            .await
                                            .unwrap()
                                    }
                                    How::BlockInPlace => {
                                        tokio::task::block_in_place(|| validate(&plugin))
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                let wall = started.elapsed().as_secs_f64();
                let total = (2 * calls) as f64;
                Figure {
                    micros: wall * 2.0 * 1e6 / total,
                    cpu_micros: (process_cpu() - cpu).as_secs_f64() * 1e6 / total,
                    per_sec: total / wall,
                    ..Figure::default()
                }
            })
        });
        println!(
            "{name:<16} {:>7.1}µs {:>5.1}µs {:>9.0}",
            figure.micros, figure.cpu_micros, figure.per_sec
        );
    }
}

/// Time this thread has been on a CPU.
fn thread_cpu() -> Duration {
    schedstat("/proc/thread-self/schedstat")
}

/// Time the live threads of this process have been on a CPU.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .map(|task| schedstat(&task.path().join("schedstat").to_string_lossy()))
        .sum()
}

fn schedstat(path: &str) -> Duration {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let nanos = text.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(nanos.unwrap_or(0))
}

/// A one-part message the simulator delivers.
fn message(n: usize) -> SubmitRequest {
    let text = "Your Pigeon code is 123456";
    let encoded = pigeon::encoding::encode(text, 0);
    SubmitRequest {
        message_id: format!("msg_01JBENCH{n:016}"),
        to: "+15550000009".into(),
        from: Some("Pigeon".into()),
        text: text.into(),
        message_type: MessageType::Otp,
        encoding: encoded.encoding,
        parts: encoded.parts,
        attempt: 1,
    }
}

/// The simulator endpoint's answer to `POST /submit`.
fn accepted() -> HttpResponse {
    json_answer(r#"{"ids":["sim-0000000001"]}"#.to_owned())
}

/// The simulator endpoint's answer to `POST /submit-batch` of [`BATCH`] messages.
fn batch_accepted() -> HttpResponse {
    let one = r#"{"ids":["sim-0000000001"]}"#;
    json_answer(format!(r#"{{"results":[{}]}}"#, vec![one; BATCH].join(",")))
}

fn json_answer(body: String) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

/// The delivery report the simulator endpoint sends.
fn callback() -> CallbackRequest {
    CallbackRequest {
        method: hyper::Method::POST,
        path: "/dlr".into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body:
            br#"{"id":"sim-0000000001","status":"delivered","error_code":null,"at":1764115200000}"#
                .to_vec(),
    }
}

impl Input {
    /// The calls do what the benchmark says they do.
    fn check(&self, plugin: &Plugin) {
        assert_eq!(plugin.describe_now().unwrap().name, "simulator");
        assert_eq!(plugin.validate_settings_now(SETTINGS).unwrap(), Ok(()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let requests = std::sync::atomic::AtomicUsize::new(0);
        let count = |path: &str, expected: &str| {
            assert_eq!(path, expected);
            requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let ids = runtime.block_on(self.carrier.submit_offline(
            std::slice::from_ref(&self.message),
            |path, _| {
                count(path, "/submit");
                accepted()
            },
        ));
        assert_eq!(ids, [Ok(vec!["sim-0000000001".to_owned()])]);
        let batch = runtime.block_on(self.carrier.submit_offline(&self.batch, |path, _| {
            count(path, "/submit-batch");
            batch_accepted()
        }));
        assert_eq!(batch.len(), BATCH);
        assert!(batch.iter().all(Result::is_ok));
        assert_eq!(requests.into_inner(), 2);
        let reports = plugin.parse_callback_now(SETTINGS, &self.callback);
        assert_eq!(reports.unwrap(), Ok(1));
    }
}
