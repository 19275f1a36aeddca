//! `/v1/inbound`: the messages handsets sent to the account's numbers, and
//! `POST /v1/sandbox/inbound`, which has the sandbox's fake carrier send
//! one, so an application can test replies without a handset.

use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::json::{Fields, parse_limit, parse_object, query_params, read_body, unknown_parameter};
use super::messages::delivery_json;
use super::{ApiError, App, Response, json_response};
use crate::auth::{Principal, Role};
use crate::config::SANDBOX_CARRIER;
use crate::store::inbound::{self, InboundRecord};
use crate::submit::MAX_SEGMENTS;
use crate::time::to_rfc3339;

/// Operator admins see every account's inbound messages, and those to
/// numbers no account owns; everyone else their own account's.
fn scope(principal: &Principal) -> Option<String> {
    let everyone = principal.operator && principal.role == Role::Admin;
    (!everyone).then(|| principal.account_id.clone())
}

/// `GET /v1/inbound`: newest first (`limit`, `cursor`).
pub async fn list(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let mut limit = 50;
    let mut cursor = None;
    for (key, value) in query_params(query) {
        match key.as_str() {
            "limit" => limit = parse_limit(&value)?,
            "cursor" if value.starts_with("in_") => cursor = Some(value),
            "cursor" => {
                return Err(ApiError::invalid(
                    "invalid_cursor",
                    "cursor",
                    "unknown cursor",
                ));
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    let account = scope(principal);
    let records = app
        .store
        .read(move |c| inbound::list_inbound(c, account.as_deref(), cursor.as_deref(), limit))
        .await?;
    let next_cursor = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    let data: Vec<Value> = records.iter().map(inbound_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next_cursor}),
    ))
}

/// `GET /v1/inbound/{id}`.
pub async fn get(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let (account, id) = (scope(principal), id.to_owned());
    let record = app
        .store
        .read(move |c| inbound::get_inbound(c, account.as_deref(), &id))
        .await?
        .ok_or_else(|| ApiError::not_found("inbound message"))?;
    Ok(json_response(StatusCode::OK, &inbound_json(&record)))
}

/// `POST /v1/inbound/{id}/redact`: the text goes now, and from the
/// message's webhooks too; the rest stays. Redacting twice is the same as
/// once.
pub async fn redact(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let (account, id) = (scope(principal), id.to_owned());
    let now = crate::time::now_ms();
    let record = app
        .store
        .write(move |c| crate::store::retention::redact_inbound(c, account.as_deref(), &id, now))
        .await?
        .ok_or_else(|| ApiError::not_found("inbound message"))?;
    Ok(json_response(StatusCode::OK, &inbound_json(&record)))
}

/// `GET /v1/inbound/{id}/webhooks`: its `message.inbound` deliveries.
pub async fn webhooks(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let (account, id) = (scope(principal), id.to_owned());
    let deliveries = app
        .store
        .read(
            move |c| match inbound::get_inbound(c, account.as_deref(), &id)? {
                Some(_) => crate::store::webhooks::list_for_message(c, &id).map(Some),
                None => Ok(None),
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found("inbound message"))?;
    let data: Vec<Value> = deliveries.iter().map(delivery_json).collect();
    Ok(json_response(StatusCode::OK, &json!({"data": data})))
}

/// `POST /v1/sandbox/inbound {from, to, body}`: the sandbox's fake carrier
/// sends `body` from the handset `from` to the account's number `to`,
/// through the simulator plugin and the carrier callback route, as a real
/// carrier would — in parts, last part first, when it is longer than one
/// SMS. Answers with the message as filed.
pub async fn sandbox(
    app: &App,
    principal: &Principal,
    body: Incoming,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body).await?)?);
    let from = fields.required_str("from")?;
    let to = fields.required_str("to")?;
    let text = fields.required_str("body")?;
    fields.finish()?;

    let (account, sender) = (principal.account_id.clone(), to.trim().to_owned());
    let number = app
        .store
        .read(move |c| crate::store::numbers::owned_numbers(c, &account, &[sender]))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("number"))?;
    let handset = crate::numbers::normalize(&from, Some(&number.country))
        .map_err(|e| ApiError::invalid("invalid_number", "from", format!("`{from}`: {e}")))?;
    if text.is_empty() {
        return Err(ApiError::invalid(
            "empty_body",
            "body",
            "`body` must not be empty",
        ));
    }
    let encoded = crate::encoding::encode(&text, rand::random());
    if encoded.parts.len() > MAX_SEGMENTS {
        return Err(ApiError::invalid(
            "body_too_long",
            "body",
            format!(
                "the body needs {} parts; at most {MAX_SEGMENTS} are allowed",
                encoded.parts.len()
            ),
        ));
    }
    // The number's own carrier when the sandbox plays it, else the sandbox.
    let endpoint = app.carriers.sandbox_endpoint();
    let carrier = number
        .carrier
        .clone()
        .filter(|c| endpoint.serves(c))
        .unwrap_or_else(|| SANDBOX_CARRIER.to_owned());
    let id = format!("sim-mo-{}", crate::ids::random_secret(16));
    let count = encoded.parts.len();
    let reference: u8 = rand::random();
    let requests: Vec<Value> = encoded
        .parts
        .iter()
        .rev()
        .map(|part| {
            let mut message = json!({
                "id": format!("{id}-{}", part.index + 1),
                "from": handset.e164,
                "to": number.sender,
                "text": part.text,
                "at": crate::time::now_ms(),
            });
            if count > 1 {
                message["part"] =
                    json!({"reference": reference, "count": count, "sequence": part.index + 1});
            }
            message
        })
        .collect();
    endpoint
        .send_inbound(&carrier, requests)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_unavailable",
                format!("the sandbox carrier could not deliver the message: {e}"),
            )
        })?;
    let first = format!("{id}-1");
    let record = app
        .store
        .read(move |c| inbound::inbound_by_carrier_id(c, &carrier, &first))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                "the sandbox's message was not filed",
            )
        })?;
    Ok(json_response(StatusCode::CREATED, &inbound_json(&record)))
}

fn inbound_json(r: &InboundRecord) -> Value {
    json!({
        "id": r.id,
        "account_id": r.account_id,
        "number_id": r.number_id,
        "pool_id": r.pool_id,
        "in_reply_to": r.in_reply_to,
        "carrier": r.carrier,
        "carrier_message_id": r.carrier_message_id,
        "from": r.from,
        "to": r.to,
        // Inbound messages have no type: nothing to mask for viewers.
        "body": r.redacted_at.is_none().then_some(&r.text),
        "redacted_at": r.redacted_at.map(to_rfc3339),
        "sent_at": to_rfc3339(r.sent_at),
        "received_at": to_rfc3339(r.received_at),
    })
}
