//! The audit trail: who changed what, from where, and when. Every change
//! made through the API other than sending a message is one entry, and so
//! is every policy and plugin reload. Entries say what changed, never a
//! secret's value; they are kept in the store, never updated, and deleted
//! only by retention.

/// One entry as written.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    /// ms since the epoch.
    pub at: i64,
    /// None for a platform event (a reload), seen by operator admins only.
    pub account_id: Option<String>,
    /// The acting key; None when Pigeon itself acted.
    pub key_id: Option<String>,
    /// The key's role, or `system`.
    pub role: String,
    pub client_ip: Option<String>,
    /// `<resource>.<verb>`, e.g. `key.create`.
    pub action: String,
    /// The id (or number, or name) of what was changed.
    pub target: Option<String>,
    /// What changed, as JSON.
    pub summary: serde_json::Value,
}

/// Which entries to list: newest first, before `before` (an id).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// One account's entries; None: all (operator admins).
    pub account_id: Option<String>,
    pub since: Option<i64>,
    pub action: Option<String>,
    pub key_id: Option<String>,
    pub before: Option<i64>,
    pub limit: usize,
}
