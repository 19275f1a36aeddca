//! Per-carrier pacing: a rate in parts per second (a token bucket, kept as
//! the time at which it is next empty, GCRA-style) and a window of
//! submissions in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::pacing::PacingBooking;

/// A rate with a burst: a token bucket, kept as the time until which it is
/// booked.
#[derive(Debug)]
pub struct Rate {
    /// Time one part takes at the rate.
    interval: Duration,
    /// How far ahead of now the bucket may be booked before callers wait.
    burst: Duration,
    /// When everything booked so far has been sent at the rate.
    booked_until: Mutex<Instant>,
}

impl Rate {
    /// Parts per second with a burst of one second's worth.
    pub fn per_second(parts: u32) -> Self {
        Self::new(f64::from(parts.max(1)), parts.max(1))
    }

    /// `rate` parts per second (may be below 1: 3 a day is 3/86400), up to
    /// `burst` at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval = Self::interval(rate);
        Self {
            interval,
            burst: interval.saturating_mul(burst.max(1)),
            booked_until: Mutex::new(Instant::now()),
        }
    }

    /// Time one part takes at `rate` parts a second.
    pub fn interval(rate: f64) -> Duration {
        Duration::try_from_secs_f64(1.0 / rate.max(1e-9))
            .unwrap_or(Duration::from_secs(86_400 * 365))
    }

    /// Time `parts` parts take at the rate.
    fn cost(&self, parts: usize) -> Duration {
        self.interval.saturating_mul(parts as u32)
    }

    /// Whether the bucket is full again at `now` (nothing booked ahead), so
    /// forgetting it changes nothing.
    fn idle(&self, now: Instant) -> bool {
        *self.booked_until.lock().unwrap_or_else(|e| e.into_inner()) <= now
    }

    /// Books `parts` and says how long to wait before sending them.
    pub fn reserve(&self, parts: usize, now: Instant) -> Duration {
        let mut booked = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*booked).max(now);
        *booked = start + self.cost(parts);
        booked.saturating_duration_since(now + self.burst)
    }

    /// Whether it refills slower than once a second: a bucket worth
    /// keeping across a restart.
    fn slow(&self) -> bool {
        Self::refills_slowly(self.interval)
    }

    /// Whether a bucket whose part takes `interval` is slow (see
    /// [`Rate::slow`]): on a shared store such buckets are booked there.
    pub fn refills_slowly(interval: Duration) -> bool {
        interval >= Duration::from_secs(1)
    }

    /// Until when it is booked, as Unix ms.
    fn booked_until_ms(&self, now: Instant, now_ms: i64) -> i64 {
        let booked = *self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        now_ms + booked.saturating_duration_since(now).as_millis() as i64
    }

    /// Gives back a booking that will not be used.
    pub fn release(&self, parts: usize) {
        let mut booked = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        *booked = booked.checked_sub(self.cost(parts)).unwrap_or(*booked);
    }
}

/// A carrier's rate when several nodes share its database. The carrier's
/// sending time is one timeline in the store (`carrier_timelines`): a node
/// leases the next [`LEASE`] of it (or what one submission needs, if more)
/// and sends within the time it holds, at the full rate. So the nodes
/// together keep to the rate, and a busy node is not held to a fixed share
/// while the others idle. Time nobody leased for a second is gone, as a
/// token bucket's burst is capped.
pub struct SharedRate {
    store: crate::store::Store,
    carrier: String,
    rate: Rate,
    /// This node's booking and the end of its lease, as [`Instant`]s.
    held: tokio::sync::Mutex<Held>,
}

struct Held {
    booked_until: Instant,
    leased_until: Instant,
    /// Parts put off while the carrier's time was leased out are spread
    /// from there on at the rate, rather than all coming back at once.
    put_off_until: Instant,
}

/// Sending time leased at once: at most ten leases a second per busy
/// node; longer leases sit unused longer (250 ms gave 83–96% of the rate
/// in the three-node test, 100 ms 95–97%).
pub const LEASE: Duration = Duration::from_millis(100);

impl SharedRate {
    pub fn new(store: crate::store::Store, carrier: &str, parts_per_second: u32) -> Self {
        let now = Instant::now();
        Self {
            store,
            carrier: carrier.to_owned(),
            rate: Rate::per_second(parts_per_second),
            held: tokio::sync::Mutex::new(Held {
                booked_until: now,
                leased_until: now,
                put_off_until: now,
            }),
        }
    }

    /// Books `parts` in this node's leased time, leasing more as needed,
    /// and says how long to wait before sending them. A wait longer than
    /// `patience` books nothing (the caller puts the parts off by it).
    pub async fn reserve(
        &self,
        parts: usize,
        patience: Duration,
    ) -> Result<Duration, crate::store::StoreError> {
        use crate::store::pacing::{CarrierLease, lease_carrier_time};
        let need = self.rate.cost(parts);
        let mut held = self.held.lock().await;
        let mut start = held.booked_until.max(Instant::now());
        while start + need > held.leased_until {
            let length = LEASE.max(need);
            let (carrier, length_ms) = (self.carrier.clone(), length.as_millis() as i64);
            let (now, now_ms) = (Instant::now(), crate::time::now_ms());
            let floor = now_ms - self.rate.burst.as_millis() as i64;
            let horizon = now_ms + patience.as_millis() as i64;
            let lease = self
                .store
                .write(move |c| lease_carrier_time(c, &carrier, floor, length_ms, horizon))
                .await?;
            let end_ms = match lease {
                CarrierLease::Granted { end } => end,
                CarrierLease::Busy { booked_until } => {
                    let free_at = instant_at(now, now_ms, booked_until);
                    held.put_off_until = held.put_off_until.max(free_at) + need;
                    return Ok(held
                        .put_off_until
                        .saturating_duration_since(now)
                        .max(patience + Duration::from_millis(1)));
                }
            };
            let lease_start = instant_at(now, now_ms, end_ms - length_ms);
            // Another node's lease came in between: this node's time
            // resumes at its new lease.
            if lease_start > held.leased_until {
                start = start.max(lease_start);
            }
            held.leased_until = instant_at(now, now_ms, end_ms);
        }
        let wait = start.saturating_duration_since(Instant::now());
        if wait <= patience {
            held.booked_until = start + need;
        }
        Ok(wait)
    }

    /// Gives back a booking that will not be used (the time stays leased
    /// to this node, for its next submissions).
    pub async fn release(&self, parts: usize) {
        let mut held = self.held.lock().await;
        let cost = self.rate.cost(parts);
        held.booked_until = held
            .booked_until
            .checked_sub(cost)
            .unwrap_or(held.booked_until);
    }
}

/// The [`Instant`] of Unix time `at_ms`, given that `now` is `now_ms`.
fn instant_at(now: Instant, now_ms: i64, at_ms: i64) -> Instant {
    let offset = Duration::from_millis((at_ms - now_ms).unsigned_abs());
    if at_ms >= now_ms {
        now + offset
    } else {
        now.checked_sub(offset).unwrap_or(now)
    }
}

/// Buckets by key, as pacing policies name them (`recipient:+8491…`,
/// `account:acc_…`), made on first use. Full buckets are forgotten now and
/// then, so the map holds only keys in use. Slow ones are kept in the
/// store too, so "3 a day" still holds after a restart.
#[derive(Debug, Default)]
pub struct Buckets {
    map: Mutex<HashMap<String, std::sync::Arc<Rate>>>,
}

/// Keys kept before full buckets are swept out.
const SWEEP_AT: usize = 100_000;

impl Buckets {
    /// Books `parts` on every key and says how long to wait for all of
    /// them, or gives the bookings back and says when to come back if that
    /// is longer than `patience`.
    /// Buckets booked as the store kept them (see `store::pacing`).
    pub fn restore(saved: Vec<PacingBooking>) -> Self {
        let (now, now_ms) = (Instant::now(), crate::time::now_ms());
        let map = saved
            .into_iter()
            .map(|b| {
                let rate = Rate::new(b.rate, b.burst);
                let ahead = Duration::from_millis((b.booked_until - now_ms).max(0) as u64);
                *rate.booked_until.lock().unwrap_or_else(|e| e.into_inner()) = now + ahead;
                (b.key, std::sync::Arc::new(rate))
            })
            .collect();
        Self {
            map: Mutex::new(map),
        }
    }

    /// Books `parts` on every key and says how long to wait for all of
    /// them, with the slow buckets' bookings to keep; or gives the bookings
    /// back and says when to come back if that is longer than `patience`.
    pub fn reserve(
        &self,
        keys: &[(String, f64, u32)],
        parts: usize,
        patience: Duration,
    ) -> Result<(Duration, Vec<PacingBooking>), Duration> {
        let now = Instant::now();
        let rates: Vec<std::sync::Arc<Rate>> = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= SWEEP_AT {
                map.retain(|_, rate| !rate.idle(now));
            }
            keys.iter()
                .map(|(key, rate, burst)| {
                    map.entry(key.clone())
                        .or_insert_with(|| std::sync::Arc::new(Rate::new(*rate, *burst)))
                        .clone()
                })
                .collect()
        };
        let wait = rates
            .iter()
            .map(|rate| rate.reserve(parts, now))
            .max()
            .unwrap_or_default();
        if wait > patience {
            for rate in &rates {
                rate.release(parts);
            }
            return Err(wait);
        }
        let now_ms = crate::time::now_ms();
        let bookings = keys
            .iter()
            .zip(&rates)
            .filter(|(_, rate)| rate.slow())
            .map(|((key, per_sec, burst), rate)| PacingBooking {
                key: key.clone(),
                rate: *per_sec,
                burst: *burst,
                booked_until: rate.booked_until_ms(now, now_ms),
            })
            .collect();
        Ok((wait, bookings))
    }

    /// Gives back bookings [`Buckets::reserve`] made that will not be used.
    pub fn release(&self, keys: &[(String, f64, u32)], parts: usize) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _, _) in keys {
            if let Some(rate) = map.get(key) {
                rate.release(parts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let rate = Rate::per_second(10);
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(rate.reserve(1, now), Duration::ZERO);
        }
        assert_eq!(rate.reserve(1, now), Duration::from_millis(100));
        assert_eq!(rate.reserve(2, now), Duration::from_millis(300));
        rate.release(2);
        assert_eq!(rate.reserve(1, now), Duration::from_millis(200));
        // Time passing frees the bucket.
        let later = now + Duration::from_secs(5);
        assert_eq!(rate.reserve(5, later), Duration::ZERO);
    }

    #[test]
    fn three_a_day_then_wait() {
        let buckets = Buckets::default();
        let key = [("recipient:+1".to_owned(), 3.0 / 86_400.0, 3)];
        let patience = Duration::from_secs(1);
        let mut kept = Vec::new();
        for _ in 0..3 {
            let (wait, bookings) = buckets.reserve(&key, 1, patience).unwrap();
            assert_eq!(wait, Duration::ZERO);
            kept = bookings;
        }
        let wait = buckets.reserve(&key, 1, patience).unwrap_err();
        assert!(wait > Duration::from_secs(7 * 3600), "{wait:?}");
        // The refused booking was given back: the next asks the same.
        let again = buckets.reserve(&key, 1, patience).unwrap_err();
        assert!(again <= wait);
        // Restored from what was kept, the bucket is as full as before.
        assert_eq!(kept.len(), 1);
        let restored = Buckets::restore(kept);
        let after = restored.reserve(&key, 1, patience).unwrap_err();
        assert!(after > Duration::from_secs(7 * 3600), "{after:?}");
        // A fast bucket is not worth keeping.
        let fast = [("carrier:x".to_owned(), 50.0, 50)];
        assert!(buckets.reserve(&fast, 1, patience).unwrap().1.is_empty());
    }

    #[test]
    fn a_message_larger_than_the_burst_waits_its_share() {
        let rate = Rate::per_second(2);
        let now = Instant::now();
        assert_eq!(rate.reserve(6, now), Duration::from_secs(2));
    }
}
