//! What the SMPP server keeps: accounts' SMPP credentials (the password
//! only as a keyed hash), the parts of client-split long messages until
//! the last one comes, and the SMPP outbox: delivery receipts and inbound
//! (MO) messages waiting to go to a bound ESME as `deliver_sm`. Receipts
//! are put in the outbox inside the transaction of the status change
//! (`enqueue_receipt`, from `webhooks::enqueue_status`), inbound messages
//! inside the transaction that files them (`enqueue_mo`), so neither is
//! ever committed without the other. The outbox rows hold facts as JSON;
//! the SMPP layer makes PDUs of them.

use super::db::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::Result;
use super::webhooks::StatusEvent;
use crate::model::Status;

/// Metadata keys an SMPP submission stores with its message, so that the
/// status change's transaction knows, from the message row alone, whether
/// and where its receipt goes.
pub const META_CREDENTIAL: &str = "smpp_credential_id";
pub const META_REGISTERED_DELIVERY: &str = "smpp_registered_delivery";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub id: String,
    pub account_id: String,
    pub system_id: String,
    pub password_hash: Vec<u8>,
    pub sandbox: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const CREDENTIAL_COLUMNS: &str = "SELECT id, account_id, system_id, password_hash, sandbox, created_at, revoked_at \
     FROM smpp_credentials";

fn credential_from_row(row: &super::db::Row<'_>) -> Result<CredentialRecord> {
    Ok(CredentialRecord {
        id: row.get(0)?,
        account_id: row.get(1)?,
        system_id: row.get(2)?,
        password_hash: row.get(3)?,
        sandbox: row.get(4)?,
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

/// Stores a new credential; `false` when its system_id is taken.
pub fn insert_credential(conn: &Connection, credential: &CredentialRecord) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO smpp_credentials (id, account_id, system_id, password_hash, sandbox, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (system_id) DO NOTHING",
        )?
        .execute(params![
            credential.id,
            credential.account_id,
            credential.system_id,
            credential.password_hash,
            credential.sandbox,
            credential.created_at,
        ])?;
    Ok(inserted == 1)
}

pub fn list_credentials(conn: &Connection, account_id: &str) -> Result<Vec<CredentialRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{CREDENTIAL_COLUMNS} WHERE account_id = ?1 AND revoked_at IS NULL ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([account_id], credential_from_row)?
        .collect::<Result<_>>()?;
    Ok(rows)
}

pub fn get_credential(conn: &Connection, id: &str) -> Result<Option<CredentialRecord>> {
    conn.prepare_cached(&format!("{CREDENTIAL_COLUMNS} WHERE id = ?1"))?
        .query_row([id], credential_from_row)
        .optional()
}

/// The credential an ESME binds with, unless revoked.
pub fn active_credential_by_system_id(
    conn: &Connection,
    system_id: &str,
) -> Result<Option<CredentialRecord>> {
    conn.prepare_cached(&format!(
        "{CREDENTIAL_COLUMNS} WHERE system_id = ?1 AND revoked_at IS NULL"
    ))?
    .query_row([system_id], credential_from_row)
    .optional()
}

/// Whether the credential is still in force (open binds check it).
pub fn credential_active(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM smpp_credentials WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Revokes a credential and drops what waits for it alone (its receipts,
/// the parts of its long messages); `false` if it was not in force.
pub fn revoke_credential(conn: &Connection, id: &str, now: i64) -> Result<bool> {
    let revoked = conn
        .prepare_cached(
            "UPDATE smpp_credentials SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![id, now])?;
    if revoked == 1 {
        conn.prepare_cached("DELETE FROM smpp_outbox WHERE credential_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM smpp_parts WHERE credential_id = ?1")?
            .execute([id])?;
    }
    Ok(revoked == 1)
}

/// A row of the SMPP outbox, claimed for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: String,
    pub kind: OutboxKind,
    pub payload: Value,
    pub attempts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A delivery receipt: `message_id`, `status`, `error_code`, `to`,
    /// `from`, `submitted_at`, `done_at`, `text` (its first 20 characters).
    Receipt,
    /// A message a handset sent: `inbound_id`, `from`, `to`, `text`.
    Mo,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Mo => "mo",
        }
    }
}

fn insert_outbox(
    conn: &Connection,
    account_id: &str,
    credential_id: Option<&str>,
    kind: OutboxKind,
    payload: &Value,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO smpp_outbox (id, account_id, credential_id, kind, payload, created_at, \
         attempts, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6)",
    )?
    .execute(params![
        crate::ids::new_id("smo"),
        account_id,
        credential_id,
        kind.as_str(),
        payload.to_string(),
        now,
    ])?;
    Ok(())
}

/// Whether `registered_delivery` asks for a receipt of this final status:
/// 1 every final outcome, 2 failures only, 3 success only (SMPP 5.0's
/// meaning, unused in 3.4).
pub fn receipt_wanted(registered_delivery: u8, status: Status) -> bool {
    let success = status == Status::Delivered;
    match registered_delivery & 0x03 {
        1 => true,
        2 => !success,
        3 => success,
        _ => false,
    }
}

fn is_final(status: Status) -> bool {
    matches!(
        status,
        Status::Delivered
            | Status::Undelivered
            | Status::Failed
            | Status::Rejected
            | Status::Expired
            | Status::Canceled
    )
}

/// Puts the receipt of an SMPP message's final status in the SMPP outbox,
/// if its `submit_sm` asked for one. Runs inside the transaction of the
/// status change.
pub(super) fn enqueue_receipt(conn: &Connection, event: &StatusEvent<'_>) -> Result<()> {
    if !is_final(event.status) {
        return Ok(());
    }
    let Some(metadata) = event
        .metadata
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return Ok(());
    };
    let Some(credential_id) = metadata[META_CREDENTIAL].as_str() else {
        return Ok(());
    };
    let registered = metadata[META_REGISTERED_DELIVERY]
        .as_str()
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(0);
    if !receipt_wanted(registered, event.status) {
        return Ok(());
    }
    // The row being changed; were it gone, the change must still commit.
    let Some((submitted_at, body)) = conn
        .prepare_cached("SELECT created_at, body FROM messages WHERE id = ?1")?
        .query_row([event.message_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .optional()?
    else {
        return Ok(());
    };
    let payload = json!({
        "message_id": event.message_id,
        "status": event.status.as_str(),
        "error_code": event.error_code,
        "to": event.to,
        "from": event.from,
        "submitted_at": submitted_at,
        "done_at": event.at,
        "text": body.chars().take(20).collect::<String>(),
    });
    insert_outbox(
        conn,
        event.account_id,
        Some(credential_id),
        OutboxKind::Receipt,
        &payload,
        event.at,
    )
}

/// An inbound message, as a bound ESME gets it.
#[derive(Debug, Clone)]
pub struct MoEvent<'a> {
    pub account_id: &'a str,
    pub inbound_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub text: &'a str,
    pub received_at: i64,
}

/// Puts an inbound message in the SMPP outbox when its account has SMPP
/// credentials, for whichever of its receiver binds takes it first. Runs
/// inside the transaction that files the message.
pub fn enqueue_mo(conn: &Connection, event: &MoEvent<'_>) -> Result<()> {
    let has_credentials = conn
        .prepare_cached(
            "SELECT 1 FROM smpp_credentials WHERE account_id = ?1 AND revoked_at IS NULL LIMIT 1",
        )?
        .query_row([event.account_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !has_credentials {
        return Ok(());
    }
    let payload = json!({
        "inbound_id": event.inbound_id,
        "from": event.from,
        "to": event.to,
        "text": event.text,
    });
    insert_outbox(
        conn,
        event.account_id,
        None,
        OutboxKind::Mo,
        &payload,
        event.received_at,
    )
}

/// Whether a bind of `credential_id` has rows due: a read, so that idle
/// binds looking for work cost the writer nothing.
pub fn has_due(conn: &Connection, account_id: &str, credential_id: &str, now: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM smpp_outbox WHERE account_id = ?1 \
             AND (credential_id IS NULL OR credential_id = ?2) AND next_attempt_at <= ?3 LIMIT 1",
        )?
        .query_row(params![account_id, credential_id, now], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Claims up to `limit` due rows for the bind `bind_id` of `credential_id`:
/// each is due again `resend_after_ms` later, when its `deliver_sm_resp`
/// has not removed it by then. The outer `next_attempt_at` test is the one
/// PostgreSQL checks again on a row another node's claim just updated.
pub fn claim_outbox(
    conn: &Connection,
    account_id: &str,
    credential_id: &str,
    bind_id: &str,
    limit: usize,
    now: i64,
    resend_after_ms: i64,
) -> Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE smpp_outbox SET attempts = attempts + 1, next_attempt_at = ?5, claimed_by = ?6 \
         WHERE id IN (SELECT id FROM smpp_outbox WHERE account_id = ?1 \
         AND (credential_id IS NULL OR credential_id = ?2) AND next_attempt_at <= ?3 \
         ORDER BY id LIMIT ?4) AND next_attempt_at <= ?3 RETURNING id, kind, payload, attempts",
    )?;
    let rows = stmt
        .query_map(
            params![
                account_id,
                credential_id,
                now,
                limit as i64,
                now + resend_after_ms,
                bind_id
            ],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>>>()?;
    let mut items: Vec<OutboxItem> = rows
        .into_iter()
        .map(|(id, kind, payload, attempts)| {
            let kind = if kind == "mo" {
                OutboxKind::Mo
            } else {
                OutboxKind::Receipt
            };
            let payload = serde_json::from_str(&payload).unwrap_or(Value::Null);
            OutboxItem {
                id,
                kind,
                payload,
                attempts,
            }
        })
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(items)
}

/// The ESME acknowledged the row: it is done.
pub fn outbox_delivered(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM smpp_outbox WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// The ESME refused the row: tried again at `retry_at`, or dropped after
/// `max_attempts`. Whether it was dropped.
pub fn outbox_refused(
    conn: &Connection,
    id: &str,
    retry_at: i64,
    max_attempts: i64,
) -> Result<bool> {
    let dropped = conn
        .prepare_cached("DELETE FROM smpp_outbox WHERE id = ?1 AND attempts >= ?2")?
        .execute(params![id, max_attempts])?;
    if dropped == 0 {
        conn.prepare_cached("UPDATE smpp_outbox SET next_attempt_at = ?2 WHERE id = ?1")?
            .execute(params![id, retry_at])?;
    }
    Ok(dropped == 1)
}

/// A bind closed: what it had claimed and not had acknowledged is due at
/// once, for the next bind.
pub fn release_claims(conn: &Connection, bind_id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE smpp_outbox SET next_attempt_at = ?2, claimed_by = NULL WHERE claimed_by = ?1",
    )?
    .execute(params![bind_id, now])?;
    Ok(())
}

/// Rows waiting for an account (for tests and metrics).
pub fn outbox_len(conn: &Connection, account_id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM smpp_outbox WHERE account_id = ?1")?
        .query_row([account_id], |row| row.get(0))
}

/// One part of a client-split long message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPart {
    /// Identifies the message the part belongs to: the credential, the
    /// addresses and the client's reference.
    pub group: String,
    pub total: u8,
    pub seq: u8,
    pub text: String,
}

/// What keeping a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    /// Stored (or stored before: a repeat); more parts are to come. The id
    /// the part is acknowledged with.
    Waiting { part_id: String },
    /// This part completed the message: the texts in order.
    Complete { texts: Vec<String> },
}

/// Keeps one part durably; the whole message's texts once every part is
/// in. The parts stay until `forget_parts` (after the message is stored),
/// so a crash between completing and storing loses nothing: the ESME sends
/// the unanswered last part again.
pub fn add_part(
    conn: &Connection,
    credential_id: &str,
    part: &SubmitPart,
    now: i64,
) -> Result<PartOutcome> {
    let part_id = crate::ids::new_id("smp");
    conn.prepare_cached(
        "INSERT INTO smpp_parts (credential_id, grp, seq, total, id, body, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (credential_id, grp, seq) DO NOTHING",
    )?
    .execute(params![
        credential_id,
        part.group,
        part.seq,
        part.total,
        part_id,
        part.text,
        now
    ])?;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, body FROM smpp_parts WHERE credential_id = ?1 AND grp = ?2 \
         AND total = ?3 ORDER BY seq",
    )?;
    let parts = stmt
        .query_map(params![credential_id, part.group, part.total], |row| {
            Ok((
                row.get::<_, u8>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>>>()?;
    if parts.len() >= usize::from(part.total) {
        return Ok(PartOutcome::Complete {
            texts: parts.into_iter().map(|(_, _, body)| body).collect(),
        });
    }
    let part_id = parts
        .into_iter()
        .find(|(seq, _, _)| *seq == part.seq)
        .map_or(part_id, |(_, id, _)| id);
    Ok(PartOutcome::Waiting { part_id })
}

/// The message of these parts is stored (or refused): they are done.
pub fn forget_parts(conn: &Connection, credential_id: &str, group: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM smpp_parts WHERE credential_id = ?1 AND grp = ?2")?
        .execute(params![credential_id, group])?;
    Ok(())
}

/// Parts whose message never completed, older than `parts_cutoff`, and
/// outbox rows no bind took before `outbox_cutoff` are dropped; how many.
pub fn prune(conn: &Connection, parts_cutoff: i64, outbox_cutoff: i64) -> Result<usize> {
    let parts = conn
        .prepare_cached("DELETE FROM smpp_parts WHERE received_at < ?1")?
        .execute([parts_cutoff])?;
    let rows = conn
        .prepare_cached("DELETE FROM smpp_outbox WHERE created_at < ?1")?
        .execute([outbox_cutoff])?;
    Ok(parts + rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_delivery_picks_the_outcomes() {
        assert!(receipt_wanted(1, Status::Delivered) && receipt_wanted(1, Status::Expired));
        assert!(!receipt_wanted(2, Status::Delivered) && receipt_wanted(2, Status::Undelivered));
        assert!(receipt_wanted(3, Status::Delivered) && !receipt_wanted(3, Status::Failed));
        assert!(!receipt_wanted(0, Status::Delivered) && !receipt_wanted(0x10, Status::Failed));
    }

    #[test]
    fn parts_join_in_order_and_a_repeat_keeps_its_id() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            let part = |seq: u8, text: &str| SubmitPart {
                group: "a|b|7|3".into(),
                total: 3,
                seq,
                text: text.into(),
            };
            let PartOutcome::Waiting { part_id } =
                add_part(conn, "smpp_1", &part(3, "c"), 1).unwrap()
            else {
                panic!("one of three");
            };
            let repeat = add_part(conn, "smpp_1", &part(3, "x"), 2).unwrap();
            assert_eq!(repeat, PartOutcome::Waiting { part_id });
            // Another credential's parts are another message.
            assert!(matches!(
                add_part(conn, "smpp_2", &part(1, "z"), 2).unwrap(),
                PartOutcome::Waiting { .. }
            ));
            add_part(conn, "smpp_1", &part(1, "a"), 3).unwrap();
            let whole = add_part(conn, "smpp_1", &part(2, "b"), 4).unwrap();
            assert_eq!(
                whole,
                PartOutcome::Complete {
                    texts: vec!["a".into(), "b".into(), "c".into()]
                }
            );
            forget_parts(conn, "smpp_1", "a|b|7|3").unwrap();
            assert_eq!(
                prune(conn, i64::MAX, 0).unwrap(),
                1,
                "smpp_2's part is left"
            );
        }
    }

    #[test]
    fn outbox_rows_are_claimed_once_and_released_by_a_closing_bind() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            conn.execute(
                "INSERT INTO accounts (id, name, operator, created_at) VALUES ('acc_1', 'a', 0, 0)",
                [],
            )
            .unwrap();
            insert_credential(
                conn,
                &CredentialRecord {
                    id: "smpp_1".into(),
                    account_id: "acc_1".into(),
                    system_id: "acme".into(),
                    password_hash: vec![1],
                    sandbox: false,
                    created_at: 0,
                    revoked_at: None,
                },
            )
            .unwrap();
            let mo = MoEvent {
                account_id: "acc_1",
                inbound_id: "in_1",
                from: "+1",
                to: "+2",
                text: "hi",
                received_at: 100,
            };
            enqueue_mo(conn, &mo).unwrap();
            assert!(has_due(conn, "acc_1", "smpp_1", 100).unwrap());
            let claimed = claim_outbox(conn, "acc_1", "smpp_1", "bind_a", 10, 100, 1000).unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].payload["text"], "hi");
            // Another bind finds nothing until the resend time, or a release.
            assert!(
                claim_outbox(conn, "acc_1", "smpp_1", "bind_b", 10, 500, 1000)
                    .unwrap()
                    .is_empty()
            );
            release_claims(conn, "bind_a", 600).unwrap();
            let again = claim_outbox(conn, "acc_1", "smpp_1", "bind_b", 10, 600, 1000).unwrap();
            assert_eq!((again.len(), again[0].attempts), (1, 2));
            outbox_delivered(conn, &again[0].id).unwrap();
            assert_eq!(outbox_len(conn, "acc_1").unwrap(), 0);
            // Revoked: no credentials, so nothing is queued.
            assert!(revoke_credential(conn, "smpp_1", 700).unwrap());
            enqueue_mo(conn, &mo).unwrap();
            assert_eq!(outbox_len(conn, "acc_1").unwrap(), 0);
        }
    }
}
