//! `/v1/numbers`: the number inventory. Operator admins add senders; an
//! account's admins claim available ones and release them; everyone sees
//! their own account's numbers, and with `available=true` the ones they
//! could claim. Another account's number is a 404.

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{Fields, parse_object, query_params, read_body, unknown_parameter};
use super::messages::take_url;
use super::{App, Response, json_response};
use crate::auth::Principal;
use crate::numbers::inventory::{Capability, NumberRecord, SenderKind, check_sender};
use crate::numbers::rules;
use crate::store::numbers::{self as inventory, NumberFilter};
use crate::time::to_rfc3339;

/// `POST /v1/numbers`: operator admins add a sender to the inventory.
pub async fn create(app: &App, principal: &Principal, body: Body) -> Result<Response, ApiError> {
    if !principal.operator {
        return Err(ApiError::forbidden());
    }
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let sender = fields.required_str("sender")?;
    let kind = fields.required_str("kind")?;
    let country = fields.required_str("country")?;
    let carrier = fields.optional_str("carrier")?;
    let capabilities = fields.take("capabilities");
    fields.finish()?;

    let kind = SenderKind::parse(&kind).ok_or_else(|| {
        ApiError::invalid(
            "invalid_kind",
            "kind",
            "`kind` must be long_code, short_code, toll_free or alphanumeric",
        )
    })?;
    let country = country.to_ascii_uppercase();
    crate::numbers::parse_country(&country)
        .map_err(|e| ApiError::invalid("invalid_country", "country", e.to_string()))?;
    let sender = check_sender(kind, &sender, &country)
        .map_err(|(field, message)| ApiError::invalid("invalid_sender", field, message))?;
    if !rules::kind_allowed_in(kind, &country) {
        return Err(not_allowed_in(kind, &country));
    }
    if let Some(name) = &carrier
        && app.carriers.get(name).is_none()
    {
        return Err(ApiError::invalid(
            "unknown_carrier",
            "carrier",
            format!("no carrier is configured as `{name}`"),
        ));
    }
    let capabilities = match capabilities {
        None | Some(Value::Null) => {
            let mut default = vec![Capability::SmsMt];
            if rules::two_way(kind, &country) {
                default.push(Capability::SmsMo);
            }
            default
        }
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().and_then(Capability::parse))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid_capabilities)?,
        Some(_) => return Err(invalid_capabilities()),
    };
    let number = NumberRecord {
        id: crate::ids::new_id("num"),
        sender,
        kind,
        country,
        carrier,
        capabilities,
        account_id: None,
        pool_id: None,
        inbound_url: None,
        sms_url: None,
        created_at: crate::time::now_ms(),
    };
    let stored = number.clone();
    if !app
        .store
        .write(move |c| inventory::insert_number(c, &stored))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "number_exists",
            format!(
                "{} of {} is in the inventory already",
                number.sender, number.country
            ),
        )
        .with_field("sender"));
    }
    Ok(json_response(StatusCode::CREATED, &number_json(&number)))
}

fn invalid_capabilities() -> ApiError {
    ApiError::invalid(
        "invalid_capabilities",
        "capabilities",
        "`capabilities` must be a non-empty list of sms_mt and sms_mo",
    )
}

fn not_allowed_in(kind: SenderKind, country: &str) -> ApiError {
    ApiError::invalid(
        "sender_not_allowed_in_country",
        "kind",
        format!("{country} does not allow {} senders", kind.as_str()),
    )
}

/// `GET /v1/numbers?country=&kind=&available=`.
pub async fn list(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let mut filter = NumberFilter {
        account_id: (!principal.operator).then(|| principal.account_id.clone()),
        ..NumberFilter::default()
    };
    for (key, value) in query_params(query) {
        match key.as_str() {
            "country" => filter.country = Some(value.to_ascii_uppercase()),
            "kind" => {
                filter.kind = Some(SenderKind::parse(&value).ok_or_else(|| {
                    ApiError::invalid("invalid_kind", "kind", "unknown sender kind")
                })?)
            }
            "available" => {
                filter.available = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::invalid(
                            "invalid_type",
                            "available",
                            "`available` must be true or false",
                        ));
                    }
                }
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    // An account asking for what is available sees the unowned numbers only.
    if filter.available {
        filter.account_id = None;
    }
    let numbers = app
        .store
        .read(move |c| inventory::list_numbers(c, &filter))
        .await?;
    let data: Vec<Value> = numbers.iter().map(number_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

/// A number the caller may see: the operator sees all; an account its own
/// and the available ones.
async fn visible(app: &App, principal: &Principal, id: &str) -> Result<NumberRecord, ApiError> {
    let id = id.to_owned();
    let number = app
        .store
        .read(move |c| inventory::get_number(c, &id))
        .await?;
    match number {
        Some(n)
            if principal.operator
                || n.account_id.is_none()
                || n.account_id.as_deref() == Some(principal.account_id.as_str()) =>
        {
            Ok(n)
        }
        _ => Err(ApiError::not_found("number")),
    }
}

/// A number the caller's account owns.
async fn owned(app: &App, principal: &Principal, id: &str) -> Result<NumberRecord, ApiError> {
    let number = visible(app, principal, id).await?;
    if number.account_id.as_deref() != Some(principal.account_id.as_str()) {
        return Err(ApiError::not_found("number"));
    }
    Ok(number)
}

pub async fn get(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let number = visible(app, principal, id).await?;
    Ok(json_response(StatusCode::OK, &number_json(&number)))
}

/// `POST /v1/numbers/{id}/claim`: the caller's account takes an available number.
/// A number owned by another account answers 409 here, not 404: the
/// caller may have seen it available a moment ago (a claim race).
pub async fn claim(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let number_id = id.to_owned();
    let number = app
        .store
        .read(move |c| inventory::get_number(c, &number_id))
        .await?
        .ok_or_else(|| ApiError::not_found("number"))?;
    match number.account_id.as_deref() {
        Some(owner) if owner == principal.account_id => {
            return Ok(json_response(StatusCode::OK, &number_json(&number)));
        }
        Some(_) => return Err(unavailable()),
        None => {}
    }
    let (number_id, account_id) = (number.id.clone(), principal.account_id.clone());
    let claimed = app
        .store
        .write(move |c| inventory::claim_number(c, &number_id, &account_id))
        .await?;
    if !claimed {
        return Err(unavailable());
    }
    let claimed = NumberRecord {
        account_id: Some(principal.account_id.clone()),
        ..number
    };
    Ok(json_response(StatusCode::OK, &number_json(&claimed)))
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "number_unavailable",
        "another account owns this number",
    )
}

/// `POST /v1/numbers/{id}/release`: back to the inventory.
pub async fn release(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let number = owned(app, principal, id).await?;
    let (number_id, account_id) = (number.id.clone(), principal.account_id.clone());
    app.store
        .write(move |c| inventory::release_number(c, &number_id, &account_id))
        .await?;
    let released = NumberRecord {
        account_id: None,
        inbound_url: None,
        sms_url: None,
        pool_id: None,
        ..number
    };
    Ok(json_response(StatusCode::OK, &number_json(&released)))
}

/// `PATCH /v1/numbers/{id} {inbound_url?, sms_url?, pool_id?}`: the owner's
/// settings.
pub async fn update(
    app: &App,
    principal: &Principal,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let number = owned(app, principal, id).await?;
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let allow_private = app.submit.rules.allow_private_callbacks;
    let inbound_url = take_url(&mut fields, "inbound_url", allow_private)?
        .unwrap_or_else(|| number.inbound_url.clone());
    let sms_url =
        take_url(&mut fields, "sms_url", allow_private)?.unwrap_or_else(|| number.sms_url.clone());
    let pool_id = fields
        .nullable_str("pool_id")?
        .unwrap_or_else(|| number.pool_id.clone());
    fields.finish()?;
    let (number_id, url, twilio_url, pool, account) = (
        number.id.clone(),
        inbound_url.clone(),
        sms_url.clone(),
        pool_id.clone(),
        principal.account_id.clone(),
    );
    let known_pool = app
        .store
        .write(move |c| {
            if let Some(pool) = &pool
                && crate::store::pools::get_pool(c, &account, pool)?.is_none()
            {
                return Ok(false);
            }
            inventory::set_number_settings(
                c,
                &number_id,
                url.as_deref(),
                twilio_url.as_deref(),
                pool.as_deref(),
            )?;
            Ok(true)
        })
        .await?;
    if !known_pool {
        return Err(ApiError::invalid(
            "unknown_pool",
            "pool_id",
            "this account has no such sender pool",
        ));
    }
    let updated = NumberRecord {
        inbound_url,
        sms_url,
        pool_id,
        ..number
    };
    Ok(json_response(StatusCode::OK, &number_json(&updated)))
}

fn number_json(n: &NumberRecord) -> Value {
    let capabilities: Vec<&str> = n.capabilities.iter().map(|c| c.as_str()).collect();
    json!({
        "id": n.id,
        "sender": n.sender,
        "kind": n.kind.as_str(),
        "country": n.country,
        "carrier": n.carrier,
        "capabilities": capabilities,
        "account_id": n.account_id,
        "available": n.account_id.is_none(),
        "inbound_url": n.inbound_url,
        "sms_url": n.sms_url,
        "pool_id": n.pool_id,
        "created_at": to_rfc3339(n.created_at),
    })
}
