//! `/v1/messages`: send, send in batches, read, list, cancel.

use std::collections::{BTreeMap, HashMap};

use hyper::StatusCode;
use hyper::body::Incoming;
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::json::{Fields, parse_limit, parse_object, query_params, read_body, unknown_parameter};
use super::{App, Response, json_response};
use crate::auth::{Principal, Role};
use crate::encoding;
use crate::model::{MessageType, Status};
use crate::numbers::inventory::{Capability, MessageSender, NumberRecord, SenderKind};
use crate::numbers::pools::{SenderPool, choose_sender};
use crate::numbers::{self, NumberError};
use crate::policies::ContentDecision;
use crate::store::messages::{self as stored, CancelOutcome, InsertOutcome, ListFilter};
use crate::store::{EventRecord, Idempotency, MessageRecord, PartRecord};
use crate::store::{numbers as store_numbers, pools as store_pools};
use crate::time::{now_ms, parse_rfc3339, to_rfc3339};

/// Most parts one message may take.
pub const MAX_SEGMENTS: usize = 10;
/// Most messages in one batch request.
pub const MAX_BATCH: usize = 1000;
/// How far ahead a message may be scheduled (as Twilio: 35 days).
const MAX_SCHEDULE_AHEAD_MS: i64 = 35 * 24 * 3600 * 1000;
/// How far in the past `send_at` may be (clocks differ): further back is
/// a mistake, not a wish to send at once.
const MAX_SEND_AT_PAST_MS: i64 = 10 * 60 * 1000;
const MAX_VALIDITY_SECS: u64 = 7 * 24 * 3600;
const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_LEN: usize = 40;
const MAX_METADATA_VALUE_LEN: usize = 500;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_URL_LEN: usize = 2048;

/// The request's `Idempotency-Key` header, checked.
pub fn idempotency_key(headers: &hyper::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::invalid(
            "invalid_idempotency_key",
            "Idempotency-Key",
            format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )),
    }
}

/// An idempotency key for one request body (its fields, canonically ordered:
/// serde_json's map is sorted, so equal requests serialise equally).
fn idempotency(key: String, request: &Map<String, Value>) -> Idempotency {
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    Idempotency {
        key,
        request_digest: Sha256::digest(&canonical).into(),
    }
}

pub async fn create(
    app: &App,
    principal: &Principal,
    idempotency_key: Option<String>,
    body: Incoming,
) -> Result<Response, ApiError> {
    let created = create_one(app, principal, idempotency_key, body).await;
    if let Err(err) = &created
        && err.status.is_client_error()
    {
        count_rejected(&err.code);
    }
    created
}

/// Messages counted against the account's daily quota before they are
/// stored; what is not [`Quota::keep`]-ed (not stored: a replay, a failed
/// write) is given back when this is dropped.
struct Quota<'a> {
    app: &'a App,
    account_id: &'a str,
    reserved: u64,
    kept: std::cell::Cell<u64>,
}

impl<'a> Quota<'a> {
    fn reserve(app: &'a App, principal: &'a Principal, messages: u64) -> Result<Self, ApiError> {
        app.accounts
            .limits()
            .reserve(&principal.account_id, messages, now_ms())
            .map_err(|over| {
                ApiError::too_many(
                    "quota_exceeded",
                    format!(
                        "this account may store {} messages a day (UTC) and has stored {}; \
                         nothing was stored",
                        over.messages_per_day, over.used
                    ),
                    seconds_to_next_utc_day(now_ms()),
                )
            })?;
        Ok(Self {
            app,
            account_id: &principal.account_id,
            reserved: messages,
            kept: std::cell::Cell::new(0),
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
            self.app.accounts.limits().release(self.account_id, unused);
        }
    }
}

fn seconds_to_next_utc_day(now: i64) -> u64 {
    let next = crate::auth::limits::day_start(now) + 86_400_000;
    ((next - now) / 1000).max(1) as u64
}

fn count_accepted(record: &MessageRecord) {
    ::metrics::counter!("pigeon_messages_accepted_total", "type" => record.message_type.as_str())
        .increment(1);
}

fn count_rejected(code: &str) {
    ::metrics::counter!("pigeon_messages_rejected_total", "code" => code.to_owned()).increment(1);
}

async fn create_one(
    app: &App,
    principal: &Principal,
    idempotency_key: Option<String>,
    body: Incoming,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    let map = parse_object(&bytes)?;
    let idempotency = idempotency_key.map(|key| idempotency(key, &map));
    let submission = parse_message(Fields::new(map), principal, now_ms(), &app.submit_rules)?;
    let senders = SenderBook::load(app, principal, &[&submission]).await?;
    let message = senders.assign(submission, "")?;
    let quota = Quota::reserve(app, principal, 1)?;
    let message = match screen(app, message) {
        Checked::Allowed(message) => message,
        Checked::Rejected(message, error) => {
            let (code, reason) = (error.code.to_string(), error.message.clone());
            app.store
                .write(move |conn| stored::insert_rejected(conn, &message, &code, &reason))
                .await?;
            quota.keep(1);
            return Err(error);
        }
    };
    let outcome = app
        .store
        .write(move |conn| stored::insert_message(conn, &message, idempotency.as_ref()))
        .await?;
    if matches!(outcome, InsertOutcome::Created(_)) {
        quota.keep(1);
    }
    match outcome {
        InsertOutcome::Created(record) => {
            count_accepted(&record);
            if record.status == Status::Queued {
                app.dispatch_waker.notify_one();
            }
            Ok(json_response(StatusCode::ACCEPTED, &summary_json(&record)))
        }
        InsertOutcome::Replayed(record) => {
            let mut response = json_response(StatusCode::ACCEPTED, &summary_json(&record));
            response.headers_mut().insert(
                "idempotent-replayed",
                hyper::header::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        InsertOutcome::KeyReused => Err(key_reused()),
    }
}

/// A message after the content policy: allowed (maybe rewritten), or
/// refused with the policy's code and reason.
enum Checked {
    Allowed(MessageRecord),
    Rejected(MessageRecord, ApiError),
}

/// Checks the recipient's opt-out and, for marketing where the account
/// requires it, consent; then runs the content policy, if there is one,
/// and records its digest.
fn screen(app: &App, mut message: MessageRecord) -> Checked {
    let pool = message.sender.as_ref().and_then(|s| s.pool_id.as_deref());
    let consent = app.compliance.view(&message.account_id, &message.to, pool);
    if consent.opted_out {
        let error = ApiError::invalid(
            "recipient_opted_out",
            "to",
            format!(
                "{} opted out of this account's messages (see /v1/suppressions)",
                message.to
            ),
        );
        return Checked::Rejected(message, error);
    }
    if message.message_type == MessageType::Marketing
        && !consent.marketing_consent
        && app.compliance.consent_required(&message.account_id)
    {
        let error = ApiError::invalid(
            "no_consent",
            "to",
            format!(
                "this account sends marketing only with consent on record, and {} has none (see /v1/consents)",
                message.to
            ),
        );
        return Checked::Rejected(message, error);
    }
    let Some(policies) = &app.policies else {
        return Checked::Allowed(message);
    };
    let (decision, digest) =
        policies.check_content(&crate::dispatch::message_view(&message, consent), now_ms());
    message.policy_digest = Some(digest.to_string());
    let refuse = |code: String, reason: String| ApiError::invalid(code, "body", reason);
    match decision {
        ContentDecision::Allow => Checked::Allowed(message),
        ContentDecision::Reject { code, reason } => {
            Checked::Rejected(message, refuse(code, reason))
        }
        ContentDecision::Rewrite { text } => {
            let analysis = encoding::analyze(&text);
            if text.is_empty() || analysis.segments > MAX_SEGMENTS {
                let reason = format!(
                    "the content policy rewrote the body to {} parts; at most {MAX_SEGMENTS} are allowed",
                    analysis.segments
                );
                return Checked::Rejected(message, refuse("policy_error".into(), reason));
            }
            message.body = text;
            message.encoding = analysis.encoding;
            message.segments = analysis.segments as i64;
            Checked::Allowed(message)
        }
    }
}

/// With an `Idempotency-Key`, item `i` is sent as if alone with the key
/// `<key>/<i>`: a retried batch replays every item, and an item that differs
/// from the first try is refused alone.
pub async fn create_batch(
    app: &App,
    principal: &Principal,
    idempotency_key: Option<String>,
    body: Incoming,
) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    let mut fields = Fields::new(parse_object(&bytes)?);
    let items = fields.required_array("messages")?;
    fields.finish()?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "invalid_batch_size",
            "messages",
            format!("a batch holds 1 to {MAX_BATCH} messages"),
        ));
    }
    let now = now_ms();
    let submissions: Vec<Result<(Submission, Option<Idempotency>), ApiError>> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => {
                let idempotency = idempotency_key
                    .as_ref()
                    .map(|key| idempotency(format!("{key}/{i}"), &map));
                let fields = Fields::nested(map, format!("messages[{i}]."));
                let submission = parse_message(fields, principal, now, &app.submit_rules)?;
                Ok((submission, idempotency))
            }
            _ => Err(ApiError::invalid(
                "invalid_type",
                format!("messages[{i}]"),
                "each message must be an object",
            )),
        })
        .collect();
    let valid: Vec<&Submission> = submissions
        .iter()
        .filter_map(|s| s.as_ref().ok().map(|(s, _)| s))
        .collect();
    let senders = SenderBook::load(app, principal, &valid).await?;
    // Messages the content policy refused are stored too, as `rejected`.
    let refused = std::sync::Mutex::new(Vec::new());
    let parsed: Vec<Result<(MessageRecord, Option<Idempotency>), ApiError>> = submissions
        .into_iter()
        .enumerate()
        .map(|(i, submission)| {
            let (submission, idempotency) = submission?;
            let message = senders.assign(submission, &format!("messages[{i}]."))?;
            match screen(app, message) {
                Checked::Allowed(message) => Ok((message, idempotency)),
                Checked::Rejected(message, error) => {
                    refused.lock().unwrap_or_else(|e| e.into_inner()).push((
                        message,
                        error.code.to_string(),
                        error.message.clone(),
                    ));
                    let field = error.field.clone().unwrap_or_default();
                    Err(error.with_field(format!("messages[{i}].{field}")))
                }
            }
        })
        .collect();
    let valid: Vec<(MessageRecord, Option<Idempotency>)> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let refused: Vec<(MessageRecord, String, String)> =
        refused.into_inner().unwrap_or_else(|e| e.into_inner());
    let quota = Quota::reserve(app, principal, (refused.len() + valid.len()) as u64)?;
    let refused_count = refused.len() as u64;
    let stored = app
        .store
        .write(move |conn| {
            for (message, code, reason) in &refused {
                stored::insert_rejected(conn, message, code, reason)?;
            }
            valid
                .iter()
                .map(|(m, idempotency)| stored::insert_message(conn, m, idempotency.as_ref()))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let created = stored
        .iter()
        .filter(|o| matches!(o, InsertOutcome::Created(_)))
        .count() as u64;
    quota.keep(refused_count + created);
    let mut stored = stored.into_iter();
    let mut accepted = 0;
    let results: Vec<Value> = parsed
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Ok(_) => match stored.next() {
                Some(InsertOutcome::Created(record)) => {
                    accepted += 1;
                    count_accepted(&record);
                    json!({"index": index, "status": 202, "message": summary_json(&record)})
                }
                Some(InsertOutcome::Replayed(record)) => {
                    accepted += 1;
                    json!({"index": index, "status": 202, "message": summary_json(&record)})
                }
                Some(InsertOutcome::KeyReused) => {
                    let err = key_reused();
                    json!({"index": index, "status": err.status.as_u16(), "error": err.to_json()["error"]})
                }
                None => json!({"index": index, "status": 500}),
            },
            Err(err) => {
                count_rejected(&err.code);
                json!({"index": index, "status": err.status.as_u16(), "error": err.to_json()["error"]})
            }
        })
        .collect();
    if accepted > 0 {
        app.dispatch_waker.notify_one();
    }
    let rejected = results.len() - accepted;
    Ok(json_response(
        StatusCode::OK,
        &json!({"accepted": accepted, "rejected": rejected, "results": results}),
    ))
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request",
    )
    .with_field("Idempotency-Key")
}

pub async fn get(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let account = principal.account_id.clone();
    let id = id.to_owned();
    let found = app
        .store
        .read(move |conn| {
            let Some(message) = stored::get_message(conn, &account, &id)? else {
                return Ok(None);
            };
            let parts = stored::get_parts(conn, &id)?;
            let events = stored::get_events(conn, &message)?;
            Ok(Some((message, parts, events)))
        })
        .await?;
    let (message, parts, events) = found.ok_or_else(|| ApiError::not_found("message"))?;
    Ok(json_response(
        StatusCode::OK,
        &detail_json(&message, principal.role, &parts, &events),
    ))
}

pub async fn list(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let mut filter = ListFilter {
        limit: 50,
        ..ListFilter::default()
    };
    for (key, value) in query_params(query) {
        match key.as_str() {
            "status" => {
                filter.status = Some(Status::parse(&value).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_status",
                        "status",
                        format!("unknown status `{value}`"),
                    )
                })?)
            }
            "to" => {
                let recipient = numbers::normalize(&value, None)
                    .map_err(|e| ApiError::invalid("invalid_number", "to", e.to_string()))?;
                filter.to = Some(recipient.e164);
            }
            "since" => {
                filter.since = Some(parse_rfc3339(&value).ok_or_else(|| {
                    ApiError::invalid("invalid_time", "since", "`since` must be an RFC 3339 time")
                })?)
            }
            "limit" => filter.limit = parse_limit(&value)?,
            "cursor" => {
                if !value.starts_with("msg_") || value.len() != 30 {
                    return Err(ApiError::invalid(
                        "invalid_cursor",
                        "cursor",
                        "unknown cursor",
                    ));
                }
                filter.before_id = Some(value)
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    let account = principal.account_id.clone();
    let limit = filter.limit;
    let messages = app
        .store
        .read(move |conn| stored::list_messages(conn, &account, &filter))
        .await?;
    let next_cursor = (messages.len() == limit).then(|| messages.last().map(|m| m.id.clone()));
    let data: Vec<Value> = messages
        .iter()
        .map(|m| message_json(m, principal.role))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next_cursor.flatten()}),
    ))
}

pub async fn cancel(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let account = principal.account_id.clone();
    let id = id.to_owned();
    let outcome = app
        .store
        .write(move |conn| stored::cancel_message(conn, &account, &id, now_ms()))
        .await?;
    match outcome {
        CancelOutcome::Canceled(message) => Ok(json_response(
            StatusCode::OK,
            &message_json(&message, principal.role),
        )),
        CancelOutcome::NotFound => Err(ApiError::not_found("message")),
        CancelOutcome::NotCancelable(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancelable",
            format!("a message that is {status} can no longer be canceled"),
        )),
    }
}

/// `POST /v1/messages/{id}/redact`: the body goes now, not at the end of
/// its retention; the rest of the message stays. Not while it is still to
/// be sent (queued, scheduled, sending): the dispatcher needs its body.
pub async fn redact(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    use crate::store::retention::{RedactOutcome, redact_message};
    let account = principal.account_id.clone();
    let id = id.to_owned();
    let outcome = app
        .store
        .write(move |conn| redact_message(conn, &account, &id, now_ms()))
        .await?;
    match outcome {
        RedactOutcome::Redacted(message) => Ok(json_response(
            StatusCode::OK,
            &message_json(&message, principal.role),
        )),
        RedactOutcome::NotFound => Err(ApiError::not_found("message")),
        RedactOutcome::NotFinal(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "message_not_final",
            format!(
                "the message is {status}: it can be redacted once it has been sent, or has failed, expired or been canceled"
            ),
        )),
    }
}

/// The message's webhook deliveries, oldest first, to debug an endpoint.
pub async fn webhooks(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    use crate::store::webhooks::list_for_message;
    let account = principal.account_id.clone();
    let id = id.to_owned();
    let deliveries = app
        .store
        .read(
            move |conn| match stored::get_message(conn, &account, &id)? {
                Some(_) => list_for_message(conn, &id).map(Some),
                None => Ok(None),
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    let data: Vec<Value> = deliveries.iter().map(delivery_json).collect();
    Ok(json_response(StatusCode::OK, &json!({"data": data})))
}

/// One webhook delivery, for debugging an endpoint.
pub(super) fn delivery_json(d: &crate::store::webhooks::WebhookRecord) -> Value {
    use crate::store::webhooks::DeliveryState;
    json!({
        "id": d.id,
        "type": d.event_type,
        "status": d.status,
        "url": d.url,
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": to_rfc3339(d.created_at),
        "next_attempt_at": (d.state == DeliveryState::Pending).then(|| to_rfc3339(d.next_attempt_at)),
    })
}

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

/// A message request, checked, before its sender is settled.
pub(super) struct Submission {
    pub message: MessageRecord,
    /// The sender pool to pick `from` from.
    pub pool: Option<String>,
}

impl Submission {
    /// The pool its sender comes from: the one it names, or, when it names
    /// no sender at all, the account's default.
    fn pool_or<'a>(&'a self, default: Option<&'a String>) -> Option<&'a String> {
        self.pool
            .as_ref()
            .or(default.filter(|_| self.message.from.is_none()))
    }
}

/// What the store knows of the senders some requests name, read at once:
/// the account's numbers among their `from`s, the pools they name (or the
/// account's default pool) with their numbers, and the sender each
/// recipient got from its pool last time.
pub(super) struct SenderBook {
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
    pub(super) async fn load(
        app: &App,
        principal: &Principal,
        submissions: &[&Submission],
    ) -> Result<Self, ApiError> {
        let require_owned = !principal.sandbox && app.submit_rules.require_owned_sender;
        let default_pool = submissions
            .iter()
            .any(|s| s.message.from.is_none() && s.pool.is_none())
            .then(|| app.default_pools.get(&principal.account_id))
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
        let (numbers, pools, sticky) = app
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
    /// `prefix` is the request's place in a batch (`messages[3].`).
    pub(super) fn assign(
        &self,
        submission: Submission,
        prefix: &str,
    ) -> Result<MessageRecord, ApiError> {
        let field = |name: &str| format!("{prefix}{name}");
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
                ApiError::invalid(
                    "unknown_pool",
                    field("pool"),
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
                ApiError::invalid(
                    "no_sender_for_country",
                    field("to"),
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
                return Err(ApiError::invalid(
                    "sender_cannot_send",
                    field("from"),
                    format!("`from` {from:?} can only receive (its capabilities lack sms_mt)"),
                ));
            }
            Some(number) => {
                // Its pool, if it is in one: a pool's opt-outs cover it too.
                message.sender = Some(MessageSender::of(number, number.pool_id.clone()));
                number.kind
            }
            None if self.require_owned => {
                return Err(ApiError::invalid(
                    "sender_not_owned",
                    field("from"),
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
            return Err(ApiError::invalid(
                "sender_not_allowed_in_country",
                field("from"),
                format!("{country} does not allow {} senders", kind.as_str()),
            ));
        }
        Ok(message)
    }
}

/// Checks one message request and turns it into what the store writes.
pub(super) fn parse_message(
    mut fields: Fields,
    principal: &Principal,
    now: i64,
    rules: &SubmitRules,
) -> Result<Submission, ApiError> {
    let to = fields.required_str("to")?;
    let body = fields.required_str("body")?;
    let from = fields.optional_str("from")?;
    let pool = fields.optional_str("pool")?;
    let country = fields.optional_str("country")?;
    let message_type = fields.optional_str("type")?;
    let callback_url = fields.optional_str("callback_url")?;
    let send_at = fields.optional_str("send_at")?;
    let validity_secs = fields.optional_u64("validity_secs")?;
    let metadata = fields.optional_object("metadata")?;

    let recipient = numbers::normalize(&to, country.as_deref()).map_err(|err| match err {
        NumberError::UnknownCountry(_) => {
            ApiError::invalid("invalid_country", fields.name("country"), err.to_string())
        }
        _ => ApiError::invalid(
            "invalid_number",
            fields.name("to"),
            format!("`{to}`: {err}"),
        ),
    })?;
    if body.is_empty() {
        return Err(ApiError::invalid(
            "empty_body",
            fields.name("body"),
            "`body` must not be empty",
        ));
    }
    let analysis = encoding::analyze(&body);
    if analysis.segments > MAX_SEGMENTS {
        return Err(ApiError::invalid(
            "body_too_long",
            fields.name("body"),
            format!(
                "the body needs {} parts in {}; at most {MAX_SEGMENTS} are allowed",
                analysis.segments,
                analysis.encoding.as_str()
            ),
        ));
    }
    if let Some(from) = &from
        && !valid_sender(from)
    {
        return Err(ApiError::invalid(
            "invalid_sender",
            fields.name("from"),
            "`from` must be a phone number (+ and up to 15 digits) or an alphanumeric sender of 1 to 11 letters, digits and spaces",
        ));
    }
    if from.is_some() && pool.is_some() {
        return Err(ApiError::invalid(
            "conflicting_fields",
            fields.name("pool"),
            "give `from` or `pool`, not both",
        ));
    }
    let message_type = match message_type {
        None => MessageType::Transactional,
        Some(t) => MessageType::parse(&t).ok_or_else(|| {
            ApiError::invalid(
                "invalid_message_type",
                fields.name("type"),
                "`type` must be otp, transactional or marketing",
            )
        })?,
    };
    if let Some(url) = &callback_url {
        check_callback_url(url, rules.allow_private_callbacks).map_err(|message| {
            ApiError::invalid("invalid_url", fields.name("callback_url"), message)
        })?;
    }
    let send_at = match send_at {
        None => None,
        Some(text) => {
            let at = parse_rfc3339(&text).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_time",
                    fields.name("send_at"),
                    "`send_at` must be an RFC 3339 time, e.g. 2026-12-01T09:00:00+07:00",
                )
            })?;
            if at < now - MAX_SEND_AT_PAST_MS {
                return Err(ApiError::invalid(
                    "send_at_in_past",
                    fields.name("send_at"),
                    "`send_at` is more than 10 minutes in the past; leave it out to send now",
                ));
            }
            if at > now + MAX_SCHEDULE_AHEAD_MS {
                return Err(ApiError::invalid(
                    "send_at_too_far",
                    fields.name("send_at"),
                    "`send_at` may be at most 35 days ahead",
                ));
            }
            Some(at)
        }
    };
    let validity_secs = match validity_secs {
        None => rules.default_validity_secs,
        Some(secs) if (1..=MAX_VALIDITY_SECS).contains(&secs) => secs,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_validity",
                fields.name("validity_secs"),
                format!("`validity_secs` must be 1 to {MAX_VALIDITY_SECS}"),
            ));
        }
    };
    let metadata = metadata
        .map(|map| parse_metadata(map, &fields.name("metadata")))
        .transpose()?;
    fields.finish()?;

    let starts = send_at.unwrap_or(now).max(now);
    let expires_at = starts.saturating_add(validity_secs.saturating_mul(1000) as i64);
    let message = MessageRecord {
        id: crate::ids::new_id("msg"),
        account_id: principal.account_id.clone(),
        status: stored::initial_status(send_at, now),
        to: recipient.e164,
        from,
        country: recipient.country,
        body,
        message_type,
        encoding: analysis.encoding,
        segments: analysis.segments as i64,
        concat_ref: rand::rng().random(),
        callback_url,
        send_at,
        expires_at,
        metadata,
        sandbox: principal.sandbox,
        policy_digest: None,
        sender: None,
        auto_reply: None,
        redacted_at: None,
        created_at: now,
        updated_at: now,
    };
    Ok(Submission { message, pool })
}

fn parse_metadata(map: Map<String, Value>, field: &str) -> Result<String, ApiError> {
    if map.len() > MAX_METADATA_KEYS {
        return Err(ApiError::invalid(
            "invalid_metadata",
            field,
            format!("`metadata` holds at most {MAX_METADATA_KEYS} keys"),
        ));
    }
    let mut clean = BTreeMap::new();
    for (key, value) in map {
        let Value::String(value) = value else {
            return Err(ApiError::invalid(
                "invalid_metadata",
                format!("{field}.{key}"),
                "metadata values must be strings",
            ));
        };
        if key.is_empty()
            || key.chars().count() > MAX_METADATA_KEY_LEN
            || value.chars().count() > MAX_METADATA_VALUE_LEN
        {
            return Err(ApiError::invalid(
                "invalid_metadata",
                format!("{field}.{key}"),
                format!(
                    "metadata keys are 1 to {MAX_METADATA_KEY_LEN} characters, values at most {MAX_METADATA_VALUE_LEN}"
                ),
            ));
        }
        clean.insert(key, value);
    }
    Ok(serde_json::to_string(&clean).unwrap_or_default())
}

fn valid_sender(from: &str) -> bool {
    if let Some(digits) = from.strip_prefix('+') {
        return (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    }
    (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && from.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// Why `url` cannot be a `callback_url`, if it cannot: not a plain http(s)
/// URL (see `webhooks::validate_callback_url`), too long, or, unless private
/// networks are allowed, an IP address that is not public.
pub(super) fn check_callback_url(url: &str, allow_private: bool) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("`callback_url` may be at most {MAX_URL_LEN} bytes"));
    }
    crate::webhooks::validate_callback_url(url).map_err(|e| e.to_string())?;
    if !allow_private
        && let Some(host) = url
            .parse::<hyper::Uri>()
            .ok()
            .as_ref()
            .and_then(|u| u.host())
    {
        crate::webhooks::check_host(host)
            .map_err(|refused| format!("`callback_url`: {refused}"))?;
    }
    Ok(())
}

/// A settable URL field (`inbound_url`): absent (`None`), cleared with
/// `null` (`Some(None)`), or a URL checked as a `callback_url` is.
pub(super) fn take_url(
    fields: &mut Fields,
    name: &str,
    allow_private: bool,
) -> Result<Option<Option<String>>, ApiError> {
    let url = fields.nullable_str(name)?;
    if let Some(Some(url)) = &url {
        check_callback_url(url, allow_private).map_err(|message| {
            ApiError::invalid(
                "invalid_url",
                fields.name(name),
                message.replace("callback_url", name),
            )
        })?;
    }
    Ok(url)
}

/// What `202 Accepted` shows.
fn summary_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "status": m.status.as_str(),
        "to": m.to,
        "from": m.from,
        "number_id": m.sender.as_ref().map(|s| &s.number_id),
        "pool_id": m.sender.as_ref().and_then(|s| s.pool_id.as_ref()),
        "country": m.country,
        "encoding": m.encoding.as_str(),
        "segments": m.segments,
        "type": m.message_type.as_str(),
        "created_at": to_rfc3339(m.created_at),
    })
}

/// The body as `role` may see it: `null` once redacted; an OTP's digits
/// masked for viewers.
fn shown_body(m: &MessageRecord, role: Role) -> Value {
    if m.redacted_at.is_some() {
        Value::Null
    } else if m.message_type == MessageType::Otp && role == Role::Viewer {
        json!(crate::compliance::retention::mask_digits(&m.body))
    } else {
        json!(m.body)
    }
}

fn message_json(m: &MessageRecord, role: Role) -> Value {
    let metadata: Value = m
        .metadata
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({}));
    let mut value = summary_json(m);
    let object = value.as_object_mut().expect("summary is an object");
    object.insert("body".into(), shown_body(m, role));
    object.insert("redacted_at".into(), json!(m.redacted_at.map(to_rfc3339)));
    object.insert("callback_url".into(), json!(m.callback_url));
    object.insert("send_at".into(), json!(m.send_at.map(to_rfc3339)));
    object.insert("expires_at".into(), json!(to_rfc3339(m.expires_at)));
    object.insert("metadata".into(), metadata);
    object.insert("sandbox".into(), json!(m.sandbox));
    object.insert("policy_digest".into(), json!(m.policy_digest));
    object.insert("updated_at".into(), json!(to_rfc3339(m.updated_at)));
    value
}

fn detail_json(
    m: &MessageRecord,
    role: Role,
    parts: &[PartRecord],
    events: &[EventRecord],
) -> Value {
    let mut value = message_json(m, role);
    let object = value.as_object_mut().expect("message is an object");
    let parts: Vec<Value> = parts
        .iter()
        .map(|p| {
            json!({
                "index": p.index,
                "status": p.status.as_str(),
                "attempts": p.attempts,
                "carrier": p.carrier,
                "carrier_message_id": p.carrier_message_id,
                "error_code": p.error_code,
            })
        })
        .collect();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "at": to_rfc3339(e.at),
                "status": e.status.as_str(),
                "part": e.part,
                "carrier": e.carrier,
                "detail": e.detail,
            })
        })
        .collect();
    object.insert("parts".into(), json!(parts));
    object.insert("events".into(), json!(events));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert!(valid_sender("Pigeon"));
        assert!(valid_sender("+84912345678"));
        assert!(valid_sender("My Shop"));
        assert!(!valid_sender("A very long sender"));
        assert!(!valid_sender("   "));
        assert!(!valid_sender("+84-91"));
        assert!(!valid_sender(""));
    }

    #[test]
    fn callback_urls() {
        assert!(check_callback_url("https://example.com/hooks/sms", false).is_ok());
        assert!(check_callback_url("http://127.0.0.1:9000", true).is_ok());
        for (url, allow_private) in [
            ("http://127.0.0.1:9000", false),
            ("http://[::127.0.0.1]/", false),
            ("http://2130706433/", true),
            ("http://example.com:0/", true),
            ("ftp://example.com", true),
            ("https://", true),
            ("https://exa mple.com", true),
        ] {
            assert!(check_callback_url(url, allow_private).is_err(), "{url}");
        }
    }
}
