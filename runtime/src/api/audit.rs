//! `GET /v1/audit`, and how handlers write the audit trail
//! (`compliance::audit`).

use std::net::IpAddr;

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{parse_limit, query_params, unknown_parameter};
use super::{App, Response, json_response};
use crate::auth::Principal;
use crate::compliance::audit::{AuditEntry, AuditQuery};
use crate::store::{self, Store};
use crate::time::{now_ms, parse_rfc3339, to_rfc3339};

/// Records that `principal` did `action` to `target` in its own account.
pub async fn record(
    app: &App,
    principal: &Principal,
    action: &'static str,
    target: &str,
    summary: Value,
) -> Result<(), ApiError> {
    record_in(
        app,
        principal,
        &principal.account_id,
        action,
        target,
        summary,
    )
    .await
}

/// Records that `principal` did `action` to `target` of `account_id`
/// (an operator admin may act on another account).
pub async fn record_in(
    app: &App,
    principal: &Principal,
    account_id: &str,
    action: &'static str,
    target: &str,
    summary: Value,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        id: 0,
        at: now_ms(),
        account_id: Some(account_id.to_owned()),
        key_id: Some(principal.key_id.clone()),
        role: principal.role.as_str().to_owned(),
        client_ip: principal.client_ip.map(|ip| ip.to_string()),
        action: action.to_owned(),
        target: Some(target.to_owned()),
        summary,
    };
    app.store
        .write(move |conn| store::audit::insert(conn, &entry))
        .await?;
    Ok(())
}

/// A change the router audits: its action, route pattern and path.
pub struct Change<'a> {
    pub action: &'static str,
    pub route: &'a str,
    pub segments: &'a [&'a str],
}

/// Fields never written to the audit trail, wherever they appear.
const SECRET_FIELDS: &[&str] = &["key", "webhook_secret", "secret", "password", "token"];

/// Audits a change from what it answered: the target is the path's first
/// `{…}` segment (or the answer's `id`), the summary the answer without
/// secrets. A failure to write the entry fails the request (the change
/// itself is already stored).
pub async fn record_change(
    app: &App,
    headers: &hyper::HeaderMap,
    client_ip: IpAddr,
    change: Change<'_>,
    response: Response,
) -> Response {
    let Ok(principal) = super::authorize_any(app, headers, client_ip) else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut summary: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    strip_secrets(&mut summary);
    let target = change
        .route
        .trim_start_matches('/')
        .split('/')
        .position(|s| s.starts_with('{'))
        .and_then(|i| change.segments.get(i))
        .map(|s| super::json::percent_decode(s))
        .or_else(|| summary["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if let Err(err) = record(app, &principal, change.action, &target, summary).await {
        return err.into_response();
    }
    Response::from_parts(parts, Full::new(bytes))
}

fn strip_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !SECRET_FIELDS.contains(&k.as_str()));
            map.values_mut().for_each(strip_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

/// Records what Pigeon did by itself (a policy or plugin reload): a
/// platform entry, seen by operator admins.
pub async fn record_system(store: &Store, action: &'static str, target: &str, summary: Value) {
    let entry = AuditEntry {
        id: 0,
        at: now_ms(),
        account_id: None,
        key_id: None,
        role: "system".to_owned(),
        client_ip: None,
        action: action.to_owned(),
        target: Some(target.to_owned()),
        summary,
    };
    if let Err(err) = store
        .write(move |conn| store::audit::insert(conn, &entry))
        .await
    {
        tracing::error!(action, error = %err, "writing the audit trail failed");
    }
}

/// `GET /v1/audit?since=&action=&key=&limit=&cursor=&account=`: newest
/// first. An account's admins and compliance see its entries; operator
/// admins see every entry (platform ones too) or one account's.
pub async fn list(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let operator_admin = principal.operator && principal.role == crate::auth::Role::Admin;
    let mut filter = AuditQuery {
        account_id: (!operator_admin).then(|| principal.account_id.clone()),
        limit: 50,
        ..AuditQuery::default()
    };
    for (key, value) in query_params(query) {
        match key.as_str() {
            "since" => {
                filter.since = Some(parse_rfc3339(&value).ok_or_else(|| {
                    ApiError::invalid("invalid_time", "since", "`since` must be an RFC 3339 time")
                })?)
            }
            "action" => filter.action = Some(value),
            "key" => filter.key_id = Some(value),
            "limit" => filter.limit = parse_limit(&value)?,
            "cursor" => {
                filter.before = Some(value.parse().map_err(|_| {
                    ApiError::invalid(
                        "invalid_cursor",
                        "cursor",
                        "`cursor` must be a `next_cursor` from an earlier page",
                    )
                })?)
            }
            "account" if operator_admin || value == principal.account_id => {
                filter.account_id = Some(value)
            }
            "account" => return Err(ApiError::not_found("account")),
            other => return Err(unknown_parameter(other)),
        }
    }
    let limit = filter.limit;
    let entries = app
        .store
        .read(move |conn| store::audit::list(conn, &filter))
        .await?;
    let next_cursor = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    let data: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next_cursor}),
    ))
}

fn entry_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id.to_string(),
        "at": to_rfc3339(entry.at),
        "account_id": entry.account_id,
        "key_id": entry.key_id,
        "role": entry.role,
        "client_ip": entry.client_ip,
        "action": entry.action,
        "target": entry.target,
        "summary": entry.summary,
    })
}
