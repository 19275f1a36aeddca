//! A request's own checks: the recipient, the body and its parts, the
//! sender's form, the schedule, the callback URL and the metadata; and the
//! message record they make.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{Map, Value};

use super::{Request, SubmitError, SubmitRules};
use crate::auth::Principal;
use crate::encoding;
use crate::model::MessageType;
use crate::numbers::{self, NumberError};
use crate::store::messages as stored;
use crate::store::{Idempotency, MessageRecord};

/// Most parts one message may take.
pub const MAX_SEGMENTS: usize = 10;
/// How far ahead a message may be scheduled (as Twilio: 35 days).
const MAX_SCHEDULE_AHEAD_MS: i64 = 35 * 24 * 3600 * 1000;
/// How far in the past `send_at` may be (clocks differ): further back is
/// a mistake, not a wish to send at once.
const MAX_SEND_AT_PAST_MS: i64 = 10 * 60 * 1000;
const MAX_VALIDITY_SECS: u64 = 7 * 24 * 3600;
const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_LEN: usize = 40;
const MAX_METADATA_VALUE_LEN: usize = 500;
pub const MAX_URL_LEN: usize = 2048;

/// A request, checked, before its sender is settled.
pub struct Checked {
    pub message: MessageRecord,
    /// The sender pool to pick `from` from.
    pub pool: Option<String>,
    pub idempotency: Option<Idempotency>,
}

impl Checked {
    /// The pool its sender comes from: the one it names, or, when it names
    /// no sender at all, the account's default.
    pub(super) fn pool_or<'a>(&'a self, default: Option<&'a String>) -> Option<&'a String> {
        self.pool
            .as_ref()
            .or(default.filter(|_| self.message.from.is_none()))
    }
}

/// Checks one request and turns it into what the store writes.
pub(super) fn check(
    request: Request,
    principal: &Principal,
    now: i64,
    rules: &SubmitRules,
) -> Result<Checked, SubmitError> {
    let Request {
        to,
        body,
        from,
        pool,
        country,
        message_type,
        callback_url,
        send_at,
        validity_secs,
        metadata,
        idempotency,
        origin,
        smart_encoding,
    } = request;
    let body = if smart_encoding {
        encoding::smart_encode(&body).into_owned()
    } else {
        body
    };
    let recipient = numbers::normalize(&to, country.as_deref()).map_err(|err| match err {
        NumberError::UnknownCountry(_) => {
            SubmitError::invalid("invalid_country", "country", err.to_string())
        }
        _ => SubmitError::invalid("invalid_number", "to", format!("`{to}`: {err}")),
    })?;
    if body.is_empty() {
        return Err(SubmitError::invalid(
            "empty_body",
            "body",
            "`body` must not be empty",
        ));
    }
    let analysis = encoding::analyze(&body);
    if analysis.segments > MAX_SEGMENTS {
        return Err(SubmitError::invalid(
            "body_too_long",
            "body",
            format!(
                "the body needs {} parts in {}; at most {MAX_SEGMENTS} are allowed",
                analysis.segments,
                analysis.encoding.as_str()
            ),
        ));
    }
    if let Some(from) = &from
        && !valid_sender(from)
    {
        return Err(SubmitError::invalid(
            "invalid_sender",
            "from",
            "`from` must be a phone number (+ and up to 15 digits) or an alphanumeric sender of 1 to 11 letters, digits and spaces",
        ));
    }
    if from.is_some() && pool.is_some() {
        return Err(SubmitError::invalid(
            "conflicting_fields",
            "pool",
            "give `from` or `pool`, not both",
        ));
    }
    if let Some(url) = &callback_url {
        check_callback_url(url, rules.allow_private_callbacks)
            .map_err(|message| SubmitError::invalid("invalid_url", "callback_url", message))?;
    }
    if let Some(at) = send_at {
        if at < now - MAX_SEND_AT_PAST_MS {
            return Err(SubmitError::invalid(
                "send_at_in_past",
                "send_at",
                "`send_at` is more than 10 minutes in the past; leave it out to send now",
            ));
        }
        if at > now + MAX_SCHEDULE_AHEAD_MS {
            return Err(SubmitError::invalid(
                "send_at_too_far",
                "send_at",
                "`send_at` may be at most 35 days ahead",
            ));
        }
    }
    let validity_secs = match validity_secs {
        None => rules.default_validity_secs,
        Some(secs) if (1..=MAX_VALIDITY_SECS).contains(&secs) => secs,
        Some(_) => {
            return Err(SubmitError::invalid(
                "invalid_validity",
                "validity_secs",
                format!("`validity_secs` must be 1 to {MAX_VALIDITY_SECS}"),
            ));
        }
    };
    let metadata = metadata.map(check_metadata).transpose()?;

    let starts = send_at.unwrap_or(now).max(now);
    let expires_at = starts.saturating_add(validity_secs.saturating_mul(1000) as i64);
    let message = MessageRecord {
        id: crate::ids::new_id("msg"),
        account_id: principal.account_id.clone(),
        status: stored::initial_status(send_at, now),
        to: recipient.e164,
        from,
        country: recipient.country,
        body,
        message_type: message_type.unwrap_or(MessageType::Transactional),
        encoding: analysis.encoding,
        segments: analysis.segments as i64,
        concat_ref: rand::rng().random(),
        callback_url,
        send_at,
        expires_at,
        metadata,
        sandbox: principal.sandbox,
        policy_digest: None,
        sender: None,
        auto_reply: None,
        redacted_at: None,
        origin,
        created_at: now,
        updated_at: now,
    };
    Ok(Checked {
        message,
        pool,
        idempotency,
    })
}

fn check_metadata(map: Map<String, Value>) -> Result<String, SubmitError> {
    if map.len() > MAX_METADATA_KEYS {
        return Err(SubmitError::invalid(
            "invalid_metadata",
            "metadata",
            format!("`metadata` holds at most {MAX_METADATA_KEYS} keys"),
        ));
    }
    let mut clean = BTreeMap::new();
    for (key, value) in map {
        let Value::String(value) = value else {
            return Err(SubmitError::invalid(
                "invalid_metadata",
                format!("metadata.{key}"),
                "metadata values must be strings",
            ));
        };
        if key.is_empty()
            || key.chars().count() > MAX_METADATA_KEY_LEN
            || value.chars().count() > MAX_METADATA_VALUE_LEN
        {
            return Err(SubmitError::invalid(
                "invalid_metadata",
                format!("metadata.{key}"),
                format!(
                    "metadata keys are 1 to {MAX_METADATA_KEY_LEN} characters, values at most {MAX_METADATA_VALUE_LEN}"
                ),
            ));
        }
        clean.insert(key, value);
    }
    Ok(serde_json::to_string(&clean).unwrap_or_default())
}

/// A phone number (`+` and up to 15 digits) or an alphanumeric sender.
pub fn valid_sender(from: &str) -> bool {
    if let Some(digits) = from.strip_prefix('+') {
        return (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    }
    (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && from.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// Why `url` cannot be a `callback_url`, if it cannot: not a plain http(s)
/// URL (see `webhooks::validate_callback_url`), too long, or, unless private
/// networks are allowed, an IP address that is not public.
pub fn check_callback_url(url: &str, allow_private: bool) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("`callback_url` may be at most {MAX_URL_LEN} bytes"));
    }
    crate::webhooks::validate_callback_url(url).map_err(|e| e.to_string())?;
    if !allow_private
        && let Some(host) = url
            .parse::<hyper::Uri>()
            .ok()
            .as_ref()
            .and_then(|u| u.host())
    {
        crate::webhooks::check_host(host)
            .map_err(|refused| format!("`callback_url`: {refused}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert!(valid_sender("Pigeon"));
        assert!(valid_sender("+84912345678"));
        assert!(valid_sender("My Shop"));
        assert!(!valid_sender("A very long sender"));
        assert!(!valid_sender("   "));
        assert!(!valid_sender("+84-91"));
        assert!(!valid_sender(""));
    }

    #[test]
    fn callback_urls() {
        assert!(check_callback_url("https://example.com/hooks/sms", false).is_ok());
        assert!(check_callback_url("http://127.0.0.1:9000", true).is_ok());
        for (url, allow_private) in [
            ("http://127.0.0.1:9000", false),
            ("http://[::127.0.0.1]/", false),
            ("http://2130706433/", true),
            ("http://example.com:0/", true),
            ("ftp://example.com", true),
            ("https://", true),
            ("https://exa mple.com", true),
        ] {
            assert!(check_callback_url(url, allow_private).is_err(), "{url}");
        }
    }
}
