//! Retry delays: exponential, capped, with jitter so that parts failing
//! together do not retry together.

use std::time::Duration;

use rand::Rng;

/// Delay before attempt `attempt + 1`, after `attempt` failures (1-based):
/// half of `base * 2^(attempt-1)` (capped at `max`) plus a random share of
/// the other half.
pub fn retry_delay(attempt: i64, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.clamp(1, 32) as u32 - 1;
    let ceiling = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    let half = ceiling / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_bounds() {
        let base = Duration::from_millis(1000);
        let max = Duration::from_secs(60);
        for attempt in 1..=10 {
            let ceiling = (base * 2u32.pow(attempt as u32 - 1)).min(max);
            for _ in 0..50 {
                let d = retry_delay(attempt, base, max);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn delays_are_jittered() {
        let base = Duration::from_secs(8);
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|_| retry_delay(3, base, Duration::from_secs(600)))
            .collect();
        assert!(delays.len() > 1);
    }
}
