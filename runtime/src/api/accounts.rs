//! `/v1/accounts` and `/v1/keys`: accounts and their API keys.

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::audit;
use super::error::ApiError;
use super::json::{Fields, parse_object, read_body};
use super::{App, Response, json_response};
use crate::auth::limits::AccountLimits;
use crate::auth::{KeyAccess, KeyError, Principal, Role, network};
use crate::store::accounts::KeyRecord;
use crate::time::{now_ms, parse_rfc3339, to_rfc3339};

/// Longest grace a rotated key may keep working: 30 days.
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Most networks one key may list.
const MAX_NETWORKS: usize = 100;

const MAX_NAME_LEN: usize = 100;

/// Only the operator's admins create accounts.
pub async fn create_account(
    app: &App,
    principal: &Principal,
    body: Body,
) -> Result<Response, ApiError> {
    if !principal.operator {
        return Err(ApiError::forbidden());
    }
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
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
    audit::record_in(
        app,
        principal,
        &account.id,
        "account.create",
        &account.id,
        json!({"name": account.name}),
    )
    .await?;
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
            "limits": limits_json(app.accounts.limits().get(&account.id)),
        }),
    ))
}

fn limits_json(limits: AccountLimits) -> Value {
    json!({
        "requests_per_second": limits.requests_per_second,
        "messages_per_day": limits.messages_per_day,
    })
}

/// `PATCH /v1/accounts/{id} {limits: {requests_per_second, messages_per_day}}`:
/// operator admins cap what an account may use (`null` lifts a cap).
pub async fn update_account(
    app: &App,
    principal: &Principal,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if !principal.operator {
        return Err(ApiError::not_found("account"));
    }
    if app.accounts.get_account(id.to_owned()).await?.is_none() {
        return Err(ApiError::not_found("account"));
    }
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let limits = fields.optional_object("limits")?;
    fields.finish()?;
    let mut new = app.accounts.limits().get(id);
    if let Some(limits) = limits {
        let mut limits = Fields::nested(limits, "limits.".into());
        let positive = |limits: &Fields, field: &str, value: Option<u64>| {
            if value == Some(0) {
                return Err(ApiError::invalid(
                    "invalid_limit",
                    limits.name(field),
                    format!(
                        "`{}` must be above 0, or null for no limit",
                        limits.name(field)
                    ),
                ));
            }
            Ok(value)
        };
        if let Some(rps) = limits.nullable_u64("requests_per_second")? {
            let rps = positive(&limits, "requests_per_second", rps)?;
            new.requests_per_second = rps.map(|v| v.min(u64::from(u32::MAX)) as u32);
        }
        if let Some(per_day) = limits.nullable_u64("messages_per_day")? {
            new.messages_per_day = positive(&limits, "messages_per_day", per_day)?;
        }
        limits.finish()?;
    }
    app.accounts
        .set_limits(id.to_owned(), new)
        .await
        .map_err(key_error)?;
    audit::record_in(
        app,
        principal,
        id,
        "account.limits",
        id,
        json!({"limits": limits_json(new)}),
    )
    .await?;
    get_account(app, principal, id).await
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
    let data: Vec<_> = keys.iter().map(key_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

pub async fn create_key(
    app: &App,
    principal: &Principal,
    account_id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    // Another account's keys are not found, not forbidden: ids don't leak.
    if !principal.may_manage(account_id) {
        return Err(ApiError::not_found("account"));
    }
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let role = fields.required_str("role")?;
    let sandbox = fields.optional_bool("sandbox")?.unwrap_or(false);
    let access = parse_access(&mut fields, KeyAccess::default())?;
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
        .create_key(account_id.to_owned(), role, sandbox, access)
        .await
        .map_err(key_error)?;
    audit::record_in(
        app,
        principal,
        account_id,
        "key.create",
        &key.record.id,
        access_summary(&key.record),
    )
    .await?;
    Ok(new_key_response(&key))
}

/// A key as created or rotated: the only answer that holds the key itself.
fn new_key_response(key: &crate::auth::NewKey) -> Response {
    let mut body = key_json(&key.record);
    body["key"] = json!(key.plain);
    body["account_id"] = json!(key.record.account_id);
    json_response(StatusCode::CREATED, &body)
}

fn key_json(key: &KeyRecord) -> Value {
    json!({
        "id": key.id,
        "role": key.role,
        "sandbox": key.sandbox,
        "created_at": to_rfc3339(key.created_at),
        "revoked_at": key.revoked_at.map(to_rfc3339),
        "allowed_ips": key.allowed_ips,
        "expires_at": key.expires_at.map(to_rfc3339),
    })
}

/// What the audit trail says of a key: its role and access, never the key.
fn access_summary(key: &KeyRecord) -> Value {
    json!({
        "role": key.role,
        "sandbox": key.sandbox,
        "allowed_ips": key.allowed_ips,
        "expires_at": key.expires_at.map(to_rfc3339),
    })
}

/// `allowed_ips` (CIDRs or addresses; `[]` or `null`: anywhere) and
/// `expires_at` (RFC 3339, in the future; `null`: never), over `current`.
fn parse_access(fields: &mut Fields, current: KeyAccess) -> Result<KeyAccess, ApiError> {
    let mut access = current;
    let invalid_ips = |field: String| {
        ApiError::invalid(
            "invalid_allowed_ips",
            field,
            "`allowed_ips` must be a list of IPv4 or IPv6 addresses or CIDRs (e.g. 203.0.113.0/24)",
        )
    };
    if fields.map_has("allowed_ips") {
        access.allowed_ips = match fields.take("allowed_ips") {
            None => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_NETWORKS => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str()
                        .and_then(network::parse_network)
                        .map(|net| net.to_string())
                        .ok_or_else(|| invalid_ips(fields.name(&format!("allowed_ips[{i}]"))))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid_ips(fields.name("allowed_ips"))),
        };
    }
    if let Some(expires_at) = fields.nullable_str("expires_at")? {
        access.expires_at = match expires_at {
            None => None,
            Some(text) => Some(
                parse_rfc3339(&text)
                    .filter(|at| *at > now_ms())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "invalid_expires_at",
                            fields.name("expires_at"),
                            "`expires_at` must be an RFC 3339 time in the future, or null",
                        )
                    })?,
            ),
        };
    }
    Ok(access)
}

/// The key `id` if the caller may manage its account (else 404).
async fn manageable_key(app: &App, principal: &Principal, id: &str) -> Result<KeyRecord, ApiError> {
    match app.accounts.get_key(id.to_owned()).await? {
        Some(key) if principal.may_manage(&key.account_id) => Ok(key),
        _ => Err(ApiError::not_found("key")),
    }
}

/// `PATCH /v1/keys/{id} {allowed_ips, expires_at}`.
pub async fn update_key(
    app: &App,
    principal: &Principal,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let key = manageable_key(app, principal, id).await?;
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let current = KeyAccess {
        allowed_ips: key.allowed_ips.clone(),
        expires_at: key.expires_at,
    };
    let access = parse_access(&mut fields, current)?;
    fields.finish()?;
    let updated = app
        .accounts
        .set_key_access(id.to_owned(), access)
        .await
        .map_err(key_error)?;
    audit::record_in(
        app,
        principal,
        &key.account_id,
        "key.update",
        id,
        access_summary(&updated),
    )
    .await?;
    Ok(json_response(StatusCode::OK, &key_json(&updated)))
}

/// `POST /v1/keys/{id}/rotate {grace_secs}`: a new key like the old one;
/// the old one works for `grace_secs` more (default 0: it stops now).
pub async fn rotate_key(
    app: &App,
    principal: &Principal,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let key = manageable_key(app, principal, id).await?;
    let bytes = read_body(body)?;
    let grace_secs = if bytes.iter().all(u8::is_ascii_whitespace) {
        0
    } else {
        let mut fields = Fields::new(parse_object(&bytes)?);
        let grace = fields.optional_u64("grace_secs")?.unwrap_or(0);
        fields.finish()?;
        grace
    };
    if grace_secs > MAX_GRACE_SECS {
        return Err(ApiError::invalid(
            "invalid_grace",
            "grace_secs",
            format!("`grace_secs` must be 0 to {MAX_GRACE_SECS} (30 days)"),
        ));
    }
    let new = app
        .accounts
        .rotate_key(id.to_owned(), grace_secs as i64 * 1000)
        .await
        .map_err(key_error)?;
    audit::record_in(
        app,
        principal,
        &key.account_id,
        "key.rotate",
        id,
        json!({"new_key_id": new.record.id, "grace_secs": grace_secs}),
    )
    .await?;
    Ok(new_key_response(&new))
}

pub async fn revoke_key(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let key = manageable_key(app, principal, id).await?;
    app.accounts
        .revoke_key(id.to_owned())
        .await
        .map_err(key_error)?;
    audit::record_in(
        app,
        principal,
        &key.account_id,
        "key.revoke",
        id,
        json!({"role": key.role}),
    )
    .await?;
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

/// Longest grace period of a rotated webhook secret: a week.
const MAX_WEBHOOK_SECRET_GRACE_SECS: u64 = 7 * 24 * 3600;
/// A day, unless the request says otherwise.
const DEFAULT_WEBHOOK_SECRET_GRACE_SECS: u64 = 24 * 3600;

/// `POST /v1/account/webhook-secret/rotate`: a new webhook secret for the
/// caller's account, shown in the answer. For `grace_secs` (default a day)
/// webhooks are signed with the old secret as well, so receivers can switch
/// over without losing any.
pub async fn rotate_webhook_secret(
    app: &App,
    principal: &Principal,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let grace_secs = fields
        .optional_u64("grace_secs")?
        .unwrap_or(DEFAULT_WEBHOOK_SECRET_GRACE_SECS);
    fields.finish()?;
    if grace_secs > MAX_WEBHOOK_SECRET_GRACE_SECS {
        return Err(ApiError::invalid(
            "invalid_grace",
            "grace_secs",
            format!("`grace_secs` must be 0 to {MAX_WEBHOOK_SECRET_GRACE_SECS} (7 days)"),
        ));
    }
    let now = crate::time::now_ms();
    // Bounded above, so no overflow.
    let grace_until = (grace_secs > 0).then(|| now + grace_secs as i64 * 1000);
    let secret = crate::store::webhooks::new_secret();
    let account_id = principal.account_id.clone();
    let stored = secret.clone();
    let rotated = app
        .store
        .write(move |c| {
            crate::store::accounts::rotate_webhook_secret(c, &account_id, &stored, grace_until)
        })
        .await?;
    if !rotated {
        return Err(ApiError::not_found("account"));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "webhook_secret": secret,
            "previous_valid_until": grace_until.map(to_rfc3339),
        }),
    ))
}
