//! Settling a message's sender: an owned number, or one picked from a
//! sender pool (sticky, matched to the recipient's country).

use std::collections::HashMap;

use super::validate::Checked;
use super::{SubmitError, Submitter};
use crate::auth::Principal;
use crate::numbers;
use crate::numbers::inventory::{Capability, MessageSender, NumberRecord, SenderKind};
use crate::numbers::pools::{SenderPool, choose_sender};
use crate::store::MessageRecord;
use crate::store::{numbers as store_numbers, pools as store_pools};

/// What the store knows of the senders some requests name, read at once:
/// the account's numbers among their `from`s, the pools they name (or the
/// account's default pool) with their numbers, and the sender each
/// recipient got from its pool last time.
pub struct SenderBook {
    /// `from` must be a number the account owns (not for sandbox keys, nor
    /// with `senders.require_owned = false`).
    require_owned: bool,
    numbers: Vec<NumberRecord>,
    pools: HashMap<String, (SenderPool, Vec<NumberRecord>)>,
    default_pool: Option<String>,
    /// (pool, recipient) → number.
    sticky: HashMap<(String, String), String>,
}

impl SenderBook {
    pub async fn load(
        submitter: &Submitter,
        principal: &Principal,
        submissions: &[&Checked],
    ) -> Result<Self, SubmitError> {
        let require_owned = !principal.sandbox && submitter.rules.require_owned_sender;
        let default_pool = submissions
            .iter()
            .any(|s| s.message.from.is_none() && s.pool.is_none())
            .then(|| submitter.default_pools.get(&principal.account_id))
            .flatten();
        // (pool, recipient) for each message sent through a pool.
        let pooled: Vec<(String, String)> = submissions
            .iter()
            .filter_map(|s| {
                let pool = s.pool_or(default_pool.as_ref())?;
                Some((pool.clone(), s.message.to.clone()))
            })
            .collect();
        let mut froms: Vec<String> = submissions
            .iter()
            .filter_map(|s| s.message.from.clone())
            .collect();
        froms.sort();
        froms.dedup();
        let mut book = Self {
            require_owned,
            numbers: Vec::new(),
            pools: HashMap::new(),
            default_pool,
            sticky: HashMap::new(),
        };
        if froms.is_empty() && pooled.is_empty() {
            // Nothing to look up: the common case of no sender named.
            return Ok(book);
        }
        let account = principal.account_id.clone();
        let (numbers, pools, sticky) = submitter
            .store
            .read(move |c| {
                let numbers = store_numbers::owned_numbers(c, &account, &froms)?;
                let mut pools: HashMap<String, (SenderPool, Vec<NumberRecord>)> = HashMap::new();
                let mut sticky = HashMap::new();
                for (pool_id, to) in pooled {
                    if !pools.contains_key(&pool_id)
                        && let Some(found) = store_pools::get_pool(c, &account, &pool_id)?
                    {
                        let members = store_numbers::pool_members(c, &pool_id)?;
                        pools.insert(pool_id.clone(), (found, members));
                    }
                    if pools.get(&pool_id).is_some_and(|(p, _)| p.sticky_sender)
                        && let Some(number) = store_pools::sticky_sender(c, &pool_id, &to)?
                    {
                        sticky.insert((pool_id, to), number);
                    }
                }
                Ok((numbers, pools, sticky))
            })
            .await?;
        book.numbers = numbers;
        book.pools = pools;
        book.sticky = sticky;
        Ok(book)
    }

    /// Settles a message's sender: picked from its pool (or the account's
    /// default pool, when it names no sender), or the number its `from` is.
    pub fn assign(&self, submission: Checked) -> Result<MessageRecord, SubmitError> {
        // The account's default pool, unless it was deleted a moment ago.
        let default_pool = self
            .default_pool
            .as_ref()
            .filter(|id| self.pools.contains_key(*id));
        let pool_id = submission.pool_or(default_pool).cloned();
        let mut message = submission.message;
        let country = message.country.clone();
        if let Some(pool_id) = pool_id {
            let (pool, members) = self.pools.get(&pool_id).ok_or_else(|| {
                SubmitError::invalid(
                    "unknown_pool",
                    "pool",
                    format!("this account has no sender pool `{pool_id}`"),
                )
            })?;
            let sticky = self.sticky.get(&(pool_id.clone(), message.to.clone()));
            let number = choose_sender(
                pool,
                members,
                sticky.map(String::as_str),
                &message.to,
                country.as_deref(),
            )
            .ok_or_else(|| {
                SubmitError::invalid(
                    "no_sender_for_country",
                    "to",
                    format!(
                        "the sender pool `{}` has no sender that may send to {}",
                        pool.name,
                        country.as_deref().unwrap_or("this number")
                    ),
                )
            })?;
            message.from = Some(number.sender.clone());
            message.sender = Some(MessageSender::of(number, Some(pool_id)));
            return Ok(message);
        }
        let Some(from) = message.from.clone() else {
            return Ok(message);
        };
        let mut owned = self.numbers.iter().filter(|n| n.sender == from);
        let number = owned
            .clone()
            .find(|n| Some(n.country.as_str()) == country.as_deref())
            .or_else(|| owned.next());
        let kind = match number {
            Some(number) if !number.capabilities.contains(&Capability::SmsMt) => {
                return Err(SubmitError::invalid(
                    "sender_cannot_send",
                    "from",
                    format!("`from` {from:?} can only receive (its capabilities lack sms_mt)"),
                ));
            }
            Some(number) => {
                // Its pool, if it is in one: a pool's opt-outs cover it too.
                message.sender = Some(MessageSender::of(number, number.pool_id.clone()));
                number.kind
            }
            None if self.require_owned => {
                return Err(SubmitError::invalid(
                    "sender_not_owned",
                    "from",
                    format!(
                        "`from` {from:?} is not a sender of this account: claim it from the number inventory"
                    ),
                ));
            }
            None if from.bytes().any(|b| b.is_ascii_alphabetic()) => SenderKind::Alphanumeric,
            None => SenderKind::LongCode,
        };
        if let Some(country) = &country
            && !numbers::rules::kind_allowed_in(kind, country)
        {
            return Err(SubmitError::invalid(
                "sender_not_allowed_in_country",
                "from",
                format!("{country} does not allow {} senders", kind.as_str()),
            ));
        }
        Ok(message)
    }
}
