//! Messages handsets sent to us, as carriers reported them, each filed
//! under the account that last messaged that handset (a reply), or under no
//! account when none did (the operator sees those).

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// An inbound message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInbound {
    pub carrier: String,
    pub carrier_message_id: String,
    /// E.164 when the carrier gave a number we could read, else as given.
    pub from: String,
    pub to: String,
    pub text: String,
    /// When the carrier says it was sent (Unix ms).
    pub sent_at: i64,
    /// The account it is filed under, and the message it answers.
    pub account_id: Option<String>,
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub id: String,
    pub account_id: Option<String>,
    /// The latest message of that account to the sender, when filed as a reply.
    pub in_reply_to: Option<String>,
    pub carrier: String,
    pub carrier_message_id: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub sent_at: i64,
    pub received_at: i64,
}

/// Stores one inbound message; `false` when the carrier already reported it.
pub fn insert_inbound(conn: &Connection, message: &NewInbound, now: i64) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO inbound_messages (id, account_id, in_reply_to, carrier, carrier_message_id, \
             from_number, to_number, body, sent_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (carrier, carrier_message_id) DO NOTHING",
        )?
        .execute(params![
            crate::ids::new_id("in"),
            message.account_id,
            message.in_reply_to,
            message.carrier,
            message.carrier_message_id,
            message.from,
            message.to,
            message.text,
            message.sent_at,
            now,
        ])?;
    Ok(inserted == 1)
}

/// The latest of the newest `scan` messages that went to `number`: `(id,
/// account)`. Bounded because no index serves it: one on the recipient
/// would halve the accept rate (random inserts).
pub fn latest_message_to(
    conn: &Connection,
    number: &str,
    scan: usize,
) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, account_id FROM \
             (SELECT id, account_id, to_number FROM messages ORDER BY id DESC LIMIT ?2) \
             WHERE to_number = ?1 LIMIT 1",
        )?
        .query_row(params![number, scan as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?)
}

/// Newest first. `account_id: None` lists every account's (the operator's view).
pub fn list_inbound(
    conn: &Connection,
    account_id: Option<&str>,
    before_id: Option<&str>,
    limit: usize,
) -> Result<Vec<InboundRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, account_id, in_reply_to, carrier, carrier_message_id, from_number, to_number, \
         body, sent_at, received_at FROM inbound_messages \
         WHERE (?1 IS NULL OR account_id = ?1) AND (?2 IS NULL OR id < ?2) \
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![account_id, before_id, limit as i64], |row| {
        Ok(InboundRecord {
            id: row.get(0)?,
            account_id: row.get(1)?,
            in_reply_to: row.get(2)?,
            carrier: row.get(3)?,
            carrier_message_id: row.get(4)?,
            from: row.get(5)?,
            to: row.get(6)?,
            text: row.get(7)?,
            sent_at: row.get(8)?,
            received_at: row.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The callback secret of `carrier`, made and kept on first use.
pub fn callback_secret(conn: &Connection, carrier: &str, now: i64) -> Result<String> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT secret FROM carrier_secrets WHERE carrier = ?1")?
        .query_row([carrier], |row| row.get(0))
        .optional()?;
    if let Some(secret) = existing {
        return Ok(secret);
    }
    let secret = crate::ids::random_secret(32);
    conn.execute(
        "INSERT INTO carrier_secrets (carrier, secret, created_at) VALUES (?1, ?2, ?3)",
        params![carrier, secret, now],
    )?;
    Ok(secret)
}
