//! Slow pacing buckets kept across restarts. A bucket that refills slower
//! than once a second ("at most 3 a day") would start full again after a
//! restart; so when the dispatcher books one, the booking travels with the
//! submit results and is written in the same transaction (no write of its
//! own), and the dispatcher reloads the bookings at start.

use rusqlite::{Connection, params};

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
const PRUNE_BATCH: i64 = 100;

pub fn save_bookings(conn: &Connection, bookings: &[PacingBooking], now: i64) -> Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO pacing_state (key, rate, burst, booked_until) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (key) DO UPDATE SET rate = excluded.rate, burst = excluded.burst, \
         booked_until = MAX(booked_until, excluded.booked_until)",
    )?;
    for b in bookings {
        upsert.execute(params![b.key, b.rate, b.burst, b.booked_until])?;
    }
    conn.prepare_cached(
        "DELETE FROM pacing_state WHERE key IN \
         (SELECT key FROM pacing_state WHERE booked_until < ?1 LIMIT ?2)",
    )?
    .execute(params![now, PRUNE_BATCH])?;
    Ok(())
}

/// The bookings still in force at `now`.
pub fn saved_bookings(conn: &Connection, now: i64) -> Result<Vec<PacingBooking>> {
    let mut stmt = conn.prepare(
        "SELECT key, rate, burst, booked_until FROM pacing_state WHERE booked_until > ?1",
    )?;
    let rows = stmt.query_map([now], |row| {
        Ok(PacingBooking {
            key: row.get(0)?,
            rate: row.get(1)?,
            burst: row.get(2)?,
            booked_until: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
