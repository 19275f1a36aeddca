//! What an inbound message's keyword does, in the transaction that files
//! it: STOP suppresses the handset for the account (or the pool) with the
//! message as evidence, START lifts that, and each answers (as HELP does)
//! with a real outgoing message from the number the handset wrote to.

use crate::store::Connection;

use crate::compliance::keywords::Keyword;
use crate::compliance::{
    Compliance, ConsentEvent, HeldOptOuts, OptOutScope, Suppression, WHOLE_ACCOUNT,
};
use crate::model::MessageType;
use crate::numbers::inventory::{MessageSender, NumberRecord};
use crate::store::inbound::NewInbound;
use crate::store::{Result, accounts, compliance as store, messages};

/// How long an automatic reply may wait to be sent.
const REPLY_VALIDITY_MS: i64 = 24 * 3600 * 1000;

/// What a keyword did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answered {
    pub keyword: Keyword,
    /// A reply was queued.
    pub replied: bool,
    /// Opt-outs lifted (START), to drop from memory once committed.
    pub lifted: Option<Lifted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lifted {
    pub account_id: String,
    pub number: String,
    /// `None`: every scope.
    pub scopes: Option<Vec<String>>,
}

impl Lifted {
    pub fn apply(&self, compliance: &Compliance) {
        match &self.scopes {
            None => compliance.remove_opt_out(&self.account_id, &self.number, None),
            Some(scopes) => {
                for scope in scopes {
                    compliance.remove_opt_out(&self.account_id, &self.number, Some(scope));
                }
            }
        }
    }
}

/// Acts on `body` if it is one of the account's keywords.
pub(super) fn answer(
    conn: &Connection,
    opt_outs: &HeldOptOuts,
    number: &NumberRecord,
    inbound: &NewInbound,
    inbound_id: &str,
    now: i64,
) -> Result<Option<Answered>> {
    let Some(account_id) = inbound.account_id.as_deref() else {
        return Ok(None);
    };
    let (handset, body) = (inbound.from.as_str(), inbound.text.as_str());
    let keywords = store::effective_keywords(conn, account_id, number.pool_id.as_deref())?;
    let Some(keyword) = keywords.classify(body) else {
        return Ok(None);
    };
    let settings = accounts::account_settings(conn, account_id)?;
    let scope = match (settings.opt_out_scope, &number.pool_id) {
        (OptOutScope::Pool, Some(pool)) => pool.clone(),
        _ => WHOLE_ACCOUNT.to_owned(),
    };
    let mut lifted = None;
    let event = |kind: &str| {
        let mut event = ConsentEvent::new(account_id, handset, kind, "keyword", now);
        event.scope = Some(scope.clone());
        event.evidence = Some(inbound_id.to_owned());
        event.actor = Some(handset.to_owned());
        store::insert_event(conn, &event)
    };
    match keyword {
        Keyword::OptOut => {
            // In memory before the commit: never a moment when a committed
            // opt-out is not enforced.
            opt_outs.add(account_id, handset, &scope);
            store::insert_suppression(
                conn,
                &Suppression {
                    account_id: account_id.to_owned(),
                    number: handset.to_owned(),
                    scope: scope.clone(),
                    source: "keyword".into(),
                    reason: Some(format!("replied {:?}", body.trim())),
                    evidence: Some(inbound_id.to_owned()),
                    created_at: now,
                },
            )?;
            event("opt_out")?;
        }
        Keyword::OptIn => {
            // START lifts what blocks this number: with account scope every
            // opt-out of the handset, with pool scope the account-wide one
            // and this pool's.
            let scopes =
                (scope != WHOLE_ACCOUNT).then(|| vec![WHOLE_ACCOUNT.to_owned(), scope.clone()]);
            let removed = match &scopes {
                None => store::delete_suppressions(conn, account_id, handset, None)?,
                Some(scopes) => {
                    let mut removed = 0;
                    for at in scopes {
                        removed += store::delete_suppressions(conn, account_id, handset, Some(at))?;
                    }
                    removed
                }
            };
            if removed > 0 {
                lifted = Some(Lifted {
                    account_id: account_id.to_owned(),
                    number: handset.to_owned(),
                    scopes,
                });
            }
            event("opt_in")?;
        }
        Keyword::Help => {}
    }
    let text = keywords.reply(keyword);
    let replied = !text.is_empty();
    if replied {
        let reply = reply_message(number, account_id, handset, text, keyword, now);
        messages::insert_message(conn, &reply, None)?;
    }
    Ok(Some(Answered {
        keyword,
        replied,
        lifted,
    }))
}

/// Pigeon's answer, from the number the handset wrote to.
fn reply_message(
    number: &NumberRecord,
    account_id: &str,
    handset: &str,
    text: &str,
    keyword: Keyword,
    now: i64,
) -> messages::MessageRecord {
    let analysis = crate::encoding::analyze(text);
    messages::MessageRecord {
        id: crate::ids::new_id("msg"),
        account_id: account_id.to_owned(),
        status: crate::model::Status::Queued,
        to: handset.to_owned(),
        from: Some(number.sender.clone()),
        country: crate::numbers::normalize(handset, None)
            .ok()
            .and_then(|r| r.country),
        body: text.to_owned(),
        message_type: MessageType::Transactional,
        encoding: analysis.encoding,
        segments: analysis.segments as i64,
        concat_ref: rand::random(),
        callback_url: None,
        send_at: None,
        expires_at: now + REPLY_VALIDITY_MS,
        metadata: Some(serde_json::json!({ "auto_reply": keyword.as_str() }).to_string()),
        sandbox: false,
        policy_digest: None,
        sender: Some(MessageSender::of(number, number.pool_id.clone())),
        auto_reply: Some(keyword),
        redacted_at: None,
        origin: Default::default(),
        created_at: now,
        updated_at: now,
    }
}
