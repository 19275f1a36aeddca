//! `/v1/sender-pools`: an account's senders under one name, from which
//! Pigeon picks each message's sender (see `numbers::pools`), and
//! `PATCH /v1/account` for the account's default pool and inbound URL.

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::json::{Fields, parse_object, read_body};
use super::messages::take_url;
use super::{ApiError, App, Response, json_response};
use crate::auth::Principal;
use crate::compliance::OptOutScope;
use crate::compliance::retention::RetentionConfig;
use crate::numbers::pools::{Fallback, SenderPool};
use crate::store::accounts::{account_settings, set_account_settings};
use crate::store::numbers::{get_number, pool_members, set_pool_members};
use crate::store::pools::{delete_pool, get_pool, list_pools, save_pool};
use crate::store::retention::RetentionOverrides;
use crate::time::to_rfc3339;

const MAX_NAME_LEN: usize = 100;
const MAX_SENDERS: usize = 1000;

/// `POST /v1/sender-pools`.
pub async fn create(app: &App, principal: &Principal, body: Body) -> Result<Response, ApiError> {
    let now = crate::time::now_ms();
    let pool = SenderPool {
        id: crate::ids::new_id("pool"),
        account_id: principal.account_id.clone(),
        name: String::new(),
        sticky_sender: true,
        geo_match: true,
        fallback: Fallback::Any,
        inbound_url: None,
        created_at: now,
        updated_at: now,
    };
    save(app, pool, Vec::new(), body, true).await
}

/// `PATCH /v1/sender-pools/{id}`: the fields given change; `senders`
/// replaces the pool's numbers.
pub async fn update(
    app: &App,
    principal: &Principal,
    id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let (pool, members) = find(app, principal, id).await?;
    let pool = SenderPool {
        updated_at: crate::time::now_ms(),
        ..pool
    };
    save(app, pool, members, body, false).await
}

/// Applies a request's fields to `pool` and writes it.
async fn save(
    app: &App,
    mut pool: SenderPool,
    members: Vec<String>,
    body: Body,
    creating: bool,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let name = if creating {
        Some(fields.required_str("name")?)
    } else {
        fields.optional_str("name")?
    };
    if let Some(name) = name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(ApiError::invalid(
                "invalid_name",
                "name",
                format!("`name` must be 1 to {MAX_NAME_LEN} characters"),
            ));
        }
        pool.name = name.to_owned();
    }
    let senders = match fields.take("senders") {
        None => None,
        Some(Value::Array(items)) if items.len() <= MAX_SENDERS => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::invalid(
                            "invalid_type",
                            format!("senders[{i}]"),
                            "each sender is a number id (num_…)",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_type",
                "senders",
                format!("`senders` must be a list of at most {MAX_SENDERS} number ids"),
            ));
        }
    };
    if let Some(sticky) = fields.optional_bool("sticky_sender")? {
        pool.sticky_sender = sticky;
    }
    if let Some(geo_match) = fields.optional_bool("geo_match")? {
        pool.geo_match = geo_match;
    }
    if let Some(fallback) = fields.optional_str("fallback")? {
        pool.fallback = Fallback::parse(&fallback).ok_or_else(|| {
            ApiError::invalid(
                "invalid_fallback",
                "fallback",
                "`fallback` must be any or none",
            )
        })?;
    }
    if let Some(url) = take_url(
        &mut fields,
        "inbound_url",
        app.submit.rules.allow_private_callbacks,
    )? {
        pool.inbound_url = url;
    }
    fields.finish()?;

    let mut senders = senders.unwrap_or(members);
    let mut seen = std::collections::HashSet::new();
    senders.retain(|id| seen.insert(id.clone()));
    let stored = (pool.clone(), senders.clone());
    let refused = app
        .store
        .write(move |c| {
            let (pool, senders) = &stored;
            for (i, id) in senders.iter().enumerate() {
                match get_number(c, id)? {
                    Some(n) if n.account_id.as_deref() == Some(pool.account_id.as_str()) => {
                        if let Some(other) = n.pool_id.filter(|p| *p != pool.id) {
                            return Ok(Some((i, Some(other))));
                        }
                    }
                    _ => return Ok(Some((i, None))),
                }
            }
            save_pool(c, pool)?;
            set_pool_members(c, &pool.id, senders)?;
            Ok(None)
        })
        .await?;
    match refused {
        None => {}
        Some((i, None)) => {
            return Err(ApiError::invalid(
                "unknown_number",
                format!("senders[{i}]"),
                format!(
                    "`{}` is not a number of this account: claim it first",
                    senders[i]
                ),
            ));
        }
        Some((i, Some(other))) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "number_in_another_pool",
                format!(
                    "`{}` is in the pool {other}: take it out there first",
                    senders[i]
                ),
            )
            .with_field(format!("senders[{i}]")));
        }
    }
    let status = if creating {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &pool_json(&pool, &senders)))
}

/// The caller's account's pool and its numbers' ids; another's is a 404.
async fn find(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<(SenderPool, Vec<String>), ApiError> {
    let (account, id) = (principal.account_id.clone(), id.to_owned());
    app.store
        .read(move |c| {
            let Some(pool) = get_pool(c, &account, &id)? else {
                return Ok(None);
            };
            let members = pool_members(c, &id)?.into_iter().map(|n| n.id).collect();
            Ok(Some((pool, members)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("sender pool"))
}

pub async fn get(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let (pool, members) = find(app, principal, id).await?;
    Ok(json_response(StatusCode::OK, &pool_json(&pool, &members)))
}

pub async fn list(app: &App, principal: &Principal) -> Result<Response, ApiError> {
    let account = principal.account_id.clone();
    let pools = app
        .store
        .read(move |c| {
            list_pools(c, &account)?
                .into_iter()
                .map(|pool| {
                    let members = pool_members(c, &pool.id)?
                        .into_iter()
                        .map(|n| n.id)
                        .collect();
                    Ok((pool, members))
                })
                .collect::<crate::store::Result<Vec<(SenderPool, Vec<String>)>>>()
        })
        .await?;
    let data: Vec<Value> = pools.iter().map(|(p, m)| pool_json(p, m)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

/// `DELETE /v1/sender-pools/{id}`: its numbers stay the account's.
pub async fn delete(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let (account, pool_id) = (principal.account_id.clone(), id.to_owned());
    if !app
        .store
        .write(move |c| delete_pool(c, &account, &pool_id))
        .await?
    {
        return Err(ApiError::not_found("sender pool"));
    }
    if app.default_pools.get(&principal.account_id).as_deref() == Some(id) {
        app.default_pools.set(&principal.account_id, None);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "deleted": true}),
    ))
}

fn pool_json(pool: &SenderPool, senders: &[String]) -> Value {
    json!({
        "id": pool.id,
        "name": pool.name,
        "senders": senders,
        "sticky_sender": pool.sticky_sender,
        "geo_match": pool.geo_match,
        "fallback": pool.fallback.as_str(),
        "inbound_url": pool.inbound_url,
        "created_at": to_rfc3339(pool.created_at),
        "updated_at": to_rfc3339(pool.updated_at),
    })
}

/// `retention` of `PATCH /v1/account`, checked: `{"message_body": "7d", ...}`
/// sets the account's own periods (each at most the operator's), a setting
/// given as `null` goes back to the operator's, and `"retention": null`
/// drops them all.
struct RetentionChange {
    clear_all: bool,
    settings: Vec<(String, Option<String>)>,
}

impl RetentionChange {
    fn parse(config: &RetentionConfig, requested: Value) -> Result<Self, ApiError> {
        let requested = match requested {
            Value::Null => {
                return Ok(Self {
                    clear_all: true,
                    settings: Vec::new(),
                });
            }
            Value::Object(settings) => settings,
            _ => {
                return Err(ApiError::invalid(
                    "invalid_type",
                    "retention",
                    "`retention` is an object of durations, e.g. {\"message_body\": \"7d\"}",
                ));
            }
        };
        let mut settings = Vec::with_capacity(requested.len());
        for (setting, value) in requested {
            let text = match value {
                Value::Null => None,
                Value::String(text) => Some(text),
                _ => {
                    return Err(ApiError::invalid(
                        "invalid_type",
                        format!("retention.{setting}"),
                        format!("`retention.{setting}` is a duration such as \"7d\", or null"),
                    ));
                }
            };
            // Checked here, against nothing stored: whether a value is
            // allowed does not depend on what the account had.
            config
                .apply_override(
                    &mut RetentionOverrides::default(),
                    "retention",
                    &setting,
                    text.as_deref(),
                )
                .map_err(|err| {
                    ApiError::invalid(err.code(), err.field().to_owned(), err.to_string())
                })?;
            settings.push((setting, text));
        }
        Ok(Self {
            clear_all: false,
            settings,
        })
    }

    fn apply(&self, config: &RetentionConfig, current: RetentionOverrides) -> RetentionOverrides {
        let mut overrides = if self.clear_all {
            RetentionOverrides::default()
        } else {
            current
        };
        for (setting, text) in &self.settings {
            // Cannot fail: `parse` applied the same values already.
            let _ = config.apply_override(&mut overrides, "retention", setting, text.as_deref());
        }
        overrides
    }
}

/// `PATCH /v1/account {default_pool?, inbound_url?, require_marketing_consent?,
/// opt_out_scope?, retention?}`: the caller's account's messaging, consent
/// and retention settings.
pub async fn update_account(
    app: &App,
    principal: &Principal,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let default_pool = fields.nullable_str("default_pool")?;
    let require_consent = fields.optional_bool("require_marketing_consent")?;
    let opt_out_scope = fields
        .optional_str("opt_out_scope")?
        .map(|scope| {
            OptOutScope::parse(&scope).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_scope",
                    "opt_out_scope",
                    "`opt_out_scope` is account or pool",
                )
            })
        })
        .transpose()?;
    let inbound_url = take_url(
        &mut fields,
        "inbound_url",
        app.submit.rules.allow_private_callbacks,
    )?;
    let retention = fields
        .take_nullable("retention")
        .map(|requested| RetentionChange::parse(&app.retention, requested))
        .transpose()?;
    fields.finish()?;
    let account = principal.account_id.clone();
    let retention_config = app.retention.clone();
    let settings = app
        .store
        .write(move |c| {
            let mut settings = account_settings(c, &account)?;
            if let Some(pool) = default_pool.clone() {
                if let Some(id) = &pool
                    && get_pool(c, &account, id)?.is_none()
                {
                    return Ok(None);
                }
                settings.default_pool = pool;
            }
            if let Some(url) = inbound_url.clone() {
                settings.inbound_url = url;
            }
            if let Some(required) = require_consent {
                settings.require_marketing_consent = required;
            }
            if let Some(scope) = opt_out_scope {
                settings.opt_out_scope = scope;
            }
            set_account_settings(c, &account, &settings)?;
            if let Some(change) = &retention {
                // Applied to what is stored in this transaction, so two
                // changes at once both count.
                let current = crate::store::retention::account_retention(c, &account)?;
                let changed = change.apply(&retention_config, current);
                crate::store::retention::set_account_retention(c, &account, &changed)?;
            }
            Ok(Some(settings))
        })
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "unknown_pool",
                "default_pool",
                "this account has no such sender pool",
            )
        })?;
    app.default_pools
        .set(&principal.account_id, settings.default_pool);
    app.compliance
        .set_consent_required(&principal.account_id, settings.require_marketing_consent);
    super::accounts::whoami(app, principal).await
}
