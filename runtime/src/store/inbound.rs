//! Messages handsets sent to us, as carriers reported them, each filed
//! under the account that owns the number it was sent to (or under none:
//! the operator sees those), and the parts of long ones waiting for the
//! rest.

use super::db::{Connection, OptionalExtension, params};

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
    /// The account it is filed under: the owner of the number `to` is.
    pub account_id: Option<String>,
    pub number_id: Option<String>,
    pub pool_id: Option<String>,
    /// The latest message of that account to `from` from that number.
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub id: String,
    pub account_id: Option<String>,
    pub number_id: Option<String>,
    pub pool_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub carrier: String,
    pub carrier_message_id: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub sent_at: i64,
    pub received_at: i64,
    /// When retention or a request redacted the text (then `text` is empty).
    pub redacted_at: Option<i64>,
}

const COLUMNS: &str = "SELECT id, account_id, in_reply_to, carrier, carrier_message_id, \
                       from_number, to_number, body, sent_at, received_at, number_id, pool_id, \
                       redacted_at FROM inbound_messages";

/// Stores one inbound message; its id, or `None` when the carrier already
/// reported it.
pub fn insert_inbound(conn: &Connection, message: &NewInbound, now: i64) -> Result<Option<String>> {
    let id = crate::ids::new_id("in");
    let inserted = conn
        .prepare_cached(
            "INSERT INTO inbound_messages (id, account_id, in_reply_to, carrier, carrier_message_id, \
             from_number, to_number, body, sent_at, received_at, number_id, pool_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (carrier, carrier_message_id) DO NOTHING",
        )?
        .execute(params![
            id,
            message.account_id,
            message.in_reply_to,
            message.carrier,
            message.carrier_message_id,
            message.from,
            message.to,
            message.text,
            message.sent_at,
            now,
            message.number_id,
            message.pool_id,
        ])?;
    Ok((inserted == 1).then_some(id))
}

/// The latest message `account_id` sent to `recipient` from the number.
pub fn replied_message(
    conn: &Connection,
    number_id: &str,
    recipient: &str,
    account_id: &str,
) -> Result<Option<String>> {
    conn.prepare_cached(
        "SELECT l.message_id FROM last_sent l JOIN messages m ON m.id = l.message_id \
             WHERE l.number_id = ?1 AND l.recipient = ?2 AND m.account_id = ?3",
    )?
    .query_row(params![number_id, recipient, account_id], |row| row.get(0))
    .optional()
}

/// Newest first. `account_id: None` lists every account's (the operator's view).
pub fn list_inbound(
    conn: &Connection,
    account_id: Option<&str>,
    before_id: Option<&str>,
    limit: usize,
) -> Result<Vec<InboundRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{COLUMNS} WHERE (CAST(?1 AS TEXT) IS NULL OR account_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR id < ?2) \
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![account_id, before_id, limit as i64], from_row)?;
    rows.collect::<Result<_>>()
}

/// One inbound message; `account_id: None` finds any account's.
pub fn get_inbound(
    conn: &Connection,
    account_id: Option<&str>,
    id: &str,
) -> Result<Option<InboundRecord>> {
    conn.prepare_cached(&format!(
        "{COLUMNS} WHERE id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR account_id = ?2)"
    ))?
    .query_row(params![id, account_id], from_row)
    .optional()
}

/// The inbound message a carrier reported under `carrier_message_id`.
pub fn inbound_by_carrier_id(
    conn: &Connection,
    carrier: &str,
    carrier_message_id: &str,
) -> Result<Option<InboundRecord>> {
    conn.prepare_cached(&format!(
        "{COLUMNS} WHERE carrier = ?1 AND carrier_message_id = ?2"
    ))?
    .query_row(params![carrier, carrier_message_id], from_row)
    .optional()
}

fn from_row(row: &super::db::Row<'_>) -> Result<InboundRecord> {
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
        number_id: row.get(10)?,
        pool_id: row.get(11)?,
        redacted_at: row.get(12)?,
    })
}

/// The message a part belongs to: same carrier, handset, number and
/// reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartGroup {
    pub carrier: String,
    pub from: String,
    pub to: String,
    pub reference: u32,
}

/// One part as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub count: u8,
    pub sequence: u8,
    pub carrier_message_id: String,
    pub text: String,
    pub sent_at: i64,
}

/// Keeps a part; `false` when the carrier reported it already.
pub fn insert_part(
    conn: &Connection,
    group: &PartGroup,
    part: &StoredPart,
    now: i64,
) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO inbound_parts (carrier, carrier_message_id, from_number, to_number, \
             reference, total, idx, body, sent_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (carrier, carrier_message_id) DO NOTHING",
        )?
        .execute(params![
            group.carrier,
            part.carrier_message_id,
            group.from,
            group.to,
            group.reference,
            part.count,
            part.sequence,
            part.text,
            part.sent_at,
            now,
        ])?;
    Ok(inserted == 1)
}

/// The group's waiting parts, one per place (the first to arrive), in order.
pub fn waiting_parts(conn: &Connection, group: &PartGroup) -> Result<Vec<StoredPart>> {
    let mut stmt = conn.prepare_cached(
        "SELECT total, idx, carrier_message_id, body, sent_at FROM inbound_parts \
         WHERE carrier = ?1 AND from_number = ?2 AND to_number = ?3 AND reference = ?4 \
         AND filed = 0 ORDER BY idx, received_at",
    )?;
    let rows = stmt.query_map(
        params![group.carrier, group.from, group.to, group.reference],
        |row| {
            Ok(StoredPart {
                count: row.get(0)?,
                sequence: row.get(1)?,
                carrier_message_id: row.get(2)?,
                text: row.get(3)?,
                sent_at: row.get(4)?,
            })
        },
    )?;
    let mut parts: Vec<StoredPart> = rows.collect::<Result<_>>()?;
    parts.dedup_by_key(|p| p.sequence);
    Ok(parts)
}

/// Marks the group's waiting parts filed (into one message). Returns how
/// many it marked: none when another node filed them first (its update
/// holds the rows until it commits; this one then finds them filed).
pub fn mark_parts_filed(conn: &Connection, group: &PartGroup) -> Result<usize> {
    conn.prepare_cached(
        "UPDATE inbound_parts SET filed = 1 WHERE carrier = ?1 AND from_number = ?2 \
         AND to_number = ?3 AND reference = ?4 AND filed = 0",
    )?
    .execute(params![
        group.carrier,
        group.from,
        group.to,
        group.reference
    ])
}

/// Groups waiting with a part that arrived at or before `cutoff`.
pub fn stale_part_groups(conn: &Connection, cutoff: i64) -> Result<Vec<PartGroup>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT carrier, from_number, to_number, reference FROM inbound_parts \
         WHERE filed = 0 AND received_at <= ?1",
    )?;
    let rows = stmt.query_map([cutoff], |row| {
        Ok(PartGroup {
            carrier: row.get(0)?,
            from: row.get(1)?,
            to: row.get(2)?,
            reference: row.get(3)?,
        })
    })?;
    rows.collect::<Result<_>>()
}

/// Whether a part waits since `cutoff` or before, or a filed one arrived
/// before `filed_cutoff`.
pub fn has_stale_parts(conn: &Connection, cutoff: i64, filed_cutoff: i64) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM inbound_parts WHERE received_at <= ?1 \
             AND (filed = 0 OR received_at < ?2))",
    )?
    .query_row([cutoff, filed_cutoff], |row| row.get(0))
}

/// Forgets filed parts that arrived before `cutoff`.
pub fn prune_filed_parts(conn: &Connection, cutoff: i64) -> Result<usize> {
    conn.prepare_cached("DELETE FROM inbound_parts WHERE filed = 1 AND received_at < ?1")?
        .execute([cutoff])
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
