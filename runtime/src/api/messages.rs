//! `/v1/messages`: send, send in batches, read, list, cancel.

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::json::{Fields, parse_limit, parse_object, query_params, read_body, unknown_parameter};
use super::{App, Response, json_response};
use crate::auth::{Principal, Role};
use crate::model::{MessageType, Origin, Status};
use crate::numbers;
use crate::store::messages::{self as stored, CancelOutcome, ListFilter};
use crate::store::{EventRecord, Idempotency, MessageRecord, PartRecord};
use crate::submit::{Request, check_callback_url};
use crate::time::{now_ms, parse_rfc3339, to_rfc3339};

/// Most messages in one batch request.
pub const MAX_BATCH: usize = 1000;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

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

/// The JSON door's part of a submission: its fields, in Pigeon's terms.
/// `fields` may be nested (`messages[3].`); errors name the field so.
pub(super) fn parse_request(
    mut fields: Fields,
    idempotency: Option<Idempotency>,
) -> Result<Request, ApiError> {
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
    let smart_encoding = fields.optional_bool("smart_encoding")?.unwrap_or(false);
    let message_type = message_type
        .map(|t| {
            MessageType::parse(&t).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_message_type",
                    fields.name("type"),
                    "`type` must be otp, transactional or marketing",
                )
            })
        })
        .transpose()?;
    let send_at = send_at
        .map(|text| {
            parse_rfc3339(&text).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_time",
                    fields.name("send_at"),
                    "`send_at` must be an RFC 3339 time, e.g. 2026-12-01T09:00:00+07:00",
                )
            })
        })
        .transpose()?;
    fields.finish()?;
    Ok(Request {
        to,
        body,
        from,
        pool,
        country,
        message_type,
        callback_url,
        send_at,
        validity_secs,
        metadata,
        idempotency,
        origin: Origin::Api,
        smart_encoding,
    })
}

pub async fn create(
    app: &App,
    principal: &Principal,
    idempotency_key: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let request = read_request(body, idempotency_key)
        .await
        .inspect_err(count_rejected)?;
    let accepted = app
        .submit
        .submit(principal, request)
        .await
        .map_err(|err| ApiError::from_submit(err, ""))?;
    let mut response = json_response(StatusCode::ACCEPTED, &summary_json(&accepted.message));
    if accepted.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            hyper::header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

async fn read_request(body: Body, idempotency_key: Option<String>) -> Result<Request, ApiError> {
    let bytes = read_body(body)?;
    let map = parse_object(&bytes)?;
    let idempotency = idempotency_key.map(|key| idempotency(key, &map));
    parse_request(Fields::new(map), idempotency)
}

/// A request the JSON door itself refused (not JSON, a field of the wrong
/// type): counted as the accept path counts its refusals.
fn count_rejected(err: &ApiError) {
    if err.status.is_client_error() {
        ::metrics::counter!("pigeon_messages_rejected_total", "code" => err.code.to_string())
            .increment(1);
    }
}

/// With an `Idempotency-Key`, item `i` is sent as if alone with the key
/// `<key>/<i>`: a retried batch replays every item, and an item that differs
/// from the first try is refused alone.
pub async fn create_batch(
    app: &App,
    principal: &Principal,
    idempotency_key: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body)?;
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
    // Items the JSON door refused keep their place; the rest go through
    // the accept path together.
    let mut parsed: Vec<Result<(), ApiError>> = Vec::with_capacity(items.len());
    let mut requests = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let request = match item {
            Value::Object(map) => {
                let idempotency = idempotency_key
                    .as_ref()
                    .map(|key| idempotency(format!("{key}/{i}"), &map));
                parse_request(Fields::nested(map, format!("messages[{i}].")), idempotency)
            }
            _ => Err(ApiError::invalid(
                "invalid_type",
                format!("messages[{i}]"),
                "each message must be an object",
            )),
        };
        match request {
            Ok(request) => {
                requests.push(request);
                parsed.push(Ok(()));
            }
            Err(err) => {
                count_rejected(&err);
                parsed.push(Err(err));
            }
        }
    }
    let mut answers = app
        .submit
        .submit_many(principal, requests)
        .await
        .map_err(|err| ApiError::from_submit(err, ""))?
        .into_iter();
    let mut accepted = 0;
    let results: Vec<Value> = parsed
        .into_iter()
        .enumerate()
        .map(|(index, parsed)| {
            // The accept path answers each request it was given, in order.
            let answer = parsed.map(|()| answers.next());
            match answer {
                Ok(Some(Ok(stored))) => {
                    accepted += 1;
                    json!({"index": index, "status": 202, "message": summary_json(&stored.message)})
                }
                Ok(Some(Err(err))) => {
                    let err = ApiError::from_submit(err, &format!("messages[{index}]."));
                    json!({"index": index, "status": err.status.as_u16(), "error": err.to_json()["error"]})
                }
                Ok(None) => json!({"index": index, "status": 500}),
                Err(err) => {
                    json!({"index": index, "status": err.status.as_u16(), "error": err.to_json()["error"]})
                }
            }
        })
        .collect();
    let rejected = results.len() - accepted;
    Ok(json_response(
        StatusCode::OK,
        &json!({"accepted": accepted, "rejected": rejected, "results": results}),
    ))
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
