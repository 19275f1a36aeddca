//! Per-carrier pacing: a rate in parts per second (a token bucket, kept as
//! the time at which it is next empty, GCRA-style) and a window of
//! submissions in flight.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Parts per second with a burst of one second's worth.
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
    pub fn per_second(parts: u32) -> Self {
        let parts = parts.max(1);
        Self {
            interval: Duration::from_secs(1) / parts,
            burst: Duration::from_secs(1),
            booked_until: Mutex::new(Instant::now()),
        }
    }

    /// Books `parts` and says how long to wait before sending them.
    pub fn reserve(&self, parts: usize, now: Instant) -> Duration {
        let mut booked = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*booked).max(now);
        *booked = start + self.interval * parts as u32;
        booked.saturating_duration_since(now + self.burst)
    }

    /// Gives back a booking that will not be used.
    pub fn release(&self, parts: usize) {
        let mut booked = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        *booked = booked
            .checked_sub(self.interval * parts as u32)
            .unwrap_or(*booked);
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
    fn a_message_larger_than_the_burst_waits_its_share() {
        let rate = Rate::per_second(2);
        let now = Instant::now();
        assert_eq!(rate.reserve(6, now), Duration::from_secs(2));
    }
}
