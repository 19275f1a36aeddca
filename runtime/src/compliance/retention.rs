//! Data retention: how long message bodies, inbound texts, webhook rows and
//! events are kept (`[retention]`, each account may shorten the first four),
//! the sweep that redacts and deletes what is due, and the masking of OTP
//! bodies for viewers.
//!
//! The rules live here; the SQL is `store::retention`. The sweep runs on its
//! own task, in write jobs of at most [`SWEEP_BATCH`] rows, so the writer is
//! never held long and the accept path never waits for it.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::store::Store;
use crate::store::retention::{self as stored, RetentionOverrides, SweepRule};

/// Most rows one sweep write job redacts or deletes.
pub const SWEEP_BATCH: usize = 500;

/// Most rules (index probes) one write job runs, so that many accounts
/// with nothing due still make short jobs.
const RULES_PER_JOB: usize = 1000;

/// The longest period accepted (100 years): keeps the arithmetic far from
/// overflow.
const MAX_PERIOD_MS: u64 = 36_500 * DAY_MS;
const DAY_MS: u64 = 24 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error(
        "`{field}`: {text:?} is not a duration: write a whole number and d, h, m or s (e.g. 30d, 12h, 15m, 90s)"
    )]
    InvalidDuration { field: String, text: String },
    #[error("`{field}` must be between 1s and 36500d")]
    OutOfRange { field: String },
    #[error("`{field}` may be at most {maximum}, the operator's setting")]
    LongerThanAllowed { field: String, maximum: Period },
    #[error("`{field}` is not a retention setting an account may change")]
    UnknownSetting { field: String },
}

impl RetentionError {
    /// The setting the error is about, as named in the request or file.
    pub fn field(&self) -> &str {
        match self {
            Self::InvalidDuration { field, .. }
            | Self::OutOfRange { field }
            | Self::LongerThanAllowed { field, .. }
            | Self::UnknownSetting { field } => field,
        }
    }

    /// The API's error code for it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidDuration { .. } | Self::OutOfRange { .. } => "invalid_duration",
            Self::LongerThanAllowed { .. } => "retention_too_long",
            Self::UnknownSetting { .. } => "unknown_field",
        }
    }
}

/// A length of time kept, to the millisecond; written `30d`, `12h`, `15m`
/// or `90s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(u64);

impl Period {
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs * 1000)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// Reads `text` as the value of `field` (named in the error).
    pub fn parse(field: &str, text: &str) -> Result<Self, RetentionError> {
        let invalid = || RetentionError::InvalidDuration {
            field: field.to_owned(),
            text: text.to_owned(),
        };
        let text = text.trim();
        let unit = text.chars().last().ok_or_else(invalid)?;
        let number = &text[..text.len() - unit.len_utf8()];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let scale = match unit {
            'd' => DAY_MS,
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1000,
            _ => return Err(invalid()),
        };
        let ms = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|ms| (1000..=MAX_PERIOD_MS).contains(ms))
            .ok_or_else(|| RetentionError::OutOfRange {
                field: field.to_owned(),
            })?;
        Ok(Self(ms))
    }

    /// Milliseconds as stored (an account's override), if in range.
    pub fn from_stored(ms: i64) -> Option<Self> {
        u64::try_from(ms)
            .ok()
            .filter(|ms| (1000..=MAX_PERIOD_MS).contains(ms))
            .map(Self)
    }

    fn stored(self) -> i64 {
        // At most MAX_PERIOD_MS, far below i64::MAX.
        self.0 as i64
    }
}

impl std::fmt::Display for Period {
    /// In the largest unit that divides it: `30d`, `36h`, `90s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (unit, scale) in [('d', DAY_MS), ('h', 3_600_000), ('m', 60_000), ('s', 1000)] {
            if self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}s", self.0.div_ceil(1000))
    }
}

/// `[retention]`: how long things are kept, and how often the sweep looks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRetention")]
pub struct RetentionConfig {
    /// A message's body, from when the message is final.
    pub message_body: Period,
    /// The body of an `otp` message, from when it is final.
    pub otp_body: Period,
    /// An inbound message's text, from when it was received.
    pub inbound_body: Period,
    /// A webhook's outbox row, from when it was delivered or given up.
    pub webhook_rows: Period,
    /// A message's status events, from when they happened.
    pub events: Period,
    /// Audit records (the audit trail's sweep uses it).
    pub audit: Period,
    /// How often the sweep runs.
    pub sweep_interval: Period,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            message_body: Period::from_secs(30 * 86_400),
            otp_body: Period::from_secs(3_600),
            inbound_body: Period::from_secs(30 * 86_400),
            webhook_rows: Period::from_secs(7 * 86_400),
            events: Period::from_secs(400 * 86_400),
            audit: Period::from_secs(400 * 86_400),
            sweep_interval: Period::from_secs(60),
        }
    }
}

/// `[retention]` as written: durations as text, read with their names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    message_body: Option<String>,
    otp_body: Option<String>,
    inbound_body: Option<String>,
    webhook_rows: Option<String>,
    events: Option<String>,
    audit: Option<String>,
    sweep_interval: Option<String>,
}

impl TryFrom<RawRetention> for RetentionConfig {
    type Error = RetentionError;

    fn try_from(raw: RawRetention) -> Result<Self, Self::Error> {
        let defaults = Self::default();
        let read = |name: &str, text: Option<String>, default: Period| match text {
            Some(text) => Period::parse(&format!("retention.{name}"), &text),
            None => Ok(default),
        };
        Ok(Self {
            message_body: read("message_body", raw.message_body, defaults.message_body)?,
            otp_body: read("otp_body", raw.otp_body, defaults.otp_body)?,
            inbound_body: read("inbound_body", raw.inbound_body, defaults.inbound_body)?,
            webhook_rows: read("webhook_rows", raw.webhook_rows, defaults.webhook_rows)?,
            events: read("events", raw.events, defaults.events)?,
            audit: read("audit", raw.audit, defaults.audit)?,
            sweep_interval: read(
                "sweep_interval",
                raw.sweep_interval,
                defaults.sweep_interval,
            )?,
        })
    }
}

/// The settings an account may shorten (events and audit records are the
/// operator's: events have no account of their own to sweep by).
pub const ACCOUNT_SETTINGS: [&str; 4] =
    ["message_body", "otp_body", "inbound_body", "webhook_rows"];

/// What an account keeps: the operator's periods, shortened by its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveRetention {
    pub message_body: Period,
    pub otp_body: Period,
    pub inbound_body: Period,
    pub webhook_rows: Period,
    pub events: Period,
    pub audit: Period,
}

impl RetentionConfig {
    /// An account's periods: its override where it has one (never longer
    /// than the operator's, whatever is stored), else the operator's.
    pub fn effective(&self, overrides: &RetentionOverrides) -> EffectiveRetention {
        let pick = |stored: Option<i64>, max: Period| {
            stored
                .and_then(Period::from_stored)
                .map_or(max, |p| p.min(max))
        };
        EffectiveRetention {
            message_body: pick(overrides.message_body, self.message_body),
            otp_body: pick(overrides.otp_body, self.otp_body),
            inbound_body: pick(overrides.inbound_body, self.inbound_body),
            webhook_rows: pick(overrides.webhook_rows, self.webhook_rows),
            events: self.events,
            audit: self.audit,
        }
    }

    fn maximum(&self, setting: &str) -> Option<Period> {
        match setting {
            "message_body" => Some(self.message_body),
            "otp_body" => Some(self.otp_body),
            "inbound_body" => Some(self.inbound_body),
            "webhook_rows" => Some(self.webhook_rows),
            _ => None,
        }
    }

    /// Applies one requested override (`None`: back to the operator's) to
    /// `overrides`; `prefix` names the request's field (`retention`).
    pub fn apply_override(
        &self,
        overrides: &mut RetentionOverrides,
        prefix: &str,
        setting: &str,
        value: Option<&str>,
    ) -> Result<(), RetentionError> {
        let field = format!("{prefix}.{setting}");
        let maximum = self
            .maximum(setting)
            .ok_or_else(|| RetentionError::UnknownSetting {
                field: field.clone(),
            })?;
        let period = value
            .map(|text| {
                let period = Period::parse(&field, text)?;
                if period > maximum {
                    return Err(RetentionError::LongerThanAllowed {
                        field: field.clone(),
                        maximum,
                    });
                }
                Ok(period.stored())
            })
            .transpose()?;
        let slot = match setting {
            "message_body" => &mut overrides.message_body,
            "otp_body" => &mut overrides.otp_body,
            "inbound_body" => &mut overrides.inbound_body,
            _ => &mut overrides.webhook_rows,
        };
        *slot = period;
        Ok(())
    }
}

impl EffectiveRetention {
    /// As `GET /v1/account` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "message_body": self.message_body.to_string(),
            "otp_body": self.otp_body.to_string(),
            "inbound_body": self.inbound_body.to_string(),
            "webhook_rows": self.webhook_rows.to_string(),
            "events": self.events.to_string(),
            "audit": self.audit.to_string(),
        })
    }
}

/// An OTP's body as a viewer sees it: every digit a `•`, so the code is
/// not readable while the rest of the text still says what was sent.
pub fn mask_digits(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_numeric() { '\u{2022}' } else { c })
        .collect()
}

/// What one sweep must do, at `now`: per account and kind, the time before
/// which things are due.
fn sweep_rules(
    config: &RetentionConfig,
    accounts: &[(String, RetentionOverrides)],
    now: i64,
) -> Vec<SweepRule> {
    let before = |period: Period| now.saturating_sub(period.stored());
    let mut rules = Vec::with_capacity(accounts.len() * 4 + 3);
    for (account, overrides) in accounts {
        let kept = config.effective(overrides);
        rules.push(SweepRule::OtpBodies {
            account: account.clone(),
            final_before: before(kept.otp_body),
        });
        rules.push(SweepRule::MessageBodies {
            account: account.clone(),
            final_before: before(kept.message_body),
        });
        rules.push(SweepRule::InboundBodies {
            account: Some(account.clone()),
            received_before: before(kept.inbound_body),
        });
        rules.push(SweepRule::WebhookRows {
            account: account.clone(),
            finished_before: before(kept.webhook_rows),
        });
    }
    // Inbound messages to numbers no account owns: the operator's period.
    rules.push(SweepRule::InboundBodies {
        account: None,
        received_before: before(config.inbound_body),
    });
    rules.push(SweepRule::Events {
        before: before(config.events),
    });
    rules.push(SweepRule::Audit {
        before: before(config.audit),
    });
    rules
}

/// Runs one sweep: every rule, in write jobs of at most [`SWEEP_BATCH`]
/// rows, until nothing is due. Returns the rows redacted or deleted.
pub async fn sweep_once(
    store: &Store,
    config: &RetentionConfig,
    shutdown: &watch::Receiver<bool>,
) -> crate::store::Result<usize> {
    let accounts = store.read(stored::account_overrides).await?;
    let now = crate::time::now_ms();
    let rules = sweep_rules(config, &accounts, now);
    let mut total = 0;
    // A rule is done once a job leaves it with rows to spare; the next job
    // starts where the last one ran out of budget.
    let mut first = 0;
    while first < rules.len() && !*shutdown.borrow() {
        let pending = rules[first..rules.len().min(first + RULES_PER_JOB)].to_vec();
        let (done, finished) = store
            .write(move |c| stored::sweep(c, &pending, now, SWEEP_BATCH))
            .await?;
        total += done;
        first += finished;
        if done == 0 && finished == 0 {
            break;
        }
    }
    Ok(total)
}

/// Sweeps every `sweep_interval` until `shutdown` turns true.
pub async fn run(store: Store, config: RetentionConfig, mut shutdown: watch::Receiver<bool>) {
    let interval = config.sweep_interval.as_duration();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match sweep_once(&store, &config, &shutdown).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "retention sweep redacted or deleted rows"),
            Err(crate::store::StoreError::Closed) => return,
            Err(err) => {
                if let Some(suppressed) = SWEEP_LOG.allow() {
                    tracing::warn!(error = %err, suppressed, "retention sweep failed; retried at the next interval");
                }
            }
        }
    }
}

static SWEEP_LOG: crate::log_limit::LogLimiter = crate::log_limit::LogLimiter::new(60_000, 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print() {
        for (text, ms) in [
            ("30d", 30 * DAY_MS),
            ("12h", 12 * 3_600_000),
            ("15m", 15 * 60_000),
            ("90s", 90_000),
            ("1s", 1000),
        ] {
            let period = Period::parse("retention.x", text).unwrap();
            assert_eq!(period.as_millis(), ms, "{text}");
            assert_eq!(period.to_string(), text);
        }
        assert_eq!(Period::from_secs(36 * 3600).to_string(), "36h");
    }

    #[test]
    fn bad_durations_name_the_field() {
        for text in [
            "",
            "30",
            "d",
            "3.5d",
            "-1d",
            "30 days",
            "10w",
            "0s",
            "99999999d",
        ] {
            let err = Period::parse("retention.otp_body", text).unwrap_err();
            assert!(
                err.to_string().contains("retention.otp_body"),
                "{text}: {err}"
            );
            assert_eq!(err.field(), "retention.otp_body");
        }
    }

    #[test]
    fn overrides_are_at_most_the_operators() {
        let config = RetentionConfig::default();
        let mut overrides = RetentionOverrides::default();
        config
            .apply_override(&mut overrides, "retention", "message_body", Some("7d"))
            .unwrap();
        assert_eq!(
            config.effective(&overrides).message_body,
            Period::from_secs(7 * 86_400)
        );
        let err = config
            .apply_override(&mut overrides, "retention", "otp_body", Some("2h"))
            .unwrap_err();
        assert_eq!(err.field(), "retention.otp_body");
        assert_eq!(err.code(), "retention_too_long");
        let err = config
            .apply_override(&mut overrides, "retention", "events", Some("1d"))
            .unwrap_err();
        assert_eq!(err.code(), "unknown_field");
        config
            .apply_override(&mut overrides, "retention", "message_body", None)
            .unwrap();
        assert_eq!(
            config.effective(&overrides),
            config.effective(&Default::default())
        );
        // A stored value longer than the operator's (the operator shortened
        // theirs since) is capped.
        let long = RetentionOverrides {
            otp_body: Some(10 * DAY_MS as i64),
            ..Default::default()
        };
        assert_eq!(config.effective(&long).otp_body, config.otp_body);
    }

    #[test]
    fn viewers_see_no_digits() {
        assert_eq!(mask_digits("Your code is 4839-20"), "Your code is ••••-••");
        assert_eq!(mask_digits("mã ٣٤٥"), "mã •••");
    }
}
