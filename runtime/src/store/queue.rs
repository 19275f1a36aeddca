//! The dispatch queue lives in the `parts` table: claiming moves due parts to
//! `sending`, and the submit results move them on.

use std::collections::HashMap;

use super::db::{Connection, Engine, params};

use super::Result;
use super::messages::{MessageRecord, PartChange, change_part, get_message_by_id, parse_status};
use super::reports::{AppliedEarly, apply_early_reports};
use crate::model::{MessageType, Status};

/// Parts of one message claimed for one carrier submission.
#[derive(Debug, Clone)]
pub struct ClaimedPart {
    pub message: MessageRecord,
    /// Part indexes, ascending.
    pub parts: Vec<i64>,
    /// The attempt number this submission is (1 for the first).
    pub attempt: i64,
}

#[derive(Debug, Clone)]
pub enum SubmitOutcome {
    /// The carrier took the part and gave it this id.
    Accepted { carrier_message_id: String },
    /// Try again at `due_at`.
    Retry { due_at: i64, reason: String },
    /// Not attempted (the carrier's rate or window is full): back to the
    /// queue until `due_at`, without counting an attempt.
    Deferred { due_at: i64, reason: String },
    /// The part will not be sent.
    Failed { code: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct SubmitResult {
    pub message_id: String,
    pub index: i64,
    /// The message's part count.
    pub segments: i64,
    pub carrier: String,
    pub outcome: SubmitOutcome,
    /// Slow pacing buckets the submission booked, to keep (on one result
    /// of a claim).
    pub bookings: Vec<super::pacing::PacingBooking>,
}

macro_rules! due_parts {
    () => {
        "SELECT message_id, idx, attempts, status FROM parts \
         WHERE status IN ('queued', 'scheduled') AND priority = ?1 AND due_at <= ?2 \
         ORDER BY due_at LIMIT ?3"
    };
}

/// Due parts of one priority, oldest first (served by the `parts_due` index).
pub(super) const DUE_PARTS: &str = due_parts!();

/// On PostgreSQL, where nodes claim side by side, a part another node's
/// claim holds is passed over rather than waited for (and then found
/// claimed). The claim's UPDATE is guarded by the part's state, so no part
/// is handed to two nodes either way.
const DUE_PARTS_SKIP_LOCKED: &str = concat!(due_parts!(), " FOR UPDATE SKIP LOCKED");

/// Claims up to `limit` due parts for `node`, most urgent type first,
/// oldest first within a type. Parts whose message's validity has passed
/// become `expired` instead of being claimed.
/// `opted_out` says whether a message's recipient has opted out of its
/// account (or pool) since it was accepted; such a message is rejected
/// rather than claimed.
pub fn claim_due(
    conn: &Connection,
    node: &str,
    now: i64,
    limit: usize,
    opted_out: impl Fn(&MessageRecord) -> bool,
) -> Result<Vec<ClaimedPart>> {
    let mut due: Vec<(String, i64, i64, Status)> = Vec::new();
    for message_type in MessageType::ALL {
        let remaining = limit.saturating_sub(due.len());
        if remaining == 0 {
            break;
        }
        let sql = match conn.engine() {
            Engine::Sqlite => DUE_PARTS,
            Engine::Postgres => DUE_PARTS_SKIP_LOCKED,
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![message_type.priority(), now, remaining as i64],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )?;
        for row in rows {
            let (message_id, index, attempts, status) = row?;
            due.push((message_id, index, attempts, parse_status(&status)?));
        }
    }

    let mut claimed: Vec<ClaimedPart> = Vec::new();
    // Per message: its slot, and whether its recipient opted out since.
    let mut by_message: HashMap<String, (usize, bool)> = HashMap::new();
    for (message_id, index, attempts, status) in due {
        let (slot, opted_out) = match by_message.get(&message_id) {
            Some(&known) => known,
            None => {
                let Some(message) = get_message_by_id(conn, &message_id)? else {
                    continue;
                };
                // The confirmation of an opt-out is the one message that
                // still goes.
                let opted_out = message.auto_reply
                    != Some(crate::compliance::keywords::Keyword::OptOut)
                    && opted_out(&message);
                claimed.push(ClaimedPart {
                    message,
                    parts: Vec::new(),
                    attempt: 0,
                });
                let known = (claimed.len() - 1, opted_out);
                by_message.insert(message_id.clone(), known);
                known
            }
        };
        let entry = &mut claimed[slot];
        let segments = Some(entry.message.segments);
        if entry.message.expires_at <= now {
            let mut change = PartChange::new(&message_id, index, Status::Expired, now);
            change.error_code = Some("expired");
            change.detail = Some("validity period passed before it could be sent");
            change.previous = Some(status);
            change_part(conn, &change, segments)?;
            continue;
        }
        if opted_out {
            let mut change = PartChange::new(&message_id, index, Status::Rejected, now);
            change.error_code = Some("recipient_opted_out");
            change.detail = Some("the recipient opted out after the message was accepted");
            change.previous = Some(status);
            change_part(conn, &change, segments)?;
            continue;
        }
        let mut change = PartChange::new(&message_id, index, Status::Sending, now);
        change.attempts_delta = 1;
        change.claimed_by = Some(node);
        change.previous = Some(status);
        if change_part(conn, &change, segments)? {
            entry.attempt = entry.attempt.max(attempts + 1);
            entry.parts.push(index);
        }
    }
    claimed.retain(|c| !c.parts.is_empty());
    Ok(claimed)
}

/// Records what the carrier said about each submitted part; returns the
/// final reports that had come before it and are applied now.
pub fn record_results(
    conn: &Connection,
    results: &[SubmitResult],
    now: i64,
) -> Result<Vec<AppliedEarly>> {
    // Early reports are rare: look for them per part only when there are any.
    let any_early: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM early_reports)")?
        .query_row([], |row| row.get(0))?;
    let (mut booked, mut early) = (false, Vec::new());
    for result in results {
        if !result.bookings.is_empty() {
            super::pacing::save_bookings(conn, &result.bookings)?;
            booked = true;
        }
        let segments = Some(result.segments);
        let mut change = PartChange::new(&result.message_id, result.index, Status::Sent, now);
        change.carrier = Some(&result.carrier);
        // The claim left it `sending`; had it moved since, it would be read.
        change.previous = Some(Status::Sending);
        match &result.outcome {
            SubmitOutcome::Accepted { carrier_message_id } => {
                change.carrier_message_id = Some(carrier_message_id);
                if change_part(conn, &change, segments)? && any_early {
                    early.extend(apply_early_reports(
                        conn,
                        &result.carrier,
                        carrier_message_id,
                        now,
                    )?);
                }
            }
            SubmitOutcome::Retry { due_at, reason } => {
                change.status = Status::Queued;
                change.due_at = Some(*due_at);
                change.detail = Some(reason);
                change_part(conn, &change, segments)?;
            }
            SubmitOutcome::Deferred { due_at, reason } => {
                change.status = Status::Queued;
                change.carrier = None;
                change.due_at = Some(*due_at);
                change.attempts_delta = -1;
                change.detail = Some(reason);
                change_part(conn, &change, segments)?;
            }
            SubmitOutcome::Failed { code, reason } => {
                change.status = Status::Failed;
                change.error_code = Some(code);
                change.detail = Some(reason);
                change_part(conn, &change, segments)?;
            }
        }
    }
    if booked {
        super::pacing::prune_bookings(conn, now)?;
    }
    Ok(early)
}

/// Carrier ids of the parts `carrier` acknowledged that still wait for a
/// delivery report.
pub fn awaiting_reports(conn: &Connection, carrier: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT carrier_message_id FROM parts \
         WHERE status = 'sent' AND carrier = ?1 AND carrier_message_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([carrier], |row| row.get(0))?;
    rows.collect::<Result<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Encoding;
    use crate::model::Origin;
    use crate::store::messages::{get_message_by_id, get_parts, insert_message};

    fn two_part_message(now: i64) -> MessageRecord {
        MessageRecord {
            id: crate::ids::new_id("msg"),
            account_id: "acct_test".into(),
            status: Status::Queued,
            to: "+84912345678".into(),
            from: None,
            country: Some("VN".into()),
            body: "x".repeat(200),
            message_type: MessageType::Transactional,
            encoding: Encoding::Gsm7,
            segments: 2,
            concat_ref: 7,
            callback_url: Some("http://127.0.0.1:9/hook".into()),
            send_at: None,
            expires_at: now + 3_600_000,
            metadata: None,
            sandbox: false,
            policy_digest: None,
            sender: None,
            auto_reply: None,
            redacted_at: None,
            origin: Origin::default(),
            created_at: now,
            updated_at: now,
        }
    }

    fn webhooks(conn: &Connection, message_id: &str) -> Vec<String> {
        conn.prepare("SELECT payload FROM webhook_outbox WHERE message_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([message_id], |row| row.get::<_, String>(0))
            .unwrap()
            .map(|payload| {
                let payload: serde_json::Value = serde_json::from_str(&payload.unwrap()).unwrap();
                payload["status"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// A report kept early by one node while another recorded the carrier
    /// id (each transaction blind to the other's) is applied by the sweep.
    #[test]
    fn an_early_report_missed_by_a_concurrent_recording_is_swept_up() {
        use crate::store::reports::*;
        for db in crate::store::testing::both() {
            let conn = &*db;
            let now = 1_000_000_000;
            let mut message = two_part_message(now);
            message.segments = 1;
            message.body = "x".into();
            insert_message(conn, &message, None).unwrap();
            claim_due(conn, "node_a", now, 10, |_| false).unwrap();
            let report = DeliveryReport {
                carrier: "sim".into(),
                carrier_message_id: "c-0".into(),
                state: ReportState::Delivered,
                error_code: None,
                raw_status: None,
                at: now + 5,
            };
            assert_eq!(
                apply_report(conn, &report, now + 5).unwrap(),
                ReportOutcome::Early
            );
            // Recorded as the other node would have, not seeing the report.
            let mut sent = PartChange::new(&message.id, 0, Status::Sent, now + 6);
            sent.carrier = Some("sim");
            sent.carrier_message_id = Some("c-0");
            assert!(change_part(conn, &sent, Some(1)).unwrap());
            let applied = apply_matched_early_reports(conn, now + 7).unwrap();
            assert_eq!(applied.len(), 1);
            assert_eq!(
                (applied[0].carrier.as_str(), applied[0].status),
                ("sim", Status::Delivered)
            );
            let stored = get_message_by_id(conn, &message.id).unwrap().unwrap();
            assert_eq!(stored.status, Status::Delivered);
            assert!(
                apply_matched_early_reports(conn, now + 8)
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn a_change_from_a_stale_state_applies_from_the_real_one() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            let now = 1_000_000_000;
            let message = two_part_message(now);
            insert_message(conn, &message, None).unwrap();
            let claimed = claim_due(conn, "node_test", now, 10, |_| false).unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].parts, [0, 1]);

            // The caller believes part 1 is still queued; it is sending.
            let mut change = PartChange::new(&message.id, 1, Status::Sent, now + 1);
            change.carrier = Some("sim");
            change.carrier_message_id = Some("c-1");
            change.previous = Some(Status::Queued);
            assert!(change_part(conn, &change, Some(2)).unwrap());
            // Part 0 goes the usual way, from the state its claim left it in.
            let result = SubmitResult {
                message_id: message.id.clone(),
                index: 0,
                segments: 2,
                carrier: "sim".into(),
                outcome: SubmitOutcome::Accepted {
                    carrier_message_id: "c-0".into(),
                },
                bookings: Vec::new(),
            };
            record_results(conn, &[result], now + 2).unwrap();

            let parts = get_parts(conn, &message.id).unwrap();
            assert!(parts.iter().all(|part| part.status == Status::Sent));
            let stored = get_message_by_id(conn, &message.id).unwrap().unwrap();
            assert_eq!(stored.status, Status::Sent);
            // One webhook per change of the message's status, none for a part
            // that did not change it.
            assert_eq!(webhooks(conn, &message.id), ["sending", "sent"]);
            // A final message stays final.
            let mut late = PartChange::new(&message.id, 0, Status::Delivered, now + 3);
            late.previous = Some(Status::Sent);
            assert!(change_part(conn, &late, Some(2)).unwrap());
            let mut failed = PartChange::new(&message.id, 1, Status::Undelivered, now + 4);
            failed.previous = Some(Status::Sent);
            assert!(change_part(conn, &failed, Some(2)).unwrap());
            let stored = get_message_by_id(conn, &message.id).unwrap().unwrap();
            assert!(stored.status.is_final());
            assert_eq!(webhooks(conn, &message.id).len(), 3);
        }
    }
}
