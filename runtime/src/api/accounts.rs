//! `/v1/accounts` and `/v1/keys`: accounts and their API keys.

use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use super::error::ApiError;
use super::json::{Fields, parse_object, read_body};
use super::{App, Response, json_response};
use crate::auth::{KeyError, Principal, Role};
use crate::time::to_rfc3339;

const MAX_NAME_LEN: usize = 100;

/// Only the operator's admins create accounts.
pub async fn create_account(
    app: &App,
    principal: &Principal,
    body: Incoming,
) -> Result<Response, ApiError> {
    if !principal.operator {
        return Err(ApiError::forbidden());
    }
    let mut fields = Fields::new(parse_object(&read_body(body).await?)?);
    let name = fields.required_str("name")?;
    fields.finish()?;
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::invalid(
            "invalid_name",
            "name",
            format!("`name` must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    let account = app.accounts.create_account(name).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "id": account.id,
            "name": account.name,
            "created_at": to_rfc3339(account.created_at),
            "webhook_secret": account.webhook_secret,
        }),
    ))
}

pub async fn get_account(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let account = match app.accounts.get_account(id.to_owned()).await? {
        Some(account) if principal.may_manage(&account.id) => account,
        _ => return Err(ApiError::not_found("account")),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": account.id,
            "name": account.name,
            "operator": account.operator,
            "created_at": to_rfc3339(account.created_at),
            "webhook_secret": account.webhook_secret,
        }),
    ))
}

/// The caller's own account and key.
pub async fn whoami(app: &App, principal: &Principal) -> Result<Response, ApiError> {
    let account = app
        .accounts
        .get_account(principal.account_id.clone())
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let id = account.id.clone();
    let (settings, retention) = app
        .store
        .read(move |c| {
            Ok((
                crate::store::accounts::account_settings(c, &id)?,
                crate::store::retention::account_retention(c, &id)?,
            ))
        })
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "account": {
                "id": account.id,
                "name": account.name,
                "operator": account.operator,
                "default_pool": settings.default_pool,
                "inbound_url": settings.inbound_url,
                "require_marketing_consent": settings.require_marketing_consent,
                "opt_out_scope": settings.opt_out_scope.as_str(),
                "retention": app.retention.effective(&retention).to_json(),
            },
            "key": {"id": principal.key_id, "role": principal.role.as_str(), "sandbox": principal.sandbox},
        }),
    ))
}

/// An account's keys, without the keys themselves (they were shown once).
pub async fn list_keys(
    app: &App,
    principal: &Principal,
    account_id: &str,
) -> Result<Response, ApiError> {
    if !principal.may_manage(account_id) {
        return Err(ApiError::not_found("account"));
    }
    let keys = app.accounts.list_keys(account_id.to_owned()).await?;
    let data: Vec<_> = keys
        .iter()
        .map(|key| {
            json!({
                "id": key.id,
                "role": key.role,
                "sandbox": key.sandbox,
                "created_at": to_rfc3339(key.created_at),
                "revoked_at": key.revoked_at.map(to_rfc3339),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

pub async fn create_key(
    app: &App,
    principal: &Principal,
    account_id: &str,
    body: Incoming,
) -> Result<Response, ApiError> {
    // Another account's keys are not found, not forbidden: ids don't leak.
    if !principal.may_manage(account_id) {
        return Err(ApiError::not_found("account"));
    }
    let mut fields = Fields::new(parse_object(&read_body(body).await?)?);
    let role = fields.required_str("role")?;
    let sandbox = fields.optional_bool("sandbox")?.unwrap_or(false);
    fields.finish()?;
    let role = Role::parse(&role).ok_or_else(|| {
        ApiError::invalid(
            "invalid_role",
            "role",
            "`role` must be admin, developer, compliance or viewer",
        )
    })?;
    let key = app
        .accounts
        .create_key(account_id.to_owned(), role, sandbox)
        .await
        .map_err(key_error)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "id": key.record.id,
            "key": key.plain,
            "account_id": key.record.account_id,
            "role": key.record.role,
            "sandbox": key.record.sandbox,
            "created_at": to_rfc3339(key.record.created_at),
        }),
    ))
}

pub async fn revoke_key(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    match app.accounts.get_key(id.to_owned()).await? {
        Some(key) if principal.may_manage(&key.account_id) => {}
        _ => return Err(ApiError::not_found("key")),
    }
    app.accounts
        .revoke_key(id.to_owned())
        .await
        .map_err(key_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "revoked": true}),
    ))
}

fn key_error(err: KeyError) -> ApiError {
    match err {
        KeyError::Store(err) => err.into(),
        KeyError::NoAccount => ApiError::not_found("account"),
        KeyError::NoKey => ApiError::not_found("key"),
        KeyError::LastAdmin => ApiError::new(
            StatusCode::CONFLICT,
            "last_admin_key",
            "this is the account's last admin key; create another admin key first",
        ),
    }
}
