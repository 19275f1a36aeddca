//! `/v1/accounts/{id}/twilio-credentials`: the Account SID and auth token
//! an application moved from Twilio authenticates with (see
//! `crate::twilio`). An account has one Account SID for good; each `POST`
//! issues a new auth token, shown once, and the previous one stops
//! working, as when a Twilio account's token is rotated. The token is
//! stored hashed (to authenticate) and sealed (to sign Twilio-form
//! webhooks with it).

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::audit;
use super::error::ApiError;
use super::json::{Fields, parse_object, read_body};
use super::{App, Response, json_response};
use crate::auth::Principal;
use crate::store::twilio::{self as stored, TwilioCredential};
use crate::time::{now_ms, to_rfc3339};

/// `POST {sandbox?}`: a new auth token (and, the first time, the SID).
pub async fn create(
    app: &App,
    principal: &Principal,
    account_id: &str,
    body: Body,
) -> Result<Response, ApiError> {
    managed_account(app, principal, account_id).await?;
    let bytes = read_body(body)?;
    let sandbox = if bytes.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let mut fields = Fields::new(parse_object(&bytes)?);
        let sandbox = fields.optional_bool("sandbox")?.unwrap_or(false);
        fields.finish()?;
        sandbox
    };
    let token = crate::twilio::new_auth_token();
    let hash = app.accounts.hasher().hash(&token);
    let sealed = app.sealer.seal(&token);
    let (account, sid) = (account_id.to_owned(), crate::twilio::new_account_sid());
    let credential = app
        .store
        .write(move |conn| {
            stored::issue_token(conn, &account, &sid, &hash, &sealed, sandbox, now_ms())
        })
        .await?;
    audit::record_in(
        app,
        principal,
        account_id,
        "twilio_credential.create",
        &credential.account_sid,
        json!({"sandbox": sandbox}),
    )
    .await?;
    let mut answer = credential_json(&credential);
    answer["auth_token"] = json!(token);
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// `GET`: the SID and whether a token is in force; never the token.
pub async fn get(app: &App, principal: &Principal, account_id: &str) -> Result<Response, ApiError> {
    managed_account(app, principal, account_id).await?;
    let account = account_id.to_owned();
    let credential = app
        .store
        .read(move |conn| stored::credential(conn, &account))
        .await?
        .ok_or_else(|| ApiError::not_found("Twilio credential"))?;
    Ok(json_response(StatusCode::OK, &credential_json(&credential)))
}

/// `DELETE`: the token stops working at once; the SID stays the account's.
pub async fn revoke(
    app: &App,
    principal: &Principal,
    account_id: &str,
) -> Result<Response, ApiError> {
    managed_account(app, principal, account_id).await?;
    let account = account_id.to_owned();
    let credential = app
        .store
        .write(move |conn| {
            if !stored::revoke(conn, &account, now_ms())? {
                return Ok(None);
            }
            stored::credential(conn, &account)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("Twilio credential"))?;
    audit::record_in(
        app,
        principal,
        account_id,
        "twilio_credential.revoke",
        &credential.account_sid,
        json!({}),
    )
    .await?;
    Ok(json_response(StatusCode::OK, &credential_json(&credential)))
}

/// Another account's credentials are not found, not forbidden.
async fn managed_account(app: &App, principal: &Principal, id: &str) -> Result<(), ApiError> {
    match app.accounts.get_account(id.to_owned()).await? {
        Some(account) if principal.may_manage(&account.id) => Ok(()),
        _ => Err(ApiError::not_found("account")),
    }
}

fn credential_json(c: &TwilioCredential) -> Value {
    json!({
        "account_id": c.account_id,
        "account_sid": c.account_sid,
        "sandbox": c.sandbox,
        "created_at": to_rfc3339(c.created_at),
        "revoked_at": c.revoked_at.map(to_rfc3339),
    })
}
