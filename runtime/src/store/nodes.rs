//! The nodes sharing a database: each says it is alive now and then, and
//! the parts a node claimed go back to the queue once it has not been seen
//! for a lease. Also the caches' versions, which nodes poll.

use super::Result;
use super::db::{Connection, Engine, OptionalExtension, params};
use super::messages::{PartChange, change_part};
use crate::model::Status;

/// Records `node` as alive at `now` (and started then, if new). Returns
/// false when its row was gone: another node found it dead and may have
/// requeued what it was sending.
pub fn heartbeat(conn: &Connection, node: &str, now: i64) -> Result<bool> {
    let updated = conn
        .prepare_cached("UPDATE nodes SET seen_at = ?2 WHERE id = ?1")?
        .execute(params![node, now])?;
    if updated == 0 {
        conn.prepare_cached("INSERT INTO nodes (id, started_at, seen_at) VALUES (?1, ?2, ?2)")?
            .execute(params![node, now])?;
    }
    Ok(updated == 1)
}

/// Takes `node` off the list (a clean stop: it holds no claims).
pub fn leave(conn: &Connection, node: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?
        .execute([node])?;
    Ok(())
}

/// The nodes seen since `since`, this one included.
pub fn live_nodes(conn: &Connection, since: i64) -> Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM nodes WHERE seen_at >= ?1")?
        .query_row([since], |row| row.get(0))
}

/// How many nodes seen since `since` have an id before `node`'s: its
/// place among the live nodes, from 0.
pub fn place_among_live(conn: &Connection, node: &str, since: i64) -> Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM nodes WHERE seen_at >= ?1 AND id < ?2")?
        .query_row(params![since, node], |row| row.get(0))
}

/// What joining found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// Parts requeued: left in `sending` by nodes that are gone.
    pub requeued: usize,
    /// When this node's id was last seen alive before (its previous run).
    pub last_seen: Option<i64>,
}

/// Registers `node` at start, first requeuing what was left in `sending`
/// by nodes that are gone: by this node's own previous run (its id is kept
/// with its data directory), by nodes not seen for `lease_ms`, and, when no
/// other node is alive, every such part (on SQLite that is always so: its
/// file has one node).
pub fn join(conn: &Connection, node: &str, now: i64, lease_ms: i64) -> Result<Joined> {
    let since = match conn.engine() {
        Engine::Sqlite => i64::MAX,
        Engine::Postgres => {
            // Nodes join one at a time, so a node starting sees one that
            // started just before it (and may already be claiming).
            conn.execute_batch("SELECT pg_advisory_xact_lock(7466)")?;
            now - lease_ms
        }
    };
    let last_seen: Option<i64> = conn
        .prepare_cached("SELECT seen_at FROM nodes WHERE id = ?1")?
        .query_row([node], |row| row.get(0))
        .optional()?;
    // This node's previous run is over, however recently it was seen.
    conn.prepare_cached("UPDATE nodes SET seen_at = -1 WHERE id = ?1")?
        .execute([node])?;
    let alone = live_nodes(conn, since)? == 0;
    let requeued = requeue_dead_claims(conn, since, now, alone)?;
    heartbeat(conn, node, now)?;
    Ok(Joined {
        requeued,
        last_seen,
    })
}

/// Requeues the parts claimed by every node not seen since `since` (with
/// `every_part`, every part in `sending`) and forgets those nodes. Returns
/// the parts requeued. The carrier may or may not have taken them; parts
/// recorded `sent` stay as they are, so nothing acknowledged goes twice.
pub fn requeue_dead_claims(
    conn: &Connection,
    since: i64,
    now: i64,
    every_part: bool,
) -> Result<usize> {
    let dead: Vec<String> = conn
        .prepare_cached("SELECT id FROM nodes WHERE seen_at < ?1")?
        .query_map([since], |row| row.get(0))?
        .collect::<Result<_>>()?;
    if dead.is_empty() && !every_part {
        return Ok(0);
    }
    // A scan of the parts, but only when a node died or one starts alone.
    let claims: Vec<(String, i64, Option<String>)> = conn
        .prepare("SELECT message_id, idx, claimed_by FROM parts WHERE status = 'sending'")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_>>()?;
    let mut requeued = 0;
    for (message_id, index, claimed_by) in &claims {
        if !every_part && !claimed_by.as_ref().is_some_and(|node| dead.contains(node)) {
            continue;
        }
        let mut change = PartChange::new(message_id, *index, Status::Queued, now);
        change.due_at = Some(now);
        change.detail = Some("requeued: interrupted before the carrier acknowledged it");
        change.previous = Some(Status::Sending);
        if change_part(conn, &change, None)? {
            requeued += 1;
        }
    }
    for node in &dead {
        leave(conn, node)?;
    }
    Ok(requeued)
}

/// Each cache's version (see `schema::CACHE_TRIGGERS`).
pub fn cache_versions(conn: &Connection) -> Result<Vec<(String, i64)>> {
    conn.prepare_cached("SELECT name, version FROM cache_versions")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_nodes_claims_are_requeued_and_a_live_ones_kept() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            assert!(!heartbeat(conn, "node_a", 1_000).unwrap());
            assert!(!heartbeat(conn, "node_b", 1_000).unwrap());
            assert!(heartbeat(conn, "node_b", 20_000).unwrap());
            assert_eq!(live_nodes(conn, 10_000).unwrap(), 1);
            assert_eq!(place_among_live(conn, "node_b", 0).unwrap(), 1);
            assert_eq!(place_among_live(conn, "node_b", 10_000).unwrap(), 0);
            // Nothing claimed: the dead node is forgotten all the same.
            assert_eq!(requeue_dead_claims(conn, 10_000, 20_000, false).unwrap(), 0);
            assert_eq!(live_nodes(conn, 0).unwrap(), 1);
            leave(conn, "node_b").unwrap();
            assert_eq!(live_nodes(conn, 0).unwrap(), 0);
            // A restart under the same id takes back its own claims at once.
            let joined = join(conn, "node_c", 30_000, 10_000).unwrap();
            assert_eq!(
                joined,
                Joined {
                    requeued: 0,
                    last_seen: None
                }
            );
            let again = join(conn, "node_c", 31_000, 10_000).unwrap();
            assert_eq!(again.last_seen, Some(30_000));
            let versions = cache_versions(conn).unwrap();
            assert_eq!(versions.len(), 3, "{versions:?}");
        }
    }
}
