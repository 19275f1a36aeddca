//! What an account may use, as the operator sets it (`PATCH
//! /v1/accounts/{id} {limits}`): API requests a second (a token bucket with
//! a second's worth of burst) and messages a UTC day.
//!
//! Both are kept in memory. The day's count starts from the store's
//! rollups (every message stored that day, whatever became of it), so it
//! is exact across a restart; accounts without limits cost one map look-up.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

const MS_PER_DAY: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub requests_per_second: Option<u32>,
    pub messages_per_day: Option<u64>,
}

impl AccountLimits {
    pub fn is_empty(&self) -> bool {
        self.requests_per_second.is_none() && self.messages_per_day.is_none()
    }
}

/// A request over the account's rate: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after_secs: u64,
}

/// The day's quota would be passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub messages_per_day: u64,
    pub used: u64,
}

struct Usage {
    limits: AccountLimits,
    tokens: f64,
    refilled: Instant,
    /// Days since the epoch (UTC) that `messages` counts.
    day: i64,
    messages: u64,
}

impl Usage {
    fn new(limits: AccountLimits, messages_today: u64, now: i64) -> Self {
        Self {
            limits,
            tokens: f64::from(limits.requests_per_second.unwrap_or(0)),
            refilled: Instant::now(),
            day: now.div_euclid(MS_PER_DAY),
            messages: messages_today,
        }
    }
}

#[derive(Default)]
pub struct Limits {
    accounts: RwLock<HashMap<String, Mutex<Usage>>>,
    /// Limits set in place (see [`Limits::replace`]).
    changes: std::sync::atomic::AtomicU64,
}

impl Limits {
    /// Sets (or clears) an account's limits; `messages_today` is what it
    /// has stored today (ms `now`).
    pub fn set(&self, account_id: &str, limits: AccountLimits, messages_today: u64, now: i64) {
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if limits.is_empty() {
            accounts.remove(account_id);
            return;
        }
        accounts.insert(
            account_id.to_owned(),
            Mutex::new(Usage::new(limits, messages_today, now)),
        );
    }

    /// How many times limits were set in place.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets every account's limits at once (accounts left out have none),
    /// each with what it has stored today, unless some were set in place
    /// since [`Limits::changes`] said `changes` (then returns false).
    pub fn replace(
        &self,
        all: impl IntoIterator<Item = (String, AccountLimits, u64)>,
        now: i64,
        changes: u64,
    ) -> bool {
        let fresh = all
            .into_iter()
            .filter(|(_, limits, _)| !limits.is_empty())
            .map(|(id, limits, messages_today)| {
                (id, Mutex::new(Usage::new(limits, messages_today, now)))
            })
            .collect();
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if self.changes() != changes {
            return false;
        }
        *accounts = fresh;
        true
    }

    pub fn get(&self, account_id: &str) -> AccountLimits {
        self.with(account_id, |u| u.limits).unwrap_or_default()
    }

    /// Takes one request from the account's rate.
    pub fn request(&self, account_id: &str) -> Result<(), RateLimited> {
        self.with(account_id, |usage| {
            let Some(rate) = usage.limits.requests_per_second else {
                return Ok(());
            };
            let rate = f64::from(rate.max(1));
            let now = Instant::now();
            let elapsed = now.duration_since(usage.refilled).as_secs_f64();
            usage.tokens = (usage.tokens + elapsed * rate).min(rate);
            usage.refilled = now;
            if usage.tokens >= 1.0 {
                usage.tokens -= 1.0;
                Ok(())
            } else {
                let wait = (1.0 - usage.tokens) / rate;
                Err(RateLimited {
                    retry_after_secs: wait.ceil().max(1.0) as u64,
                })
            }
        })
        .unwrap_or(Ok(()))
    }

    /// Counts `messages` against today's quota, all or none.
    pub fn reserve(&self, account_id: &str, messages: u64, now: i64) -> Result<(), QuotaExceeded> {
        self.with(account_id, |usage| {
            let day = now.div_euclid(MS_PER_DAY);
            if usage.day != day {
                usage.day = day;
                usage.messages = 0;
            }
            if let Some(quota) = usage.limits.messages_per_day
                && usage.messages + messages > quota
            {
                return Err(QuotaExceeded {
                    messages_per_day: quota,
                    used: usage.messages,
                });
            }
            usage.messages += messages;
            Ok(())
        })
        .unwrap_or(Ok(()))
    }

    /// Gives back what [`Limits::reserve`] counted for messages not stored.
    pub fn release(&self, account_id: &str, messages: u64) {
        self.with(account_id, |usage| {
            usage.messages = usage.messages.saturating_sub(messages);
        });
    }

    fn with<R>(&self, account_id: &str, f: impl FnOnce(&mut Usage) -> R) -> Option<R> {
        let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
        let usage = accounts.get(account_id)?;
        let mut usage = usage.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&mut usage))
    }
}

/// The start (ms) of the UTC day `now` falls in.
pub fn day_start(now: i64) -> i64 {
    now.div_euclid(MS_PER_DAY) * MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_allows_a_seconds_burst_then_asks_to_wait() {
        let limits = Limits::default();
        let two = AccountLimits {
            requests_per_second: Some(2),
            messages_per_day: None,
        };
        limits.set("acc", two, 0, 0);
        assert!(limits.request("acc").is_ok());
        assert!(limits.request("acc").is_ok());
        assert_eq!(
            limits.request("acc"),
            Err(RateLimited {
                retry_after_secs: 1
            })
        );
        assert!(limits.request("other").is_ok());
    }

    #[test]
    fn the_quota_counts_per_utc_day_and_releases() {
        let limits = Limits::default();
        let quota = AccountLimits {
            requests_per_second: None,
            messages_per_day: Some(3),
        };
        let day = 20_000 * MS_PER_DAY;
        limits.set("acc", quota, 2, day + 5);
        assert!(limits.reserve("acc", 2, day + 10).is_err());
        assert!(limits.reserve("acc", 1, day + 10).is_ok());
        assert!(limits.reserve("acc", 1, day + 11).is_err());
        limits.release("acc", 1);
        assert!(limits.reserve("acc", 1, day + 12).is_ok());
        // A new day starts from nothing.
        assert!(limits.reserve("acc", 3, day + MS_PER_DAY).is_ok());
        assert_eq!(day_start(day + 12), day);
    }
}
