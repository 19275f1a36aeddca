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
        let interval = Duration::try_from_secs_f64(1.0 / rate.max(1e-9))
            .unwrap_or(Duration::from_secs(86_400 * 365));
        Self {
            interval,
            burst: interval.saturating_mul(burst.max(1)),
            booked_until: Mutex::new(Instant::now()),
        }
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
        *booked = start + self.interval * parts as u32;
        booked.saturating_duration_since(now + self.burst)
    }

    /// Whether it refills slower than once a second: a bucket worth
    /// keeping across a restart.
    fn slow(&self) -> bool {
        self.interval >= Duration::from_secs(1)
    }

    /// Until when it is booked, as Unix ms.
    fn booked_until_ms(&self, now: Instant, now_ms: i64) -> i64 {
        let booked = *self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        now_ms + booked.saturating_duration_since(now).as_millis() as i64
    }

    /// Gives back a booking that will not be used.
    pub fn release(&self, parts: usize) {
        let mut booked = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        *booked = booked
            .checked_sub(self.interval * parts as u32)
            .unwrap_or(*booked);
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
