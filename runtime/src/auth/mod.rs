//! Accounts, API keys and roles.
//!
//! Keys are long random strings shown once; only a keyed hash is stored
//! (HMAC-SHA256 with the server's secret, see `hasher`). Generated keys
//! carry 200 bits of randomness, so a fast hash is as safe as a slow one,
//! and every request can be checked against an in-memory table; the key on
//! the hash protects operator-chosen keys in a leaked database.

mod hasher;
pub mod limits;
pub mod network;
mod sealed;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

pub use hasher::{KeyHasher, SECRET_FILE, SecretError};
pub use sealed::Sealer;

use crate::ids;
use crate::store::accounts::{self, AccountRecord, KeyRecord};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Developer,
    Compliance,
    Viewer,
}

/// What a request wants to do; each route names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    SendMessages,
    ReadMessages,
    /// Create and revoke keys of one's own account.
    ManageKeys,
    /// Create accounts (operator admins only).
    ManageAccounts,
    /// Claim, release and configure the account's numbers, its sender
    /// pools and where its inbound messages go.
    ManageNumbers,
    /// Pure helpers such as encoding analysis.
    UseTools,
    /// Read the policies' state and history, and simulate decisions.
    ReviewPolicies,
    /// Change suppressions, consents and keywords.
    ManageConsent,
    /// Read the audit trail.
    ReadAudit,
    /// Erase a message's or an inbound message's body before its retention
    /// ends (for a data-subject request, or a body sent by mistake).
    RedactMessages,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Admin, Self::Developer, Self::Compliance, Self::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Compliance => "compliance",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Self::Admin => true,
            Self::Developer => matches!(
                permission,
                SendMessages | ReadMessages | UseTools | RedactMessages
            ),
            Self::Compliance => matches!(
                permission,
                ReadMessages | UseTools | ReviewPolicies | ManageConsent | ReadAudit
            ),
            Self::Viewer => matches!(permission, ReadMessages | UseTools),
        }
    }
}

/// Who is calling: the key's account and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub account_id: String,
    pub role: Role,
    pub sandbox: bool,
    /// The key belongs to the operator account.
    pub operator: bool,
    /// Networks the key may be used from; empty: anywhere.
    pub allowed_ips: Arc<[IpNet]>,
    pub expires_at: Option<i64>,
    /// Where this request came from (set when it is authenticated).
    pub client_ip: Option<IpAddr>,
}

/// Why a presented key does not get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Unknown or revoked.
    Unknown,
    Expired,
    /// Used from outside the key's `allowed_ips`.
    IpNotAllowed,
}

impl Principal {
    /// Admins of the operator account may act on any account; everyone
    /// else only on their own.
    pub fn may_manage(&self, account_id: &str) -> bool {
        self.role == Role::Admin && (self.operator || self.account_id == account_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored key {0} has an unknown role")]
    UnknownRole(String),
    #[error("PIGEON_ADMIN_KEY must be at least {MIN_KEY_LEN} characters")]
    WeakAdminKey,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "{SECRET_FILE} in the data directory is not the secret this database's keys were \
         hashed with: restore the one backed up with the database"
    )]
    WrongSecret,
}

const MIN_KEY_LEN: usize = 24;

/// A fresh key: a prefix saying what it is, then 40 base32 characters.
pub fn generate_key(sandbox: bool) -> String {
    let prefix = if sandbox { "pgn_test_" } else { "pgn_live_" };
    format!("{prefix}{}", ids::random_secret(40))
}

/// The active keys, by hash, kept in memory so that authenticating a request
/// costs one hash and one map look-up.
pub struct KeyRing {
    hasher: KeyHasher,
    by_hash: RwLock<Hashes>,
}

#[derive(Default)]
struct Hashes {
    keyed: HashMap<[u8; 32], Principal>,
    /// Keys stored before hashes were keyed, by plain SHA-256.
    legacy: HashMap<[u8; 32], Principal>,
    /// Changes this node made in place: a reload read before one of them
    /// is not applied over it.
    changes: u64,
}

impl Hashes {
    fn insert(&mut self, key: &KeyRecord, role: Role, operator: bool) {
        // The API checks networks when they are set; one that does not
        // parse here must not widen the key to "anywhere".
        if key
            .allowed_ips
            .iter()
            .any(|n| network::parse_network(n).is_none())
        {
            tracing::warn!(key_id = %key.id, "API key has an allowed_ips entry that does not parse; it is disabled");
            return;
        }
        let principal = Principal {
            key_id: key.id.clone(),
            account_id: key.account_id.clone(),
            role,
            sandbox: key.sandbox,
            operator,
            allowed_ips: key
                .allowed_ips
                .iter()
                .filter_map(|n| network::parse_network(n))
                .collect(),
            expires_at: key.expires_at,
            client_ip: None,
        };
        let map = if key.legacy_hash {
            &mut self.legacy
        } else {
            &mut self.keyed
        };
        map.insert(key.key_hash, principal);
    }
}

impl KeyRing {
    pub async fn load(store: &Store, hasher: KeyHasher) -> Result<Self, AuthError> {
        let ring = Self {
            hasher,
            by_hash: RwLock::default(),
        };
        ring.reload(store).await?;
        Ok(ring)
    }

    /// Replaces the ring with the store's active keys: how a node learns of
    /// keys another node created, revoked or restricted.
    /// False when this node changed the ring while the keys were read
    /// (that change's own version bump brings the next reload).
    async fn reload(&self, store: &Store) -> Result<bool, AuthError> {
        let changes = self.read().changes;
        let keys = store.read(accounts::active_keys).await?;
        let mut fresh = Hashes::default();
        for (key, operator) in keys {
            let role =
                Role::parse(&key.role).ok_or_else(|| AuthError::UnknownRole(key.id.clone()))?;
            fresh.insert(&key, role, operator);
        }
        let mut hashes = self.write();
        if hashes.changes != changes {
            return Ok(false);
        }
        fresh.changes = changes;
        *hashes = fresh;
        Ok(true)
    }

    /// The caller, and the keyed hash to store when the key was found by
    /// its legacy hash.
    fn authenticate(&self, presented: &str) -> Option<(Principal, Option<[u8; 32]>)> {
        let hash = self.hasher.hash(presented);
        if let Some(principal) = self.read().keyed.get(&hash) {
            return Some((principal.clone(), None));
        }
        // Unknown keys (every failed request) take the read lock only.
        let legacy = hasher::legacy_hash(presented);
        if !self.read().legacy.contains_key(&legacy) {
            return None;
        }
        let mut hashes = self.write();
        let principal = hashes.legacy.remove(&legacy)?;
        hashes.keyed.insert(hash, principal.clone());
        hashes.changes += 1;
        Some((principal, Some(hash)))
    }

    fn insert_principal(&self, key: &KeyRecord, role: Role, operator: bool) {
        let mut hashes = self.write();
        hashes.insert(key, role, operator);
        hashes.changes += 1;
    }

    fn remove(&self, key_id: &str) {
        let mut hashes = self.write();
        hashes.keyed.retain(|_, p| p.key_id != key_id);
        hashes.legacy.retain(|_, p| p.key_id != key_id);
        hashes.changes += 1;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Hashes> {
        self.by_hash.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Hashes> {
        self.by_hash.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn stored_limits(rps: Option<i64>, per_day: Option<i64>) -> limits::AccountLimits {
    limits::AccountLimits {
        requests_per_second: rps.and_then(|n| u32::try_from(n).ok()),
        messages_per_day: per_day.and_then(|n| u64::try_from(n).ok()),
    }
}

/// Where and until when a key works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyAccess {
    /// CIDRs; empty: anywhere.
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<i64>,
}

/// A key as created: the only time the plain key exists.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: KeyRecord,
    pub plain: String,
}

/// Accounts and keys, kept in the store and mirrored in the key ring.
pub struct Accounts {
    store: Store,
    ring: KeyRing,
    limits: limits::Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such account")]
    NoAccount,
    #[error("no such key")]
    NoKey,
    #[error("an account's last admin key cannot be revoked; create another admin key first")]
    LastAdmin,
}

impl Accounts {
    /// Loads the keys, after checking that `hasher` is the secret the
    /// stored keys were hashed with (and recording it, the first time).
    pub async fn load(store: Store, hasher: KeyHasher) -> Result<Self, AuthError> {
        let check = hasher.check_value();
        let matches = store
            .write(move |conn| {
                match accounts::meta_value(conn, hasher::CHECK_KEY)? {
                    Some(stored) => return Ok(stored == check),
                    None => accounts::set_meta_value(conn, hasher::CHECK_KEY, &check)?,
                }
                Ok(true)
            })
            .await?;
        if !matches {
            return Err(AuthError::WrongSecret);
        }
        let ring = KeyRing::load(&store, hasher).await?;
        let accounts = Self {
            store,
            ring,
            limits: limits::Limits::default(),
        };
        accounts.load_limits().await?;
        Ok(accounts)
    }

    /// Reads the keys and the accounts' limits again: changes another node
    /// made (`cluster.rs` calls this when their cache version moves).
    /// Returns false when this node changed them meanwhile: then try again.
    pub async fn reload(&self) -> Result<bool, AuthError> {
        Ok(self.ring.reload(&self.store).await? & self.load_limits().await?)
    }

    /// Each account's limits, with what it stored today so far.
    async fn load_limits(&self) -> Result<bool, AuthError> {
        let changes = self.limits.changes();
        let now = crate::time::now_ms();
        let with_limits = self
            .store
            .read(move |conn| {
                let mut found = Vec::new();
                for (id, rps, per_day) in accounts::account_limits(conn)? {
                    let today = accounts::messages_stored_since(conn, &id, limits::day_start(now))?;
                    found.push((id, stored_limits(rps, per_day), today));
                }
                Ok(found)
            })
            .await?;
        Ok(self.limits.replace(
            with_limits
                .into_iter()
                .map(|(id, account_limits, today)| (id, account_limits, today.max(0) as u64)),
            now,
            changes,
        ))
    }

    /// The accounts' request rates and daily quotas.
    pub fn limits(&self) -> &limits::Limits {
        &self.limits
    }

    /// Sets an account's limits (stored, and in force at once).
    pub async fn set_limits(
        &self,
        account_id: String,
        new: limits::AccountLimits,
    ) -> Result<(), KeyError> {
        let now = crate::time::now_ms();
        let id = account_id.clone();
        let today = self
            .store
            .write(move |conn| {
                let rps = new.requests_per_second.map(i64::from);
                let per_day = new.messages_per_day.map(|n| n.min(i64::MAX as u64) as i64);
                if !accounts::set_account_limits(conn, &id, rps, per_day)? {
                    return Ok(None);
                }
                accounts::messages_stored_since(conn, &id, limits::day_start(now)).map(Some)
            })
            .await?
            .ok_or(KeyError::NoAccount)?;
        self.limits.set(&account_id, new, today.max(0) as u64, now);
        Ok(())
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.ring.hasher
    }

    /// The caller a presented key belongs to, if it may be used now from
    /// `client_ip`. A key stored with its legacy hash gets its keyed hash
    /// stored now, in the background.
    pub fn authenticate(&self, presented: &str, client_ip: IpAddr) -> Result<Principal, Denied> {
        let (mut principal, rehash) = self.ring.authenticate(presented).ok_or(Denied::Unknown)?;
        if principal
            .expires_at
            .is_some_and(|at| at <= crate::time::now_ms())
        {
            return Err(Denied::Expired);
        }
        if !principal.allowed_ips.is_empty()
            && !network::contains(&principal.allowed_ips, client_ip)
        {
            return Err(Denied::IpNotAllowed);
        }
        principal.client_ip = Some(client_ip);
        if let Some(hash) = rehash {
            let (store, key_id) = (self.store.clone(), principal.key_id.clone());
            tokio::spawn(async move {
                let id = key_id.clone();
                if let Err(err) = store
                    .write(move |c| accounts::rehash_key(c, &id, &hash))
                    .await
                {
                    tracing::warn!(key_id, error = %err, "storing an API key's keyed hash failed");
                }
            });
        }
        Ok(principal)
    }

    /// On an empty database, creates the operator account and its first
    /// admin key: `preset` if given (from `PIGEON_ADMIN_KEY`), else a new
    /// one, which is returned so it can be shown once.
    pub async fn bootstrap(&self, preset: Option<String>) -> Result<Option<String>, AuthError> {
        if self.store.read(accounts::count_accounts).await? > 0 {
            if let Some(key) = &preset
                && self.ring.authenticate(key).is_none()
            {
                tracing::warn!(
                    "PIGEON_ADMIN_KEY is not a key of this database; it only applies to an empty one"
                );
            }
            return Ok(None);
        }
        if let Some(key) = &preset
            && key.len() < MIN_KEY_LEN
        {
            return Err(AuthError::WeakAdminKey);
        }
        let generated = preset.is_none();
        let plain = preset.unwrap_or_else(|| generate_key(false));
        let now = crate::time::now_ms();
        let account = AccountRecord {
            id: ids::new_id("acc"),
            name: "operator".into(),
            operator: true,
            created_at: now,
            webhook_secret: crate::store::webhooks::new_secret(),
        };
        let key = KeyRecord {
            id: ids::new_id("key"),
            account_id: account.id.clone(),
            key_hash: self.ring.hasher.hash(&plain),
            legacy_hash: false,
            role: Role::Admin.as_str().into(),
            sandbox: false,
            created_at: now,
            revoked_at: None,
            allowed_ips: Vec::new(),
            expires_at: None,
        };
        let created = {
            let key = key.clone();
            self.store
                .write(move |conn| {
                    if accounts::count_accounts(conn)? > 0 {
                        return Ok(false);
                    }
                    accounts::insert_account(conn, &account)?;
                    accounts::insert_key(conn, &key)?;
                    Ok(true)
                })
                .await?
        };
        if !created {
            return Ok(None);
        }
        self.ring.insert_principal(&key, Role::Admin, true);
        Ok(generated.then_some(plain))
    }

    pub async fn create_account(&self, name: String) -> Result<AccountRecord, StoreError> {
        let account = AccountRecord {
            id: ids::new_id("acc"),
            name,
            operator: false,
            created_at: crate::time::now_ms(),
            webhook_secret: crate::store::webhooks::new_secret(),
        };
        let stored = account.clone();
        self.store
            .write(move |conn| accounts::insert_account(conn, &stored))
            .await?;
        Ok(account)
    }

    pub async fn get_account(&self, id: String) -> Result<Option<AccountRecord>, StoreError> {
        self.store
            .read(move |conn| accounts::get_account(conn, &id))
            .await
    }

    pub async fn create_key(
        &self,
        account_id: String,
        role: Role,
        sandbox: bool,
        access: KeyAccess,
    ) -> Result<NewKey, KeyError> {
        let plain = generate_key(sandbox);
        let record = KeyRecord {
            id: ids::new_id("key"),
            account_id,
            key_hash: self.ring.hasher.hash(&plain),
            legacy_hash: false,
            role: role.as_str().into(),
            sandbox,
            created_at: crate::time::now_ms(),
            revoked_at: None,
            allowed_ips: access.allowed_ips,
            expires_at: access.expires_at,
        };
        let stored = record.clone();
        let operator = self
            .store
            .write(move |conn| {
                let Some(account) = accounts::get_account(conn, &stored.account_id)? else {
                    return Ok(None);
                };
                accounts::insert_key(conn, &stored)?;
                Ok(Some(account.operator))
            })
            .await?
            .ok_or(KeyError::NoAccount)?;
        self.ring.insert_principal(&record, role, operator);
        Ok(NewKey { record, plain })
    }

    pub async fn list_keys(&self, account_id: String) -> Result<Vec<KeyRecord>, StoreError> {
        self.store
            .read(move |conn| accounts::keys_of_account(conn, &account_id))
            .await
    }

    pub async fn get_key(&self, id: String) -> Result<Option<KeyRecord>, StoreError> {
        self.store
            .read(move |conn| accounts::get_key(conn, &id))
            .await
    }

    /// Changes where and until when a key works; effective at once.
    pub async fn set_key_access(
        &self,
        id: String,
        access: KeyAccess,
    ) -> Result<KeyRecord, KeyError> {
        let (record, operator) = self
            .store
            .write(move |conn| {
                let Some(key) = accounts::get_key(conn, &id)?.filter(|k| k.revoked_at.is_none())
                else {
                    return Ok(None);
                };
                accounts::set_key_access(conn, &id, &access.allowed_ips, access.expires_at)?;
                let operator =
                    accounts::get_account(conn, &key.account_id)?.is_some_and(|a| a.operator);
                Ok(Some((
                    KeyRecord {
                        allowed_ips: access.allowed_ips.clone(),
                        expires_at: access.expires_at,
                        ..key
                    },
                    operator,
                )))
            })
            .await?
            .ok_or(KeyError::NoKey)?;
        let role = Role::parse(&record.role).ok_or(KeyError::NoKey)?;
        self.ring.remove(&record.id);
        self.ring.insert_principal(&record, role, operator);
        Ok(record)
    }

    /// A new key with the old one's role and settings; the old one keeps
    /// working for `grace_ms` more (or until it expired anyway).
    pub async fn rotate_key(&self, id: String, grace_ms: i64) -> Result<NewKey, KeyError> {
        let now = crate::time::now_ms();
        let old = self
            .store
            .read({
                let id = id.clone();
                move |conn| accounts::get_key(conn, &id)
            })
            .await?
            .filter(|k| k.revoked_at.is_none())
            .ok_or(KeyError::NoKey)?;
        let role = Role::parse(&old.role).ok_or(KeyError::NoKey)?;
        let access = KeyAccess {
            allowed_ips: old.allowed_ips.clone(),
            expires_at: old.expires_at,
        };
        let new = self
            .create_key(old.account_id.clone(), role, old.sandbox, access.clone())
            .await?;
        let ends = now + grace_ms;
        self.set_key_access(
            id,
            KeyAccess {
                expires_at: Some(old.expires_at.map_or(ends, |at| at.min(ends))),
                ..access
            },
        )
        .await?;
        Ok(new)
    }

    /// Revokes a key; requests with it fail from the moment this returns.
    pub async fn revoke_key(&self, id: String) -> Result<(), KeyError> {
        let at = crate::time::now_ms();
        let key_id = id.clone();
        let existed = self
            .store
            .write(move |conn| {
                let Some(key) = accounts::get_key(conn, &key_id)? else {
                    return Ok(Err(KeyError::NoKey));
                };
                // An account with no admin key is locked out of itself (and
                // the operator's, out of Pigeon).
                if key.revoked_at.is_none()
                    && key.role == Role::Admin.as_str()
                    && accounts::active_admins(conn, &key.account_id)? == 1
                {
                    return Ok(Err(KeyError::LastAdmin));
                }
                accounts::revoke_key(conn, &key_id, at)?;
                Ok(Ok(()))
            })
            .await?;
        existed?;
        self.ring.remove(&id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_should() {
        use Permission::*;
        assert!(Role::Admin.allows(ManageAccounts));
        assert!(Role::Developer.allows(SendMessages));
        assert!(!Role::Developer.allows(ManageKeys));
        assert!(!Role::Viewer.allows(SendMessages));
        assert!(Role::Viewer.allows(ReadMessages));
        assert!(!Role::Compliance.allows(SendMessages));
        assert!(Role::Developer.allows(RedactMessages));
        assert!(!Role::Compliance.allows(RedactMessages));
        assert!(!Role::Viewer.allows(RedactMessages));
    }

    #[test]
    fn keys_are_long_random_and_hash_stably() {
        let a = generate_key(false);
        let b = generate_key(true);
        assert!(a.starts_with("pgn_live_") && a.len() == 49);
        assert!(b.starts_with("pgn_test_"));
        assert_ne!(a, generate_key(false));
        let hasher = KeyHasher::with_secret([1; 32]);
        assert_eq!(hasher.hash(&a), hasher.hash(&a));
        assert_ne!(hasher.hash(&a), hasher.hash(&b));
    }
}
