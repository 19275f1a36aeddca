//! The number inventory's rows (the domain types are in
//! `numbers::inventory`).

use super::db::{Connection, OptionalExtension, params};

use super::{Result, StoreError};
use crate::numbers::inventory::{Capability, NumberRecord, SenderKind};

const COLUMNS: &str = "SELECT id, sender, kind, country, carrier, capabilities, account_id, \
                       inbound_url, created_at, pool_id, sms_url FROM numbers";

/// Adds a sender; `false` when the same sender of that country exists.
pub fn insert_number(conn: &Connection, number: &NumberRecord) -> Result<bool> {
    let capabilities: Vec<&str> = number.capabilities.iter().map(|c| c.as_str()).collect();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO numbers (id, sender, kind, country, carrier, capabilities, account_id, \
             inbound_url, created_at, pool_id, sms_url) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (sender, country) DO NOTHING",
        )?
        .execute(params![
            number.id,
            number.sender,
            number.kind.as_str(),
            number.country,
            number.carrier,
            capabilities.join(","),
            number.account_id,
            number.inbound_url,
            number.created_at,
            number.pool_id,
            number.sms_url,
        ])?;
    Ok(inserted == 1)
}

pub fn get_number(conn: &Connection, id: &str) -> Result<Option<NumberRecord>> {
    conn.prepare_cached(&format!("{COLUMNS} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

/// What a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct NumberFilter {
    /// Only this account's numbers; with `available`, also the unowned ones.
    pub account_id: Option<String>,
    /// Only unowned numbers (with `account_id`: the account's own too).
    pub available: bool,
    pub country: Option<String>,
    pub kind: Option<SenderKind>,
}

pub fn list_numbers(conn: &Connection, filter: &NumberFilter) -> Result<Vec<NumberRecord>> {
    let owner = match (&filter.account_id, filter.available) {
        (Some(_), true) => "(account_id IS NULL OR account_id = ?1)",
        (Some(_), false) => "account_id = ?1",
        // ?1 (NULL here) is named all the same: PostgreSQL types every
        // parameter it is given.
        (None, true) => "(account_id IS NULL AND CAST(?1 AS TEXT) IS NULL)",
        (None, false) => "(CAST(?1 AS TEXT) IS NULL)",
    };
    let sql = format!(
        "{COLUMNS} WHERE {owner} AND (CAST(?2 AS TEXT) IS NULL OR country = ?2) AND (CAST(?3 AS TEXT) IS NULL OR kind = ?3) \
         ORDER BY id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            filter.account_id,
            filter.country,
            filter.kind.map(SenderKind::as_str)
        ],
        from_row,
    )?;
    rows.collect::<Result<_>>()
}

/// Gives an available number to `account_id`; `false` when it is owned
/// already (by anyone) or does not exist. One statement, so two claims of
/// one number cannot both win.
pub fn claim_number(conn: &Connection, id: &str, account_id: &str) -> Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE numbers SET account_id = ?2 WHERE id = ?1 AND account_id IS NULL")?
        .execute(params![id, account_id])?;
    Ok(changed == 1)
}

/// Puts `account_id`'s number back in the inventory: its settings, pool
/// and what it sent are forgotten, so its next owner inherits none of them.
pub fn release_number(conn: &Connection, id: &str, account_id: &str) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE numbers SET account_id = NULL, inbound_url = NULL, sms_url = NULL, pool_id = NULL \
             WHERE id = ?1 AND account_id = ?2",
        )?
        .execute(params![id, account_id])?;
    conn.prepare_cached("DELETE FROM last_sent WHERE number_id = ?1")?
        .execute([id])?;
    Ok(changed == 1)
}

/// The owner's settings of a number.
pub fn set_number_settings(
    conn: &Connection,
    id: &str,
    inbound_url: Option<&str>,
    sms_url: Option<&str>,
    pool_id: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE numbers SET inbound_url = ?2, sms_url = ?3, pool_id = ?4 WHERE id = ?1",
    )?
    .execute(params![id, inbound_url, sms_url, pool_id])?;
    Ok(())
}

/// The numbers in a pool.
pub fn pool_members(conn: &Connection, pool_id: &str) -> Result<Vec<NumberRecord>> {
    let mut stmt = conn.prepare_cached(&format!("{COLUMNS} WHERE pool_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([pool_id], from_row)?;
    rows.collect::<Result<_>>()
}

/// Makes `members` (numbers of the pool's account) the pool's numbers.
pub fn set_pool_members(conn: &Connection, pool_id: &str, members: &[String]) -> Result<()> {
    conn.prepare_cached("UPDATE numbers SET pool_id = NULL WHERE pool_id = ?1")?
        .execute([pool_id])?;
    let mut join = conn.prepare_cached("UPDATE numbers SET pool_id = ?1 WHERE id = ?2")?;
    for id in members {
        join.execute(params![pool_id, id])?;
    }
    Ok(())
}

/// The numbers whose sender is `sender` (one per country at most).
pub fn numbers_with_sender(conn: &Connection, sender: &str) -> Result<Vec<NumberRecord>> {
    let mut stmt = conn.prepare_cached(&format!("{COLUMNS} WHERE sender = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([sender], from_row)?;
    rows.collect::<Result<_>>()
}

fn from_row(row: &super::db::Row<'_>) -> Result<NumberRecord> {
    let bad = |column: usize, what: &str| {
        StoreError::Corrupt(format!("unknown {what} in numbers column {column}"))
    };
    let kind: String = row.get(2)?;
    let capabilities: String = row.get(5)?;
    Ok(NumberRecord {
        id: row.get(0)?,
        sender: row.get(1)?,
        kind: SenderKind::parse(&kind).ok_or_else(|| bad(2, "sender kind"))?,
        country: row.get(3)?,
        carrier: row.get(4)?,
        capabilities: capabilities
            .split(',')
            .filter(|c| !c.is_empty())
            .map(|c| Capability::parse(c).ok_or_else(|| bad(5, "capability")))
            .collect::<Result<_>>()?,
        account_id: row.get(6)?,
        inbound_url: row.get(7)?,
        created_at: row.get(8)?,
        pool_id: row.get(9)?,
        sms_url: row.get(10)?,
    })
}

/// The account's numbers among `senders`.
pub fn owned_numbers(
    conn: &Connection,
    account_id: &str,
    senders: &[String],
) -> Result<Vec<NumberRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{COLUMNS} WHERE sender = ?2 AND account_id = ?1 ORDER BY id"
    ))?;
    let mut owned = Vec::new();
    for sender in senders {
        for number in stmt.query_map(params![account_id, sender], from_row)? {
            owned.push(number?);
        }
    }
    Ok(owned)
}
