//! `/v1/accounts/{id}/smpp-credentials` and `/v1/smpp-credentials/{id}`:
//! the system_id and password an account's ESMEs bind to the SMPP server
//! with. The password is generated, shown once and stored as a keyed hash
//! (see `smpp::password_hash`); a revoked credential's open binds are
//! closed within a second.

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{Fields, parse_object, read_body};
use super::{App, Response, json_response};
use crate::auth::Principal;
use crate::store::smpp::{self as stored, CredentialRecord};
use crate::time::{now_ms, to_rfc3339};

fn credential_json(credential: &CredentialRecord) -> Value {
    json!({
        "id": credential.id,
        "account_id": credential.account_id,
        "system_id": credential.system_id,
        "sandbox": credential.sandbox,
        "created_at": to_rfc3339(credential.created_at),
    })
}

/// `POST /v1/accounts/{id}/smpp-credentials {system_id?, sandbox?}`.
pub async fn create(
    app: &App,
    principal: &Principal,
    account_id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if !principal.may_manage(account_id)
        || app
            .accounts
            .get_account(account_id.to_owned())
            .await?
            .is_none()
    {
        return Err(ApiError::not_found("account"));
    }
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let system_id = fields.optional_str("system_id")?;
    let sandbox = fields.optional_bool("sandbox")?.unwrap_or(false);
    fields.finish()?;
    if let Some(system_id) = &system_id
        && !crate::smpp::valid_system_id(system_id)
    {
        return Err(ApiError::invalid(
            "invalid_system_id",
            "system_id",
            format!(
                "`system_id` must be 1 to {} ASCII letters, digits, `_` or `-` (SMPP 3.4's limit)",
                crate::smpp::MAX_SYSTEM_ID_LEN
            ),
        ));
    }
    let chosen = system_id.is_some();
    let system_id = system_id.unwrap_or_else(crate::smpp::generate_system_id);
    let password = crate::smpp::generate_password();
    let credential = CredentialRecord {
        id: crate::ids::new_id("smpp"),
        account_id: account_id.to_owned(),
        password_hash: crate::smpp::password_hash(app.accounts.hasher(), &system_id, &password),
        system_id,
        sandbox,
        created_at: now_ms(),
        revoked_at: None,
    };
    let record = credential.clone();
    let inserted = app
        .store
        .write(move |conn| stored::insert_credential(conn, &record))
        .await?;
    if !inserted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "system_id_taken",
            if chosen {
                "this `system_id` is already in use; choose another"
            } else {
                "the generated system_id was taken; try again"
            },
        )
        .with_field("system_id"));
    }
    let mut body = credential_json(&credential);
    body["password"] = json!(password);
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `GET /v1/accounts/{id}/smpp-credentials`: those in force, without passwords.
pub async fn list(
    app: &App,
    principal: &Principal,
    account_id: &str,
) -> Result<Response, ApiError> {
    if !principal.may_manage(account_id) {
        return Err(ApiError::not_found("account"));
    }
    let account = account_id.to_owned();
    let credentials = app
        .store
        .read(move |conn| stored::list_credentials(conn, &account))
        .await?;
    let data: Vec<Value> = credentials.iter().map(credential_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

/// `DELETE /v1/smpp-credentials/{id}`.
pub async fn revoke(app: &App, principal: &Principal, id: &str) -> Result<Response, ApiError> {
    let wanted = id.to_owned();
    let credential = app
        .store
        .read(move |conn| stored::get_credential(conn, &wanted))
        .await?;
    match credential {
        Some(c) if principal.may_manage(&c.account_id) && c.revoked_at.is_none() => {}
        _ => return Err(ApiError::not_found("SMPP credential")),
    }
    let (wanted, now) = (id.to_owned(), now_ms());
    app.store
        .write(move |conn| stored::revoke_credential(conn, &wanted, now))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "revoked": true}),
    ))
}
