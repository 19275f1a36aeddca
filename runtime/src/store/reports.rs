//! Delivery reports from carriers. A report may name a carrier id we have
//! not recorded yet (the report beat the submit answer): it is kept and
//! applied once that id is recorded. Duplicates and late reports never move
//! a part backwards.

use super::db::{Connection, OptionalExtension, params};

use super::Result;
use super::messages::{PartChange, change_part, parse_status};
use super::rollups::{self, Dimensions};
use crate::model::Status;

/// A final report applied to its part after it waited for the part's
/// carrier id, for the carrier's statistics once committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEarly {
    pub carrier: String,
    pub status: Status,
    pub latency_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    Enroute,
    Delivered,
    Expired,
    Undeliverable,
    Rejected,
    Unknown,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enroute => "enroute",
            Self::Delivered => "delivered",
            Self::Expired => "expired",
            Self::Undeliverable => "undeliverable",
            Self::Rejected => "rejected",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Enroute,
            Self::Delivered,
            Self::Expired,
            Self::Undeliverable,
            Self::Rejected,
            Self::Unknown,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// The part state a report leads to; `None` for reports that are not final.
    fn part_status(self) -> Option<Status> {
        match self {
            Self::Delivered => Some(Status::Delivered),
            Self::Expired => Some(Status::Expired),
            Self::Undeliverable | Self::Rejected => Some(Status::Undelivered),
            Self::Enroute | Self::Unknown => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub carrier: String,
    pub carrier_message_id: String,
    pub state: ReportState,
    pub error_code: Option<String>,
    pub raw_status: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The part is now `status`; the report reached us `latency_ms` after
    /// the carrier took the part.
    Applied {
        status: Status,
        latency_ms: Option<i64>,
    },
    /// Duplicate, out of order, or not final: kept out of the part's state.
    Ignored,
    /// No part has this carrier id yet; kept for when one does.
    Early,
}

/// The part a carrier id names (served by the `parts_by_carrier_id` index).
pub(super) const PART_BY_CARRIER_ID: &str = "SELECT p.message_id, p.idx, m.segments, p.sent_at, \
     m.account_id, m.created_at, m.country, m.type, m.sender, p.status \
     FROM parts p JOIN messages m ON m.id = p.message_id \
     WHERE p.carrier = ?1 AND p.carrier_message_id = ?2";

pub fn apply_report(conn: &Connection, report: &DeliveryReport, now: i64) -> Result<ReportOutcome> {
    let part = conn
        .prepare_cached(PART_BY_CARRIER_ID)?
        .query_row(params![report.carrier, report.carrier_message_id], |row| {
            let dims = Dimensions::new(
                &row.get::<_, String>(4)?,
                row.get(5)?,
                Some(&report.carrier),
                row.get::<_, Option<String>>(6)?.as_deref(),
                &row.get::<_, String>(7)?,
                row.get::<_, Option<String>>(8)?.as_deref(),
            );
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
                dims,
                row.get::<_, String>(9)?,
            ))
        })
        .optional()?;
    let Some((message_id, index, segments, sent_at, dims, previous)) = part else {
        conn.prepare_cached(
            "INSERT INTO early_reports (carrier, carrier_message_id, state, error_code, raw_status, at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            report.carrier,
            report.carrier_message_id,
            report.state.as_str(),
            report.error_code,
            report.raw_status,
            report.at,
            now
        ])?;
        return Ok(ReportOutcome::Early);
    };
    let Some(status) = report.state.part_status() else {
        return Ok(ReportOutcome::Ignored);
    };
    let detail = report
        .raw_status
        .as_deref()
        .map(|raw| format!("carrier status {raw}"));
    let mut change = PartChange::new(&message_id, index, status, report.at);
    change.carrier = Some(&report.carrier);
    change.error_code = report.error_code.as_deref();
    change.detail = detail.as_deref();
    change.previous = Some(parse_status(&previous)?);
    Ok(if change_part(conn, &change, Some(segments))? {
        let latency_ms = sent_at.map(|sent| (now - sent).max(0));
        if let (Some(latency_ms), true) = (latency_ms, status.is_final()) {
            rollups::report_latency(dims, latency_ms);
        }
        ReportOutcome::Applied { status, latency_ms }
    } else {
        ReportOutcome::Ignored
    })
}

/// How long a report for an unknown carrier id is kept for its part to
/// turn up (a report that beats the submit answer does so by seconds).
pub const EARLY_REPORT_TTL_MS: i64 = 3_600_000;
/// Most such reports kept; the oldest go first.
pub const MAX_EARLY_REPORTS: i64 = 10_000;

/// Drops early reports older than [`EARLY_REPORT_TTL_MS`] and all but the
/// newest [`MAX_EARLY_REPORTS`]: a carrier (or someone with its callback
/// URL) reporting ids Pigeon never sent must not grow the table for ever.
/// Returns how many were dropped.
pub fn prune_early_reports(conn: &Connection, now: i64) -> Result<usize> {
    let expired = conn
        .prepare_cached("DELETE FROM early_reports WHERE received_at < ?1")?
        .execute([now - EARLY_REPORT_TTL_MS])?;
    let excess = conn
        .prepare_cached(
            "DELETE FROM early_reports WHERE (carrier, carrier_message_id, received_at) IN \
             (SELECT carrier, carrier_message_id, received_at FROM early_reports \
              ORDER BY received_at DESC LIMIT ?2 OFFSET ?1)",
        )?
        .execute([MAX_EARLY_REPORTS, i64::MAX])?;
    Ok(expired + excess)
}

/// Applies reports that arrived before `carrier_message_id` was recorded;
/// returns the final ones.
pub(super) fn apply_early_reports(
    conn: &Connection,
    carrier: &str,
    carrier_message_id: &str,
    now: i64,
) -> Result<Vec<AppliedEarly>> {
    let waiting: Vec<DeliveryReport> = conn
        .prepare_cached(
            "SELECT state, error_code, raw_status, at FROM early_reports \
             WHERE carrier = ?1 AND carrier_message_id = ?2 ORDER BY at",
        )?
        .query_map(params![carrier, carrier_message_id], |row| {
            let state: String = row.get(0)?;
            Ok(DeliveryReport {
                carrier: carrier.to_owned(),
                carrier_message_id: carrier_message_id.to_owned(),
                state: ReportState::parse(&state).unwrap_or(ReportState::Unknown),
                error_code: row.get(1)?,
                raw_status: row.get(2)?,
                at: row.get(3)?,
            })
        })?
        .collect::<Result<_>>()?;
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    conn.prepare_cached(
        "DELETE FROM early_reports WHERE carrier = ?1 AND carrier_message_id = ?2",
    )?
    .execute(params![carrier, carrier_message_id])?;
    let mut applied = Vec::new();
    for report in &waiting {
        if let ReportOutcome::Applied { status, latency_ms } = apply_report(conn, report, now)?
            && status.is_final()
        {
            applied.push(AppliedEarly {
                carrier: carrier.to_owned(),
                status,
                latency_ms,
            });
        }
    }
    Ok(applied)
}

/// Applies the early reports whose part has been recorded since. A node
/// recording a carrier id looks for early reports in its transaction; a
/// report that another node kept in a transaction running at the same time
/// is not seen there, and is applied by this sweep instead (cluster.rs runs
/// it every second on a shared database). Returns the final ones applied.
pub fn apply_matched_early_reports(conn: &Connection, now: i64) -> Result<Vec<AppliedEarly>> {
    let matched: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT DISTINCT e.carrier, e.carrier_message_id FROM early_reports e \
             WHERE EXISTS (SELECT 1 FROM parts p WHERE p.carrier = e.carrier \
                           AND p.carrier_message_id = e.carrier_message_id)",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_>>()?;
    let mut applied = Vec::new();
    for (carrier, carrier_message_id) in &matched {
        applied.extend(apply_early_reports(conn, carrier, carrier_message_id, now)?);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn early_count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM early_reports", [], |row| row.get(0))
            .unwrap()
    }

    fn report_for_nobody(id: usize) -> DeliveryReport {
        DeliveryReport {
            carrier: "sim".into(),
            carrier_message_id: format!("nobody-{id}"),
            state: ReportState::Delivered,
            error_code: None,
            raw_status: None,
            at: 0,
        }
    }

    #[test]
    fn early_reports_expire_and_are_bounded_in_number() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            let now = 1_000_000_000;
            for id in 0..3 {
                let outcome = apply_report(conn, &report_for_nobody(id), now).unwrap();
                assert_eq!(outcome, ReportOutcome::Early);
            }
            assert_eq!(prune_early_reports(conn, now + 1).unwrap(), 0);
            assert_eq!(early_count(conn), 3);
            assert_eq!(
                prune_early_reports(conn, now + EARLY_REPORT_TTL_MS + 1).unwrap(),
                3
            );
            assert_eq!(early_count(conn), 0);

            let extra = 25;
            for id in 0..MAX_EARLY_REPORTS as usize + extra {
                apply_report(conn, &report_for_nobody(id), now + id as i64).unwrap();
            }
            assert_eq!(prune_early_reports(conn, now).unwrap(), extra);
            assert_eq!(early_count(conn), MAX_EARLY_REPORTS);
            // The oldest went.
            let oldest: String = conn
                .query_row(
                    "SELECT carrier_message_id FROM early_reports ORDER BY received_at LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(oldest, format!("nobody-{extra}"));
        }
    }
}
