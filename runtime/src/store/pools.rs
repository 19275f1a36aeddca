//! Sender pools' rows and the sticky sender of each recipient (the domain
//! types are in `numbers::pools`).

use super::db::{Connection, OptionalExtension, params};

use super::{Result, StoreError};
use crate::numbers::pools::{Fallback, SenderPool};

const COLUMNS: &str = "SELECT id, account_id, name, sticky_sender, geo_match, fallback, \
                       inbound_url, created_at, updated_at FROM sender_pools";

/// Writes a pool, new or changed.
pub fn save_pool(conn: &Connection, pool: &SenderPool) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sender_pools (id, account_id, name, sticky_sender, geo_match, fallback, \
         inbound_url, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         sticky_sender = excluded.sticky_sender, geo_match = excluded.geo_match, \
         fallback = excluded.fallback, inbound_url = excluded.inbound_url, \
         updated_at = excluded.updated_at",
    )?
    .execute(params![
        pool.id,
        pool.account_id,
        pool.name,
        pool.sticky_sender,
        pool.geo_match,
        pool.fallback.as_str(),
        pool.inbound_url,
        pool.created_at,
        pool.updated_at,
    ])?;
    Ok(())
}

/// The account's pool `id`.
pub fn get_pool(conn: &Connection, account_id: &str, id: &str) -> Result<Option<SenderPool>> {
    let found = conn
        .prepare_cached(&format!("{COLUMNS} WHERE id = ?1 AND account_id = ?2"))?
        .query_row(params![id, account_id], from_row)
        .optional()?;
    found.transpose()
}

pub fn list_pools(conn: &Connection, account_id: &str) -> Result<Vec<SenderPool>> {
    let mut stmt = conn.prepare_cached(&format!("{COLUMNS} WHERE account_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([account_id], from_row)?;
    rows.map(|row| row?).collect()
}

/// Deletes the account's pool; its numbers stay the account's, out of any
/// pool, and an account default that named it is cleared.
pub fn delete_pool(conn: &Connection, account_id: &str, id: &str) -> Result<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM sender_pools WHERE id = ?1 AND account_id = ?2")?
        .execute(params![id, account_id])?;
    if deleted == 0 {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE numbers SET pool_id = NULL WHERE pool_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM sticky_senders WHERE pool_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("UPDATE accounts SET default_pool = NULL WHERE default_pool = ?1")?
        .execute([id])?;
    Ok(true)
}

/// The number `recipient` got from the pool last time.
pub fn sticky_sender(conn: &Connection, pool_id: &str, recipient: &str) -> Result<Option<String>> {
    conn.prepare_cached(
        "SELECT number_id FROM sticky_senders WHERE pool_id = ?1 AND recipient = ?2",
    )?
    .query_row(params![pool_id, recipient], |row| row.get(0))
    .optional()
}

pub fn set_sticky_sender(
    conn: &Connection,
    pool_id: &str,
    recipient: &str,
    number_id: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sticky_senders (pool_id, recipient, number_id, updated_at) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (pool_id, recipient) DO UPDATE SET \
         number_id = excluded.number_id, updated_at = excluded.updated_at \
         WHERE sticky_senders.number_id <> excluded.number_id",
    )?
    .execute(params![pool_id, recipient, number_id, now])?;
    Ok(())
}

fn from_row(row: &super::db::Row<'_>) -> Result<Result<SenderPool>> {
    let fallback: String = row.get(5)?;
    let Some(fallback) = Fallback::parse(&fallback) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "unknown pool fallback {fallback:?}"
        ))));
    };
    Ok(Ok(SenderPool {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        sticky_sender: row.get(3)?,
        geo_match: row.get(4)?,
        fallback,
        inbound_url: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    }))
}
