//! How a carrier has been doing: delivery rate, error rate and median
//! delivery-report latency over the last 15 minutes and 24 hours, counted
//! per minute in memory as submissions and reports happen (so on SQLite
//! they start empty after a restart). Routing policies read them.
//!
//! When several nodes share the database, what a node counts is also kept
//! aside until its next heartbeat adds it to the store's minutes; the
//! heartbeat then reads back the minutes every node added (`cluster.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::store::carrier_stats::CarrierMinute;

/// Minutes kept: 24 hours.
const MINUTES: usize = 24 * 60;
/// Latency histogram buckets: bucket `i` holds latencies in
/// `[2^i, 2^(i+1))` ms (bucket 0 also holds 0), up to about 2^31 ms.
const LATENCY_BUCKETS: usize = 32;

#[derive(Clone, Copy)]
struct Minute {
    /// Unix minute this slot counts; a slot with another is stale.
    minute: i64,
    accepted: u64,
    errors: u64,
    delivered: u64,
    not_delivered: u64,
    latency: [u32; LATENCY_BUCKETS],
}

impl Minute {
    const EMPTY: Minute = Minute {
        minute: i64::MIN,
        accepted: 0,
        errors: 0,
        delivered: 0,
        not_delivered: 0,
        latency: [0; LATENCY_BUCKETS],
    };
}

/// Figures over one window; `None` where nothing was counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Delivered / final delivery reports.
    pub delivery_rate: Option<f64>,
    /// Failed submissions (any kind) / submissions.
    pub error_rate: Option<f64>,
    /// Median time from the carrier's acceptance to a final report.
    pub median_dlr_latency_ms: Option<f64>,
    pub submissions: u64,
    pub reports: u64,
}

pub struct CarrierStats {
    minutes: Mutex<Vec<Minute>>,
    /// Counted since the last [`CarrierStats::take_unsent`], by minute:
    /// only when the nodes share their counts.
    unsent: Option<Mutex<BTreeMap<i64, Minute>>>,
}

impl Default for CarrierStats {
    fn default() -> Self {
        Self {
            minutes: Mutex::new(vec![Minute::EMPTY; MINUTES]),
            unsent: None,
        }
    }
}

impl CarrierStats {
    /// Statistics whose counts are also kept for the store, to be added
    /// to the other nodes'.
    pub fn shared() -> Self {
        Self {
            unsent: Some(Mutex::default()),
            ..Self::default()
        }
    }

    fn update(&self, now_ms: i64, f: impl Fn(&mut Minute)) {
        let minute = now_ms.div_euclid(60_000);
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut minutes[minute.rem_euclid(MINUTES as i64) as usize];
        if slot.minute != minute {
            *slot = Minute {
                minute,
                ..Minute::EMPTY
            };
        }
        f(slot);
        if let Some(unsent) = &self.unsent {
            let mut unsent = unsent.lock().unwrap_or_else(|e| e.into_inner());
            f(unsent.entry(minute).or_insert(Minute {
                minute,
                ..Minute::EMPTY
            }));
        }
    }

    /// What this node counted since it last took it, for the store.
    pub fn take_unsent(&self) -> Vec<CarrierMinute> {
        let Some(unsent) = &self.unsent else {
            return Vec::new();
        };
        let taken = std::mem::take(&mut *unsent.lock().unwrap_or_else(|e| e.into_inner()));
        taken
            .into_values()
            .map(|m| CarrierMinute {
                minute: m.minute,
                accepted: m.accepted as i64,
                errors: m.errors as i64,
                delivered: m.delivered as i64,
                not_delivered: m.not_delivered as i64,
                latency: (m.latency.iter().enumerate())
                    .filter(|(_, n)| **n > 0)
                    .map(|(bucket, n)| (bucket, i64::from(*n)))
                    .collect(),
            })
            .collect()
    }

    /// Puts back what [`CarrierStats::take_unsent`] took and the store did
    /// not keep, for the next try.
    pub fn put_back(&self, minutes: Vec<CarrierMinute>) {
        let Some(unsent) = &self.unsent else {
            return;
        };
        let mut unsent = unsent.lock().unwrap_or_else(|e| e.into_inner());
        for m in minutes {
            let slot = unsent.entry(m.minute).or_insert(Minute {
                minute: m.minute,
                ..Minute::EMPTY
            });
            add(slot, &m);
        }
    }

    /// Takes the minutes all nodes counted, as the store added them up,
    /// as this node's figures (plus what it counted since it last sent).
    pub fn replace_minutes(&self, minutes: &[CarrierMinute]) {
        let unsent = self
            .unsent
            .as_ref()
            .map(|u| u.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        let mut slots = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        for m in minutes {
            let mut slot = unsent.get(&m.minute).copied().unwrap_or(Minute {
                minute: m.minute,
                ..Minute::EMPTY
            });
            add(&mut slot, m);
            slots[m.minute.rem_euclid(MINUTES as i64) as usize] = slot;
        }
    }

    /// A submission the carrier accepted, or one that failed.
    pub fn record_submission(&self, now_ms: i64, accepted: bool) {
        self.update(now_ms, |m| {
            if accepted {
                m.accepted += 1;
            } else {
                m.errors += 1;
            }
        });
    }

    /// A final delivery report, with the time since the carrier took the part.
    pub fn record_report(&self, now_ms: i64, delivered: bool, latency_ms: Option<i64>) {
        self.update(now_ms, |m| {
            if delivered {
                m.delivered += 1;
            } else {
                m.not_delivered += 1;
            }
            if let Some(latency) = latency_ms {
                let bucket = (latency.max(1) as u64).ilog2() as usize;
                m.latency[bucket.min(LATENCY_BUCKETS - 1)] += 1;
            }
        });
    }

    /// The figures over the last `minutes` minutes (the current one included).
    pub fn window(&self, now_ms: i64, minutes: i64) -> Window {
        let current = now_ms.div_euclid(60_000);
        let oldest = current - minutes.clamp(1, MINUTES as i64) + 1;
        let mut sum = Minute::EMPTY;
        for m in self
            .minutes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|m| (oldest..=current).contains(&m.minute))
        {
            sum.accepted += m.accepted;
            sum.errors += m.errors;
            sum.delivered += m.delivered;
            sum.not_delivered += m.not_delivered;
            for (total, n) in sum.latency.iter_mut().zip(m.latency) {
                *total += n;
            }
        }
        let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        let submissions = sum.accepted + sum.errors;
        let reports = sum.delivered + sum.not_delivered;
        Window {
            delivery_rate: ratio(sum.delivered, reports),
            error_rate: ratio(sum.errors, submissions),
            median_dlr_latency_ms: median(&sum.latency),
            submissions,
            reports,
        }
    }
}

fn add(slot: &mut Minute, m: &CarrierMinute) {
    slot.accepted += m.accepted.max(0) as u64;
    slot.errors += m.errors.max(0) as u64;
    slot.delivered += m.delivered.max(0) as u64;
    slot.not_delivered += m.not_delivered.max(0) as u64;
    for &(bucket, n) in &m.latency {
        slot.latency[bucket.min(LATENCY_BUCKETS - 1)] += n.clamp(0, i64::from(u32::MAX)) as u32;
    }
}

/// The median of a log2 histogram, interpolated within its bucket.
fn median(histogram: &[u32; LATENCY_BUCKETS]) -> Option<f64> {
    let total: u64 = histogram.iter().map(|&n| n as u64).sum();
    if total == 0 {
        return None;
    }
    let half = total as f64 / 2.0;
    let mut seen = 0.0;
    for (bucket, &n) in histogram.iter().enumerate() {
        let n = n as f64;
        if n > 0.0 && seen + n >= half {
            let low = if bucket == 0 {
                0.0
            } else {
                (1u64 << bucket) as f64
            };
            let high = (1u64 << (bucket + 1)) as f64;
            return Some(low + (high - low) * ((half - seen) / n));
        }
        seen += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn windows_count_only_their_minutes() {
        let stats = CarrierStats::default();
        let now = 1_000 * MINUTE;
        // An hour ago: all failures.
        for _ in 0..10 {
            stats.record_submission(now - 60 * MINUTE, false);
            stats.record_report(now - 60 * MINUTE, false, Some(5_000));
        }
        // Now: 3 of 4 delivered, one error in 4 submissions.
        for accepted in [true, true, true, false] {
            stats.record_submission(now, accepted);
        }
        for (delivered, latency) in [(true, 100), (true, 120), (true, 130), (false, 90)] {
            stats.record_report(now, delivered, Some(latency));
        }
        let recent = stats.window(now, 15);
        assert_eq!(recent.delivery_rate, Some(0.75));
        assert_eq!(recent.error_rate, Some(0.25));
        let median = recent.median_dlr_latency_ms.unwrap();
        assert!((64.0..256.0).contains(&median), "{median}");
        let day = stats.window(now, 24 * 60);
        assert_eq!(day.submissions, 14);
        assert_eq!(day.delivery_rate, Some(3.0 / 14.0));
        assert!(day.median_dlr_latency_ms.unwrap() > 1_000.0);
    }

    #[test]
    fn a_day_old_slot_is_reused_not_added() {
        let stats = CarrierStats::default();
        stats.record_submission(0, true);
        stats.record_submission(24 * 60 * MINUTE, false);
        let w = stats.window(24 * 60 * MINUTE, 24 * 60);
        assert_eq!((w.submissions, w.error_rate), (1, Some(1.0)));
        assert_eq!(stats.window(0, 15).submissions, 0, "the old minute is gone");
    }

    #[test]
    fn shared_counts_are_sent_once_and_the_stores_minutes_replace_the_nodes() {
        let stats = CarrierStats::shared();
        let now = 1_000 * MINUTE;
        stats.record_submission(now, true);
        stats.record_report(now, true, Some(100));
        let sent = stats.take_unsent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].accepted, sent[0].delivered), (1, 1));
        assert_eq!(sent[0].latency, [(6, 1)]);
        assert!(stats.take_unsent().is_empty(), "sent once");
        // Counted after sending, before the store's minutes come back.
        stats.record_submission(now, false);
        // The store: this node's first submission and two of another's.
        let all = CarrierMinute {
            minute: 1_000,
            accepted: 3,
            delivered: 1,
            latency: vec![(6, 1)],
            ..CarrierMinute::default()
        };
        stats.replace_minutes(&[all]);
        let w = stats.window(now, 15);
        assert_eq!((w.submissions, w.reports), (4, 1));
        assert_eq!(w.error_rate, Some(0.25));
        // A failed send goes back, to be sent with what comes next.
        let unsent = stats.take_unsent();
        stats.put_back(unsent);
        stats.record_submission(now, false);
        assert_eq!(stats.take_unsent()[0].errors, 2);
    }

    #[test]
    fn nothing_counted_is_none() {
        let w = CarrierStats::default().window(0, 15);
        assert_eq!(w.delivery_rate, None);
        assert_eq!(w.median_dlr_latency_ms, None);
    }
}
