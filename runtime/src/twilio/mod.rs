//! The Twilio-compatible front door: Twilio's Messages API under
//! `/2010-04-01/Accounts/{AccountSid}/`, so an application written against
//! a Twilio SDK moves to Pigeon by changing its base URL and credentials.
//! Requests authenticate with HTTP Basic `AccountSid:AuthToken` (see
//! `POST /v1/accounts/{id}/twilio-credentials`); each message goes through
//! the same accept path as `POST /v1/messages` (`crate::submit`), so every
//! rule of the JSON API holds here too. Answers and errors take Twilio's
//! shapes; status callbacks and inbound webhooks take Twilio's form and
//! signature (`crate::webhooks::twilio`); TwiML answers to inbound
//! webhooks are sent by [`replies`].

mod error;
mod form;
mod messages;
pub mod replies;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

pub use error::TwilioError;

use crate::api::{App, Response};
use crate::auth::{Principal, Role};
use crate::model::twilio::API_VERSION;
use crate::store::twilio::{self as stored, TwilioCredential};

/// Every path of this door starts so.
pub const PREFIX: &str = "/2010-04-01/";

/// The door's routes, for the metrics' `route` label.
const ROUTES: &[&str] = &[
    "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json",
];

/// Serves one request under [`PREFIX`]. Never fails: every error is a
/// Twilio-shaped JSON answer.
pub async fn handle(app: Arc<App>, request: Request<Incoming>, client_ip: IpAddr) -> Response {
    let started = std::time::Instant::now();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = match segments.as_slice() {
        [API_VERSION, "Accounts", _, "Messages.json"] => ROUTES[0],
        [API_VERSION, "Accounts", _, "Messages", _] => ROUTES[1],
        _ => "twilio_unknown",
    };
    let response = match serve(&app, request, &segments, client_ip).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    ::metrics::counter!("pigeon_http_requests_total",
        "route" => route, "status" => response.status().as_u16().to_string())
    .increment(1);
    ::metrics::histogram!("pigeon_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn serve(
    app: &App,
    request: Request<Incoming>,
    segments: &[&str],
    client_ip: IpAddr,
) -> Result<Response, TwilioError> {
    let (parts, body) = request.into_parts();
    // Read whatever happens next (see `api::Body`).
    let body = crate::api::Body::read(body).await;
    let method = &parts.method;
    let [API_VERSION, "Accounts", account_sid, rest @ ..] = segments else {
        return Err(TwilioError::not_found(parts.uri.path()));
    };
    let not_allowed = || {
        TwilioError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            20004,
            format!("Method not allowed: {method}"),
        )
    };
    let sid = match rest {
        ["Messages.json"] => None,
        ["Messages", file] => Some(
            file.strip_suffix(".json")
                .ok_or_else(|| TwilioError::not_found(parts.uri.path()))?,
        ),
        _ => return Err(TwilioError::not_found(parts.uri.path())),
    };
    let principal = authenticate(app, &parts.headers, account_sid, client_ip).await?;
    let door = messages::Door {
        app,
        account_sid,
        principal: &principal,
    };
    match (sid, method) {
        (None, &Method::POST) => {
            let params = read_params(body)?;
            door.create(params, &parts.headers).await
        }
        (None, &Method::GET) => door.list(parts.uri.query()).await,
        (Some(sid), &Method::GET) => door.fetch(sid).await,
        (Some(sid), &Method::POST) => {
            let params = read_params(body)?;
            door.update(sid, params).await
        }
        _ => Err(not_allowed()),
    }
}

fn read_params(body: crate::api::Body) -> Result<form::Params, TwilioError> {
    let bytes = crate::api::read_body(body).map_err(TwilioError::from_api)?;
    Ok(form::Params::parse(&bytes))
}

/// The caller, from HTTP Basic `AccountSid:AuthToken` naming the account
/// of the path; within its account's request rate.
async fn authenticate(
    app: &App,
    headers: &hyper::HeaderMap,
    account_sid: &str,
    client_ip: IpAddr,
) -> Result<Principal, TwilioError> {
    let (user, token) = basic_credentials(headers).ok_or_else(TwilioError::unauthenticated)?;
    if user != account_sid {
        return Err(TwilioError::unauthenticated());
    }
    let sid = user.clone();
    let credential = app
        .store
        .read(move |conn| stored::credential_by_sid(conn, &sid))
        .await
        .map_err(|err| TwilioError::from_api(err.into()))?
        .filter(|c| c.revoked_at.is_none())
        .ok_or_else(TwilioError::unauthenticated)?;
    if !constant_time_eq(&app.accounts.hasher().hash(&token), &credential.token_hash) {
        return Err(TwilioError::unauthenticated());
    }
    if let Err(limited) = app.accounts.limits().request(&credential.account_id) {
        let mut err = TwilioError::new(
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too Many Requests: this account is over its API request rate",
        );
        err.retry_after = Some(limited.retry_after_secs);
        return Err(err);
    }
    Ok(principal(&credential, Some(client_ip)))
}

/// Who acts for a Twilio credential: a developer of its account.
pub(crate) fn principal(credential: &TwilioCredential, client_ip: Option<IpAddr>) -> Principal {
    Principal {
        key_id: credential.account_sid.clone(),
        account_id: credential.account_id.clone(),
        role: Role::Developer,
        sandbox: credential.sandbox,
        operator: false,
        allowed_ips: Arc::from([]),
        expires_at: None,
        client_ip,
    }
}

fn basic_credentials(headers: &hyper::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new Account SID: `AC` and 32 random hex digits.
pub fn new_account_sid() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("AC{hex}")
}

/// A new auth token: 32 hex digits, as Twilio's (128 random bits).
pub fn new_auth_token() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
