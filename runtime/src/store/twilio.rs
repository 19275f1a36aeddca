//! The Twilio-compatible API's rows: each account's Twilio credential (one
//! Account SID, its auth token hashed to authenticate and sealed to sign),
//! and TwiML replies waiting to be sent (see `crate::twilio`).

use super::db::{Connection, OptionalExtension, params};

use super::Result;

/// An account's Twilio credential, without its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioCredential {
    pub account_id: String,
    /// `AC` and 32 hex digits; the account keeps it across new tokens.
    pub account_sid: String,
    pub token_hash: [u8; 32],
    /// Messages sent with it go to the sandbox carrier.
    pub sandbox: bool,
    /// When its current token was made.
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "SELECT account_id, account_sid, token_hash, sandbox, created_at, \
                       revoked_at FROM twilio_credentials";

fn from_row(row: &super::db::Row<'_>) -> Result<TwilioCredential> {
    Ok(TwilioCredential {
        account_id: row.get(0)?,
        account_sid: row.get(1)?,
        token_hash: row.get(2)?,
        sandbox: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

/// Gives `account_id` a new token: the account's SID stays (`new_sid` is
/// used only for its first credential), the old token stops working.
pub fn issue_token(
    conn: &Connection,
    account_id: &str,
    new_sid: &str,
    token_hash: &[u8; 32],
    token_sealed: &[u8],
    sandbox: bool,
    now: i64,
) -> Result<TwilioCredential> {
    conn.prepare_cached(
        "INSERT INTO twilio_credentials (account_id, account_sid, token_hash, token_sealed, \
         sandbox, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (account_id) DO UPDATE SET token_hash = excluded.token_hash, \
         token_sealed = excluded.token_sealed, sandbox = excluded.sandbox, \
         created_at = excluded.created_at, revoked_at = NULL",
    )?
    .execute(params![
        account_id,
        new_sid,
        token_hash,
        token_sealed,
        sandbox,
        now
    ])?;
    Ok(credential(conn, account_id)?.expect("just written"))
}

pub fn credential(conn: &Connection, account_id: &str) -> Result<Option<TwilioCredential>> {
    conn.prepare_cached(&format!("{COLUMNS} WHERE account_id = ?1"))?
        .query_row([account_id], from_row)
        .optional()
}

pub fn credential_by_sid(conn: &Connection, account_sid: &str) -> Result<Option<TwilioCredential>> {
    conn.prepare_cached(&format!("{COLUMNS} WHERE account_sid = ?1"))?
        .query_row([account_sid], from_row)
        .optional()
}

/// Stops the account's token working; `false` when it has none in force.
pub fn revoke(conn: &Connection, account_id: &str, now: i64) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE twilio_credentials SET revoked_at = ?2 \
             WHERE account_id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![account_id, now])?;
    Ok(changed == 1)
}

/// The account's SID, for the Twilio-format webhooks it is named in.
pub fn account_sid(conn: &Connection, account_id: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT account_sid FROM twilio_credentials WHERE account_id = ?1")?
        .query_row([account_id], |row| row.get(0))
        .optional()
}

/// A TwiML `<Message>` to send in answer to an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwimlReply {
    pub id: String,
    pub account_id: String,
    pub inbound_id: String,
    /// The handset that wrote.
    pub to: String,
    /// The account's number it wrote to.
    pub from: String,
    pub body: String,
}

/// Keeps the replies an inbound webhook's answer asked for, in the
/// transaction that records the webhook delivered: the outbox row `event_id`
/// names the inbound message. Nothing is kept once the row is done, so a
/// repeated delivery does not reply twice.
pub fn add_replies(conn: &Connection, event_id: &str, bodies: &[String], now: i64) -> Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO twiml_replies (id, account_id, inbound_id, to_number, from_number, body, \
         created_at) \
         SELECT ?2, o.account_id, o.message_id, i.from_number, i.to_number, ?3, ?4 \
         FROM webhook_outbox o JOIN inbound_messages i ON i.id = o.message_id \
         WHERE o.id = ?1 AND o.state = 'pending'",
    )?;
    for body in bodies {
        insert.execute(params![event_id, crate::ids::new_id("twr"), body, now])?;
    }
    Ok(())
}

/// The oldest replies waiting.
pub fn pending_replies(conn: &Connection, limit: usize) -> Result<Vec<TwimlReply>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, account_id, inbound_id, to_number, from_number, body FROM twiml_replies \
         ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |row| {
        Ok(TwimlReply {
            id: row.get(0)?,
            account_id: row.get(1)?,
            inbound_id: row.get(2)?,
            to: row.get(3)?,
            from: row.get(4)?,
            body: row.get(5)?,
        })
    })?;
    rows.collect::<Result<_>>()
}

pub fn delete_reply(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM twiml_replies WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
