//! The SQL of data retention (the rules are `compliance::retention`):
//! accounts' shorter periods, redacting bodies and deleting old rows.
//!
//! A redacted body is stored as `''` with `redacted_at` set (the columns
//! are NOT NULL, and rebuilding the tables to change that would copy every
//! message); readers turn it into `null`. Each sweep statement walks a
//! partial index of what is not redacted yet, so a sweep with nothing due
//! is a few index probes.

use super::db::{Connection, Engine, OptionalExtension, params};

use super::inbound::InboundRecord;
use super::messages::MessageRecord;
use super::{Result, StoreError};
use crate::model::{MessageType, Status};

/// An account's own periods, in milliseconds; `None` keeps the operator's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOverrides {
    pub message_body: Option<i64>,
    pub otp_body: Option<i64>,
    pub inbound_body: Option<i64>,
    pub webhook_rows: Option<i64>,
}

impl RetentionOverrides {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// As kept in `accounts.retention`: a JSON object of milliseconds.
    fn to_stored(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut object = serde_json::Map::new();
        for (name, value) in self.entries() {
            if let Some(ms) = value {
                object.insert(name.into(), ms.into());
            }
        }
        Some(serde_json::Value::Object(object).to_string())
    }

    fn from_stored(text: Option<&str>) -> Self {
        let Some(value) = text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        else {
            return Self::default();
        };
        let read = |name: &str| value.get(name).and_then(serde_json::Value::as_i64);
        Self {
            message_body: read("message_body"),
            otp_body: read("otp_body"),
            inbound_body: read("inbound_body"),
            webhook_rows: read("webhook_rows"),
        }
    }

    fn entries(&self) -> [(&'static str, Option<i64>); 4] {
        [
            ("message_body", self.message_body),
            ("otp_body", self.otp_body),
            ("inbound_body", self.inbound_body),
            ("webhook_rows", self.webhook_rows),
        ]
    }
}

/// An account's own periods (none for an unknown account).
pub fn account_retention(conn: &Connection, account_id: &str) -> Result<RetentionOverrides> {
    let stored: Option<Option<String>> = conn
        .prepare_cached("SELECT retention FROM accounts WHERE id = ?1")?
        .query_row([account_id], |row| row.get(0))
        .optional()?;
    Ok(RetentionOverrides::from_stored(stored.flatten().as_deref()))
}

pub fn set_account_retention(
    conn: &Connection,
    account_id: &str,
    overrides: &RetentionOverrides,
) -> Result<()> {
    conn.prepare_cached("UPDATE accounts SET retention = ?2 WHERE id = ?1")?
        .execute(params![account_id, overrides.to_stored()])?;
    Ok(())
}

/// Every account with its own periods (default ones for most).
pub fn account_overrides(conn: &Connection) -> Result<Vec<(String, RetentionOverrides)>> {
    let mut stmt = conn.prepare_cached("SELECT id, retention FROM accounts")?;
    let rows = stmt.query_map([], |row| {
        let retention: Option<String> = row.get(1)?;
        Ok((
            row.get(0)?,
            RetentionOverrides::from_stored(retention.as_deref()),
        ))
    })?;
    rows.collect::<Result<_>>()
}

/// One thing a sweep does: everything of its kind from before a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepRule {
    OtpBodies {
        account: String,
        final_before: i64,
    },
    /// The bodies of messages of every other type.
    MessageBodies {
        account: String,
        final_before: i64,
    },
    /// `account: None`: messages to numbers no account owns.
    InboundBodies {
        account: Option<String>,
        received_before: i64,
    },
    WebhookRows {
        account: String,
        finished_before: i64,
    },
    Events {
        before: i64,
    },
    /// Audit entries recorded before `before`.
    Audit {
        before: i64,
    },
}

/// The states in which a body is no longer needed (see
/// [`Status::needs_body`]).
const DONE_STATES: &str =
    "('sent', 'delivered', 'undelivered', 'failed', 'rejected', 'expired', 'canceled')";

/// Applies `rules` in order, at most `budget` rows in all. Returns the
/// rows changed and how many rules were finished (the rest, from the first
/// unfinished one, are for the next job).
pub fn sweep(
    conn: &Connection,
    rules: &[SweepRule],
    now: i64,
    budget: usize,
) -> Result<(usize, usize)> {
    let mut done = 0;
    for (finished, rule) in rules.iter().enumerate() {
        let limit = budget - done;
        if limit == 0 {
            return Ok((done, finished));
        }
        let changed = apply(conn, rule, now, limit)?;
        done += changed;
        if changed == limit {
            // Maybe more of this rule is due: the next job carries on.
            return Ok((done, finished));
        }
    }
    Ok((done, rules.len()))
}

fn apply(conn: &Connection, rule: &SweepRule, now: i64, limit: usize) -> Result<usize> {
    let limit = limit as i64;
    let changed = match rule {
        SweepRule::OtpBodies {
            account,
            final_before,
        } => redact_messages(conn, account, "= 'otp'", *final_before, now, limit)?,
        SweepRule::MessageBodies {
            account,
            final_before,
        } => {
            let others: Vec<String> = MessageType::ALL
                .iter()
                .filter(|t| **t != MessageType::Otp)
                .map(|t| format!("'{}'", t.as_str()))
                .collect();
            let types = format!("IN ({})", others.join(", "));
            redact_messages(conn, account, &types, *final_before, now, limit)?
        }
        SweepRule::InboundBodies {
            account,
            received_before,
        } => {
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM inbound_messages WHERE account_id IS NOT DISTINCT FROM ?1 \
                     AND redacted_at IS NULL AND received_at < ?2 LIMIT ?3",
                )?
                .query_map(params![account, received_before, limit], |row| row.get(0))?
                .collect::<Result<_>>()?;
            for id in &ids {
                redact_inbound_row(conn, id, now)?;
            }
            ids.len()
        }
        SweepRule::WebhookRows {
            account,
            finished_before,
        } => conn
            .prepare_cached(
                "DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox \
                 WHERE account_id = ?1 AND state != 'pending' AND finished_at < ?2 LIMIT ?3)",
            )?
            .execute(params![account, finished_before, limit])?,
        // Events sort by message id, and ids by creation time: the events of
        // messages made before the cut-off are the first rows of the table,
        // with no index of their own to keep up on the hot path. (An event
        // comes after its message, so some are kept a little longer.)
        SweepRule::Events { before } => conn
            .prepare_cached(
                "DELETE FROM events WHERE (message_id, seq) IN \
                 (SELECT message_id, seq FROM events WHERE message_id < ?1 \
                 ORDER BY message_id, seq LIMIT ?2)",
            )?
            .execute(params![crate::ids::first_id_at("msg", *before), limit])?,
        SweepRule::Audit { before } => {
            super::audit::delete_older_than(conn, *before, limit as usize)?
        }
    };
    Ok(changed)
}

fn redact_messages(
    conn: &Connection,
    account: &str,
    type_clause: &str,
    final_before: i64,
    now: i64,
    limit: i64,
) -> Result<usize> {
    // A message that became final before the cut-off was made before it:
    // only ids below the cut-off's are read (`messages_unredacted`).
    let sql = format!(
        "UPDATE messages SET body = '', redacted_at = ?3 WHERE id IN (SELECT id FROM messages \
         WHERE account_id = ?1 AND type {type_clause} AND redacted_at IS NULL AND id < ?5 \
         AND status IN {DONE_STATES} AND updated_at < ?2 LIMIT ?4)"
    );
    let before_id = crate::ids::first_id_at("msg", final_before);
    conn.prepare_cached(&sql)?
        .execute(params![account, final_before, now, limit, before_id])
}

/// An inbound message's text, gone; its webhook payloads lose it too, so a
/// redelivery sends `body: null`.
fn redact_inbound_row(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE inbound_messages SET body = '', redacted_at = ?2 WHERE id = ?1 AND redacted_at IS NULL",
    )?
    .execute(params![id, now])?;
    let sql = match conn.engine() {
        Engine::Sqlite => {
            "UPDATE webhook_outbox SET payload = json_set(json_replace(payload, '$.body', NULL), \
             '$.redacted_at', ?2) WHERE message_id = ?1"
        }
        // `body` only where there is one, as json_replace does.
        Engine::Postgres => {
            "UPDATE webhook_outbox SET payload = (CASE WHEN payload::jsonb -> 'body' IS NOT NULL \
             THEN payload::jsonb || jsonb_build_object('body', NULL) ELSE payload::jsonb END \
             || jsonb_build_object('redacted_at', CAST(?2 AS TEXT)))::text WHERE message_id = ?1"
        }
    };
    conn.prepare_cached(sql)?
        .execute(params![id, crate::time::to_rfc3339(now)])?;
    Ok(())
}

/// What `POST /v1/messages/{id}/redact` found.
#[derive(Debug)]
pub enum RedactOutcome {
    Redacted(Box<MessageRecord>),
    NotFound,
    /// Still to be sent: its body is needed.
    NotFinal(Status),
}

/// Redacts one message of `account_id` now, unless it is still to be sent;
/// a message redacted already is returned as it is.
pub fn redact_message(
    conn: &Connection,
    account_id: &str,
    id: &str,
    now: i64,
) -> Result<RedactOutcome> {
    let Some(message) = super::messages::get_message(conn, account_id, id)? else {
        return Ok(RedactOutcome::NotFound);
    };
    if message.status.needs_body() {
        return Ok(RedactOutcome::NotFinal(message.status));
    }
    if message.redacted_at.is_none() {
        conn.prepare_cached(
            "UPDATE messages SET body = '', redacted_at = ?2 WHERE id = ?1 AND redacted_at IS NULL",
        )?
        .execute(params![id, now])?;
    }
    super::messages::get_message(conn, account_id, id)?
        .map(|m| RedactOutcome::Redacted(Box::new(m)))
        .ok_or_else(|| StoreError::Corrupt(format!("message {id} vanished while redacted")))
}

/// Redacts one inbound message now (`account_id: None`: any account's);
/// `None` when there is no such message.
pub fn redact_inbound(
    conn: &Connection,
    account_id: Option<&str>,
    id: &str,
    now: i64,
) -> Result<Option<InboundRecord>> {
    let Some(found) = super::inbound::get_inbound(conn, account_id, id)? else {
        return Ok(None);
    };
    if found.redacted_at.is_none() {
        redact_inbound_row(conn, id, now)?;
    }
    super::inbound::get_inbound(conn, account_id, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows: Vec<String> = stmt
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        rows.join("\n")
    }

    /// A sweep with nothing due must probe indexes, not read the tables.
    #[test]
    fn sweeps_use_their_indexes() {
        {
            let db = crate::store::testing::sqlite();
            let conn = &*db;
            let messages = plan(
                conn,
                &format!(
                    "SELECT id FROM messages WHERE account_id = 'a' AND type = 'otp' \
                 AND redacted_at IS NULL AND id < 'msg_0' AND status IN {DONE_STATES} \
                 AND updated_at < 5 LIMIT 9"
                ),
            );
            assert!(messages.contains("messages_unredacted"), "{messages}");
            let others = plan(
                conn,
                &format!(
                    "SELECT id FROM messages WHERE account_id = 'a' \
                 AND type IN ('transactional', 'marketing') AND redacted_at IS NULL \
                 AND id < 'msg_0' AND status IN {DONE_STATES} AND updated_at < 5 LIMIT 9"
                ),
            );
            assert!(others.contains("messages_unredacted"), "{others}");
            let inbound = plan(
                conn,
                "SELECT id FROM inbound_messages WHERE account_id IS NULL \
             AND redacted_at IS NULL AND received_at < 5 LIMIT 9",
            );
            assert!(inbound.contains("inbound_body_due"), "{inbound}");
            let webhooks = plan(
                conn,
                "SELECT id FROM webhook_outbox WHERE account_id = 'a' AND state != 'pending' \
             AND finished_at < 5 LIMIT 9",
            );
            assert!(webhooks.contains("webhook_outbox_finished"), "{webhooks}");
            let events = plan(
                conn,
                "SELECT message_id, seq FROM events WHERE message_id < 'msg_0' \
             ORDER BY message_id, seq LIMIT 9",
            );
            assert!(events.contains("PRIMARY KEY"), "{events}");
        }
    }

    #[test]
    fn overrides_round_trip() {
        let overrides = RetentionOverrides {
            otp_body: Some(60_000),
            ..Default::default()
        };
        let stored = overrides.to_stored();
        assert_eq!(
            RetentionOverrides::from_stored(stored.as_deref()),
            overrides
        );
        assert_eq!(RetentionOverrides::default().to_stored(), None);
    }
}
