//! Accounts and API keys. Only a key's hash is stored.

use super::db::{Connection, Engine, OptionalExtension, params};

use super::{Result, StoreError};
use crate::compliance::OptOutScope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: String,
    pub name: String,
    /// The operator account runs the platform: its admins manage all accounts.
    pub operator: bool,
    pub created_at: i64,
    /// Signs the account's webhooks (`whsec_...`, see `webhooks::new_secret`).
    pub webhook_secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account_id: String,
    pub key_hash: [u8; 32],
    /// `key_hash` is the key's plain SHA-256, from before hashes were keyed
    /// with the server's secret; replaced at the key's next use.
    pub legacy_hash: bool,
    pub role: String,
    pub sandbox: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Networks (CIDRs) the key may be used from; empty: anywhere.
    pub allowed_ips: Vec<String>,
    /// After this (ms), the key no longer works.
    pub expires_at: Option<i64>,
}

pub fn insert_account(conn: &Connection, account: &AccountRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO accounts (id, name, operator, created_at, webhook_secret) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        account.id,
        account.name,
        account.operator,
        account.created_at,
        account.webhook_secret
    ])?;
    Ok(())
}

/// Makes `new_secret` the account's webhook secret. With `grace_until`
/// (Unix ms) the replaced one keeps signing as well until then, in place of
/// any secret an earlier rotation kept; without it, it is dropped at once.
/// False when there is no such account.
pub fn rotate_webhook_secret(
    conn: &Connection,
    account_id: &str,
    new_secret: &str,
    grace_until: Option<i64>,
) -> Result<bool> {
    // In SET, `webhook_secret` still reads the old value.
    let changed = conn.execute(
        "UPDATE accounts SET \
           previous_webhook_secret = CASE WHEN CAST(?3 AS BIGINT) IS NULL THEN NULL ELSE webhook_secret END, \
           previous_webhook_secret_until = ?3, \
           webhook_secret = ?2 \
         WHERE id = ?1",
        params![account_id, new_secret, grace_until],
    )?;
    Ok(changed == 1)
}

pub fn get_account(conn: &Connection, id: &str) -> Result<Option<AccountRecord>> {
    conn.prepare_cached(
        "SELECT id, name, operator, created_at, COALESCE(webhook_secret, '') \
             FROM accounts WHERE id = ?1",
    )?
    .query_row([id], |row| {
        Ok(AccountRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            operator: row.get(2)?,
            created_at: row.get(3)?,
            webhook_secret: row.get(4)?,
        })
    })
    .optional()
}

/// What an account sets for its messaging: the pool used when a message
/// names neither `from` nor `pool`, and where inbound messages go when
/// neither their number nor its pool says.
/// With consent settings: whether marketing needs a consent on record, and
/// whether an opt-out keyword covers the account or the pool it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    pub default_pool: Option<String>,
    pub inbound_url: Option<String>,
    pub require_marketing_consent: bool,
    pub opt_out_scope: OptOutScope,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            default_pool: None,
            inbound_url: None,
            require_marketing_consent: false,
            opt_out_scope: OptOutScope::Account,
        }
    }
}

pub fn account_settings(conn: &Connection, id: &str) -> Result<AccountSettings> {
    Ok(conn
        .prepare_cached(
            "SELECT default_pool, inbound_url, require_marketing_consent, opt_out_scope \
             FROM accounts WHERE id = ?1",
        )?
        .query_row([id], |row| {
            let scope: String = row.get(3)?;
            Ok(AccountSettings {
                default_pool: row.get(0)?,
                inbound_url: row.get(1)?,
                require_marketing_consent: row.get(2)?,
                opt_out_scope: OptOutScope::parse(&scope).unwrap_or(OptOutScope::Account),
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Every account's default pool: (account, pool).
pub fn default_pools(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt =
        conn.prepare("SELECT id, default_pool FROM accounts WHERE default_pool IS NOT NULL")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect::<Result<_>>()
}

pub fn set_account_settings(conn: &Connection, id: &str, settings: &AccountSettings) -> Result<()> {
    conn.prepare_cached(
        "UPDATE accounts SET default_pool = ?2, inbound_url = ?3, \
         require_marketing_consent = ?4, opt_out_scope = ?5 WHERE id = ?1",
    )?
    .execute(params![
        id,
        settings.default_pool,
        settings.inbound_url,
        settings.require_marketing_consent,
        settings.opt_out_scope.as_str()
    ])?;
    Ok(())
}

pub fn count_accounts(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM accounts", [], |row| row.get(0))
}

pub fn insert_key(conn: &Connection, key: &KeyRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO api_keys (id, account_id, key_hash, role, sandbox, created_at, revoked_at, legacy_hash, \
         allowed_ips, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        key.id,
        key.account_id,
        key.key_hash.as_slice(),
        key.role,
        key.sandbox,
        key.created_at,
        key.revoked_at,
        key.legacy_hash,
        join_networks(&key.allowed_ips),
        key.expires_at
    ])?;
    Ok(())
}

pub fn keys_of_account(conn: &Connection, account_id: &str) -> Result<Vec<KeyRecord>> {
    let mut stmt =
        conn.prepare_cached(&format!("{KEY_COLUMNS} WHERE account_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([account_id], key_from_row)?;
    rows.collect::<Result<_>>()
}

pub fn get_key(conn: &Connection, id: &str) -> Result<Option<KeyRecord>> {
    conn.prepare_cached(&format!("{KEY_COLUMNS} WHERE id = ?1"))?
        .query_row([id], key_from_row)
        .optional()
}

/// Marks a key revoked; returns false when it already was.
pub fn revoke_key(conn: &Connection, id: &str, at: i64) -> Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, at])?;
    Ok(changed == 1)
}

/// Sets where a key may be used from and until when.
pub fn set_key_access(
    conn: &Connection,
    id: &str,
    allowed_ips: &[String],
    expires_at: Option<i64>,
) -> Result<()> {
    conn.prepare_cached("UPDATE api_keys SET allowed_ips = ?2, expires_at = ?3 WHERE id = ?1")?
        .execute(params![id, join_networks(allowed_ips), expires_at])?;
    Ok(())
}

fn join_networks(networks: &[String]) -> Option<String> {
    (!networks.is_empty()).then(|| networks.join(","))
}

/// Replaces a legacy (plain SHA-256) hash with the keyed one.
pub fn rehash_key(conn: &Connection, id: &str, key_hash: &[u8; 32]) -> Result<()> {
    conn.prepare_cached(
        "UPDATE api_keys SET key_hash = ?2, legacy_hash = 0 WHERE id = ?1 AND legacy_hash = 1",
    )?
    .execute(params![id, key_hash.as_slice()])?;
    Ok(())
}

/// Admin keys of an account that are not revoked.
pub fn active_admins(conn: &Connection, account_id: &str) -> Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM api_keys WHERE account_id = ?1 AND role = 'admin' AND revoked_at IS NULL",
        [account_id],
        |row| row.get(0),
    )
}

/// A value kept in the `meta` table.
pub fn meta_value(conn: &Connection, key: &str) -> Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .optional()
}

pub fn set_meta_value(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

const KEY_COLUMNS: &str = "SELECT id, account_id, key_hash, role, sandbox, created_at, revoked_at, \
     legacy_hash, allowed_ips, expires_at FROM api_keys";

fn key_from_row(row: &super::db::Row<'_>) -> Result<KeyRecord> {
    let hash: Vec<u8> = row.get(2)?;
    let key_hash = hash
        .try_into()
        .map_err(|_| StoreError::Corrupt("an API key's hash is not 32 bytes".into()))?;
    Ok(KeyRecord {
        id: row.get(0)?,
        account_id: row.get(1)?,
        key_hash,
        role: row.get(3)?,
        sandbox: row.get(4)?,
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
        legacy_hash: row.get(7)?,
        allowed_ips: row
            .get::<_, Option<String>>(8)?
            .map(|list| list.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        expires_at: row.get(9)?,
    })
}

/// Every key that is not revoked, with whether its account is the operator.
pub fn active_keys(conn: &Connection) -> Result<Vec<(KeyRecord, bool)>> {
    let mut stmt = conn.prepare(
        "SELECT k.id, k.account_id, k.key_hash, k.role, k.sandbox, k.created_at, k.revoked_at, \
         k.legacy_hash, k.allowed_ips, k.expires_at, a.operator \
         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.revoked_at IS NULL",
    )?;
    let rows = stmt.query_map([], |row| Ok((key_from_row(row)?, row.get::<_, bool>(10)?)))?;
    rows.collect::<Result<_>>()
}

/// An account's stored caps: `(id, requests_per_second, messages_per_day)`.
pub type StoredLimits = (String, Option<i64>, Option<i64>);

/// Accounts with a request rate or a daily quota.
pub fn account_limits(conn: &Connection) -> Result<Vec<StoredLimits>> {
    let mut stmt = conn.prepare(
        "SELECT id, requests_per_second, messages_per_day FROM accounts \
         WHERE requests_per_second IS NOT NULL OR messages_per_day IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect::<Result<_>>()
}

pub fn set_account_limits(
    conn: &Connection,
    id: &str,
    requests_per_second: Option<i64>,
    messages_per_day: Option<i64>,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE accounts SET requests_per_second = ?2, messages_per_day = ?3 WHERE id = ?1",
        )?
        .execute(params![id, requests_per_second, messages_per_day])?
        == 1)
}

/// Messages the account stored from `since` (ms, on an hour) on, whatever
/// became of them, from the rollups.
pub fn messages_stored_since(conn: &Connection, account_id: &str, since: i64) -> Result<i64> {
    conn.prepare_cached(
        "SELECT CAST(COALESCE(SUM(messages), 0) AS BIGINT) FROM message_rollups \
             WHERE account_id = ?1 AND hour >= ?2",
    )?
    .query_row(params![account_id, since / 3_600_000], |row| row.get(0))
}

/// Whether `messages` more would pass the account's daily quota, counting
/// what every node stored from `day_start` on (committed, and this
/// transaction's own): `Some((quota, used))` if so. On PostgreSQL the
/// account's row stays locked until the commit, so nodes' checks of one
/// account take turns and each sees the others' messages.
pub fn over_daily_quota(
    conn: &Connection,
    account_id: &str,
    messages: u64,
    day_start: i64,
) -> Result<Option<(u64, u64)>> {
    let lock = match conn.engine() {
        Engine::Postgres => " FOR UPDATE",
        Engine::Sqlite => "",
    };
    let quota: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT messages_per_day FROM accounts WHERE id = ?1{lock}"
        ))?
        .query_row([account_id], |row| row.get(0))
        .optional()?
        .flatten();
    let Some(quota) = quota else {
        return Ok(None);
    };
    let used = messages_stored_since(conn, account_id, day_start)?
        + super::rollups::messages_added_since(account_id, day_start);
    let (quota, used) = (quota.max(0) as u64, used.max(0) as u64);
    Ok((used + messages > quota).then_some((quota, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn previous(conn: &Connection) -> (Option<String>, Option<i64>) {
        conn.query_row(
            "SELECT previous_webhook_secret, previous_webhook_secret_until FROM accounts",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
    }

    fn account(id: &str, webhook_secret: &str) -> AccountRecord {
        AccountRecord {
            id: id.into(),
            name: id.into(),
            operator: false,
            created_at: 0,
            webhook_secret: webhook_secret.into(),
        }
    }

    #[test]
    fn the_daily_quota_counts_what_is_stored_and_what_this_transaction_adds() {
        use crate::model::Status;
        use crate::store::rollups::{self, Dimensions};
        for db in crate::store::testing::both() {
            let conn = &*db;
            insert_account(conn, &account("acc_q", "whsec_q")).unwrap();
            let day = 20_000 * 86_400_000;
            assert_eq!(over_daily_quota(conn, "acc_q", 100, day).unwrap(), None);
            set_account_limits(conn, "acc_q", None, Some(5)).unwrap();
            // Two stored today (by any node), one yesterday.
            conn.execute(
                "INSERT INTO message_rollups (account_id, hour, carrier, country, type, sender, \
                 status, messages, segments) VALUES ('acc_q', ?1, '', '', 'otp', '', 'queued', 2, 2), \
                 ('acc_q', ?2, '', '', 'otp', '', 'queued', 1, 1)",
                [day / 3_600_000 + 1, day / 3_600_000 - 1],
            )
            .unwrap();
            // One more in this transaction, not yet flushed.
            rollups::discard();
            let dims = Dimensions::new("acc_q", day + 10, None, None, "otp", None);
            rollups::message_added(dims, Status::Queued, 1);
            conn.begin().unwrap();
            assert_eq!(over_daily_quota(conn, "acc_q", 2, day).unwrap(), None);
            assert_eq!(
                over_daily_quota(conn, "acc_q", 3, day).unwrap(),
                Some((5, 3))
            );
            conn.end(false).unwrap();
            rollups::discard();
        }
    }

    #[test]
    fn a_rotation_keeps_only_the_replaced_secret_and_only_with_a_grace() {
        for db in crate::store::testing::both() {
            let conn = &*db;
            insert_account(conn, &account("acc_a", "whsec_one")).unwrap();
            assert!(rotate_webhook_secret(conn, "acc_a", "whsec_two", Some(5_000)).unwrap());
            assert_eq!(previous(conn), (Some("whsec_one".into()), Some(5_000)));
            assert!(rotate_webhook_secret(conn, "acc_a", "whsec_three", Some(9_000)).unwrap());
            assert_eq!(previous(conn), (Some("whsec_two".into()), Some(9_000)));
            assert!(rotate_webhook_secret(conn, "acc_a", "whsec_four", None).unwrap());
            assert_eq!(previous(conn), (None, None));
            let stored = get_account(conn, "acc_a").unwrap().unwrap();
            assert_eq!(stored.webhook_secret, "whsec_four");
            assert!(!rotate_webhook_secret(conn, "acc_b", "whsec_x", None).unwrap());
        }
    }
}
