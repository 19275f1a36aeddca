//! Analytics rollups and queue depth, kept with the status changes.
//!
//! `message_rollups` counts messages by the hour they were accepted, their
//! account, carrier, country, type, sender and the status they are in now:
//! a status change moves one message (and its parts) from its old row to
//! its new one. `dlr_latency_rollups` counts delivery reports by how long
//! the carrier took, in power-of-two millisecond buckets. Queries read
//! these small tables, never the messages.
//!
//! The writer changes many messages per transaction, mostly into the same
//! few rows, so the changes gather in memory (on the writer's thread) and
//! are written once per row at commit ([`flush`]); a rolled-back
//! transaction drops them ([`discard`]). The parts' states are counted the
//! same way, in memory only: [`QueueDepth`] is loaded at start and moved by
//! each committed change.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use super::db::{Connection, params};

use super::Result;
use crate::model::Status;

const MS_PER_HOUR: i64 = 3_600_000;
/// Latency bucket `i` holds `[2^i, 2^(i+1))` ms (0 also holds 0); the last
/// holds everything longer (about 9 hours and more).
pub const LATENCY_BUCKETS: usize = 25;

/// What a message is counted under, bar its status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Dimensions {
    pub account_id: String,
    pub hour: i64,
    pub carrier: String,
    pub country: String,
    pub message_type: String,
    pub sender: String,
}

impl Dimensions {
    pub fn new(
        account_id: &str,
        created_at: i64,
        carrier: Option<&str>,
        country: Option<&str>,
        message_type: &str,
        sender: Option<&str>,
    ) -> Self {
        Self {
            account_id: account_id.to_owned(),
            hour: created_at.div_euclid(MS_PER_HOUR),
            carrier: carrier.unwrap_or_default().to_owned(),
            country: country.unwrap_or_default().to_owned(),
            message_type: message_type.to_owned(),
            sender: sender.unwrap_or_default().to_owned(),
        }
    }
}

#[derive(Default)]
struct Pending {
    /// (dimensions, status) → (messages, segments) to add.
    messages: HashMap<(Dimensions, Status), (i64, i64)>,
    /// (dimensions, bucket) → reports to add.
    latency: HashMap<(Dimensions, usize), i64>,
    /// Parts to add to each state's count.
    parts: [i64; Status::ALL.len()],
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

fn status_index(status: Status) -> usize {
    Status::ALL.iter().position(|&s| s == status).unwrap_or(0)
}

/// A new message, counted in its first status.
pub(super) fn message_added(dims: Dimensions, status: Status, segments: i64) {
    PENDING.with_borrow_mut(|p| {
        let entry = p.messages.entry((dims, status)).or_default();
        entry.0 += 1;
        entry.1 += segments;
        p.parts[status_index(status)] += segments;
    });
}

/// A message moved from `(from, old)` to `(to, new)`.
pub(super) fn message_moved(
    from: Dimensions,
    old: Status,
    to: Dimensions,
    new: Status,
    segments: i64,
) {
    PENDING.with_borrow_mut(|p| {
        let entry = p.messages.entry((from, old)).or_default();
        entry.0 -= 1;
        entry.1 -= segments;
        let entry = p.messages.entry((to, new)).or_default();
        entry.0 += 1;
        entry.1 += segments;
    });
}

/// Messages of `account_id` this transaction added from `since` (ms) on,
/// not yet in the table.
pub(super) fn messages_added_since(account_id: &str, since: i64) -> i64 {
    let hour = since.div_euclid(MS_PER_HOUR);
    PENDING.with_borrow(|p| {
        p.messages
            .iter()
            .filter(|((d, _), _)| d.account_id == account_id && d.hour >= hour)
            .map(|(_, (messages, _))| messages)
            .sum()
    })
}

/// `count` parts moved from `old` to `new`.
pub(super) fn parts_moved(old: Status, new: Status, count: i64) {
    PENDING.with_borrow_mut(|p| {
        p.parts[status_index(old)] -= count;
        p.parts[status_index(new)] += count;
    });
}

/// A final delivery report `latency_ms` after the carrier took the part.
pub(super) fn report_latency(dims: Dimensions, latency_ms: i64) {
    PENDING.with_borrow_mut(|p| {
        *p.latency
            .entry((dims, latency_bucket(latency_ms)))
            .or_default() += 1
    });
}

pub fn latency_bucket(latency_ms: i64) -> usize {
    let ms = latency_ms.max(1) as u64;
    (63 - ms.leading_zeros() as usize).min(LATENCY_BUCKETS - 1)
}

/// Drops what gathered (the transaction it belonged to rolled back).
pub(super) fn discard() {
    PENDING.with_borrow_mut(|p| *p = Pending::default());
}

/// Writes what gathered into the rollup tables, in the open transaction.
/// Returns the parts' state changes, for [`QueueDepth::apply`] once the
/// transaction has committed.
pub(super) fn flush(conn: &Connection) -> Result<[i64; Status::ALL.len()]> {
    let pending = PENDING.with_borrow_mut(std::mem::take);
    if !pending.messages.is_empty() {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO message_rollups (account_id, hour, carrier, country, type, sender, status, \
             messages, segments) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (account_id, hour, carrier, country, type, sender, status) DO UPDATE \
             SET messages = message_rollups.messages + excluded.messages, \
             segments = message_rollups.segments + excluded.segments",
        )?;
        // In one order on every node: two nodes' commits adding to the
        // same rows then wait for each other rather than deadlock.
        let mut rows: Vec<_> = pending.messages.iter().collect();
        rows.sort_by(|((a, x), _), ((b, y), _)| (a, x.as_str()).cmp(&(b, y.as_str())));
        for ((d, status), (messages, segments)) in rows {
            if *messages == 0 && *segments == 0 {
                continue;
            }
            upsert.execute(params![
                d.account_id,
                d.hour,
                d.carrier,
                d.country,
                d.message_type,
                d.sender,
                status.as_str(),
                messages,
                segments
            ])?;
        }
    }
    if !pending.latency.is_empty() {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO dlr_latency_rollups (account_id, hour, carrier, country, type, sender, \
             bucket, reports) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (account_id, hour, carrier, country, type, sender, bucket) DO UPDATE \
             SET reports = dlr_latency_rollups.reports + excluded.reports",
        )?;
        let mut rows: Vec<_> = pending.latency.iter().collect();
        rows.sort_by_key(|(a, _)| *a);
        for ((d, bucket), reports) in rows {
            upsert.execute(params![
                d.account_id,
                d.hour,
                d.carrier,
                d.country,
                d.message_type,
                d.sender,
                *bucket as i64,
                reports
            ])?;
        }
    }
    Ok(pending.parts)
}

/// Parts in each state, counted in memory from the database at start.
#[derive(Default)]
pub struct QueueDepth {
    parts: [AtomicI64; Status::ALL.len()],
}

impl QueueDepth {
    pub(super) fn load(conn: &Connection) -> Result<Self> {
        let depth = Self::default();
        let mut stmt = conn.prepare(
            "SELECT status, count(*) FROM parts \
             WHERE status IN ('queued', 'scheduled', 'sending', 'sent') GROUP BY status",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (status, count) = row?;
            let status = super::messages::parse_status(&status)?;
            depth.parts[status_index(status)].store(count, Ordering::Relaxed);
        }
        Ok(depth)
    }

    pub(super) fn apply(&self, deltas: &[i64; Status::ALL.len()]) {
        for (count, delta) in self.parts.iter().zip(deltas) {
            if *delta != 0 {
                count.fetch_add(*delta, Ordering::Relaxed);
            }
        }
    }

    /// Parts now in `status` (exact for the states still in progress).
    pub fn parts(&self, status: Status) -> i64 {
        self.parts[status_index(status)].load(Ordering::Relaxed)
    }
}

/// What a rollup query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Carrier,
    Country,
    Type,
    Status,
    Sender,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            Self::Carrier => "carrier",
            Self::Country => "country",
            Self::Type => "type",
            Self::Status => "status",
            Self::Sender => "sender",
        }
    }
}

/// One account, or every account.
#[derive(Debug, Clone)]
pub struct RollupQuery {
    pub account_id: Option<String>,
    /// Accepted at or after (ms).
    pub from: i64,
    /// Accepted before (ms).
    pub to: i64,
    /// Bucket width, a whole number of hours.
    pub bucket_hours: i64,
    pub group_by: GroupBy,
}

/// Messages of one bucket and group in one status, with the carrier and
/// country they went to (what their price depends on).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCount {
    pub bucket_start: i64,
    pub group: String,
    pub status: Status,
    pub carrier: String,
    pub country: String,
    pub messages: i64,
    pub segments: i64,
}

/// Delivery reports of one bucket and group in one latency bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyCount {
    pub bucket_start: i64,
    pub group: String,
    pub latency_bucket: usize,
    pub reports: i64,
}

fn query_sql(table: &str, query: &RollupQuery, select: &str, group: &str) -> String {
    let account = if query.account_id.is_some() {
        "account_id = ?4 AND"
    } else {
        "CAST(?4 AS TEXT) IS NULL AND"
    };
    format!(
        "SELECT (hour / ?3) * ?3 * {MS_PER_HOUR} AS time_bucket, {column}, {select} FROM {table} \
         WHERE {account} hour >= ?1 AND hour < ?2 GROUP BY time_bucket, {column}, {group} \
         ORDER BY time_bucket, {column}",
        column = query.group_by.column()
    )
}

fn hour_range(query: &RollupQuery) -> (i64, i64) {
    (
        query.from.div_euclid(MS_PER_HOUR),
        (query.to + MS_PER_HOUR - 1).div_euclid(MS_PER_HOUR),
    )
}

pub fn status_counts(conn: &Connection, query: &RollupQuery) -> Result<Vec<StatusCount>> {
    let (from, to) = hour_range(query);
    let sql = query_sql(
        "message_rollups",
        query,
        // PostgreSQL's SUM of a BIGINT is a NUMERIC: cast back.
        "status, carrier, country, CAST(SUM(messages) AS BIGINT), CAST(SUM(segments) AS BIGINT)",
        "status, carrier, country HAVING SUM(messages) != 0",
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![from, to, query.bucket_hours, query.account_id],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
            ))
        },
    )?;
    let mut counts = Vec::new();
    for row in rows {
        let (bucket_start, group, status, carrier, country, messages, segments) = row?;
        counts.push(StatusCount {
            bucket_start,
            group,
            status: super::messages::parse_status(&status)?,
            carrier,
            country,
            messages,
            segments,
        });
    }
    Ok(counts)
}

pub fn latency_counts(conn: &Connection, query: &RollupQuery) -> Result<Vec<LatencyCount>> {
    if query.group_by == GroupBy::Status {
        // Reports are not kept by status; the delivered ones are the
        // delivered group's.
        return Ok(Vec::new());
    }
    let (from, to) = hour_range(query);
    let sql = query_sql(
        "dlr_latency_rollups",
        query,
        "bucket, CAST(SUM(reports) AS BIGINT)",
        "bucket",
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![from, to, query.bucket_hours, query.account_id],
        |row| {
            Ok(LatencyCount {
                bucket_start: row.get(0)?,
                group: row.get(1)?,
                latency_bucket: row.get::<_, i64>(2)?.clamp(0, LATENCY_BUCKETS as i64 - 1) as usize,
                reports: row.get(3)?,
            })
        },
    )?;
    rows.collect::<Result<_>>()
}
