//! Log lines that a client, a carrier or a script can cause are rate
//! limited: one refused request must not become two log lines, and a
//! flood of them must not fill the disk. A limiter lets `burst` lines
//! through per `period` and counts the rest, which the next line let
//! through reports as `suppressed`.

use std::sync::Mutex;

pub struct LogLimiter {
    period_ms: i64,
    burst: u32,
    state: Mutex<State>,
}

struct State {
    window_start_ms: i64,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(period_ms: i64, burst: u32) -> Self {
        Self {
            period_ms,
            burst,
            state: Mutex::new(State {
                window_start_ms: i64::MIN,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(suppressed)` when a line may be logged now, with the number of
    /// lines held back since the last one let through; `None` when this one
    /// must be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(crate::time::now_ms())
    }

    fn allow_at(&self, now_ms: i64) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms.saturating_sub(state.window_start_ms) >= self.period_ms {
            state.window_start_ms = now_ms;
            state.used = 0;
        }
        if state.used < self.burst {
            state.used += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_burst_through_per_period_and_counts_the_rest() {
        let limiter = LogLimiter::new(1000, 2);
        assert_eq!(limiter.allow_at(0), Some(0));
        assert_eq!(limiter.allow_at(10), Some(0));
        assert_eq!(limiter.allow_at(20), None);
        assert_eq!(limiter.allow_at(999), None);
        assert_eq!(limiter.allow_at(1000), Some(2));
        assert_eq!(limiter.allow_at(1001), Some(0));
    }
}
