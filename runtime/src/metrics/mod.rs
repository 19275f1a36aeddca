//! Prometheus metrics and delivery analytics.
//!
//! Metrics are recorded where things happen, through the `metrics` facade
//! (`metrics::counter!` and friends: a module records without depending on
//! this one); [`install`] puts the Prometheus recorder behind the facade
//! once per process and [`render`] writes the text exposition format for
//! `GET /metrics`. Gauges of durable state (queue depth, the webhook
//! outbox) are set from the store at each scrape rather than tracked.
//! Label values come from small fixed sets (routes, statuses, carriers,
//! plugins, policies, error codes): never a message, a number or a key.

pub mod analytics;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::Status;
use crate::store::Store;

/// Seconds: HTTP requests, commits, policy and plugin calls.
const FAST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Seconds from a carrier's acceptance to the final report.
const DLR_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];
/// Jobs in one store commit.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls return
/// the same handle) and keeps its histograms drained while nobody scrapes.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("pigeon_dlr_latency_seconds".into()),
                DLR_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("pigeon_store_batch_jobs".into()),
                    BATCH_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), FAST_BUCKETS)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("pigeon-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("spawning the metrics upkeep thread");
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "pigeon_http_requests_total",
        "HTTP requests answered, by route and status"
    );
    describe_histogram!(
        "pigeon_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route"
    );
    describe_counter!(
        "pigeon_messages_accepted_total",
        "Messages accepted (stored, 202), by type"
    );
    describe_counter!(
        "pigeon_messages_rejected_total",
        "Messages refused at submission, by error code"
    );
    describe_counter!(
        "pigeon_parts_submitted_total",
        "Parts handed to a carrier, by carrier and outcome (accepted, retry, deferred, failed)"
    );
    describe_counter!(
        "pigeon_parts_final_total",
        "Parts that reached a final state after submission, by carrier and status"
    );
    describe_histogram!(
        "pigeon_dlr_latency_seconds",
        Unit::Seconds,
        "From the carrier's acceptance of a part to its final delivery report"
    );
    describe_gauge!(
        "pigeon_queue_depth",
        "Parts in each state that is not final"
    );
    describe_histogram!(
        "pigeon_store_commit_duration_seconds",
        Unit::Seconds,
        "Time of one group commit (the jobs and the fsync)"
    );
    describe_histogram!("pigeon_store_batch_jobs", "Write jobs in one group commit");
    describe_counter!(
        "pigeon_store_conflicts_total",
        "Group commits run again after a deadlock or serialization conflict with another node (PostgreSQL)"
    );
    describe_counter!(
        "pigeon_plugin_calls_total",
        "Calls into carrier plugins, by plugin and outcome (ok, trap, deadline, memory)"
    );
    describe_counter!(
        "pigeon_policy_evaluations_total",
        "Policy function calls, by policy and outcome"
    );
    describe_histogram!(
        "pigeon_policy_duration_seconds",
        Unit::Seconds,
        "Time of one policy function call"
    );
    describe_counter!(
        "pigeon_webhook_deliveries_total",
        "Webhook delivery attempts, by outcome"
    );
    describe_gauge!(
        "pigeon_webhook_outbox_depth",
        "Webhooks waiting to be delivered"
    );
    describe_gauge!(
        "pigeon_cluster_nodes",
        "Nodes alive on this node's PostgreSQL database, itself included"
    );
    describe_counter!(
        "pigeon_inbound_total",
        "Inbound messages filed, by the keyword they carried (none, opt_out, opt_in, help)"
    );
}

/// The text exposition of every metric, with the store's gauges read now.
pub async fn render(store: &Store) -> String {
    let handle = install();
    let depth = store.queue_depth();
    for status in [
        Status::Queued,
        Status::Scheduled,
        Status::Sending,
        Status::Sent,
    ] {
        metrics::gauge!("pigeon_queue_depth", "state" => status.as_str())
            .set(depth.parts(status) as f64);
    }
    match store.read(crate::store::webhooks::pending_count).await {
        Ok(pending) => metrics::gauge!("pigeon_webhook_outbox_depth").set(pending as f64),
        Err(err) => tracing::warn!(error = %err, "reading the webhook outbox depth failed"),
    }
    handle.render()
}
