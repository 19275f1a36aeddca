//! Sender pools: an account's senders grouped under one name, from which
//! Pigeon picks each message's sender at accept time (as Twilio's Messaging
//! Services do): the recipient's sticky sender, else a local one, else, if
//! the pool allows it, any sender the recipient's country accepts.

use std::collections::HashMap;
use std::sync::RwLock;

use super::inventory::{Capability, NumberRecord, SenderKind};
use super::rules;

/// What a pool does when no sender of the recipient's country is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Any sender of the pool that the recipient's country allows.
    Any,
    /// None: the message is refused (`no_sender_for_country`).
    None,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Any, Self::None]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderPool {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// A recipient keeps the sender it got last time while it is in the pool.
    pub sticky_sender: bool,
    /// Senders of the recipient's country first.
    pub geo_match: bool,
    pub fallback: Fallback,
    /// Where inbound messages to its senders go when theirs is unset.
    pub inbound_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Each account's default pool, held in memory: every message that names
/// no sender asks for it, and most accounts have none, so the accept path
/// need not read the store for them. The API updates it with the store.
#[derive(Debug, Default)]
pub struct DefaultPools(RwLock<Pools>);

#[derive(Debug, Default)]
struct Pools {
    by_account: HashMap<String, String>,
    /// Changes made in place (see [`DefaultPools::replace`]).
    changes: u64,
}

impl DefaultPools {
    pub fn new(pools: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(RwLock::new(Pools {
            by_account: pools.into_iter().collect(),
            changes: 0,
        }))
    }

    /// How many changes were made in place.
    pub fn changes(&self) -> u64 {
        self.0.read().unwrap_or_else(|e| e.into_inner()).changes
    }

    /// Takes the store's pools in place of these (another node changed
    /// them), unless one was set in place since [`DefaultPools::changes`]
    /// said `changes`: then returns false.
    pub fn replace(&self, pools: impl IntoIterator<Item = (String, String)>, changes: u64) -> bool {
        let mut held = self.0.write().unwrap_or_else(|e| e.into_inner());
        if held.changes != changes {
            return false;
        }
        held.by_account = pools.into_iter().collect();
        true
    }

    pub fn get(&self, account_id: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_account
            .get(account_id)
            .cloned()
    }

    pub fn set(&self, account_id: &str, pool_id: Option<String>) {
        let mut pools = self.0.write().unwrap_or_else(|e| e.into_inner());
        pools.changes += 1;
        match pool_id {
            Some(pool_id) => pools.by_account.insert(account_id.to_owned(), pool_id),
            None => pools.by_account.remove(account_id),
        };
    }
}

/// Numbers before alphanumeric senders: replies reach them.
fn preference(kind: SenderKind) -> u8 {
    match kind {
        SenderKind::LongCode => 0,
        SenderKind::ShortCode => 1,
        SenderKind::TollFree => 2,
        SenderKind::Alphanumeric => 3,
    }
}

/// Picks the sender for `recipient` (E.164, of `country` when known) among
/// the pool's `members`; `sticky` is the number it got last time. Among
/// equally good senders the recipient's number decides, so the load
/// spreads and a repeat of the same choice gives the same answer.
pub fn choose_sender<'a>(
    pool: &SenderPool,
    members: &'a [NumberRecord],
    sticky: Option<&str>,
    recipient: &str,
    country: Option<&str>,
) -> Option<&'a NumberRecord> {
    let allowed = |n: &&NumberRecord| {
        n.capabilities.contains(&Capability::SmsMt)
            && country.is_none_or(|c| rules::kind_allowed_in(n.kind, c))
    };
    if pool.sticky_sender
        && let Some(kept) = members
            .iter()
            .filter(allowed)
            .find(|n| Some(n.id.as_str()) == sticky)
    {
        return Some(kept);
    }
    let best = |candidates: Vec<&'a NumberRecord>| {
        let top = candidates.iter().map(|n| preference(n.kind)).min()?;
        let mut best: Vec<&NumberRecord> = candidates
            .into_iter()
            .filter(|n| preference(n.kind) == top)
            .collect();
        best.sort_by(|a, b| a.id.cmp(&b.id));
        Some(best[spread(recipient) % best.len()])
    };
    if pool.geo_match {
        let local = members
            .iter()
            .filter(allowed)
            .filter(|n| country == Some(n.country.as_str()))
            .collect();
        if let Some(found) = best(local) {
            return Some(found);
        }
        if pool.fallback == Fallback::None {
            return None;
        }
    }
    best(members.iter().filter(allowed).collect())
}

/// A stable small hash of a recipient (FNV-1a).
fn spread(recipient: &str) -> usize {
    recipient
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(id: &str, kind: SenderKind, country: &str) -> NumberRecord {
        NumberRecord {
            id: id.into(),
            sender: id.into(),
            kind,
            country: country.into(),
            carrier: None,
            capabilities: vec![Capability::SmsMt],
            account_id: Some("acct".into()),
            pool_id: Some("pool".into()),
            inbound_url: None,
            sms_url: None,
            created_at: 0,
        }
    }

    fn pool(fallback: Fallback) -> SenderPool {
        SenderPool {
            id: "pool".into(),
            account_id: "acct".into(),
            name: "p".into(),
            sticky_sender: true,
            geo_match: true,
            fallback,
            inbound_url: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn local_numbers_first_then_sticky_then_fallback() {
        let members = vec![
            number("num_vn_alpha", SenderKind::Alphanumeric, "VN"),
            number("num_vn", SenderKind::LongCode, "VN"),
            number("num_hk", SenderKind::LongCode, "HK"),
            number("num_us_alpha", SenderKind::Alphanumeric, "US"),
        ];
        let p = pool(Fallback::Any);
        let pick = |sticky, to, country| {
            choose_sender(&p, &members, sticky, to, country).map(|n| n.id.as_str())
        };
        assert_eq!(pick(None, "+84912345678", Some("VN")), Some("num_vn"));
        assert_eq!(pick(None, "+85251234567", Some("HK")), Some("num_hk"));
        assert_eq!(
            pick(Some("num_hk"), "+84912345678", Some("VN")),
            Some("num_hk")
        );
        // Gone from the pool: no longer sticky.
        assert_eq!(
            pick(Some("num_gone"), "+84912345678", Some("VN")),
            Some("num_vn")
        );
        // No GB sender: any numeric sender, before alphanumeric ones.
        assert!(matches!(
            pick(None, "+447700900123", Some("GB")),
            Some("num_vn" | "num_hk")
        ));
        let strict = pool(Fallback::None);
        assert!(choose_sender(&strict, &members, None, "+447700900123", Some("GB")).is_none());
    }

    #[test]
    fn a_country_that_forbids_alphanumeric_senders_never_gets_one() {
        let members = vec![number("num_alpha", SenderKind::Alphanumeric, "US")];
        let p = pool(Fallback::Any);
        assert!(choose_sender(&p, &members, None, "+12025550123", Some("US")).is_none());
        assert!(
            choose_sender(&p, &members, Some("num_alpha"), "+12025550123", Some("US")).is_none()
        );
    }
}
