//! Delivery analytics: the rollups' counts turned into one row per bucket
//! and group, with rates, latency percentiles and cost.

use std::collections::BTreeMap;

use crate::model::Status;
use crate::store::rollups::{LATENCY_BUCKETS, LatencyCount, StatusCount};

/// One bucket of one group. Counts are of the messages accepted in the
/// bucket, by the status they are in now.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Row {
    #[serde(skip)]
    pub bucket_start: i64,
    pub group: String,
    /// Stored and not rejected.
    pub accepted: i64,
    /// Taken by a carrier: `sent`, `delivered` or `undelivered` now.
    pub sent: i64,
    pub delivered: i64,
    pub undelivered: i64,
    pub failed: i64,
    pub rejected: i64,
    pub expired: i64,
    pub canceled: i64,
    /// Parts of the accepted messages.
    pub segments: i64,
    /// Delivered / (delivered + undelivered + failed + expired); none
    /// before any of those.
    pub delivery_rate: Option<f64>,
    pub dlr_latency_p50_ms: Option<f64>,
    pub dlr_latency_p95_ms: Option<f64>,
    /// The carriers' configured price per part × the parts they took.
    pub cost: f64,
}

/// Rows ordered by bucket, then group. `price` is a carrier's price per
/// part to a country, if it has one.
pub fn rows(
    counts: &[StatusCount],
    latencies: &[LatencyCount],
    price: impl Fn(&str, &str) -> Option<f64>,
) -> Vec<Row> {
    let mut rows: BTreeMap<(i64, String), Row> = BTreeMap::new();
    for count in counts {
        let row = rows
            .entry((count.bucket_start, count.group.clone()))
            .or_insert_with(|| Row {
                bucket_start: count.bucket_start,
                group: count.group.clone(),
                ..Row::default()
            });
        let n = count.messages;
        if count.status != Status::Rejected {
            row.accepted += n;
            row.segments += count.segments;
        }
        match count.status {
            Status::Sent | Status::Delivered | Status::Undelivered => {
                row.sent += n;
                if let Some(price) = price(&count.carrier, &count.country) {
                    row.cost += price * count.segments as f64;
                }
            }
            _ => {}
        }
        match count.status {
            Status::Delivered => row.delivered += n,
            Status::Undelivered => row.undelivered += n,
            Status::Failed => row.failed += n,
            Status::Rejected => row.rejected += n,
            Status::Expired => row.expired += n,
            Status::Canceled => row.canceled += n,
            _ => {}
        }
    }
    let mut histograms: BTreeMap<(i64, String), [i64; LATENCY_BUCKETS]> = BTreeMap::new();
    for latency in latencies {
        histograms
            .entry((latency.bucket_start, latency.group.clone()))
            .or_insert([0; LATENCY_BUCKETS])[latency.latency_bucket] += latency.reports;
    }
    for (key, row) in rows.iter_mut() {
        let finished = row.delivered + row.undelivered + row.failed + row.expired;
        row.delivery_rate = (finished > 0).then(|| row.delivered as f64 / finished as f64);
        if let Some(histogram) = histograms.get(key) {
            row.dlr_latency_p50_ms = percentile(histogram, 0.50);
            row.dlr_latency_p95_ms = percentile(histogram, 0.95);
        }
        row.cost = (row.cost * 1e6).round() / 1e6;
    }
    rows.into_values().collect()
}

/// The `q` quantile of a power-of-two histogram, interpolated within its
/// bucket.
fn percentile(histogram: &[i64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: i64 = histogram.iter().sum();
    if total <= 0 {
        return None;
    }
    let target = q * total as f64;
    let mut below = 0.0;
    for (i, &n) in histogram.iter().enumerate() {
        if n <= 0 {
            continue;
        }
        if below + n as f64 >= target {
            let low = if i == 0 { 0.0 } else { (1u64 << i) as f64 };
            let high = (1u64 << (i + 1)) as f64;
            let within = ((target - below) / n as f64).clamp(0.0, 1.0);
            return Some((low + (high - low) * within).round());
        }
        below += n as f64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rollups::latency_bucket;

    fn count(group: &str, status: Status, messages: i64, carrier: &str) -> StatusCount {
        StatusCount {
            bucket_start: 0,
            group: group.into(),
            status,
            carrier: carrier.into(),
            country: "VN".into(),
            messages,
            segments: messages * 2,
        }
    }

    #[test]
    fn counts_rates_and_cost_come_from_the_statuses_messages_are_in() {
        let counts = [
            count("sim", Status::Delivered, 8, "sim"),
            count("sim", Status::Undelivered, 1, "sim"),
            count("sim", Status::Failed, 1, "sim"),
            count("sim", Status::Sent, 2, "sim"),
            count("sim", Status::Rejected, 3, "sim"),
            count("other", Status::Queued, 4, ""),
        ];
        let rows = rows(&counts, &[], |carrier, country| {
            (carrier == "sim" && country == "VN").then_some(0.01)
        });
        assert_eq!(rows.len(), 2);
        let sim = rows.iter().find(|r| r.group == "sim").unwrap();
        assert_eq!(
            (
                sim.accepted,
                sim.sent,
                sim.delivered,
                sim.undelivered,
                sim.failed,
                sim.rejected
            ),
            (12, 11, 8, 1, 1, 3)
        );
        assert_eq!(sim.segments, 24);
        assert_eq!(sim.delivery_rate, Some(0.8));
        // 11 messages of 2 parts taken by the carrier at 0.01 a part.
        assert_eq!(sim.cost, 0.22);
        let other = rows.iter().find(|r| r.group == "other").unwrap();
        assert_eq!(
            (other.accepted, other.delivery_rate, other.cost),
            (4, None, 0.0)
        );
    }

    #[test]
    fn latency_percentiles_fall_in_the_right_bucket() {
        let mut latencies = Vec::new();
        // 90 reports at ~100 ms, 10 at ~5 s.
        for (ms, reports) in [(100, 90), (5_000, 10)] {
            latencies.push(LatencyCount {
                bucket_start: 0,
                group: "sim".into(),
                latency_bucket: latency_bucket(ms),
                reports,
            });
        }
        let rows = rows(
            &[count("sim", Status::Delivered, 100, "sim")],
            &latencies,
            |_, _| None,
        );
        let p50 = rows[0].dlr_latency_p50_ms.unwrap();
        let p95 = rows[0].dlr_latency_p95_ms.unwrap();
        assert!((64.0..128.0).contains(&p50), "{p50}");
        assert!((4096.0..8192.0).contains(&p95), "{p95}");
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(1_000_000_000_000), LATENCY_BUCKETS - 1);
    }
}
