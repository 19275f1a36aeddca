//! `/v1/webhooks`: an account's webhook deliveries across its messages, the
//! dead letters among them (`state=failed`) and sending one again.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{parse_limit, query_params, unknown_parameter};
use super::messages::delivery_json;
use super::{App, Response, json_response};
use crate::auth::Principal;
use crate::store::webhooks::{
    AccountWebhook, AccountWebhookFilter, DeliveryState, Redelivery, list_for_account, redeliver,
};

/// `GET /v1/webhooks?state=&limit=&cursor=`: newest first, paged like
/// `GET /v1/messages` (`next_cursor` is the last id when the page is full).
pub async fn list(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let mut filter = AccountWebhookFilter {
        limit: 50,
        ..AccountWebhookFilter::default()
    };
    for (key, value) in query_params(query) {
        match key.as_str() {
            "state" => {
                filter.state = Some(DeliveryState::parse(&value).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_state",
                        "state",
                        format!("`state` must be pending, delivered or failed, not `{value}`"),
                    )
                })?)
            }
            "limit" => filter.limit = parse_limit(&value)?,
            "cursor" => {
                if !value.starts_with("evt_") || value.len() != 30 {
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
    let webhooks = app
        .store
        .read(move |conn| list_for_account(conn, &account, &filter))
        .await?;
    let next_cursor = (webhooks.len() == limit)
        .then(|| webhooks.last().map(|w| w.delivery.id.clone()))
        .flatten();
    let data: Vec<Value> = webhooks.iter().map(account_webhook_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next_cursor}),
    ))
}

fn account_webhook_json(webhook: &AccountWebhook) -> Value {
    let mut value = delivery_json(&webhook.delivery);
    if let Some(object) = value.as_object_mut() {
        object.insert("message_id".into(), json!(webhook.message_id));
    }
    value
}

/// `POST /v1/webhooks/{id}/redeliver`: a failed (or delivered) webhook is
/// queued again, due now, with a fresh count of attempts.
pub async fn redeliver_webhook(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let account = principal.account_id.clone();
    let webhook_id = id.to_owned();
    let now = crate::time::now_ms();
    let outcome = app
        .store
        .write(move |conn| redeliver(conn, &account, &webhook_id, now))
        .await?;
    match outcome {
        Redelivery::Queued => Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({"id": id, "state": DeliveryState::Pending.as_str()}),
        )),
        Redelivery::NotFound => Err(ApiError::not_found("webhook")),
        Redelivery::StillPending => Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhook_pending",
            "this webhook is still pending: it is waiting for an attempt or being sent",
        )),
    }
}
