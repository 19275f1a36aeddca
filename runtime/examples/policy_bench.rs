//! What the three shipped policies cost per message: content check, routing
//! over four carriers, pacing on the first carrier chosen.
//!
//! ```sh
//! cargo run --release -p pigeon-runtime --example policy_bench [-- MESSAGES RUNS [DIR]]
//! ```
//!
//! Prints the median of RUNS runs (default 7) of MESSAGES messages (default
//! 20,000) each, per policy and in total, in microseconds per message. DIR
//! is another policies directory to time (the shipped one by default).

use std::path::Path;
use std::time::Instant;

use pigeon::model::MessageType;
use pigeon::policies::{
    CarrierStats, CarrierView, MessageView, PaceDecision, Policies, PoliciesConfig, RouteDecision,
};

fn carrier(name: &str, countries: &[&str], price: f64, sent: u64, rate: f64) -> CarrierView {
    CarrierView {
        name: name.into(),
        healthy: true,
        countries: countries.iter().map(|c| (*c).into()).collect(),
        price: Some(price),
        tps: 100,
        carries_sender: true,
        last_15m: CarrierStats {
            sent,
            delivery_rate: Some(rate),
            error_rate: Some(0.01),
            median_dlr_latency_ms: Some(4_000.0),
        },
        last_24h: CarrierStats {
            sent: sent * 96,
            delivery_rate: Some(rate),
            error_rate: Some(0.01),
            median_dlr_latency_ms: Some(4_500.0),
        },
    }
}

/// CPU time this thread has run, in seconds (Linux: the first field of
/// /proc/thread-self/schedstat, in ns). Unlike the wall clock, it leaves out
/// the time the thread waited for a core that other processes held.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let dir = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        std::path::PathBuf::from,
    );
    let policies = Policies::load(PoliciesConfig {
        dir,
        ..PoliciesConfig::default()
    })
    .expect("the shipped policies load");

    let carriers = vec![
        carrier("cheapsms", &["*"], 0.010, 500, 0.60),
        carrier("viettel-direct", &["VN"], 0.025, 300, 0.97),
        carrier("globalroute", &["*"], 0.022, 200, 0.88),
        carrier("hk-direct", &["HK"], 0.045, 400, 0.98),
    ];
    // A mix like real traffic: codes, alerts and campaigns, to Vietnam,
    // Hong Kong and the UK, at 10:00 in Hanoi (marketing is not deferred).
    let mut samples = [
        MessageView::new("+84912345678", MessageType::Otp, "Your Acme code is 482913"),
        MessageView::new(
            "+85261234567",
            MessageType::Transactional,
            "Your parcel is out for delivery, arriving between 14:00 and 16:00",
        ),
        MessageView::new(
            "+84912345678",
            MessageType::Marketing,
            "Black Friday: 50% off everything today at acme.example! Reply STOP to opt out",
        ),
        MessageView::new(
            "+447400123456",
            MessageType::Transactional,
            "Your order’s on its way — track it in the app",
        ),
    ];
    for (i, msg) in samples.iter_mut().enumerate() {
        msg.account = format!("acc_{i}");
        msg.metadata.insert("campaign".into(), "bf-2026".into());
    }
    let now = pigeon::time::parse_rfc3339("2026-11-26T03:00:00Z").unwrap();

    let mut content_us = Vec::new();
    let mut routing_us = Vec::new();
    let mut pacing_us = Vec::new();
    let mut total_us = Vec::new();
    let mut cpu_us = Vec::new();
    // One untimed run to warm caches.
    for run in 0..=runs {
        let (mut content, mut routing, mut pacing) = (0.0, 0.0, 0.0);
        let started = Instant::now();
        let cpu_started = thread_cpu_seconds();
        for i in 0..messages {
            let msg = &samples[i % samples.len()];
            let t0 = Instant::now();
            let checked = policies.check_content(msg, now);
            let t1 = Instant::now();
            let (route, _) = policies.route(msg, &carriers, now);
            let t2 = Instant::now();
            let first = match &route {
                RouteDecision::Route {
                    carriers: names, ..
                } => carriers.iter().find(|c| c.name == names[0]).unwrap(),
                RouteDecision::Reject { .. } => &carriers[0],
            };
            let (pace, _) = policies.pace(msg, first, now);
            let t3 = Instant::now();
            std::hint::black_box((checked, pace));
            content += (t1 - t0).as_secs_f64();
            routing += (t2 - t1).as_secs_f64();
            pacing += (t3 - t2).as_secs_f64();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_started.zip(thread_cpu_seconds()).map(|(a, b)| b - a);
        if run == 0 {
            continue;
        }
        let per = 1e6 / messages as f64;
        content_us.push(content * per);
        routing_us.push(routing * per);
        pacing_us.push(pacing * per);
        total_us.push(elapsed * per);
        if let Some(cpu) = cpu {
            cpu_us.push(cpu * per);
        }
    }
    let counters = policies.counters();
    assert_eq!(
        counters.errors,
        [0, 0, 0],
        "the shipped policies failed during the benchmark"
    );
    let (_, digest) = policies.pace(&samples[0], &carriers[0], now);
    let deferred = matches!(
        policies.pace(&samples[2], &carriers[0], now).0,
        PaceDecision::DeferUntil(_)
    );
    assert!(!deferred, "marketing at 10:00 must not be deferred");
    println!("policy set {digest}: {messages} messages x {runs} runs");
    println!(
        "content  check(msg)          {:6.2} µs/message (median)",
        median(&mut content_us)
    );
    println!(
        "routing  route(msg, 4)       {:6.2} µs/message (median)",
        median(&mut routing_us)
    );
    println!(
        "pacing   pace(msg, carrier)  {:6.2} µs/message (median)",
        median(&mut pacing_us)
    );
    let total = median(&mut total_us);
    println!("total    all three           {total:6.2} µs/message (median, wall clock)");
    if !cpu_us.is_empty() {
        let cpu = median(&mut cpu_us);
        println!(
            "total    CPU time            {cpu:6.2} µs/message (median; target < 20 µs: {})",
            if cpu < 20.0 { "met" } else { "NOT met" }
        );
    }
}
