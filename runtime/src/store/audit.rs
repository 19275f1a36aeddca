//! The audit trail's table (see `compliance::audit`).

use super::db::{Connection, params};

use super::Result;
use crate::compliance::audit::{AuditEntry, AuditQuery};

/// Appends `entry` (its `id` is ignored) and returns the id given.
pub fn insert(conn: &Connection, entry: &AuditEntry) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, account_id, key_id, role, client_ip, action, target, summary) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    )?
    .query_row(
        params![
            entry.at,
            entry.account_id,
            entry.key_id,
            entry.role,
            entry.client_ip,
            entry.action,
            entry.target,
            entry.summary.to_string(),
        ],
        |row| row.get(0),
    )
}

/// Entries matching `query`, newest first.
pub fn list(conn: &Connection, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, account_id, key_id, role, client_ip, action, target, summary \
         FROM audit_log \
         WHERE (CAST(?1 AS TEXT) IS NULL OR account_id = ?1) AND (CAST(?2 AS BIGINT) IS NULL OR at >= ?2) \
         AND (CAST(?3 AS TEXT) IS NULL OR action = ?3) AND (CAST(?4 AS TEXT) IS NULL OR key_id = ?4) \
         AND (CAST(?5 AS BIGINT) IS NULL OR id < ?5) \
         ORDER BY id DESC LIMIT ?6",
    )?;
    let rows = stmt.query_map(
        params![
            query.account_id,
            query.since,
            query.action,
            query.key_id,
            query.before,
            query.limit as i64
        ],
        |row| {
            let summary: String = row.get(8)?;
            Ok(AuditEntry {
                id: row.get(0)?,
                at: row.get(1)?,
                account_id: row.get(2)?,
                key_id: row.get(3)?,
                role: row.get(4)?,
                client_ip: row.get(5)?,
                action: row.get(6)?,
                target: row.get(7)?,
                summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
            })
        },
    )?;
    rows.collect::<Result<_>>()
}

/// Deletes entries older than `before` (ms), at most `limit` of them.
pub fn delete_older_than(conn: &Connection, before: i64, limit: usize) -> Result<usize> {
    conn.prepare_cached(
        "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)",
    )?
    .execute(params![before, limit as i64])
}
