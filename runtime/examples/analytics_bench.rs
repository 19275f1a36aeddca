//! How long a delivery-analytics query takes with many messages stored.
//!
//! Fills a fresh store with `--messages` messages (default 1,000,000) over
//! the last 30 days, through the store's own write path (insert, claim,
//! carrier acceptance, delivery report, so the rollups are written as in
//! production), then times the query `GET /v1/analytics/messages` makes
//! for one account: the last 24 hours, hourly, by carrier (and by country).
//!
//! With `--data-dir DIR` the store is filled in DIR and kept, and with
//! `--fill-only` nothing is timed: `scripts/bench-vs-kannel --history N`
//! uses both to give Pigeon a store with history.
//!
//! cargo run --release -p pigeon-runtime --example analytics_bench -- \
//!     [--messages N] [--data-dir DIR] [--fill-only]

use std::time::Instant;

use pigeon::config::{StoreConfig, Synchronous};
use pigeon::encoding::Encoding;
use pigeon::model::{MessageType, Status};
use pigeon::store::rollups::{self, GroupBy, RollupQuery};
use pigeon::store::{
    DeliveryReport, MessageRecord, ReportState, Store, SubmitOutcome, SubmitResult, messages,
    queue, reports,
};

const CHUNK: usize = 10_000;
const DAY_MS: i64 = 86_400_000;
const CARRIERS: [&str; 3] = ["alpha", "bravo", "charlie"];
const COUNTRIES: [(&str, &str); 4] = [
    ("VN", "+8491234"),
    ("HK", "+8525123"),
    ("US", "+1202555"),
    ("GB", "+4474001"),
];
const ACCOUNTS: usize = 10;

fn message(n: usize, created_at: i64, now: i64) -> MessageRecord {
    let (country, prefix) = COUNTRIES[n % COUNTRIES.len()];
    let message_type = MessageType::ALL[n % 3];
    MessageRecord {
        id: pigeon::ids::new_id("msg"),
        account_id: format!("acc_bench_{}", n % ACCOUNTS),
        status: Status::Queued,
        to: format!("{prefix}{:04}", n % 10_000),
        from: Some(format!("Brand{}", n % 4)),
        country: Some(country.into()),
        body: "Your code is 123456".into(),
        message_type,
        encoding: Encoding::Gsm7,
        segments: 1 + n.is_multiple_of(10) as i64,
        concat_ref: 0,
        callback_url: None,
        send_at: None,
        expires_at: now + DAY_MS,
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

#[tokio::main]
async fn main() {
    let mut total = 1_000_000usize;
    let mut kept_dir = None;
    let mut fill_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => {
                total = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--data-dir" => kept_dir = Some(args.next().expect("--data-dir DIR")),
            "--fill-only" => fill_only = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = kept_dir.map_or_else(|| temporary.path().to_owned(), std::path::PathBuf::from);
    let config = StoreConfig {
        synchronous: Synchronous::Normal,
        ..Default::default()
    };
    let store = Store::open(&dir, &config).unwrap();
    let now = pigeon::time::now_ms();
    let started = Instant::now();
    for chunk in 0..total.div_ceil(CHUNK) {
        let first = chunk * CHUNK;
        let count = CHUNK.min(total - first);
        store
            .write(move |conn| {
                for i in first..first + count {
                    // Spread evenly over the last 30 days.
                    let created_at = now - 30 * DAY_MS + (i as i64 * 30 * DAY_MS) / total as i64;
                    messages::insert_message(conn, &message(i, created_at, now), None)?;
                }
                let claimed = queue::claim_due(conn, "node_bench", now, count * 2, |_| false)?;
                let mut results = Vec::new();
                for (k, claim) in claimed.iter().enumerate() {
                    for &index in &claim.parts {
                        results.push(SubmitResult {
                            message_id: claim.message.id.clone(),
                            index,
                            segments: claim.message.segments,
                            carrier: CARRIERS[k % CARRIERS.len()].into(),
                            outcome: SubmitOutcome::Accepted {
                                carrier_message_id: format!("{}-{index}", claim.message.id),
                            },
                            bookings: Vec::new(),
                        });
                    }
                }
                queue::record_results(conn, &results, now)?;
                for (k, result) in results.iter().enumerate() {
                    let state = if k % 10 == 9 {
                        ReportState::Undeliverable
                    } else {
                        ReportState::Delivered
                    };
                    let report = DeliveryReport {
                        carrier: result.carrier.clone(),
                        carrier_message_id: format!("{}-{}", result.message_id, result.index),
                        state,
                        error_code: None,
                        raw_status: None,
                        at: now,
                    };
                    reports::apply_report(conn, &report, now + (k as i64 % 4000))?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
    let rows: i64 = store
        .read(|c| c.query_row("SELECT count(*) FROM message_rollups", [], |r| r.get(0)))
        .await
        .unwrap();
    println!(
        "stored {total} messages in {:.1} s ({rows} rollup rows)",
        started.elapsed().as_secs_f64()
    );

    if fill_only {
        store.close().await;
        return;
    }
    for group_by in [GroupBy::Carrier, GroupBy::Country] {
        let query = RollupQuery {
            account_id: Some("acc_bench_3".into()),
            from: now - DAY_MS,
            to: now,
            bucket_hours: 1,
            group_by,
        };
        let mut times = Vec::new();
        let mut answer = 0;
        for _ in 0..21 {
            let query = query.clone();
            let started = Instant::now();
            answer = store
                .read(move |c| {
                    let counts = rollups::status_counts(c, &query)?;
                    let latencies = rollups::latency_counts(c, &query)?;
                    Ok(
                        pigeon::metrics::analytics::rows(&counts, &latencies, |_, _| Some(0.01))
                            .len(),
                    )
                })
                .await
                .unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "24 h hourly by {group_by:?}, one account: {answer} rows, median {:.2} ms, max {:.2} ms (21 runs)",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    store.close().await;
}
