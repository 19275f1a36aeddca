//! Consent and opt-out: the keywords handsets send (`keywords`), who may
//! not be sent to and who agreed to marketing, held in memory so the accept
//! path checks them without reading the store ([`Compliance`]), and the
//! vocabulary of consent records; and data retention (`retention`).
//!
//! The store is the record; this module does not read it. Start-up loads
//! the sets from it, and every change is made to the store and here: an
//! opt-out is added here before its transaction commits (held, so that a
//! reload read before the commit keeps it: [`OptOutHold`]), a removal
//! after, so what is here always covers every committed opt-out (a failed
//! commit leaves a conservative entry until the next reload). That is why
//! both the accept path and the dispatcher's claim check here, not the
//! store. The retention sweep is the exception: a background job that
//! works on the store (through `store::retention`) and nothing in memory.

pub mod audit;
pub mod keywords;
pub mod retention;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What a consent is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Marketing,
    Transactional,
    Otp,
}

impl Purpose {
    pub const ALL: [Self; 3] = [Self::Marketing, Self::Transactional, Self::Otp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "marketing",
            Self::Transactional => "transactional",
            Self::Otp => "otp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// How a consent was collected.
pub const CONSENT_SOURCES: [&str; 6] = ["web_form", "keyword", "paper", "verbal", "api", "import"];

/// Where an opt-out scope is kept: the whole account, or one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutScope {
    Account,
    Pool,
}

impl OptOutScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Pool => "pool",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Account, Self::Pool]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// The scope of an account-wide suppression.
pub const WHOLE_ACCOUNT: &str = "";

/// A handset an account may not send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub account_id: String,
    /// E.164.
    pub number: String,
    /// [`WHOLE_ACCOUNT`], or the pool the opt-out was for.
    pub scope: String,
    /// `keyword`, `api` or `import`.
    pub source: String,
    pub reason: Option<String>,
    /// The inbound message (`in_…`) or the API key (`key_…`) behind it.
    pub evidence: Option<String>,
    pub created_at: i64,
}

/// A consent on record; withdrawn ones are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: String,
    pub account_id: String,
    pub number: String,
    pub purpose: Purpose,
    /// One of [`CONSENT_SOURCES`].
    pub source: String,
    pub evidence: Option<String>,
    pub collected_at: i64,
    pub created_at: i64,
    /// The key that recorded it.
    pub created_by: Option<String>,
    pub withdrawn_at: Option<i64>,
    pub withdrawn_by: Option<String>,
}

/// One change of a handset's consent, as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub id: String,
    pub account_id: String,
    pub number: String,
    /// `consent`, `withdrawal`, `opt_out` or `opt_in`.
    pub kind: String,
    pub purpose: Option<String>,
    /// For opt-outs and opt-ins: [`WHOLE_ACCOUNT`] or a pool.
    pub scope: Option<String>,
    /// `keyword`, `api`, `import`, or a consent's source.
    pub source: String,
    /// The inbound message, consent id or evidence text behind it.
    pub evidence: Option<String>,
    /// The API key, or the handset for a keyword.
    pub actor: Option<String>,
    pub at: i64,
}

impl ConsentEvent {
    pub fn new(account_id: &str, number: &str, kind: &str, source: &str, at: i64) -> Self {
        Self {
            id: crate::ids::new_id("cev"),
            account_id: account_id.to_owned(),
            number: number.to_owned(),
            kind: kind.to_owned(),
            purpose: None,
            scope: None,
            source: source.to_owned(),
            evidence: None,
            actor: None,
            at,
        }
    }
}

/// What the content policy sees of a recipient's consent (`msg.consent`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsentView {
    pub opted_out: bool,
    pub marketing_consent: bool,
    /// When the marketing consent was collected (Unix ms).
    pub consent_at: Option<i64>,
}

/// The opt-outs and marketing consents of every account, in memory.
/// Per account, per number: looked up by `&str`, no key built per call.
type ByAccount<T> = HashMap<String, HashMap<String, T>>;

#[derive(Debug, Default)]
pub struct Compliance {
    /// Account → number → the scopes it is opted out at: [`WHOLE_ACCOUNT`]
    /// or pool ids.
    opt_outs: RwLock<ByAccount<Vec<String>>>,
    /// Account → number → when the marketing consent was collected.
    marketing: RwLock<ByAccount<i64>>,
    /// Accounts whose marketing messages need a consent.
    consent_required: RwLock<HashSet<String>>,
    /// Changes made in place (see [`Compliance::replace`]).
    changes: AtomicU64,
    /// Opt-outs added ahead of their commit, by hold. Entries come and go
    /// under `opt_outs`' lock, so a reload sees each either here or
    /// committed.
    held: Mutex<HashMap<u64, Vec<HeldOptOut>>>,
    next_hold: AtomicU64,
}

/// Account, number, scope.
type HeldOptOut = (String, String, String);

/// Opt-outs put in memory ahead of the transaction that stores them: a
/// reload (which may have read the store before that commit) keeps them
/// until the hold is dropped, after the commit.
pub struct OptOutHold {
    held: HeldOptOuts,
}

/// What a store job adds opt-outs through; it may outlive its
/// [`OptOutHold`] (a caller that gave up), and then adds them unheld.
#[derive(Clone)]
pub struct HeldOptOuts {
    compliance: Arc<Compliance>,
    hold: u64,
}

impl OptOutHold {
    pub fn handle(&self) -> HeldOptOuts {
        self.held.clone()
    }
}

impl Drop for OptOutHold {
    fn drop(&mut self) {
        let (compliance, hold) = (&self.held.compliance, self.held.hold);
        {
            // Nothing added: no reload to refuse (and no lock taken).
            let mut held = lock(&compliance.held);
            if held.get(&hold).is_some_and(Vec::is_empty) {
                held.remove(&hold);
                return;
            }
        }
        let _opt_outs = write(&compliance.opt_outs);
        lock(&compliance.held).remove(&hold);
        // A reload that read the store before the commit now fails its
        // check.
        compliance.changed();
    }
}

impl HeldOptOuts {
    pub fn add(&self, account: &str, number: &str, scope: &str) {
        let compliance = &self.compliance;
        let mut map = write(&compliance.opt_outs);
        if let Some(entries) = lock(&compliance.held).get_mut(&self.hold) {
            entries.push((account.to_owned(), number.to_owned(), scope.to_owned()));
        }
        compliance.changed();
        insert_opt_out(&mut map, account, number, scope);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn insert_opt_out(map: &mut ByAccount<Vec<String>>, account: &str, number: &str, scope: &str) {
    let scopes = map
        .entry(account.to_owned())
        .or_default()
        .entry(number.to_owned())
        .or_default();
    if !scopes.iter().any(|s| s == scope) {
        scopes.push(scope.to_owned());
    }
}

fn lookup<'a, T>(map: &'a ByAccount<T>, account: &str, number: &str) -> Option<&'a T> {
    map.get(account)?.get(number)
}

impl Compliance {
    /// From the store's suppressions (account, number, scope), active
    /// marketing consents (account, number, collected at) and the accounts
    /// that require them.
    pub fn new(
        opt_outs: impl IntoIterator<Item = (String, String, String)>,
        marketing: impl IntoIterator<Item = (String, String, i64)>,
        consent_required: impl IntoIterator<Item = String>,
    ) -> Self {
        let this = Self {
            consent_required: RwLock::new(consent_required.into_iter().collect()),
            ..Self::default()
        };
        for (account, number, scope) in opt_outs {
            this.add_opt_out(&account, &number, &scope);
        }
        for (account, number, at) in marketing {
            this.set_marketing_consent(&account, &number, Some(at));
        }
        this
    }

    /// How many changes were made in place.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// Starts holding opt-outs added ahead of their commit.
    pub fn hold(self: &Arc<Self>) -> OptOutHold {
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed);
        lock(&self.held).insert(hold, Vec::new());
        OptOutHold {
            held: HeldOptOuts {
                compliance: self.clone(),
                hold,
            },
        }
    }

    /// Takes `fresh`'s opt-outs, consents and requirements in place of
    /// these (how a node learns of changes another node made), keeping the
    /// held opt-outs, unless a change was made in place since
    /// [`Compliance::changes`] said `changes`: then returns false.
    pub fn replace(&self, fresh: Compliance, changes: u64) -> bool {
        let mut opt_outs = write(&self.opt_outs);
        let mut marketing = write(&self.marketing);
        let mut consent_required = write(&self.consent_required);
        if self.changes() != changes {
            return false;
        }
        *opt_outs = fresh
            .opt_outs
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        for (account, number, scope) in lock(&self.held).values().flatten() {
            insert_opt_out(&mut opt_outs, account, number, scope);
        }
        *marketing = fresh
            .marketing
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        *consent_required = fresh
            .consent_required
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        true
    }

    /// Whether `account` may not send to `number`, from `pool` if any.
    pub fn opted_out(&self, account: &str, number: &str, pool: Option<&str>) -> bool {
        let map = read(&self.opt_outs);
        lookup(&map, account, number).is_some_and(|scopes| {
            scopes
                .iter()
                .any(|s| s == WHOLE_ACCOUNT || Some(s.as_str()) == pool)
        })
    }

    pub fn add_opt_out(&self, account: &str, number: &str, scope: &str) {
        let mut map = write(&self.opt_outs);
        self.changed();
        insert_opt_out(&mut map, account, number, scope);
    }

    /// Removes the account's opt-outs of `number`: at `scope`, or at every
    /// scope when `None`.
    pub fn remove_opt_out(&self, account: &str, number: &str, scope: Option<&str>) {
        let mut map = write(&self.opt_outs);
        self.changed();
        let Some(numbers) = map.get_mut(account) else {
            return;
        };
        if let Some(scopes) = numbers.get_mut(number) {
            scopes.retain(|s| scope.is_some_and(|x| x != s));
            if scopes.is_empty() {
                numbers.remove(number);
            }
        }
    }

    pub fn set_marketing_consent(&self, account: &str, number: &str, collected_at: Option<i64>) {
        let mut map = write(&self.marketing);
        self.changed();
        match collected_at {
            Some(at) => {
                map.entry(account.to_owned())
                    .or_default()
                    .insert(number.to_owned(), at);
            }
            None => {
                if let Some(numbers) = map.get_mut(account) {
                    numbers.remove(number);
                }
            }
        }
    }

    pub fn consent_required(&self, account: &str) -> bool {
        read(&self.consent_required).contains(account)
    }

    pub fn set_consent_required(&self, account: &str, required: bool) {
        let mut set = write(&self.consent_required);
        self.changed();
        if required {
            set.insert(account.to_owned());
        } else {
            set.remove(account);
        }
    }

    /// What the policies see of `number` for `account`.
    pub fn view(&self, account: &str, number: &str, pool: Option<&str>) -> ConsentView {
        let consent_at = lookup(&read(&self.marketing), account, number).copied();
        ConsentView {
            opted_out: self.opted_out(account, number, pool),
            marketing_consent: consent_at.is_some(),
            consent_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload read before a change made here does not undo it.
    #[test]
    fn a_reload_read_before_a_change_in_place_is_not_applied() {
        let c = Compliance::default();
        let before = c.changes();
        c.add_opt_out("acc", "+1", WHOLE_ACCOUNT);
        let stale = Compliance::new(Vec::new(), Vec::new(), Vec::new());
        assert!(!c.replace(stale, before));
        assert!(c.opted_out("acc", "+1", None));
        let fresh = Compliance::new(
            vec![("acc".into(), "+2".into(), WHOLE_ACCOUNT.into())],
            Vec::new(),
            Vec::new(),
        );
        assert!(c.replace(fresh, c.changes()));
        assert!(c.opted_out("acc", "+2", None) && !c.opted_out("acc", "+1", None));
    }

    /// The race CI met: an opt-out added ahead of its commit, a reload that
    /// read the store before that commit and checked the count after the
    /// add.
    #[test]
    fn a_reload_keeps_opt_outs_held_for_their_commit() {
        let c = Arc::new(Compliance::default());
        let hold = c.hold();
        hold.handle().add("acc", "+1", WHOLE_ACCOUNT);
        let stale = || Compliance::new(Vec::new(), Vec::new(), Vec::new());
        assert!(c.replace(stale(), c.changes()));
        assert!(c.opted_out("acc", "+1", None));
        // Read before the commit, checked after the hold ends: refused.
        let before_commit = c.changes();
        drop(hold);
        assert!(!c.replace(stale(), before_commit));
        assert!(c.opted_out("acc", "+1", None));
        // A handle that outlives its hold adds without holding.
        let late = c.hold().handle();
        late.add("acc", "+2", WHOLE_ACCOUNT);
        assert!(c.opted_out("acc", "+2", None));
        assert!(lock(&c.held).is_empty());
    }

    #[test]
    fn an_account_wide_opt_out_covers_every_pool_and_a_pool_one_only_its_pool() {
        let c = Compliance::default();
        c.add_opt_out("acc", "+1", WHOLE_ACCOUNT);
        c.add_opt_out("acc", "+2", "pool_a");
        assert!(c.opted_out("acc", "+1", None));
        assert!(c.opted_out("acc", "+1", Some("pool_b")));
        assert!(!c.opted_out("other", "+1", None));
        assert!(c.opted_out("acc", "+2", Some("pool_a")));
        assert!(!c.opted_out("acc", "+2", Some("pool_b")));
        assert!(!c.opted_out("acc", "+2", None));
        c.remove_opt_out("acc", "+2", None);
        assert!(!c.opted_out("acc", "+2", Some("pool_a")));
        c.set_marketing_consent("acc", "+3", Some(5));
        assert_eq!(c.view("acc", "+3", None).consent_at, Some(5));
        c.set_marketing_consent("acc", "+3", None);
        assert!(!c.view("acc", "+3", None).marketing_consent);
    }
}
