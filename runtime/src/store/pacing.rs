//! Slow pacing buckets kept across restarts. A bucket that refills slower
//! than once a second ("at most 3 a day") would start full again after a
//! restart; so when the dispatcher books one, the booking travels with the
//! submit results and is written in the same transaction (no write of its
//! own), and the dispatcher reloads the bookings at start.
//!
//! Bookings are appended in the order they are made (`pacing_bookings`),
//! so a commit writes the few pages at the log's end rather than one page
//! per recipient; the latest booking of a key is the one in force.

use super::db::{Connection, params};

use super::Result;

/// One bucket: its rate and burst, and until when it is booked (Unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct PacingBooking {
    pub key: String,
    /// Parts per second.
    pub rate: f64,
    pub burst: u32,
    pub booked_until: i64,
}

/// Expired bookings removed per write, so the table holds the keys in use.
const PRUNE_BATCH: i64 = 1000;

/// Appends `bookings`.
pub fn save_bookings(conn: &Connection, bookings: &[PacingBooking]) -> Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO pacing_bookings (key, rate, burst, booked_until) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for b in bookings {
        insert.execute(params![b.key, b.rate, b.burst, b.booked_until])?;
    }
    Ok(())
}

/// Removes some bookings that ran out before `now` (call once per write
/// that saves bookings), so the log holds about what is in force.
pub fn prune_bookings(conn: &Connection, now: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM pacing_bookings WHERE seq IN \
         (SELECT seq FROM pacing_bookings WHERE booked_until < ?1 LIMIT ?2)",
    )?
    .execute(params![now, PRUNE_BATCH])?;
    Ok(())
}

/// The bookings still in force at `now`, the latest of each key.
pub fn saved_bookings(conn: &Connection, now: i64) -> Result<Vec<PacingBooking>> {
    let mut stmt = conn.prepare(
        "SELECT key, rate, burst, booked_until FROM (SELECT key, rate, burst, booked_until, \
         ROW_NUMBER() OVER (PARTITION BY key ORDER BY booked_until DESC, seq DESC) AS latest \
         FROM pacing_bookings WHERE booked_until > ?1) AS bookings WHERE latest = 1",
    )?;
    let rows = stmt.query_map([now], |row| {
        Ok(PacingBooking {
            key: row.get(0)?,
            rate: row.get(1)?,
            burst: row.get(2)?,
            booked_until: row.get(3)?,
        })
    })?;
    rows.collect::<Result<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(key: &str, booked_until: i64) -> PacingBooking {
        PacingBooking {
            key: key.into(),
            rate: 1.0 / 3600.0,
            burst: 5,
            booked_until,
        }
    }

    #[test]
    fn the_latest_booking_of_a_key_is_in_force_and_spent_ones_go() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            save_bookings(conn, &[booking("a", 2_000), booking("b", 500)]).unwrap();
            save_bookings(conn, &[booking("a", 3_000)]).unwrap();
            assert_eq!(saved_bookings(conn, 1_000).unwrap(), [booking("a", 3_000)]);
            prune_bookings(conn, 1_000).unwrap();
            let left: i64 = conn
                .query_row("SELECT count(*) FROM pacing_bookings", [], |r| r.get(0))
                .unwrap();
            assert_eq!(left, 2, "the spent booking of b is gone");
        }
    }
}
