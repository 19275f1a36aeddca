//! Messages, their parts and their event history.

use std::sync::atomic::{AtomicI64, Ordering};

use super::db::{Connection, OptionalExtension, Row, ToSql, params};

use super::rollups;
use super::webhooks::{StatusEvent, enqueue_status};
use super::{Result, StoreError};
use crate::compliance::keywords::Keyword;
use crate::encoding::Encoding;
use crate::model::{MessageType, Origin, Status, aggregate_status};
use crate::numbers::inventory::{MessageSender, SenderKind};

/// A client's `Idempotency-Key` and a digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_digest: [u8; 32],
}

/// The state a message starts in.
pub fn initial_status(send_at: Option<i64>, created_at: i64) -> Status {
    match send_at {
        Some(at) if at > created_at => Status::Scheduled,
        _ => Status::Queued,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub account_id: String,
    pub status: Status,
    pub to: String,
    pub from: Option<String>,
    pub country: Option<String>,
    pub body: String,
    pub message_type: MessageType,
    pub encoding: Encoding,
    pub segments: i64,
    pub concat_ref: u8,
    pub callback_url: Option<String>,
    pub send_at: Option<i64>,
    pub expires_at: i64,
    pub metadata: Option<String>,
    pub sandbox: bool,
    /// The digest of the policy set that decided the message (none when
    /// no policies are in use).
    pub policy_digest: Option<String>,
    /// The inventory number `from` is, when it is one.
    pub sender: Option<MessageSender>,
    /// Set on Pigeon's own answer to a keyword.
    pub auto_reply: Option<Keyword>,
    /// When retention or a request redacted the body (then `body` is empty).
    pub redacted_at: Option<i64>,
    /// The front door it came in by.
    pub origin: Origin,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub index: i64,
    pub status: Status,
    pub attempts: i64,
    pub carrier: Option<String>,
    pub carrier_message_id: Option<String>,
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub at: i64,
    pub status: Status,
    pub part: Option<i64>,
    pub carrier: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug)]
pub enum InsertOutcome {
    Created(MessageRecord),
    /// The idempotency key was used before with the same request.
    Replayed(MessageRecord),
    /// The idempotency key was used before with a different request.
    KeyReused,
}

#[derive(Debug)]
pub enum CancelOutcome {
    Canceled(Box<MessageRecord>),
    NotFound,
    NotCancelable(Status),
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub to: Option<String>,
    /// The sender (`from`).
    pub from: Option<String>,
    /// Created at or after (Unix ms).
    pub since: Option<i64>,
    /// Created before (Unix ms).
    pub until: Option<i64>,
    /// Return messages older than this id (the previous page's last).
    pub before_id: Option<String>,
    pub limit: usize,
}

const MESSAGE_COLUMNS: &str = "SELECT id, account_id, status, to_number, sender, country, body, type, \
     encoding, segments, concat_ref, callback_url, send_at, expires_at, metadata, sandbox, \
     created_at, updated_at, policy_digest, number_id, sender_kind, sender_carrier, pool_id, \
     auto_reply, redacted_at, origin FROM messages";

/// Writes a new message and its parts, in their initial state (whatever
/// `msg.status` says). A message from a pool makes its sender the
/// recipient's sticky one; one from a number (not an automatic reply) is
/// what a reply to that number answers.
pub fn insert_message(
    conn: &Connection,
    msg: &MessageRecord,
    idempotency: Option<&Idempotency>,
) -> Result<InsertOutcome> {
    let outcome = write_message(conn, msg, idempotency)?;
    // Pigeon's own replies to keywords are not what a reply answers.
    let answerable = msg.auto_reply.is_none();
    if let (InsertOutcome::Created(_), Some(sender), true) = (&outcome, &msg.sender, answerable) {
        conn.prepare_cached(
            "INSERT INTO last_sent (number_id, recipient, message_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT (number_id, recipient) DO UPDATE SET message_id = excluded.message_id",
        )?
        .execute(params![sender.number_id, msg.to, msg.id])?;
        if let Some(pool_id) = &sender.pool_id {
            super::pools::set_sticky_sender(
                conn,
                pool_id,
                &msg.to,
                &sender.number_id,
                msg.created_at,
            )?;
        }
    }
    Ok(outcome)
}

fn write_message(
    conn: &Connection,
    msg: &MessageRecord,
    idempotency: Option<&Idempotency>,
) -> Result<InsertOutcome> {
    if let Some(Idempotency {
        key,
        request_digest: hash,
    }) = idempotency
    {
        let existing = conn
            .prepare_cached(
                "SELECT id, request_hash FROM messages WHERE account_id = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![msg.account_id, key], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        if let Some((id, stored_hash)) = existing {
            if stored_hash.as_slice() != hash.as_slice() {
                return Ok(InsertOutcome::KeyReused);
            }
            let record = get_message(conn, &msg.account_id, &id)?
                .ok_or_else(|| StoreError::Corrupt(format!("message {id} vanished")))?;
            return Ok(InsertOutcome::Replayed(record));
        }
    }
    let status = initial_status(msg.send_at, msg.created_at);
    let (idempotency_key, request_hash) = match idempotency {
        Some(i) => (Some(i.key.as_str()), Some(i.request_digest.as_slice())),
        None => (None, None),
    };
    conn.prepare_cached(
        "INSERT INTO messages (id, account_id, status, to_number, sender, country, body, type, \
         encoding, segments, concat_ref, callback_url, send_at, expires_at, metadata, sandbox, \
         idempotency_key, request_hash, created_at, updated_at, policy_digest, number_id, \
         sender_kind, sender_carrier, pool_id, auto_reply, origin) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
    )?
    .execute(params![
        msg.id,
        msg.account_id,
        status.as_str(),
        msg.to,
        msg.from,
        msg.country,
        msg.body,
        msg.message_type.as_str(),
        msg.encoding.as_str(),
        msg.segments,
        msg.concat_ref,
        msg.callback_url,
        msg.send_at,
        msg.expires_at,
        msg.metadata,
        msg.sandbox,
        idempotency_key,
        request_hash,
        msg.created_at,
        msg.policy_digest,
        msg.sender.as_ref().map(|s| &s.number_id),
        msg.sender.as_ref().map(|s| s.kind.as_str()),
        msg.sender.as_ref().and_then(|s| s.carrier.as_ref()),
        msg.sender.as_ref().and_then(|s| s.pool_id.as_ref()),
        msg.auto_reply.map(Keyword::as_str),
        msg.origin.as_str(),
    ])?;
    let due_at = msg.send_at.unwrap_or(msg.created_at).max(msg.created_at);
    let mut insert_part = conn.prepare_cached(
        "INSERT INTO parts (message_id, idx, status, priority, due_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for idx in 0..msg.segments {
        insert_part.execute(params![
            msg.id,
            idx,
            status.as_str(),
            msg.message_type.priority(),
            due_at
        ])?;
    }
    rollups::message_added(
        rollups::Dimensions::new(
            &msg.account_id,
            msg.created_at,
            None,
            msg.country.as_deref(),
            msg.message_type.as_str(),
            msg.from.as_deref(),
        ),
        status,
        msg.segments,
    );
    Ok(InsertOutcome::Created(MessageRecord {
        status,
        updated_at: msg.created_at,
        ..msg.clone()
    }))
}

/// Writes a message the content policy refused: the message and its parts
/// `rejected` with `code`, and an event with the reason, so the sender can
/// read what happened.
pub fn insert_rejected(
    conn: &Connection,
    msg: &MessageRecord,
    code: &str,
    reason: &str,
) -> Result<MessageRecord> {
    let mut rejected = msg.clone();
    rejected.send_at = None;
    write_message(conn, &rejected, None)?;
    for index in 0..msg.segments {
        let mut change = PartChange::new(&msg.id, index, Status::Rejected, msg.created_at);
        change.error_code = Some(code);
        change.detail = Some(reason);
        change_part(conn, &change, Some(msg.segments))?;
    }
    Ok(MessageRecord {
        status: Status::Rejected,
        send_at: None,
        ..msg.clone()
    })
}

/// A message by id alone, for the runtime's own use (never for API callers).
pub(super) fn get_message_by_id(conn: &Connection, id: &str) -> Result<Option<MessageRecord>> {
    conn.prepare_cached(&format!("{MESSAGE_COLUMNS} WHERE id = ?1"))?
        .query_row(params![id], message_from_row)
        .optional()?
        .transpose()
}

/// A message of `account_id`; another account's message is simply not found.
pub fn get_message(conn: &Connection, account_id: &str, id: &str) -> Result<Option<MessageRecord>> {
    conn.prepare_cached(&format!(
        "{MESSAGE_COLUMNS} WHERE id = ?1 AND account_id = ?2"
    ))?
    .query_row(params![id, account_id], message_from_row)
    .optional()?
    .transpose()
}

pub fn list_messages(
    conn: &Connection,
    account_id: &str,
    filter: &ListFilter,
) -> Result<Vec<MessageRecord>> {
    let mut sql = format!("{MESSAGE_COLUMNS} WHERE account_id = ?1");
    let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(account_id.to_owned())];
    let mut bind = |clause: &str, value: Box<dyn ToSql>, sql: &mut String| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(status) = filter.status {
        bind("status =", Box::new(status.as_str()), &mut sql);
    }
    if let Some(to) = &filter.to {
        bind("to_number =", Box::new(to.clone()), &mut sql);
    }
    if let Some(from) = &filter.from {
        bind("sender =", Box::new(from.clone()), &mut sql);
    }
    if let Some(since) = filter.since {
        bind("created_at >=", Box::new(since), &mut sql);
    }
    if let Some(until) = filter.until {
        bind("created_at <", Box::new(until), &mut sql);
    }
    if let Some(before) = &filter.before_id {
        bind("id <", Box::new(before.clone()), &mut sql);
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit));
    let mut stmt = conn.prepare_cached(&sql)?;
    let args: Vec<&dyn ToSql> = args.iter().map(|arg| arg.as_ref()).collect();
    let rows = stmt.query_map(args.as_slice(), message_from_row)?;
    rows.map(|row| row?).collect()
}

pub fn get_parts(conn: &Connection, message_id: &str) -> Result<Vec<PartRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, status, attempts, carrier, carrier_message_id, error_code FROM parts \
         WHERE message_id = ?1 ORDER BY idx",
    )?;
    let rows = stmt.query_map([message_id], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    })?;
    rows.map(|row| {
        let (index, status, attempts, carrier, carrier_message_id, error_code) = row?;
        Ok(PartRecord {
            index,
            status: parse_status(&status)?,
            attempts,
            carrier,
            carrier_message_id,
            error_code,
        })
    })
    .collect()
}

/// The message's history, oldest first. Its creation is not stored as a
/// row (that would cost every accepted message another write): it is the
/// first event, made from the message itself.
pub fn get_events(conn: &Connection, message: &MessageRecord) -> Result<Vec<EventRecord>> {
    let mut events = vec![EventRecord {
        at: message.created_at,
        status: initial_status(message.send_at, message.created_at),
        part: None,
        carrier: None,
        detail: None,
    }];
    let mut stmt = conn.prepare_cached(
        "SELECT at, status, part, carrier, detail FROM events WHERE message_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([&message.id], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    })?;
    for row in rows {
        let (at, status, part, carrier, detail) = row?;
        events.push(EventRecord {
            at,
            status: parse_status(&status)?,
            part,
            carrier,
            detail,
        });
    }
    Ok(events)
}

/// Cancels a message whose parts are all still waiting in the queue.
pub fn cancel_message(
    conn: &Connection,
    account_id: &str,
    id: &str,
    now: i64,
) -> Result<CancelOutcome> {
    let Some(mut message) = get_message(conn, account_id, id)? else {
        return Ok(CancelOutcome::NotFound);
    };
    // Every part must still be waiting: one already handed to a carrier
    // cannot be called back.
    let furthest = get_parts(conn, id)?
        .into_iter()
        .map(|part| part.status)
        .find(|status| !matches!(status, Status::Queued | Status::Scheduled));
    if let Some(status) = furthest {
        return Ok(CancelOutcome::NotCancelable(status));
    }
    let mut cancel_parts = conn.prepare_cached(
        "UPDATE parts SET status = 'canceled', previous_status = status \
         WHERE message_id = ?1 AND status IN ('queued', 'scheduled') RETURNING previous_status",
    )?;
    for previous in cancel_parts.query_map([id], |row| row.get::<_, String>(0))? {
        rollups::parts_moved(parse_status(&previous?)?, Status::Canceled, 1);
    }
    conn.prepare_cached(
        "UPDATE messages SET status = 'canceled', updated_at = ?2, previous_status = status, \
         previous_carrier = carrier WHERE id = ?1 \
         RETURNING account_id, created_at, carrier, country, type, sender, segments, \
         previous_status, previous_carrier",
    )?
    .query_row(params![id, now], |row| MovedMessage::from_row(row, 0))?
    .record(Status::Canceled);
    insert_event(
        conn,
        id,
        now,
        Status::Canceled,
        None,
        None,
        Some("canceled by request"),
    )?;
    enqueue_status(
        conn,
        &StatusEvent {
            account_id: &message.account_id,
            message_id: id,
            origin: message.origin,
            callback_url: message.callback_url.as_deref(),
            status: Status::Canceled,
            to: &message.to,
            from: message.from.as_deref(),
            segments: message.segments,
            error_code: None,
            metadata: message.metadata.as_deref(),
            at: now,
        },
    )?;
    message.status = Status::Canceled;
    message.updated_at = now;
    Ok(CancelOutcome::Canceled(Box::new(message)))
}

pub(super) fn insert_event(
    conn: &Connection,
    message_id: &str,
    at: i64,
    status: Status,
    part: Option<i64>,
    carrier: Option<&str>,
    detail: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (message_id, seq, at, status, part, carrier, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        message_id,
        next_event_seq(),
        at,
        status.as_str(),
        part,
        carrier,
        detail
    ])?;
    Ok(())
}

/// Orders events: strictly increasing within this process, and starting
/// above anything an earlier run wrote because it leads with the clock.
fn next_event_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let floor = crate::time::now_ms() << 16;
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(floor.max(last + 1))
        })
        .unwrap_or_default();
    floor.max(previous + 1)
}

/// A change to one part, applied with its event and the message's new
/// aggregate state. Returns false (and changes nothing) when the part is
/// missing or the change would move it backwards.
#[derive(Clone, Copy)]
pub(super) struct PartChange<'a> {
    pub message_id: &'a str,
    pub index: i64,
    pub status: Status,
    pub carrier: Option<&'a str>,
    pub carrier_message_id: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub due_at: Option<i64>,
    /// Added to the part's attempt count: 1 when a delivery attempt starts
    /// with this change, -1 when a claimed part is handed back unattempted.
    pub attempts_delta: i64,
    pub detail: Option<&'a str>,
    pub at: i64,
    /// The part's state as the caller read it in this transaction (or
    /// expects it to be): saves the point read. If the part turns out to be
    /// in another state, it is read and the change applied from there.
    pub previous: Option<Status>,
    /// The node that claims the part with this change (to `sending`).
    pub claimed_by: Option<&'a str>,
}

impl<'a> PartChange<'a> {
    pub fn new(message_id: &'a str, index: i64, status: Status, at: i64) -> Self {
        Self {
            message_id,
            index,
            status,
            carrier: None,
            carrier_message_id: None,
            error_code: None,
            due_at: None,
            attempts_delta: 0,
            detail: None,
            at,
            previous: None,
            claimed_by: None,
        }
    }
}

/// Applies `change` if the part's current state may move to the new one.
/// `segments` is the message's part count when the caller knows it.
pub(super) fn change_part(
    conn: &Connection,
    change: &PartChange<'_>,
    segments: Option<i64>,
) -> Result<bool> {
    // A point read (unless the caller knows the state), then a plain UPDATE
    // guarded by that state: cheaper than UPDATE … RETURNING, which SQLite
    // runs as a trigger with a statement journal.
    let previous = match change.previous {
        Some(known) => known,
        None => {
            let previous: Option<String> = conn
                .prepare_cached("SELECT status FROM parts WHERE message_id = ?1 AND idx = ?2")?
                .query_row(params![change.message_id, change.index], |row| row.get(0))
                .optional()?;
            let Some(previous) = previous else {
                return Ok(false);
            };
            parse_status(&previous)?
        }
    };
    if !previous.may_become(change.status) {
        return Ok(false);
    }
    let updated = conn
        .prepare_cached(
            "UPDATE parts SET status = ?3, carrier = COALESCE(?4, carrier), \
             carrier_message_id = COALESCE(?5, carrier_message_id), \
             error_code = COALESCE(?6, error_code), due_at = COALESCE(?7, due_at), \
             attempts = attempts + ?8, sent_at = CASE WHEN ?3 = 'sent' THEN ?9 ELSE sent_at END, \
             claimed_by = COALESCE(?11, claimed_by) \
             WHERE message_id = ?1 AND idx = ?2 AND status = ?10",
        )?
        .execute(params![
            change.message_id,
            change.index,
            change.status.as_str(),
            change.carrier,
            change.carrier_message_id,
            change.error_code,
            change.due_at,
            change.attempts_delta,
            change.at,
            previous.as_str(),
            change.claimed_by,
        ])?;
    if updated == 0 {
        // Not in the state the caller expected: start from what it is.
        return match change.previous {
            Some(_) => change_part(
                conn,
                &PartChange {
                    previous: None,
                    ..*change
                },
                segments,
            ),
            None => Ok(false),
        };
    }
    rollups::parts_moved(previous, change.status, 1);
    insert_event(
        conn,
        change.message_id,
        change.at,
        change.status,
        Some(change.index),
        change.carrier,
        change.detail,
    )?;
    let segments = match segments {
        Some(segments) => segments,
        None => conn
            .prepare_cached("SELECT segments FROM messages WHERE id = ?1")?
            .query_row([change.message_id], |row| row.get(0))?,
    };
    // With the aggregate, the error code of a part in that state (for the webhook).
    let (aggregate, aggregate_error) = if segments == 1 {
        (change.status, None)
    } else {
        let mut stmt =
            conn.prepare_cached("SELECT status, error_code FROM parts WHERE message_id = ?1")?;
        let parts = stmt
            .query_map([change.message_id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
            })?
            .map(|part| {
                let (status, error_code) = part?;
                Ok((parse_status(&status)?, error_code))
            })
            .collect::<Result<Vec<_>>>()?;
        let aggregate =
            aggregate_status(parts.iter().map(|(status, _)| *status)).unwrap_or(change.status);
        let error_code = parts
            .into_iter()
            .find(|(status, code)| *status == aggregate && code.is_some())
            .and_then(|(_, code)| code);
        (aggregate, error_code)
    };
    // A message in a final state stays there (all its parts are final too).
    // When its status does change and it has a callback URL, the webhook
    // goes to the outbox in this same transaction. The carrier it is
    // counted under is the last one that took it or failed it.
    let carrier = change.carrier.filter(|_| {
        matches!(
            aggregate,
            Status::Sent | Status::Delivered | Status::Undelivered | Status::Failed
        )
    });
    // A point read, then a plain UPDATE: UPDATE … RETURNING would make
    // SQLite build (and drop) an ephemeral table and a statement journal
    // for every change, which cost the writer about a quarter of its time.
    let current = conn
        .prepare_cached(
            "SELECT callback_url, to_number, metadata, origin, account_id, created_at, carrier, \
             country, type, sender, segments, status, carrier FROM messages WHERE id = ?1",
        )?
        .query_row([change.message_id], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
                MovedMessage::from_row(row, 4)?,
            ))
        })
        .optional()?;
    let Some((callback_url, to, metadata, origin, mut moved)) = current else {
        return Ok(true);
    };
    if moved.previous_status == aggregate || moved.previous_status.is_final() {
        return Ok(true);
    }
    conn.prepare_cached(
        "UPDATE messages SET status = ?2, updated_at = ?3, carrier = COALESCE(?4, carrier) \
         WHERE id = ?1",
    )?
    .execute(params![
        change.message_id,
        aggregate.as_str(),
        change.at,
        carrier
    ])?;
    if let Some(carrier) = carrier {
        moved.dims.carrier = carrier.to_owned();
    }
    moved.record(aggregate);
    let error_code = change
        .error_code
        .filter(|_| change.status == aggregate)
        .or(aggregate_error.as_deref());
    enqueue_status(
        conn,
        &StatusEvent {
            account_id: &moved.dims.account_id,
            message_id: change.message_id,
            origin: Origin::parse(&origin)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown origin {origin:?}")))?,
            callback_url: callback_url.as_deref(),
            status: aggregate,
            to: &to,
            from: moved.sender.as_deref(),
            segments: moved.segments,
            error_code,
            metadata: metadata.as_deref(),
            at: change.at,
        },
    )?;
    Ok(true)
}

/// A message whose status changed: what the rollups count it under, before
/// and after.
struct MovedMessage {
    dims: rollups::Dimensions,
    previous_carrier: Option<String>,
    previous_status: Status,
    sender: Option<String>,
    segments: i64,
}

impl MovedMessage {
    /// Reads `account_id, created_at, carrier, country, type, sender,
    /// segments, previous_status, previous_carrier` from column `first` on.
    fn from_row(row: &Row<'_>, first: usize) -> Result<Self> {
        let sender: Option<String> = row.get(first + 5)?;
        Ok(Self {
            dims: rollups::Dimensions::new(
                &row.get::<_, String>(first)?,
                row.get(first + 1)?,
                row.get::<_, Option<String>>(first + 2)?.as_deref(),
                row.get::<_, Option<String>>(first + 3)?.as_deref(),
                &row.get::<_, String>(first + 4)?,
                sender.as_deref(),
            ),
            sender,
            segments: row.get(first + 6)?,
            previous_status: parse_status(&row.get::<_, String>(first + 7)?)?,
            previous_carrier: row.get(first + 8)?,
        })
    }

    fn record(&self, status: Status) {
        let before = rollups::Dimensions {
            carrier: self.previous_carrier.clone().unwrap_or_default(),
            ..self.dims.clone()
        };
        rollups::message_moved(
            before,
            self.previous_status,
            self.dims.clone(),
            status,
            self.segments,
        );
    }
}

pub(super) fn parse_status(s: &str) -> Result<Status> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

fn message_from_row(row: &Row<'_>) -> Result<Result<MessageRecord>> {
    let status: String = row.get(2)?;
    let message_type: String = row.get(7)?;
    let encoding: String = row.get(8)?;
    let number_id: Option<String> = row.get(19)?;
    let sender_kind: Option<String> = row.get(20)?;
    let auto_reply: Option<String> = row.get(23)?;
    let origin: String = row.get(25)?;
    let parsed = (|| {
        let sender = match (number_id, sender_kind) {
            (Some(number_id), Some(kind)) => Some(MessageSender {
                number_id,
                kind: SenderKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown sender kind {kind:?}")))?,
                carrier: row.get(21)?,
                pool_id: row.get(22)?,
            }),
            _ => None,
        };
        Ok(MessageRecord {
            id: row.get(0)?,
            account_id: row.get(1)?,
            status: parse_status(&status)?,
            to: row.get(3)?,
            from: row.get(4)?,
            country: row.get(5)?,
            body: row.get(6)?,
            message_type: MessageType::parse(&message_type)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown type {message_type:?}")))?,
            encoding: Encoding::parse(&encoding)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown encoding {encoding:?}")))?,
            segments: row.get(9)?,
            concat_ref: row.get(10)?,
            callback_url: row.get(11)?,
            send_at: row.get(12)?,
            expires_at: row.get(13)?,
            metadata: row.get(14)?,
            sandbox: row.get(15)?,
            created_at: row.get(16)?,
            updated_at: row.get(17)?,
            policy_digest: row.get(18)?,
            sender,
            auto_reply: auto_reply.as_deref().and_then(Keyword::parse),
            redacted_at: row.get(24)?,
            origin: Origin::parse(&origin)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown origin {origin:?}")))?,
        })
    })();
    Ok(parsed)
}
