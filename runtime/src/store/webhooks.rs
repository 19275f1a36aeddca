//! The webhook outbox. A status change of a message that has a
//! `callback_url` inserts one row here in the same transaction as the change
//! (see `messages::change_part`), so a change is never committed without its
//! webhook nor a webhook without its change. The deliverer
//! (`crate::webhooks`) claims due rows, POSTs them and records the outcome.

use super::db::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::{Result, StoreError};
use crate::model::{Origin, Status};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its first attempt, for a retry, or in flight.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up: attempts exhausted, or the URL may never be called.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// The form a delivery takes: Pigeon's own (JSON, signed with the
/// account's webhook secret) or Twilio's (a form, signed with the account's
/// Twilio auth token as Twilio signs). A Twilio-form row's payload is JSON
/// too, `{type, status, form: {name: value}}`, so listings read every row
/// alike; the deliverer sends `form`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    Pigeon,
    /// A status callback of a message sent through the Twilio door.
    TwilioStatus,
    /// An inbound message for a number's `sms_url`; a TwiML answer may
    /// ask for replies.
    TwilioInbound,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pigeon => "pigeon",
            Self::TwilioStatus => "twilio-status",
            Self::TwilioInbound => "twilio-inbound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pigeon, Self::TwilioStatus, Self::TwilioInbound]
            .into_iter()
            .find(|format| format.as_str() == s)
    }
}

/// A fresh per-account signing secret.
pub fn new_secret() -> String {
    format!("whsec_{}", crate::ids::random_secret(40))
}

/// Gives every account without a webhook secret a new one (run by the
/// migration that adds the column).
pub(super) fn backfill_secrets(conn: &Connection) -> Result<usize> {
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM accounts WHERE webhook_secret IS NULL")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_>>()?;
    let mut update = conn.prepare("UPDATE accounts SET webhook_secret = ?2 WHERE id = ?1")?;
    for id in &ids {
        update.execute(params![id, new_secret()])?;
    }
    Ok(ids.len())
}

/// A message's new status, as its webhook tells it.
#[derive(Debug, Clone)]
pub(super) struct StatusEvent<'a> {
    pub account_id: &'a str,
    pub message_id: &'a str,
    /// The front door the message came in by: the form of its report.
    pub origin: Origin,
    /// Where the message asked for its reports, if it did.
    pub callback_url: Option<&'a str>,
    pub status: Status,
    pub to: &'a str,
    pub from: Option<&'a str>,
    pub segments: i64,
    pub error_code: Option<&'a str>,
    /// The message's metadata as stored (a JSON object), if any.
    pub metadata: Option<&'a str>,
    pub at: i64,
}

/// Puts the report of `event` in the outbox, due at once, if the message
/// asked for one (a webhook, or an SMPP receipt). Runs inside the
/// transaction that made the change.
pub(super) fn enqueue_status(conn: &Connection, event: &StatusEvent<'_>) -> Result<()> {
    // An SMPP message's report is a deliver_sm receipt to the ESME's bind.
    if event.origin == Origin::Smpp {
        super::smpp::enqueue_receipt(conn, event)?;
    }
    let Some(callback_url) = event.callback_url else {
        return Ok(());
    };
    let id = crate::ids::new_id("evt");
    let (format, payload) = match event.origin {
        Origin::Twilio => {
            let account_sid = super::twilio::account_sid(conn, event.account_id)?;
            let payload = json!({
                "type": "message.status",
                "status": event.status.as_str(),
                "form": twilio_status_form(event, account_sid.as_deref()),
            });
            (WebhookFormat::TwilioStatus, payload)
        }
        Origin::Api | Origin::Smpp => (WebhookFormat::Pigeon, status_payload(&id, event)),
    };
    enqueue(
        conn,
        &Outgoing {
            id: &id,
            account_id: event.account_id,
            message_id: event.message_id,
            url: callback_url,
            format,
            payload: &payload.to_string(),
        },
    )
}

/// A status callback's fields as Twilio sends them.
fn twilio_status_form(event: &StatusEvent<'_>, account_sid: Option<&str>) -> Value {
    use crate::model::twilio;
    let sid = twilio::sid("SM", event.message_id);
    let status = twilio::status(event.status);
    let mut form = json!({
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": account_sid.unwrap_or_default(),
        "From": event.from.unwrap_or_default(),
        "To": event.to,
        "ApiVersion": twilio::API_VERSION,
    });
    if let Some(code) = twilio::error_code(event.status) {
        form["ErrorCode"] = json!(code.to_string());
    }
    form
}

/// An inbound message, as its webhook tells it.
#[derive(Debug, Clone)]
pub struct InboundEvent<'a> {
    pub account_id: &'a str,
    pub inbound_id: &'a str,
    pub url: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub received_at: i64,
    pub number_id: Option<&'a str>,
    pub pool_id: Option<&'a str>,
    pub in_reply_to: Option<&'a str>,
    /// `opt_out`, `opt_in` or `help` when the body was one of those keywords.
    pub keyword: Option<&'a str>,
}

/// Puts the `message.inbound` webhook in the outbox, due at once, in the
/// transaction that stores the message. Its deliveries are listed under
/// the inbound message's id.
pub fn enqueue_inbound(conn: &Connection, event: &InboundEvent<'_>) -> Result<()> {
    let id = crate::ids::new_id("evt");
    let payload = json!({
        "type": "message.inbound",
        "id": event.inbound_id,
        "event_id": id,
        "from": event.from,
        "to": event.to,
        "body": event.body,
        "received_at": crate::time::to_rfc3339(event.received_at),
        "number_id": event.number_id,
        "pool_id": event.pool_id,
        "in_reply_to": event.in_reply_to,
        "keyword": event.keyword,
    })
    .to_string();
    enqueue(
        conn,
        &Outgoing {
            id: &id,
            account_id: event.account_id,
            message_id: event.inbound_id,
            url: event.url,
            format: WebhookFormat::Pigeon,
            payload: &payload,
        },
    )
}

/// Puts Twilio's inbound webhook for a number's `sms_url` in the outbox,
/// in the transaction that stores the message (`event.url` is the
/// `sms_url`).
pub fn enqueue_twilio_inbound(
    conn: &Connection,
    event: &InboundEvent<'_>,
    segments: usize,
) -> Result<()> {
    use crate::model::twilio;
    let account_sid = super::twilio::account_sid(conn, event.account_id)?;
    let sid = twilio::sid("SM", event.inbound_id);
    let mut form = json!({
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": account_sid.unwrap_or_default(),
        "From": event.from,
        "To": event.to,
        "Body": event.body,
        "NumSegments": segments.to_string(),
        "NumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": twilio::API_VERSION,
    });
    if let Some(pool_id) = event.pool_id {
        form["MessagingServiceSid"] = json!(twilio::sid("MG", pool_id));
    }
    let id = crate::ids::new_id("evt");
    let payload = json!({"type": "message.inbound", "form": form}).to_string();
    enqueue(
        conn,
        &Outgoing {
            id: &id,
            account_id: event.account_id,
            message_id: event.inbound_id,
            url: event.url,
            format: WebhookFormat::TwilioInbound,
            payload: &payload,
        },
    )
}

/// One row for the outbox.
struct Outgoing<'a> {
    id: &'a str,
    account_id: &'a str,
    /// The message (or inbound message) it tells of.
    message_id: &'a str,
    url: &'a str,
    format: WebhookFormat,
    payload: &'a str,
}

fn enqueue(conn: &Connection, row: &Outgoing<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO webhook_outbox (id, account_id, message_id, url, payload, created_at, \
         attempts, next_attempt_at, state, format) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, 'pending', ?7)",
    )?
    .execute(params![
        row.id,
        row.account_id,
        row.message_id,
        row.url,
        row.payload,
        crate::time::now_ms(),
        row.format.as_str(),
    ])?;
    Ok(())
}

/// The JSON the customer's endpoint receives.
fn status_payload(id: &str, event: &StatusEvent<'_>) -> Value {
    let metadata = event
        .metadata
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    json!({
        "type": "message.status",
        "id": id,
        "message_id": event.message_id,
        "status": event.status.as_str(),
        "to": event.to,
        "from": event.from,
        "segments": event.segments,
        "error_code": event.error_code,
        "at": crate::time::to_rfc3339(event.at),
        "metadata": metadata,
    })
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedWebhook {
    /// The event id (`evt_...`), also the payload's `id`.
    pub id: String,
    pub account_id: String,
    pub message_id: String,
    pub url: String,
    pub payload: String,
    /// The account's signing secret (`None` only if the account is gone).
    pub secret: Option<String>,
    /// The secret it replaced, while that one's grace period lasts.
    pub previous_secret: Option<String>,
    pub format: WebhookFormat,
    /// The account's Twilio auth token, sealed (Twilio forms only, while
    /// the token is in force).
    pub twilio_token: Option<Vec<u8>>,
    /// The attempt this is (1 for the first).
    pub attempt: i64,
}

/// What the deliverer says of one due delivery while claiming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Claim it.
    Claim,
    /// Its endpoint is busy: put it off to the claim's `defer_until`, so
    /// later claims do not read past it again and again.
    Defer,
    /// Its account is busy: leave it and the account's other deliveries due.
    SkipAccount,
}

/// One claim's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ClaimWindow {
    pub now: i64,
    /// Most deliveries claimed.
    pub limit: usize,
    /// Claimed deliveries are not due again until then (their lease).
    pub lease_until: i64,
    /// When deliveries put off by [`Admission::Defer`] fall due.
    pub defer_until: i64,
}

/// Most deliveries of one account one claim puts off.
const MAX_DEFERRED_PER_ACCOUNT: usize = 64;

/// Claims due deliveries account by account, round robin: starting with
/// the first account after `after_account` (wrapping around), each
/// account's due deliveries oldest first, as `admit` allows. Claimed rows
/// get attempt + 1 and `next_attempt_at = lease_until`: a claim the process
/// dies holding becomes due again by itself. For each message only its
/// oldest pending delivery is due, so one message's webhooks arrive in
/// order. Returns the claims and the last account that got one (the next
/// claim's `after_account`).
pub fn claim_due(
    conn: &Connection,
    window: ClaimWindow,
    after_account: &str,
    mut admit: impl FnMut(&ClaimedWebhook) -> Admission,
) -> Result<(Vec<ClaimedWebhook>, Option<String>)> {
    let mut claimed = Vec::new();
    let mut deferred = Vec::new();
    let mut last_served = None;
    // A loose index scan: one seek per account with pending deliveries.
    let mut next_account = conn.prepare_cached(
        "SELECT account_id FROM webhook_outbox WHERE state = 'pending' AND account_id > ?1 \
         ORDER BY account_id LIMIT 1",
    )?;
    let mut due = conn.prepare_cached(
        "SELECT o.id, o.account_id, o.message_id, o.url, o.payload, o.attempts, a.webhook_secret, \
                CASE WHEN a.previous_webhook_secret_until > ?2 THEN a.previous_webhook_secret END, \
                o.format, CASE WHEN o.format != 'pigeon' THEN t.token_sealed END \
         FROM webhook_outbox o LEFT JOIN accounts a ON a.id = o.account_id \
         LEFT JOIN twilio_credentials t ON t.account_id = o.account_id AND t.revoked_at IS NULL \
         WHERE o.account_id = ?1 AND o.state = 'pending' AND o.next_attempt_at <= ?2 \
         AND NOT EXISTS (SELECT 1 FROM webhook_outbox e WHERE e.message_id = o.message_id \
                         AND e.state = 'pending' AND e.id < o.id) \
         ORDER BY o.next_attempt_at",
    )?;
    let mut cursor = after_account.to_owned();
    let mut wrapped = false;
    while claimed.len() < window.limit {
        let account: Option<String> = next_account
            .query_row([&cursor], |row| row.get(0))
            .optional()?;
        let account = match account {
            Some(account) if wrapped && account.as_str() > after_account => break,
            Some(account) => account,
            None if wrapped || after_account.is_empty() => break,
            None => {
                wrapped = true;
                cursor.clear();
                continue;
            }
        };
        // Rows are read lazily, so stopping early is as cheap as a LIMIT.
        let mut rows = due.query_map(params![account, window.now], |row| {
            Ok(ClaimedWebhook {
                id: row.get(0)?,
                account_id: row.get(1)?,
                message_id: row.get(2)?,
                url: row.get(3)?,
                payload: row.get(4)?,
                attempt: row.get::<_, i64>(5)? + 1,
                secret: row.get(6)?,
                previous_secret: row.get(7)?,
                format: {
                    let format: String = row.get(8)?;
                    WebhookFormat::parse(&format).unwrap_or(WebhookFormat::Pigeon)
                },
                twilio_token: row.get(9)?,
            })
        })?;
        let mut deferred_here = 0;
        while claimed.len() < window.limit && deferred_here < MAX_DEFERRED_PER_ACCOUNT {
            let Some(row) = rows.next() else { break };
            let row = row?;
            match admit(&row) {
                Admission::Claim => {
                    last_served = Some(account.clone());
                    claimed.push(row);
                }
                Admission::Defer => {
                    deferred_here += 1;
                    deferred.push(row.id);
                }
                Admission::SkipAccount => break,
            }
        }
        cursor = account;
    }
    // Guarded by the row still being due: of nodes claiming side by side
    // (PostgreSQL), the second's update waits for the first's commit, finds
    // the lease taken and claims nothing.
    let mut lease = conn.prepare_cached(
        "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?2 \
         WHERE id = ?1 AND state = 'pending' AND next_attempt_at <= ?3",
    )?;
    let mut taken = Vec::with_capacity(claimed.len());
    for claim in claimed {
        if lease.execute(params![claim.id, window.lease_until, window.now])? == 1 {
            taken.push(claim);
        }
    }
    let claimed = taken;
    let mut defer =
        conn.prepare_cached("UPDATE webhook_outbox SET next_attempt_at = ?2 WHERE id = ?1")?;
    for id in &deferred {
        defer.execute(params![id, window.defer_until])?;
    }
    Ok((claimed, last_served))
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `at`.
    Retry {
        at: i64,
        error: String,
    },
    /// Give up.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub id: String,
    pub outcome: DeliveryOutcome,
    /// Texts a TwiML answer to a Twilio inbound webhook asked to send back.
    pub replies: Vec<String>,
}

/// Records attempts' outcomes. Only pending rows change.
pub fn record_results(conn: &Connection, results: &[DeliveryResult]) -> Result<()> {
    let now = crate::time::now_ms();
    for result in results {
        if result.outcome == DeliveryOutcome::Delivered && !result.replies.is_empty() {
            super::twilio::add_replies(conn, &result.id, &result.replies, now)?;
        }
        match &result.outcome {
            DeliveryOutcome::Delivered => conn
                .prepare_cached(
                    "UPDATE webhook_outbox SET state = 'delivered', finished_at = ?2 \
                     WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![result.id, crate::time::now_ms()])?,
            DeliveryOutcome::Retry { at, error } => conn
                .prepare_cached(
                    "UPDATE webhook_outbox SET next_attempt_at = ?2, last_error = ?3 \
                     WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![result.id, at, error])?,
            DeliveryOutcome::Failed { error } => conn
                .prepare_cached(
                    "UPDATE webhook_outbox SET state = 'failed', last_error = ?2, finished_at = ?3 \
                     WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![result.id, error, crate::time::now_ms()])?,
        };
    }
    Ok(())
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    /// `message.status` or `message.inbound`.
    pub event_type: String,
    /// The message status the webhook tells of (status webhooks).
    pub status: Option<String>,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
}

/// A message's deliveries, oldest first.
pub fn list_for_message(conn: &Connection, message_id: &str) -> Result<Vec<WebhookRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, {}, url, state, attempts, last_error, created_at, next_attempt_at, {} \
         FROM webhook_outbox WHERE message_id = ?1 ORDER BY id",
        conn.json_field("payload", "status"),
        conn.json_field("payload", "type"),
    ))?;
    let rows = stmt.query_map([message_id], |row| {
        Ok((
            WebhookRecord {
                id: row.get(0)?,
                event_type: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                status: row.get(1)?,
                url: row.get(2)?,
                state: DeliveryState::Pending,
                attempts: row.get(4)?,
                last_error: row.get(5)?,
                created_at: row.get(6)?,
                next_attempt_at: row.get(7)?,
            },
            row.get::<_, String>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (mut record, state) = row?;
        record.state = DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown webhook state {state:?}")))?;
        Ok(record)
    })
    .collect()
}

/// Which of an account's deliveries to list: newest first, those in
/// `state` (any if none), older than `before_id`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AccountWebhookFilter {
    pub state: Option<DeliveryState>,
    pub before_id: Option<String>,
    pub limit: usize,
}

/// A delivery and the message (or inbound message) it tells of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWebhook {
    pub message_id: String,
    pub delivery: WebhookRecord,
}

/// An account's deliveries, newest first (for dead letters: `Failed`).
pub fn list_for_account(
    conn: &Connection,
    account_id: &str,
    filter: &AccountWebhookFilter,
) -> Result<Vec<AccountWebhook>> {
    // Two forms, so the (account_id, state, id) index serves each.
    let state = match filter.state {
        Some(_) => "state = ?2",
        None => "CAST(?2 AS TEXT) IS NULL",
    };
    let sql = format!(
        "SELECT id, {}, url, state, attempts, last_error, created_at, next_attempt_at, {}, \
         message_id FROM webhook_outbox WHERE account_id = ?1 AND {state} AND id < ?3 \
         ORDER BY id DESC LIMIT ?4",
        conn.json_field("payload", "status"),
        conn.json_field("payload", "type"),
    );
    // Every id sorts before this one.
    let before = filter.before_id.as_deref().unwrap_or("~");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            account_id,
            filter.state.map(DeliveryState::as_str),
            before,
            filter.limit as i64
        ],
        |row| {
            Ok((
                row.get::<_, String>(9)?,
                WebhookRecord {
                    id: row.get(0)?,
                    event_type: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    status: row.get(1)?,
                    url: row.get(2)?,
                    state: DeliveryState::Pending,
                    attempts: row.get(4)?,
                    last_error: row.get(5)?,
                    created_at: row.get(6)?,
                    next_attempt_at: row.get(7)?,
                },
                row.get::<_, String>(3)?,
            ))
        },
    )?;
    rows.map(|row| {
        let (message_id, mut delivery, state) = row?;
        delivery.state = DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown webhook state {state:?}")))?;
        Ok(AccountWebhook {
            message_id,
            delivery,
        })
    })
    .collect()
}

/// What asking for a delivery to be sent again came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Pending again, due at once, with a fresh count of attempts.
    Queued,
    /// No such delivery of this account.
    NotFound,
    /// It is still pending (waiting, retrying or in flight).
    StillPending,
}

/// Queues a failed (or delivered) delivery again: pending, due `now`,
/// attempts back to 0, so it gets `max_attempts` tries as a new one would.
/// `last_error` stays until the next attempt's outcome replaces it.
pub fn redeliver(conn: &Connection, account_id: &str, id: &str, now: i64) -> Result<Redelivery> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3 \
             WHERE id = ?1 AND account_id = ?2 AND state != 'pending'",
        )?
        .execute(params![id, account_id, now])?;
    if changed == 1 {
        return Ok(Redelivery::Queued);
    }
    let exists = conn
        .prepare_cached("SELECT 1 FROM webhook_outbox WHERE id = ?1 AND account_id = ?2")?
        .query_row(params![id, account_id], |_| Ok(()))
        .optional()?;
    Ok(match exists {
        Some(()) => Redelivery::StillPending,
        None => Redelivery::NotFound,
    })
}

/// Webhooks waiting to be delivered (served by the pending-only index).
pub fn pending_count(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM webhook_outbox WHERE state = 'pending'")?
        .query_row([], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_carries_the_message_and_its_new_status() {
        let event = StatusEvent {
            account_id: "acc_1",
            message_id: "msg_1",
            origin: Origin::Api,
            callback_url: Some("https://example.com/hook"),
            status: Status::Undelivered,
            to: "+84912340001",
            from: Some("Pigeon"),
            segments: 2,
            error_code: Some("absent_subscriber"),
            metadata: Some(r#"{"order":"42"}"#),
            at: 1_700_000_000_123,
        };
        let payload = status_payload("evt_1", &event);
        assert_eq!(
            payload,
            json!({
                "type": "message.status",
                "id": "evt_1",
                "message_id": "msg_1",
                "status": "undelivered",
                "to": "+84912340001",
                "from": "Pigeon",
                "segments": 2,
                "error_code": "absent_subscriber",
                "at": "2023-11-14T22:13:20.123Z",
                "metadata": {"order": "42"},
            })
        );
        let bare = StatusEvent {
            metadata: None,
            from: None,
            error_code: None,
            ..event
        };
        let payload = status_payload("evt_2", &bare);
        assert_eq!(payload["metadata"], json!({}));
        assert_eq!(payload["from"], Value::Null);
        assert_eq!(payload["error_code"], Value::Null);
    }

    /// The outbox with `rows`, on each engine.
    fn outbox_with(rows: &[(&str, &str, &str)]) -> [crate::store::testing::TestDatabase; 2] {
        crate::store::testing::both().map(|db| {
            for (id, account, state) in rows {
                db.execute(
                    "INSERT INTO webhook_outbox (id, account_id, message_id, url, payload, created_at, \
                     attempts, next_attempt_at, last_error, state) \
                     VALUES (?1, ?2, 'msg_1', 'https://example.com/', '{\"type\":\"message.status\"}', \
                     0, 12, 99, 'HTTP 500', ?3)",
                    params![id, account, state],
                )
                .unwrap();
            }
            db
        })
    }

    #[test]
    fn an_accounts_webhooks_are_listed_by_state_newest_first_in_pages() {
        for db in outbox_with(&[
            ("evt_1", "acc_a", "failed"),
            ("evt_2", "acc_a", "delivered"),
            ("evt_3", "acc_a", "failed"),
            ("evt_4", "acc_b", "failed"),
            ("evt_5", "acc_a", "failed"),
        ]) {
            let conn = &*db;
            let ids = |filter: &AccountWebhookFilter| -> Vec<String> {
                list_for_account(conn, "acc_a", filter)
                    .unwrap()
                    .into_iter()
                    .map(|w| w.delivery.id)
                    .collect()
            };
            let mut filter = AccountWebhookFilter {
                state: Some(DeliveryState::Failed),
                before_id: None,
                limit: 2,
            };
            assert_eq!(ids(&filter), ["evt_5", "evt_3"]);
            filter.before_id = Some("evt_3".into());
            assert_eq!(ids(&filter), ["evt_1"]);
            let all = AccountWebhookFilter {
                limit: 10,
                ..AccountWebhookFilter::default()
            };
            assert_eq!(ids(&all), ["evt_5", "evt_3", "evt_2", "evt_1"]);
        }
    }

    #[test]
    fn redelivery_resets_attempts_and_refuses_pending_and_other_accounts() {
        for db in outbox_with(&[("evt_1", "acc_a", "failed"), ("evt_2", "acc_a", "pending")]) {
            let conn = &*db;
            assert_eq!(
                redeliver(conn, "acc_b", "evt_1", 50).unwrap(),
                Redelivery::NotFound
            );
            assert_eq!(
                redeliver(conn, "acc_a", "evt_2", 50).unwrap(),
                Redelivery::StillPending
            );
            assert_eq!(
                redeliver(conn, "acc_a", "evt_1", 50).unwrap(),
                Redelivery::Queued
            );
            let (state, attempts, due): (String, i64, i64) = conn
            .query_row(
                "SELECT state, attempts, next_attempt_at FROM webhook_outbox WHERE id = 'evt_1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
            assert_eq!((state.as_str(), attempts, due), ("pending", 0, 50));
            assert_eq!(
                redeliver(conn, "acc_a", "evt_1", 60).unwrap(),
                Redelivery::StillPending
            );
        }
    }

    #[test]
    fn secrets_are_prefixed_and_random() {
        let a = new_secret();
        assert!(a.starts_with("whsec_") && a.len() == 46, "{a}");
        assert_ne!(a, new_secret());
    }
}
