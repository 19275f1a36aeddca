//! Consent and opt-out rows: keyword settings, suppressions, consents and
//! their history (the domain types are in `compliance`).

use super::db::{Connection, OptionalExtension, params};

use super::{Result, StoreError};
use crate::compliance::keywords::Keywords;
use crate::compliance::{Consent, ConsentEvent, Purpose, Suppression, WHOLE_ACCOUNT};

/// The keywords of `pool` if it has its own, else of the account, if set.
fn keywords_for(
    conn: &Connection,
    account_id: &str,
    pool_id: Option<&str>,
) -> Result<Option<Keywords>> {
    let mut stmt = conn.prepare_cached(
        "SELECT settings FROM keyword_settings WHERE account_id = ?1 AND pool_id = ?2",
    )?;
    for scope in pool_id.into_iter().chain([WHOLE_ACCOUNT]) {
        let found: Option<String> = stmt
            .query_row(params![account_id, scope], |row| row.get(0))
            .optional()?;
        if let Some(text) = found {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("keyword settings: {e}")));
        }
    }
    Ok(None)
}

/// The keywords that apply to `pool`'s numbers (or the account's other
/// numbers): the pool's own, else the account's, else the defaults named
/// after the account.
pub fn effective_keywords(
    conn: &Connection,
    account_id: &str,
    pool_id: Option<&str>,
) -> Result<Keywords> {
    if let Some(keywords) = keywords_for(conn, account_id, pool_id)? {
        return Ok(keywords);
    }
    let name = super::accounts::get_account(conn, account_id)?
        .map(|a| a.name)
        .unwrap_or_default();
    Ok(Keywords::defaults(&name))
}

/// The keywords set for exactly this scope (the account's with `None`).
pub fn own_keywords(
    conn: &Connection,
    account_id: &str,
    pool_id: Option<&str>,
) -> Result<Option<Keywords>> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT settings FROM keyword_settings WHERE account_id = ?1 AND pool_id = ?2",
        )?
        .query_row(
            params![account_id, pool_id.unwrap_or(WHOLE_ACCOUNT)],
            |row| row.get(0),
        )
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("keyword settings: {e}")))
    })
    .transpose()
}

pub fn set_keywords(
    conn: &Connection,
    account_id: &str,
    pool_id: Option<&str>,
    keywords: &Keywords,
    now: i64,
) -> Result<()> {
    let text = serde_json::to_string(keywords).unwrap_or_default();
    conn.prepare_cached(
        "INSERT INTO keyword_settings (account_id, pool_id, settings, updated_at) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account_id, pool_id) DO UPDATE SET \
         settings = excluded.settings, updated_at = excluded.updated_at",
    )?
    .execute(params![
        account_id,
        pool_id.unwrap_or(WHOLE_ACCOUNT),
        text,
        now
    ])?;
    Ok(())
}

/// Adds a suppression; `false` when that number is suppressed at that
/// scope already (the first entry and its evidence stay).
pub fn insert_suppression(conn: &Connection, entry: &Suppression) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO suppressions (account_id, number, scope, source, reason, evidence, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (account_id, number, scope) DO NOTHING",
        )?
        .execute(params![
            entry.account_id,
            entry.number,
            entry.scope,
            entry.source,
            entry.reason,
            entry.evidence,
            entry.created_at,
        ])?;
    Ok(inserted == 1)
}

/// Removes the account's suppressions of `number` at `scope` (every scope
/// with `None`); how many.
pub fn delete_suppressions(
    conn: &Connection,
    account_id: &str,
    number: &str,
    scope: Option<&str>,
) -> Result<usize> {
    conn.prepare_cached(
        "DELETE FROM suppressions WHERE account_id = ?1 AND number = ?2 \
             AND (CAST(?3 AS TEXT) IS NULL OR scope = ?3)",
    )?
    .execute(params![account_id, number, scope])
}

const SUPPRESSION_COLUMNS: &str =
    "SELECT account_id, number, scope, source, reason, evidence, created_at FROM suppressions";

/// The account's suppressions by number and scope, after `after` (the
/// number and scope of the last one seen).
pub fn list_suppressions(
    conn: &Connection,
    account_id: &str,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<Suppression>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SUPPRESSION_COLUMNS} WHERE account_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR (number, scope) > (?2, ?3)) \
         ORDER BY number, scope LIMIT ?4"
    ))?;
    let (number, scope) = after.unzip();
    let rows = stmt.query_map(
        params![account_id, number, scope, limit as i64],
        suppression_row,
    )?;
    rows.collect::<Result<_>>()
}

pub fn suppressions_of(
    conn: &Connection,
    account_id: &str,
    number: &str,
) -> Result<Vec<Suppression>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SUPPRESSION_COLUMNS} WHERE account_id = ?1 AND number = ?2 ORDER BY scope"
    ))?;
    let rows = stmt.query_map(params![account_id, number], suppression_row)?;
    rows.collect::<Result<_>>()
}

/// Every suppression: (account, number, scope), for the in-memory set.
pub fn all_suppressions(conn: &Connection) -> Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare("SELECT account_id, number, scope FROM suppressions")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect::<Result<_>>()
}

fn suppression_row(row: &super::db::Row<'_>) -> Result<Suppression> {
    Ok(Suppression {
        account_id: row.get(0)?,
        number: row.get(1)?,
        scope: row.get(2)?,
        source: row.get(3)?,
        reason: row.get(4)?,
        evidence: row.get(5)?,
        created_at: row.get(6)?,
    })
}

pub fn insert_consent(conn: &Connection, consent: &Consent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO consents (id, account_id, number, purpose, source, evidence, collected_at, \
         created_at, created_by, withdrawn_at, withdrawn_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        consent.id,
        consent.account_id,
        consent.number,
        consent.purpose.as_str(),
        consent.source,
        consent.evidence,
        consent.collected_at,
        consent.created_at,
        consent.created_by,
        consent.withdrawn_at,
        consent.withdrawn_by,
    ])?;
    Ok(())
}

const CONSENT_COLUMNS: &str = "SELECT id, account_id, number, purpose, source, evidence, \
     collected_at, created_at, created_by, withdrawn_at, withdrawn_by FROM consents";

/// The account's consents, newest first, by number and purpose if given.
pub fn list_consents(
    conn: &Connection,
    account_id: &str,
    number: Option<&str>,
    purpose: Option<Purpose>,
) -> Result<Vec<Consent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{CONSENT_COLUMNS} WHERE account_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR number = ?2) \
         AND (CAST(?3 AS TEXT) IS NULL OR purpose = ?3) ORDER BY id DESC LIMIT 1000"
    ))?;
    let rows = stmt.query_map(
        params![account_id, number, purpose.map(Purpose::as_str)],
        consent_row,
    )?;
    rows.map(|r| r?).collect()
}

pub fn get_consent(conn: &Connection, account_id: &str, id: &str) -> Result<Option<Consent>> {
    conn.prepare_cached(&format!(
        "{CONSENT_COLUMNS} WHERE id = ?1 AND account_id = ?2"
    ))?
    .query_row(params![id, account_id], consent_row)
    .optional()?
    .transpose()
}

/// Marks a consent withdrawn; `false` if it already was.
pub fn withdraw_consent(conn: &Connection, id: &str, by: &str, now: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE consents SET withdrawn_at = ?2, withdrawn_by = ?3 \
             WHERE id = ?1 AND withdrawn_at IS NULL",
        )?
        .execute(params![id, now, by])?
        == 1)
}

/// When the latest marketing consent in force for `number` was collected.
pub fn marketing_consent_at(
    conn: &Connection,
    account_id: &str,
    number: &str,
) -> Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MAX(collected_at) FROM consents WHERE account_id = ?1 AND number = ?2 \
             AND purpose = 'marketing' AND withdrawn_at IS NULL",
    )?
    .query_row(params![account_id, number], |row| row.get(0))
}

/// Every marketing consent in force: (account, number, collected at).
pub fn all_marketing_consents(conn: &Connection) -> Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT account_id, number, MAX(collected_at) FROM consents \
         WHERE purpose = 'marketing' AND withdrawn_at IS NULL GROUP BY account_id, number",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect::<Result<_>>()
}

fn consent_row(row: &super::db::Row<'_>) -> Result<Result<Consent>> {
    let purpose: String = row.get(3)?;
    let Some(purpose) = Purpose::parse(&purpose) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "unknown consent purpose {purpose:?}"
        ))));
    };
    Ok(Ok(Consent {
        id: row.get(0)?,
        account_id: row.get(1)?,
        number: row.get(2)?,
        purpose,
        source: row.get(4)?,
        evidence: row.get(5)?,
        collected_at: row.get(6)?,
        created_at: row.get(7)?,
        created_by: row.get(8)?,
        withdrawn_at: row.get(9)?,
        withdrawn_by: row.get(10)?,
    }))
}

pub fn insert_event(conn: &Connection, event: &ConsentEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO consent_events (id, account_id, number, kind, purpose, scope, source, \
         evidence, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        event.id,
        event.account_id,
        event.number,
        event.kind,
        event.purpose,
        event.scope,
        event.source,
        event.evidence,
        event.actor,
        event.at,
    ])?;
    Ok(())
}

/// Every consent change of `number`, oldest first.
pub fn history(conn: &Connection, account_id: &str, number: &str) -> Result<Vec<ConsentEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, account_id, number, kind, purpose, scope, source, evidence, actor, at \
         FROM consent_events WHERE account_id = ?1 AND number = ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![account_id, number], |row| {
        Ok(ConsentEvent {
            id: row.get(0)?,
            account_id: row.get(1)?,
            number: row.get(2)?,
            kind: row.get(3)?,
            purpose: row.get(4)?,
            scope: row.get(5)?,
            source: row.get(6)?,
            evidence: row.get(7)?,
            actor: row.get(8)?,
            at: row.get(9)?,
        })
    })?;
    rows.collect::<Result<_>>()
}

/// Accounts that require a marketing consent.
pub fn consent_required_accounts(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT id FROM accounts WHERE require_marketing_consent = 1")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect::<Result<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_suppressions_split_one_number_s_scopes_without_losing_any() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            for (number, scope) in [("+1", ""), ("+2", ""), ("+2", "pool_a"), ("+3", "")] {
                let entry = Suppression {
                    account_id: "acc".into(),
                    number: number.into(),
                    scope: scope.into(),
                    source: "api".into(),
                    reason: None,
                    evidence: None,
                    created_at: 0,
                };
                assert!(insert_suppression(conn, &entry).unwrap());
            }
            let mut seen = Vec::new();
            let mut after: Option<(String, String)> = None;
            loop {
                let cursor = after.as_ref().map(|(n, s)| (n.as_str(), s.as_str()));
                let page = list_suppressions(conn, "acc", cursor, 2).unwrap();
                seen.extend(page.iter().map(|s| (s.number.clone(), s.scope.clone())));
                match page.last() {
                    Some(last) if page.len() == 2 => {
                        after = Some((last.number.clone(), last.scope.clone()))
                    }
                    _ => break,
                }
            }
            assert_eq!(seen.len(), 4, "{seen:?}");
            assert_eq!(delete_suppressions(conn, "acc", "+2", None).unwrap(), 2);
        }
    }
}
