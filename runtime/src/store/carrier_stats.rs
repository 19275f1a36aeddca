//! Carriers' statistics by minute, when several nodes share the database:
//! each node adds what it counted (submissions, final reports, report
//! latency) to the minute's row, and reads the rows back, so that routing
//! on every node sees the carrier's figures from all of them
//! (`carriers::stats`, `cluster.rs`).

use super::Result;
use super::db::{Connection, params};

/// What a carrier's submissions and reports came to in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarrierMinute {
    /// Unix minute.
    pub minute: i64,
    pub accepted: i64,
    pub errors: i64,
    pub delivered: i64,
    pub not_delivered: i64,
    /// Final reports by latency bucket (log2 of ms), where not zero.
    pub latency: Vec<(usize, i64)>,
}

/// Adds `minutes` of `carrier` to the rows kept.
pub fn add_carrier_minutes(
    conn: &Connection,
    carrier: &str,
    minutes: &[CarrierMinute],
) -> Result<()> {
    let mut counts = conn.prepare_cached(
        "INSERT INTO carrier_minutes (carrier, minute, accepted, errors, delivered, not_delivered) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (carrier, minute) DO UPDATE SET \
         accepted = carrier_minutes.accepted + excluded.accepted, \
         errors = carrier_minutes.errors + excluded.errors, \
         delivered = carrier_minutes.delivered + excluded.delivered, \
         not_delivered = carrier_minutes.not_delivered + excluded.not_delivered",
    )?;
    let mut latency = conn.prepare_cached(
        "INSERT INTO carrier_latency_minutes (carrier, minute, bucket, reports) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (carrier, minute, bucket) DO UPDATE SET \
         reports = carrier_latency_minutes.reports + excluded.reports",
    )?;
    for m in minutes {
        counts.execute(params![
            carrier,
            m.minute,
            m.accepted,
            m.errors,
            m.delivered,
            m.not_delivered
        ])?;
        for (bucket, reports) in &m.latency {
            latency.execute(params![carrier, m.minute, *bucket as i64, reports])?;
        }
    }
    Ok(())
}

/// Every carrier's minutes from `since` (a Unix minute) on, by carrier.
pub fn carrier_minutes_since(
    conn: &Connection,
    since: i64,
) -> Result<Vec<(String, CarrierMinute)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT carrier, minute, accepted, errors, delivered, not_delivered FROM carrier_minutes \
         WHERE minute >= ?1 ORDER BY carrier, minute",
    )?;
    let mut minutes: Vec<(String, CarrierMinute)> = stmt
        .query_map([since], |row| {
            Ok((
                row.get(0)?,
                CarrierMinute {
                    minute: row.get(1)?,
                    accepted: row.get(2)?,
                    errors: row.get(3)?,
                    delivered: row.get(4)?,
                    not_delivered: row.get(5)?,
                    latency: Vec::new(),
                },
            ))
        })?
        .collect::<Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT carrier, minute, bucket, reports FROM carrier_latency_minutes WHERE minute >= ?1",
    )?;
    let mut rows = stmt.query([since])?;
    while let Some(row) = rows.next()? {
        let (carrier, minute): (String, i64) = (row.get(0)?, row.get(1)?);
        let (bucket, reports): (i64, i64) = (row.get(2)?, row.get(3)?);
        let found =
            minutes.binary_search_by(|(c, m)| (c.as_str(), m.minute).cmp(&(&carrier, minute)));
        if let Ok(at) = found {
            minutes[at].1.latency.push((bucket as usize, reports));
        }
    }
    Ok(minutes)
}

/// Removes the minutes before `before` (a Unix minute): past the longest
/// window routing reads.
pub fn prune_carrier_minutes(conn: &Connection, before: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM carrier_minutes WHERE minute < ?1")?
        .execute([before])?;
    conn.prepare_cached("DELETE FROM carrier_latency_minutes WHERE minute < ?1")?
        .execute([before])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_minutes_add_up_and_old_ones_go() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            let minute = |minute, accepted, latency: Vec<(usize, i64)>| CarrierMinute {
                minute,
                accepted,
                delivered: accepted,
                latency,
                ..CarrierMinute::default()
            };
            add_carrier_minutes(
                conn,
                "a",
                &[minute(10, 2, vec![(7, 2)]), minute(11, 1, vec![])],
            )
            .unwrap();
            // Another node's count of the same minute.
            add_carrier_minutes(conn, "a", &[minute(11, 3, vec![(7, 1), (9, 2)])]).unwrap();
            add_carrier_minutes(conn, "b", &[minute(11, 5, vec![])]).unwrap();
            let mut read = carrier_minutes_since(conn, 11).unwrap();
            read.iter_mut().for_each(|(_, m)| m.latency.sort());
            assert_eq!(
                read,
                [
                    ("a".to_owned(), minute(11, 4, vec![(7, 1), (9, 2)])),
                    ("b".to_owned(), minute(11, 5, vec![])),
                ]
            );
            prune_carrier_minutes(conn, 11).unwrap();
            assert_eq!(carrier_minutes_since(conn, 0).unwrap().len(), 2);
        }
    }
}
