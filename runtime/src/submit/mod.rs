//! The one accept path every front door calls: the JSON API (`POST
//! /v1/messages`), the Twilio-compatible API and the SMPP server each turn
//! their request into a transport-neutral [`Request`] and hand it to
//! [`Submitter`], which checks it (number, body, sender, schedule),
//! settles its sender (an owned number or a pool), screens it (opt-out,
//! consent, the content policy), counts it against the account's quota and
//! writes it durably. Only then does the door answer. A rule added here
//! holds on every door.
//!
//! Errors are [`SubmitError`]s: a fixed `code` (or one the content policy
//! chose), a message and the request field at fault, named as in the JSON
//! API (`to`, `body`, `from`, ...); each door turns them into its own form.
// A `SubmitError` (the store's error, a code, a message and a field: 136
// bytes) is made once per refused request; boxing it buys nothing here.

mod screen;
mod senders;
mod validate;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::auth::limits::QuotaExceeded;
use crate::auth::{Accounts, Principal};
use crate::compliance::Compliance;
use crate::model::{MessageType, Origin, Status};
use crate::numbers::pools::DefaultPools;
use crate::policies::Policies;
use crate::store::messages::{self as stored, InsertOutcome};
use crate::store::{Idempotency, MessageRecord, Store, StoreError};
use crate::time::now_ms;

pub use screen::Screened;
pub use senders::SenderBook;
pub use validate::{MAX_SEGMENTS, MAX_URL_LEN, check_callback_url, valid_sender};

/// What a message request is checked against, from the configuration.
#[derive(Debug, Clone)]
pub struct SubmitRules {
    /// When the request gives no `validity_secs`.
    pub default_validity_secs: u64,
    /// `webhooks.allow_private_networks`: a `callback_url` naming a
    /// non-public IP address is refused at submit unless this is set.
    pub allow_private_callbacks: bool,
    /// `senders.require_owned`: `from` must be a sender the account owns.
    pub require_owned_sender: bool,
}

/// One message as a front door received it, its fields already in
/// Pigeon's terms (a door parses its own syntax: JSON, a form, a PDU).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The recipient as given (E.164, or national with `country`).
    pub to: String,
    pub body: String,
    /// A sender the account owns (or any, without `senders.require_owned`).
    pub from: Option<String>,
    /// A sender pool to pick `from` from.
    pub pool: Option<String>,
    /// ISO 3166 alpha-2, for a national `to`.
    pub country: Option<String>,
    /// Transactional when not given.
    pub message_type: Option<MessageType>,
    pub callback_url: Option<String>,
    /// Unix ms.
    pub send_at: Option<i64>,
    pub validity_secs: Option<u64>,
    /// String values only; checked here.
    pub metadata: Option<Map<String, Value>>,
    pub idempotency: Option<Idempotency>,
    pub origin: Origin,
    /// Replace look-alike characters that force UCS-2 (see
    /// `encoding::smart_encode`) before the body is priced.
    pub smart_encoding: bool,
}

/// What kind of refusal a [`SubmitError`] is: it decides the status a door
/// answers with.
#[derive(Debug)]
pub enum ErrorKind {
    /// A field is wrong; nothing was stored.
    Invalid,
    /// Opt-out, missing consent or the content policy refused it: stored
    /// as `rejected`, so the refusal is on record.
    Refused,
    /// The idempotency key was used with a different request.
    KeyReused,
    /// Over the account's daily quota; try again after `retry_after` seconds.
    QuotaExceeded { retry_after: u64 },
    /// The store failed or is shutting down (boxed: it is large, and most
    /// refusals are not this).
    Store(Box<StoreError>),
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SubmitError {
    pub kind: ErrorKind,
    /// A fixed code, or one a content policy chose.
    pub code: Cow<'static, str>,
    pub message: String,
    /// The request field at fault, named as in the JSON API.
    pub field: Option<String>,
}

impl SubmitError {
    pub fn invalid(
        code: impl Into<Cow<'static, str>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            code: code.into(),
            message: message.into(),
            field: Some(field.into()),
        }
    }

    fn refused(mut self) -> Self {
        self.kind = ErrorKind::Refused;
        self
    }
}

impl From<StoreError> for SubmitError {
    fn from(err: StoreError) -> Self {
        Self {
            code: "storage".into(),
            message: err.to_string(),
            field: None,
            kind: ErrorKind::Store(Box::new(err)),
        }
    }
}

/// A message the store holds after a submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: MessageRecord,
    /// An earlier request with the same idempotency key stored it.
    pub replayed: bool,
}

/// The accept path, shared by the front doors.
pub struct Submitter {
    pub store: Store,
    pub accounts: Arc<Accounts>,
    /// Wakes the dispatcher when a message is due now.
    pub dispatch_waker: Arc<Notify>,
    pub rules: SubmitRules,
    /// None when no policies directory exists.
    pub policies: Option<Arc<Policies>>,
    pub default_pools: Arc<DefaultPools>,
    pub compliance: Arc<Compliance>,
}

impl Submitter {
    /// Checks, screens and stores one message. `Ok` only once it is durable.
    pub async fn submit(
        &self,
        principal: &Principal,
        request: Request,
    ) -> Result<Accepted, SubmitError> {
        let submitted = self.submit_one(principal, request).await;
        if let Err(err) = &submitted
            && !matches!(err.kind, ErrorKind::Store(_))
        {
            count_rejected(&err.code);
        }
        submitted
    }

    async fn submit_one(
        &self,
        principal: &Principal,
        request: Request,
    ) -> Result<Accepted, SubmitError> {
        let idempotency = request.idempotency.clone();
        let checked = validate::check(request, principal, now_ms(), &self.rules)?;
        let senders = SenderBook::load(self, principal, &[&checked]).await?;
        let message = senders.assign(checked)?;
        let quota = Quota::reserve(self, principal, 1)?;
        let shared_quota = quota.shared.clone();
        let message = match screen::screen(self, message) {
            Screened::Allowed(message) => message,
            Screened::Refused(message, error) => {
                let (code, reason) = (error.code.to_string(), error.message.clone());
                self.store
                    .write(move |conn| {
                        if let Some(over) = SharedQuota::check(&shared_quota, conn, 1)? {
                            return Ok(Err(over));
                        }
                        stored::insert_rejected(conn, &message, &code, &reason).map(Ok)
                    })
                    .await?
                    .map_err(quota_exceeded)?;
                quota.keep(1);
                return Err(error.refused());
            }
        };
        let outcome = self
            .store
            .write(move |conn| {
                if let Some(over) = SharedQuota::check(&shared_quota, conn, 1)? {
                    return Ok(Err(over));
                }
                stored::insert_message(conn, &message, idempotency.as_ref()).map(Ok)
            })
            .await?
            .map_err(quota_exceeded)?;
        match outcome {
            InsertOutcome::Created(message) => {
                quota.keep(1);
                self.accepted(&message);
                Ok(Accepted {
                    message,
                    replayed: false,
                })
            }
            InsertOutcome::Replayed(message) => Ok(Accepted {
                message,
                replayed: true,
            }),
            InsertOutcome::KeyReused => Err(key_reused()),
        }
    }

    /// Checks, screens and stores many messages in one write; each gets
    /// its own answer, in order. `Err` is the batch's alone: over the quota
    /// or the store failing, with nothing stored.
    pub async fn submit_many(
        &self,
        principal: &Principal,
        requests: Vec<Request>,
    ) -> Result<Vec<Result<Accepted, SubmitError>>, SubmitError> {
        let now = now_ms();
        let checked: Vec<Result<validate::Checked, SubmitError>> = requests
            .into_iter()
            .map(|request| validate::check(request, principal, now, &self.rules))
            .collect();
        let valid: Vec<&validate::Checked> =
            checked.iter().filter_map(|c| c.as_ref().ok()).collect();
        let senders = SenderBook::load(self, principal, &valid).await?;
        // Messages the screen refused are stored too, as `rejected`.
        let mut refused = Vec::new();
        let mut allowed = Vec::new();
        let screened: Vec<Result<(), SubmitError>> = checked
            .into_iter()
            .map(|checked| {
                let idempotency = checked.as_ref().ok().and_then(|c| c.idempotency.clone());
                let message = senders.assign(checked?)?;
                match screen::screen(self, message) {
                    Screened::Allowed(message) => {
                        allowed.push((message, idempotency));
                        Ok(())
                    }
                    Screened::Refused(message, error) => {
                        refused.push((message, error.code.to_string(), error.message.clone()));
                        Err(error.refused())
                    }
                }
            })
            .collect();
        let quota = Quota::reserve(self, principal, (refused.len() + allowed.len()) as u64)?;
        let refused_count = refused.len() as u64;
        let shared_quota = quota.shared.clone();
        let outcomes = self
            .store
            .write(move |conn| {
                let stored = (refused.len() + allowed.len()) as u64;
                if let Some(over) = SharedQuota::check(&shared_quota, conn, stored)? {
                    return Ok(Err(over));
                }
                for (message, code, reason) in &refused {
                    stored::insert_rejected(conn, message, code, reason)?;
                }
                allowed
                    .iter()
                    .map(|(m, idempotency)| stored::insert_message(conn, m, idempotency.as_ref()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Ok)
            })
            .await?
            .map_err(quota_exceeded)?;
        let mut outcomes = outcomes.into_iter();
        let mut created = 0;
        let mut woken = false;
        let answers = screened
            .into_iter()
            .map(|screened| {
                if let Err(err) = screened {
                    count_rejected(&err.code);
                    return Err(err);
                }
                match outcomes.next() {
                    Some(InsertOutcome::Created(message)) => {
                        created += 1;
                        count_accepted(&message);
                        woken |= message.status == Status::Queued;
                        Ok(Accepted {
                            message,
                            replayed: false,
                        })
                    }
                    Some(InsertOutcome::Replayed(message)) => Ok(Accepted {
                        message,
                        replayed: true,
                    }),
                    Some(InsertOutcome::KeyReused) | None => Err(key_reused()),
                }
            })
            .collect();
        quota.keep(refused_count + created);
        if woken {
            self.dispatch_waker.notify_one();
        }
        Ok(answers)
    }

    /// The message a request would become, with its sender settled, as
    /// the dispatcher would see it: for trying policies on it. Nothing is
    /// stored or counted.
    pub async fn preview(
        &self,
        principal: &Principal,
        request: Request,
    ) -> Result<MessageRecord, SubmitError> {
        let checked = validate::check(request, principal, now_ms(), &self.rules)?;
        let senders = SenderBook::load(self, principal, &[&checked]).await?;
        senders.assign(checked)
    }

    fn accepted(&self, message: &MessageRecord) {
        count_accepted(message);
        if message.status == Status::Queued {
            self.dispatch_waker.notify_one();
        }
    }
}

fn key_reused() -> SubmitError {
    SubmitError {
        kind: ErrorKind::KeyReused,
        code: "idempotency_key_reused".into(),
        message: "this Idempotency-Key was already used with a different request".into(),
        field: Some("Idempotency-Key".into()),
    }
}

fn count_accepted(record: &MessageRecord) {
    ::metrics::counter!("pigeon_messages_accepted_total", "type" => record.message_type.as_str())
        .increment(1);
}

fn count_rejected(code: &str) {
    ::metrics::counter!("pigeon_messages_rejected_total", "code" => code.to_owned()).increment(1);
}

/// Messages counted against the account's daily quota before they are
/// stored; what is not [`Quota::keep`]-ed (not stored: a replay, a failed
/// write) is given back when this is dropped.
struct Quota<'a> {
    submitter: &'a Submitter,
    account_id: &'a str,
    reserved: u64,
    kept: std::cell::Cell<u64>,
    /// On a shared store, the count the write checks again (this node's
    /// count misses the other nodes' messages).
    shared: Option<SharedQuota>,
}

impl<'a> Quota<'a> {
    fn reserve(
        submitter: &'a Submitter,
        principal: &'a Principal,
        messages: u64,
    ) -> Result<Self, SubmitError> {
        let now = now_ms();
        let limits = submitter.accounts.limits();
        limits
            .reserve(&principal.account_id, messages, now)
            .map_err(quota_exceeded)?;
        let shared = (submitter.store.is_shared()
            && limits.get(&principal.account_id).messages_per_day.is_some())
        .then(|| SharedQuota {
            account_id: principal.account_id.clone(),
            day_start: crate::auth::limits::day_start(now),
        });
        Ok(Self {
            submitter,
            account_id: &principal.account_id,
            reserved: messages,
            kept: std::cell::Cell::new(0),
            shared,
        })
    }

    fn keep(&self, messages: u64) {
        self.kept.set(self.kept.get() + messages);
    }
}

impl Drop for Quota<'_> {
    fn drop(&mut self) {
        let unused = self.reserved.saturating_sub(self.kept.get());
        if unused > 0 {
            self.submitter
                .accounts
                .limits()
                .release(self.account_id, unused);
        }
    }
}

/// The daily quota as every node counts it: checked in the write that
/// stores the messages (see `store::accounts::over_daily_quota`).
#[derive(Clone)]
struct SharedQuota {
    account_id: String,
    day_start: i64,
}

impl SharedQuota {
    fn check(
        quota: &Option<Self>,
        conn: &crate::store::Connection,
        messages: u64,
    ) -> Result<Option<QuotaExceeded>, StoreError> {
        let Some(quota) = quota else {
            return Ok(None);
        };
        let over = crate::store::accounts::over_daily_quota(
            conn,
            &quota.account_id,
            messages,
            quota.day_start,
        )?;
        Ok(over.map(|(messages_per_day, used)| QuotaExceeded {
            messages_per_day,
            used,
        }))
    }
}

fn quota_exceeded(over: QuotaExceeded) -> SubmitError {
    SubmitError {
        kind: ErrorKind::QuotaExceeded {
            retry_after: seconds_to_next_utc_day(now_ms()),
        },
        code: "quota_exceeded".into(),
        message: format!(
            "this account may store {} messages a day (UTC) and has stored {}; \
             nothing was stored",
            over.messages_per_day, over.used
        ),
        field: None,
    }
}

fn seconds_to_next_utc_day(now: i64) -> u64 {
    let next = crate::auth::limits::day_start(now) + 86_400_000;
    ((next - now) / 1000).max(1) as u64
}
