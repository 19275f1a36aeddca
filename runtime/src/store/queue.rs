//! The dispatch queue lives in the `parts` table: claiming moves due parts to
//! `sending`, and the submit results move them on.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::Result;
use super::messages::{MessageRecord, PartChange, change_part, get_message_by_id};
use super::reports::apply_early_reports;
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

/// Due parts of one priority, oldest first (served by the `parts_due` index).
pub(super) const DUE_PARTS: &str = "SELECT message_id, idx, attempts FROM parts \
     WHERE status IN ('queued', 'scheduled') AND priority = ?1 AND due_at <= ?2 ORDER BY due_at";

/// Claims up to `limit` due parts, most urgent type first, oldest first
/// within a type. Parts whose message's validity has passed become `expired`
/// instead of being claimed.
/// `opted_out` says whether a message's recipient has opted out of its
/// account (or pool) since it was accepted; such a message is rejected
/// rather than claimed.
pub fn claim_due(
    conn: &Connection,
    now: i64,
    limit: usize,
    opted_out: impl Fn(&MessageRecord) -> bool,
) -> Result<Vec<ClaimedPart>> {
    let mut due: Vec<(String, i64, i64)> = Vec::new();
    for message_type in MessageType::ALL {
        let remaining = limit.saturating_sub(due.len());
        if remaining == 0 {
            break;
        }
        // Rows are read lazily, so stopping after `remaining` is as cheap as a LIMIT.
        let mut stmt = conn.prepare_cached(DUE_PARTS)?;
        let rows = stmt.query_map(params![message_type.priority(), now], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
        for row in rows.take(remaining) {
            due.push(row?);
        }
    }

    let mut claimed: Vec<ClaimedPart> = Vec::new();
    // Per message: its slot, and whether its recipient opted out since.
    let mut by_message: HashMap<String, (usize, bool)> = HashMap::new();
    for (message_id, index, attempts) in due {
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
            change_part(conn, &change, segments)?;
            continue;
        }
        if opted_out {
            let mut change = PartChange::new(&message_id, index, Status::Rejected, now);
            change.error_code = Some("recipient_opted_out");
            change.detail = Some("the recipient opted out after the message was accepted");
            change_part(conn, &change, segments)?;
            continue;
        }
        let mut change = PartChange::new(&message_id, index, Status::Sending, now);
        change.attempts_delta = 1;
        if change_part(conn, &change, segments)? {
            entry.attempt = entry.attempt.max(attempts + 1);
            entry.parts.push(index);
        }
    }
    claimed.retain(|c| !c.parts.is_empty());
    Ok(claimed)
}

/// Records what the carrier said about each submitted part.
pub fn record_results(conn: &Connection, results: &[SubmitResult], now: i64) -> Result<()> {
    // Early reports are rare: look for them per part only when there are any.
    let any_early: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM early_reports)")?
        .query_row([], |row| row.get(0))?;
    let mut booked = false;
    for result in results {
        if !result.bookings.is_empty() {
            super::pacing::save_bookings(conn, &result.bookings)?;
            booked = true;
        }
        let segments = Some(result.segments);
        let mut change = PartChange::new(&result.message_id, result.index, Status::Sent, now);
        change.carrier = Some(&result.carrier);
        match &result.outcome {
            SubmitOutcome::Accepted { carrier_message_id } => {
                change.carrier_message_id = Some(carrier_message_id);
                if change_part(conn, &change, segments)? && any_early {
                    apply_early_reports(conn, &result.carrier, carrier_message_id, now)?;
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
    Ok(())
}

/// Parts left in `sending` by a previous run have no recorded carrier
/// acknowledgement: they go back to the queue (the carrier may or may not
/// have taken them). Parts already `sent` stay as they are, so nothing whose
/// acknowledgement was recorded is sent twice.
pub fn requeue_interrupted(conn: &Connection, now: i64) -> Result<usize> {
    let interrupted: Vec<(String, i64)> = conn
        .prepare("SELECT message_id, idx FROM parts WHERE status = 'sending'")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (message_id, index) in &interrupted {
        let mut change = PartChange::new(message_id, *index, Status::Queued, now);
        change.due_at = Some(now);
        change.detail = Some("requeued: interrupted before the carrier acknowledged it");
        change_part(conn, &change, None)?;
    }
    Ok(interrupted.len())
}

/// Carrier ids of the parts `carrier` acknowledged that still wait for a
/// delivery report.
pub fn awaiting_reports(conn: &Connection, carrier: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT carrier_message_id FROM parts \
         WHERE status = 'sent' AND carrier = ?1 AND carrier_message_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([carrier], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
