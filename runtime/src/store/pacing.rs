//! Slow pacing buckets kept across restarts. A bucket that refills slower
//! than once a second ("at most 3 a day") would start full again after a
//! restart; so when the dispatcher books one, the booking travels with the
//! submit results and is written in the same transaction (no write of its
//! own), and the dispatcher reloads the bookings at start.
//!
//! Bookings are appended in the order they are made (`pacing_bookings`),
//! so a commit writes the few pages at the log's end rather than one page
//! per recipient; the latest booking of a key is the one in force.

use super::db::{Connection, OptionalExtension, params};

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

/// A slow bucket booked in the store, as its pacing limit names it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedLimit {
    pub key: String,
    /// Time one part takes at the bucket's rate.
    pub interval_ms: i64,
    /// How far ahead of now the bucket may be booked: its burst's worth.
    pub burst_ms: i64,
}

/// What booking the store's buckets came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedBooking {
    /// Booked on every bucket: the parts go after this wait (ms).
    Booked { wait_ms: i64 },
    /// A bucket is booked too far ahead; nothing was booked. The parts
    /// can come back then (Unix ms).
    Refused { retry_at: i64 },
}

/// Books `parts` on every bucket of `limits` (the same token bucket as the
/// memory's, kept as the time it is booked until), all or none: when one
/// would make the parts wait past `patience_ms`, those booked already are
/// given back. Each bucket's row lock orders the nodes' bookings.
pub fn book_shared_buckets(
    conn: &Connection,
    limits: &[SharedLimit],
    parts: usize,
    now: i64,
    patience_ms: i64,
) -> Result<SharedBooking> {
    let mut limits: Vec<&SharedLimit> = limits.iter().collect();
    // One order for every node's transaction: no deadlock between two.
    limits.sort_by(|a, b| a.key.cmp(&b.key));
    let mut booked: Vec<(&SharedLimit, i64)> = Vec::new();
    let mut wait_ms = 0;
    let mut refused = None;
    for limit in limits {
        let cost = limit.interval_ms.saturating_mul(parts as i64);
        let latest = now + limit.burst_ms + patience_ms;
        let until: Option<i64> = if now + cost > latest {
            None
        } else {
            conn.prepare_cached(
                "INSERT INTO pacing_buckets (key, booked_until) \
                 VALUES (?1, CAST(?2 AS BIGINT) + CAST(?3 AS BIGINT)) \
                 ON CONFLICT (key) DO UPDATE SET booked_until = CASE \
                   WHEN pacing_buckets.booked_until > ?2 THEN pacing_buckets.booked_until \
                   ELSE ?2 END + ?3 \
                 WHERE CASE WHEN pacing_buckets.booked_until > ?2 \
                   THEN pacing_buckets.booked_until ELSE ?2 END + ?3 <= ?4 \
                 RETURNING booked_until",
            )?
            .query_row(params![limit.key, now, cost, latest], |row| row.get(0))
            .optional()?
        };
        match until {
            Some(until) => {
                wait_ms = wait_ms.max(until - limit.burst_ms - now);
                booked.push((limit, cost));
            }
            None => {
                let until: i64 = conn
                    .prepare_cached("SELECT booked_until FROM pacing_buckets WHERE key = ?1")?
                    .query_row([&limit.key], |row| row.get(0))
                    .optional()?
                    .unwrap_or(now);
                refused = Some(until.max(now) + cost - limit.burst_ms);
                break;
            }
        }
    }
    let Some(retry_at) = refused else {
        return Ok(SharedBooking::Booked {
            wait_ms: wait_ms.max(0),
        });
    };
    let mut give_back = conn.prepare_cached(
        "UPDATE pacing_buckets SET booked_until = booked_until - ?2 WHERE key = ?1",
    )?;
    for (limit, cost) in booked {
        give_back.execute(params![limit.key, cost])?;
    }
    Ok(SharedBooking::Refused { retry_at })
}

/// Removes some buckets that are full again at `now` (a row booked in the
/// past is the same as none), so the table holds the buckets in use.
pub fn prune_shared_buckets(conn: &Connection, now: i64) -> Result<usize> {
    conn.prepare_cached(
        "DELETE FROM pacing_buckets WHERE key IN \
         (SELECT key FROM pacing_buckets WHERE booked_until < ?1 LIMIT ?2)",
    )?
    .execute(params![now, PRUNE_BATCH])
}

/// What asking for a carrier's sending time came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarrierLease {
    /// The span up to this end (Unix ms) is the caller's.
    Granted { end: i64 },
    /// The carrier's time is leased out until then, past the caller's
    /// horizon: nothing was leased.
    Busy { booked_until: i64 },
}

/// Leases `length_ms` of `carrier`'s sending time: the span after all that
/// is leased so far, or from `floor` if that is later (time nobody leased
/// before `floor` is gone: the carrier's burst). Nothing is leased if that
/// span would start after `horizon`: time leased far ahead would sit idle.
/// The row's lock orders the nodes' leases, so no two spans overlap.
pub fn lease_carrier_time(
    conn: &Connection,
    carrier: &str,
    floor: i64,
    length_ms: i64,
    horizon: i64,
) -> Result<CarrierLease> {
    let end: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO carrier_timelines (carrier, booked_until) \
             VALUES (?1, CAST(?2 AS BIGINT) + CAST(?3 AS BIGINT)) \
             ON CONFLICT (carrier) DO UPDATE SET booked_until = CASE \
               WHEN carrier_timelines.booked_until > ?2 THEN carrier_timelines.booked_until \
               ELSE ?2 END + ?3 \
             WHERE carrier_timelines.booked_until <= ?4 \
             RETURNING booked_until",
        )?
        .query_row(params![carrier, floor, length_ms, horizon], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(match end {
        Some(end) => CarrierLease::Granted { end },
        None => CarrierLease::Busy {
            booked_until: conn
                .prepare_cached("SELECT booked_until FROM carrier_timelines WHERE carrier = ?1")?
                .query_row([carrier], |row| row.get(0))?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_time_is_leased_in_turn_and_not_too_far_ahead() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            let lease =
                |floor, horizon| lease_carrier_time(conn, "c", floor, 250, horizon).unwrap();
            assert_eq!(lease(1_000, 2_000), CarrierLease::Granted { end: 1_250 });
            // The next lease follows the last, wherever the floor is.
            assert_eq!(lease(900, 2_000), CarrierLease::Granted { end: 1_500 });
            // Time nobody leased before the floor is gone.
            assert_eq!(lease(5_000, 6_000), CarrierLease::Granted { end: 5_250 });
            // Leased out past the horizon: nothing more.
            assert_eq!(
                lease(5_000, 5_100),
                CarrierLease::Busy {
                    booked_until: 5_250
                }
            );
            assert_eq!(lease(5_000, 5_300), CarrierLease::Granted { end: 5_500 });
        }
    }

    #[test]
    fn shared_buckets_book_all_or_none_and_say_when_to_come_back() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            let hourly = |key: &str| SharedLimit {
                key: key.into(),
                interval_ms: 1_000,
                burst_ms: 2_000,
            };
            let book = |limits: &[SharedLimit], now| {
                book_shared_buckets(conn, limits, 1, now, 100).unwrap()
            };
            let both = [hourly("a"), hourly("b")];
            assert_eq!(book(&both, 0), SharedBooking::Booked { wait_ms: 0 });
            assert_eq!(book(&both[..1], 0), SharedBooking::Booked { wait_ms: 0 });
            // "a" is empty: booking both gives "b" back.
            assert_eq!(book(&both, 0), SharedBooking::Refused { retry_at: 1_000 });
            let b: i64 = conn
                .query_row(
                    "SELECT booked_until FROM pacing_buckets WHERE key = 'b'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(b, 1_000, "the refused booking of b was given back");
            // Within the patience: booked, with the wait.
            assert_eq!(book(&both, 950), SharedBooking::Booked { wait_ms: 50 });
            // Full again long after: the spent rows go.
            assert_eq!(prune_shared_buckets(conn, 10_000).unwrap(), 2);
            assert_eq!(book(&both, 10_000), SharedBooking::Booked { wait_ms: 0 });
        }
    }

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
