//! The HTTP API: routing, authentication and role checks. Each resource has
//! its own file; every answer, errors included, is JSON.

mod accounts;
mod analytics;
pub mod audit;
mod carriers;
mod compliance;
pub mod error;
mod inbound;
mod json;
mod messages;
mod numbers;
mod policies;
mod pools;
mod smpp;
mod tools;
mod twilio_credentials;
mod webhooks;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::json;

pub use error::ApiError;
pub use json::{Body, read_body};

use crate::auth::{Accounts, Permission, Principal};
use crate::carriers::CarrierSet;
use crate::store::Store;

pub type Response = hyper::Response<Full<Bytes>>;

/// What request handlers share.
pub struct App {
    pub store: Store,
    pub accounts: Arc<Accounts>,
    /// The accept path, shared with the other front doors.
    pub submit: Arc<crate::submit::Submitter>,
    pub carriers: Arc<CarrierSet>,
    /// None when no policies directory exists.
    pub policies: Option<Arc<crate::policies::Policies>>,
    pub default_pools: Arc<crate::numbers::pools::DefaultPools>,
    /// Opt-outs and marketing consents, as the accept path checks them.
    pub compliance: Arc<crate::compliance::Compliance>,
    /// The scraper's bearer token for `GET /metrics` (`[metrics] token`).
    pub metrics_token: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed (`[server] trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The operator's retention periods, the most an account may keep.
    pub retention: crate::compliance::retention::RetentionConfig,
    /// Seals the Twilio auth tokens Pigeon signs Twilio-form webhooks with.
    pub sealer: crate::auth::Sealer,
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Routes one request from `peer`. Never fails: every error becomes a
/// JSON answer.
pub async fn handle(app: Arc<App>, request: Request<Incoming>, peer: IpAddr) -> Response {
    let started = std::time::Instant::now();
    let forwarded_for = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client_ip = crate::auth::network::client_ip(peer, forwarded_for, &app.trusted_proxies);
    let method = request.method().clone();
    let path = loggable_path(request.uri().path());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route_label = route_of(&segments).map_or("unknown", |(pattern, _)| pattern);
    let audited = audited_action(&method, route_label);
    let headers = audited.map(|_| request.headers().clone());
    let response = match route(&app, request, client_ip).await {
        Ok(response) => match (audited, headers) {
            (Some(action), Some(headers)) if response.status().is_success() => {
                let change = audit::Change {
                    action,
                    route: route_label,
                    segments: &segments,
                };
                audit::record_change(&app, &headers, client_ip, change, response).await
            }
            _ => response,
        },
        Err(err) => {
            // Storage faults are logged where they are turned into answers.
            if err.status.is_server_error()
                && !err.code.starts_with("storage_")
                && let Some(suppressed) = FAILED_REQUEST_LOG.allow()
            {
                tracing::warn!(%method, %path, code = %err.code, suppressed, "request failed");
            }
            err.into_response()
        }
    };
    ::metrics::counter!("pigeon_http_requests_total",
        "route" => route_label, "status" => status_label(response.status()))
    .increment(1);
    ::metrics::histogram!("pigeon_http_request_duration_seconds", "route" => route_label)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Changes audited from the router, by what they answered (see
/// `audit::record_change`): `(method, route, action)`. Account and key
/// changes are audited by their handlers, with summaries of their own;
/// sending messages is not audited.
const AUDITED: &[(Method, &str, &str)] = &[
    (Method::PATCH, "/v1/account", "account.update"),
    (Method::POST, "/v1/numbers", "number.create"),
    (Method::PATCH, "/v1/numbers/{id}", "number.update"),
    (Method::POST, "/v1/numbers/{id}/claim", "number.claim"),
    (Method::POST, "/v1/numbers/{id}/release", "number.release"),
    (Method::POST, "/v1/sender-pools", "pool.create"),
    (Method::PATCH, "/v1/sender-pools/{id}", "pool.update"),
    (Method::DELETE, "/v1/sender-pools/{id}", "pool.delete"),
    (Method::PUT, "/v1/account/keywords", "keywords.update"),
    (
        Method::PUT,
        "/v1/sender-pools/{id}/keywords",
        "keywords.update",
    ),
    (Method::POST, "/v1/suppressions", "suppression.add"),
    (
        Method::POST,
        "/v1/suppressions/import",
        "suppression.import",
    ),
    (
        Method::DELETE,
        "/v1/suppressions/{number}",
        "suppression.delete",
    ),
    (Method::POST, "/v1/consents", "consent.add"),
    (Method::DELETE, "/v1/consents/{id}", "consent.withdraw"),
    (Method::POST, "/v1/messages/{id}/redact", "message.redact"),
    (Method::POST, "/v1/inbound/{id}/redact", "inbound.redact"),
    (
        Method::POST,
        "/v1/account/webhook-secret/rotate",
        "webhook_secret.rotate",
    ),
    (
        Method::POST,
        "/v1/webhooks/{id}/redeliver",
        "webhook.redeliver",
    ),
    (
        Method::POST,
        "/v1/accounts/{id}/smpp-credentials",
        "smpp_credential.create",
    ),
    (
        Method::DELETE,
        "/v1/smpp-credentials/{id}",
        "smpp_credential.revoke",
    ),
];

fn audited_action(method: &Method, route: &str) -> Option<&'static str> {
    AUDITED
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map(|(_, _, action)| *action)
}

/// A status code as a label value without an allocation for common ones.
fn status_label(status: StatusCode) -> std::borrow::Cow<'static, str> {
    match status.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        202 => "202".into(),
        204 => "204".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        422 => "422".into(),
        429 => "429".into(),
        other => other.to_string().into(),
    }
}

/// Failed requests: a flood of them is a few lines a second in the log.
static FAILED_REQUEST_LOG: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(1000, 10);

/// A request path as it may be logged: a carrier callback's secret is
/// replaced by `{secret}`.
pub fn loggable_path(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "carriers", name, "callback", _secret, rest @ ..] => {
            let mut redacted = format!("/v1/carriers/{name}/callback/{{secret}}");
            for segment in rest {
                redacted.push('/');
                redacted.push_str(segment);
            }
            redacted
        }
        _ => path.to_owned(),
    }
}

async fn route(
    app: &App,
    request: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH)
        && length
            .to_str()
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > json::MAX_BODY)
    {
        return Err(json::too_large());
    }
    let body = json::Body::read(body).await;
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let method = &parts.method;
    let authed = |permission| authorize(app, &parts.headers, client_ip, permission);

    use Permission::*;
    match (segments.as_slice(), method) {
        (["healthz"], &Method::GET) => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        (["dashboard", rest @ ..], &Method::GET) => crate::dashboard::serve(rest, &parts.headers),
        (["readyz"], &Method::GET) => Ok(match app.store.check_writable().await {
            Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Err(err) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "reason": err.to_string()}),
            ),
        }),

        (["metrics"], &Method::GET) => {
            authorize_scraper(app, &parts.headers, client_ip)?;
            let mut response = hyper::Response::new(Full::new(Bytes::from(
                crate::metrics::render(&app.store).await,
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(response)
        }
        (["v1", "analytics", "messages"], &Method::GET) => {
            let principal = authed(ReadMessages)?;
            analytics::messages(app, &principal, parts.uri.query(), analytics::Format::Json).await
        }
        (["v1", "analytics", "messages.csv"], &Method::GET) => {
            let principal = authed(ReadMessages)?;
            analytics::messages(app, &principal, parts.uri.query(), analytics::Format::Csv).await
        }

        (["v1", "accounts"], &Method::POST) => {
            accounts::create_account(app, &authed(ManageAccounts)?, body).await
        }
        (["v1", "accounts", id], &Method::GET) => {
            accounts::get_account(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "account"], &Method::GET) => accounts::whoami(app, &authed(ReadMessages)?).await,
        (["v1", "account"], &Method::PATCH) => {
            pools::update_account(app, &authed(ManageNumbers)?, body).await
        }
        (["v1", "account", "webhook-secret", "rotate"], &Method::POST) => {
            accounts::rotate_webhook_secret(app, &authed(ManageKeys)?, body).await
        }
        (["v1", "accounts", id, "twilio-credentials"], &Method::GET) => {
            twilio_credentials::get(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "accounts", id, "twilio-credentials"], &Method::POST) => {
            twilio_credentials::create(app, &authed(ManageKeys)?, id, body).await
        }
        (["v1", "accounts", id, "twilio-credentials"], &Method::DELETE) => {
            twilio_credentials::revoke(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "accounts", id, "keys"], &Method::GET) => {
            accounts::list_keys(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "accounts", id, "keys"], &Method::POST) => {
            accounts::create_key(app, &authed(ManageKeys)?, id, body).await
        }
        (["v1", "accounts", id], &Method::PATCH) => {
            accounts::update_account(app, &authed(ManageAccounts)?, id, body).await
        }
        (["v1", "accounts", id, "smpp-credentials"], &Method::GET) => {
            smpp::list(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "accounts", id, "smpp-credentials"], &Method::POST) => {
            smpp::create(app, &authed(ManageKeys)?, id, body).await
        }
        (["v1", "smpp-credentials", id], &Method::DELETE) => {
            smpp::revoke(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "keys", id], &Method::DELETE) => {
            accounts::revoke_key(app, &authed(ManageKeys)?, id).await
        }
        (["v1", "keys", id], &Method::PATCH) => {
            accounts::update_key(app, &authed(ManageKeys)?, id, body).await
        }
        (["v1", "keys", id, "rotate"], &Method::POST) => {
            accounts::rotate_key(app, &authed(ManageKeys)?, id, body).await
        }
        (["v1", "audit"], &Method::GET) => {
            audit::list(app, &authed(ReadAudit)?, parts.uri.query()).await
        }

        (["v1", "messages"], &Method::POST) => {
            let principal = authed(SendMessages)?;
            let key = messages::idempotency_key(&parts.headers)?;
            messages::create(app, &principal, key, body).await
        }
        (["v1", "messages"], &Method::GET) => {
            messages::list(app, &authed(ReadMessages)?, parts.uri.query()).await
        }
        (["v1", "messages", "batch"], &Method::POST) => {
            let principal = authed(SendMessages)?;
            let key = messages::idempotency_key(&parts.headers)?;
            messages::create_batch(app, &principal, key, body).await
        }
        (["v1", "messages", id], &Method::GET) if *id != "batch" => {
            messages::get(app, &authed(ReadMessages)?, id).await
        }
        (["v1", "messages", id, "cancel"], &Method::POST) => {
            messages::cancel(app, &authed(SendMessages)?, id).await
        }
        (["v1", "messages", id, "redact"], &Method::POST) => {
            messages::redact(app, &authed(RedactMessages)?, id).await
        }
        (["v1", "messages", id, "webhooks"], &Method::GET) => {
            messages::webhooks(app, &authed(ReadMessages)?, id).await
        }

        (["v1", "webhooks"], &Method::GET) => {
            webhooks::list(app, &authed(ReadMessages)?, parts.uri.query()).await
        }
        (["v1", "webhooks", id, "redeliver"], &Method::POST) => {
            webhooks::redeliver_webhook(app, &authed(SendMessages)?, id).await
        }

        (["v1", "numbers"], &Method::POST) => {
            numbers::create(app, &authed(ManageAccounts)?, body).await
        }
        (["v1", "numbers"], &Method::GET) => {
            numbers::list(app, &authed(ReadMessages)?, parts.uri.query()).await
        }
        (["v1", "numbers", id], &Method::GET) => {
            numbers::get(app, &authed(ReadMessages)?, id).await
        }
        (["v1", "numbers", id], &Method::PATCH) => {
            numbers::update(app, &authed(ManageNumbers)?, id, body).await
        }
        (["v1", "numbers", id, "claim"], &Method::POST) => {
            numbers::claim(app, &authed(ManageNumbers)?, id).await
        }
        (["v1", "numbers", id, "release"], &Method::POST) => {
            numbers::release(app, &authed(ManageNumbers)?, id).await
        }

        (["v1", "account", "keywords"], &Method::GET) => {
            compliance::get_keywords(app, &authed(ReadMessages)?, None).await
        }
        (["v1", "account", "keywords"], &Method::PUT) => {
            compliance::put_keywords(app, &authed(ManageConsent)?, None, body).await
        }
        (["v1", "sender-pools", id, "keywords"], &Method::GET) => {
            compliance::get_keywords(app, &authed(ReadMessages)?, Some(id)).await
        }
        (["v1", "sender-pools", id, "keywords"], &Method::PUT) => {
            compliance::put_keywords(app, &authed(ManageConsent)?, Some(id), body).await
        }
        (["v1", "suppressions"], &Method::GET) => {
            compliance::list_suppressions(app, &authed(ReadMessages)?, parts.uri.query()).await
        }
        (["v1", "suppressions"], &Method::POST) => {
            compliance::add_suppression(app, &authed(ManageConsent)?, body).await
        }
        (["v1", "suppressions", "import"], &Method::POST) => {
            compliance::import_suppressions(app, &authed(ManageConsent)?, body).await
        }
        (["v1", "suppressions", number], &Method::GET) if *number != "import" => {
            compliance::get_suppression(app, &authed(ReadMessages)?, &json::percent_decode(number))
                .await
        }
        (["v1", "suppressions", number], &Method::DELETE) => {
            compliance::delete_suppression(
                app,
                &authed(ManageConsent)?,
                &json::percent_decode(number),
            )
            .await
        }
        (["v1", "consents"], &Method::POST) => {
            compliance::add_consent(app, &authed(ManageConsent)?, body).await
        }
        (["v1", "consents"], &Method::GET) => {
            compliance::list_consents(app, &authed(ReadMessages)?, parts.uri.query()).await
        }
        (["v1", "consents", id], &Method::DELETE) => {
            compliance::withdraw_consent(app, &authed(ManageConsent)?, id).await
        }
        (["v1", "consents", number, "history"], &Method::GET) => {
            compliance::history(app, &authed(ReadMessages)?, &json::percent_decode(number)).await
        }

        (["v1", "sender-pools"], &Method::POST) => {
            pools::create(app, &authed(ManageNumbers)?, body).await
        }
        (["v1", "sender-pools"], &Method::GET) => pools::list(app, &authed(ReadMessages)?).await,
        (["v1", "sender-pools", id], &Method::GET) => {
            pools::get(app, &authed(ReadMessages)?, id).await
        }
        (["v1", "sender-pools", id], &Method::PATCH) => {
            pools::update(app, &authed(ManageNumbers)?, id, body).await
        }
        (["v1", "sender-pools", id], &Method::DELETE) => {
            pools::delete(app, &authed(ManageNumbers)?, id).await
        }

        (["v1", "carriers"], &Method::GET) => carriers::list(app, &authed(ManageAccounts)?).await,
        (["v1", "carriers", name, "callback", secret, rest @ ..], &Method::GET | &Method::POST) => {
            let path = rest.join("/");
            carriers::callback(app, name, secret, &path, &parts, body).await
        }
        (["v1", "inbound"], &Method::GET) => {
            inbound::list(app, &authed(ReadMessages)?, parts.uri.query()).await
        }
        (["v1", "inbound", id], &Method::GET) => {
            inbound::get(app, &authed(ReadMessages)?, id).await
        }
        (["v1", "inbound", id, "redact"], &Method::POST) => {
            inbound::redact(app, &authed(RedactMessages)?, id).await
        }
        (["v1", "inbound", id, "webhooks"], &Method::GET) => {
            inbound::webhooks(app, &authed(ReadMessages)?, id).await
        }
        (["v1", "sandbox", "inbound"], &Method::POST) => {
            inbound::sandbox(app, &authed(SendMessages)?, body).await
        }

        (["v1", "policies"], &Method::GET) => {
            authed(ReviewPolicies)?;
            policies::show(app).await
        }
        (["v1", "policies", "history"], &Method::GET) => {
            authed(ReviewPolicies)?;
            policies::history(app).await
        }
        (["v1", "policies", "simulate"], &Method::POST) => {
            policies::simulate(app, &authed(ReviewPolicies)?, body).await
        }

        (["v1", "encoding", "analyze"], &Method::POST) => {
            authed(UseTools)?;
            tools::analyze(body).await
        }
        (["v1", "openapi.json"], &Method::GET) => Ok(openapi()),

        (known, _) if route_of(known).is_some() => {
            let allow = route_of(known)
                .map(|(_, m)| m.join(", "))
                .unwrap_or_default();
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here; use {allow}"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            Ok(response)
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint: {}", loggable_path(parts.uri.path())),
        )),
    }
}

/// The API's OpenAPI 3.1 description, kept by hand next to [`ROUTES`]
/// (`tests/openapi.rs` fails when the two differ).
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`: no key needed.
fn openapi() -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Every endpoint: its path (`{name}` for one segment, `{rest*}` for any
/// number of them) and the methods it takes. The 405 answers, the metrics'
/// `route` label and the OpenAPI description's check come from this table,
/// so a route added to [`route`] must be added here too.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/dashboard", &["GET"]),
    ("/dashboard/{rest*}", &["GET"]),
    ("/v1/openapi.json", &["GET"]),
    ("/v1/accounts", &["POST"]),
    ("/v1/accounts/{id}", &["GET", "PATCH"]),
    ("/v1/account", &["GET", "PATCH"]),
    ("/v1/account/webhook-secret/rotate", &["POST"]),
    ("/v1/accounts/{id}/keys", &["GET", "POST"]),
    (
        "/v1/accounts/{id}/twilio-credentials",
        &["GET", "POST", "DELETE"],
    ),
    ("/v1/keys/{id}", &["PATCH", "DELETE"]),
    ("/v1/keys/{id}/rotate", &["POST"]),
    ("/v1/accounts/{id}/smpp-credentials", &["GET", "POST"]),
    ("/v1/smpp-credentials/{id}", &["DELETE"]),
    ("/v1/audit", &["GET"]),
    ("/v1/messages", &["GET", "POST"]),
    ("/v1/messages/batch", &["POST"]),
    ("/v1/messages/{id}", &["GET"]),
    ("/v1/messages/{id}/cancel", &["POST"]),
    ("/v1/messages/{id}/redact", &["POST"]),
    ("/v1/messages/{id}/webhooks", &["GET"]),
    ("/v1/webhooks", &["GET"]),
    ("/v1/webhooks/{id}/redeliver", &["POST"]),
    ("/v1/analytics/messages", &["GET"]),
    ("/v1/analytics/messages.csv", &["GET"]),
    ("/v1/encoding/analyze", &["POST"]),
    ("/v1/numbers", &["GET", "POST"]),
    ("/v1/numbers/{id}", &["GET", "PATCH"]),
    ("/v1/numbers/{id}/claim", &["POST"]),
    ("/v1/numbers/{id}/release", &["POST"]),
    ("/v1/carriers", &["GET"]),
    (
        "/v1/carriers/{name}/callback/{secret}/{rest*}",
        &["GET", "POST"],
    ),
    ("/v1/inbound", &["GET"]),
    ("/v1/inbound/{id}", &["GET"]),
    ("/v1/inbound/{id}/redact", &["POST"]),
    ("/v1/inbound/{id}/webhooks", &["GET"]),
    ("/v1/sandbox/inbound", &["POST"]),
    ("/v1/sender-pools", &["GET", "POST"]),
    ("/v1/sender-pools/{id}", &["GET", "PATCH", "DELETE"]),
    ("/v1/account/keywords", &["GET", "PUT"]),
    ("/v1/sender-pools/{id}/keywords", &["GET", "PUT"]),
    ("/v1/suppressions", &["GET", "POST"]),
    ("/v1/suppressions/import", &["POST"]),
    ("/v1/suppressions/{number}", &["GET", "DELETE"]),
    ("/v1/consents", &["GET", "POST"]),
    ("/v1/consents/{id}", &["DELETE"]),
    ("/v1/consents/{number}/history", &["GET"]),
    ("/v1/policies", &["GET"]),
    ("/v1/policies/history", &["GET"]),
    ("/v1/policies/simulate", &["POST"]),
];

/// The entry of [`ROUTES`] a path falls under. Literal segments win over
/// `{name}` ones (`/v1/messages/batch` is not `/v1/messages/{id}`).
pub fn route_of(segments: &[&str]) -> Option<(&'static str, &'static [&'static str])> {
    let matches = |pattern: &str| {
        let mut wanted = pattern.trim_start_matches('/').split('/');
        let mut given = segments.iter();
        loop {
            match (wanted.next(), given.next()) {
                (Some(w), _) if w.ends_with("*}") => return true,
                (Some(w), Some(g)) if w.starts_with('{') || w == *g => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    };
    let literal = |pattern: &str| pattern.split('/').filter(|s| !s.starts_with('{')).count();
    ROUTES
        .iter()
        .filter(|(pattern, _)| matches(pattern))
        .max_by_key(|(pattern, _)| literal(pattern))
        .copied()
}

/// `GET /metrics` takes an operator admin key or the scraper's token.
fn authorize_scraper(
    app: &App,
    headers: &hyper::HeaderMap,
    client_ip: IpAddr,
) -> Result<(), ApiError> {
    let presented = bearer(headers)?;
    if let Some(token) = &app.metrics_token {
        let (a, b) = (token.as_bytes(), presented.as_bytes());
        if a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
            return Ok(());
        }
    }
    let principal = authenticate(app, presented, client_ip)?;
    if principal.operator && principal.role == crate::auth::Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

fn bearer(headers: &hyper::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or_else(|| ApiError::unauthorized("send your API key as `Authorization: Bearer <key>`"))
}

fn authenticate(app: &App, presented: &str, client_ip: IpAddr) -> Result<Principal, ApiError> {
    use crate::auth::Denied;
    app.accounts
        .authenticate(presented, client_ip)
        .map_err(|denied| match denied {
            Denied::Unknown => ApiError::unauthorized("unknown or revoked API key"),
            Denied::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "key_expired",
                "this API key has expired",
            ),
            Denied::IpNotAllowed => ApiError::new(
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                format!("this API key may not be used from {client_ip}"),
            ),
        })
}

/// The caller of a request that already passed [`authorize`].
fn authorize_any(
    app: &App,
    headers: &hyper::HeaderMap,
    client_ip: IpAddr,
) -> Result<Principal, ApiError> {
    authenticate(app, bearer(headers)?, client_ip)
}

/// The caller, if its key works from here, its role allows `permission`
/// and its account is within its request rate.
fn authorize(
    app: &App,
    headers: &hyper::HeaderMap,
    client_ip: IpAddr,
    permission: Permission,
) -> Result<Principal, ApiError> {
    let principal = authenticate(app, bearer(headers)?, client_ip)?;
    if !principal.role.allows(permission) {
        return Err(ApiError::forbidden());
    }
    if let Err(limited) = app.accounts.limits().request(&principal.account_id) {
        return Err(ApiError::too_many(
            "rate_limited",
            "this account is over its API request rate; slow down",
            limited.retry_after_secs,
        ));
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::route_of;

    fn pattern(path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        route_of(&segments).map(|(pattern, _)| pattern)
    }

    #[test]
    fn route_of_prefers_literal_segments() {
        assert_eq!(pattern("/v1/messages/batch"), Some("/v1/messages/batch"));
        assert_eq!(pattern("/v1/messages/msg_1"), Some("/v1/messages/{id}"));
        assert_eq!(
            pattern("/v1/suppressions/import"),
            Some("/v1/suppressions/import")
        );
        assert_eq!(
            pattern("/v1/suppressions/+84987654321"),
            Some("/v1/suppressions/{number}")
        );
        assert_eq!(
            pattern("/v1/account/keywords"),
            Some("/v1/account/keywords")
        );
        assert_eq!(
            pattern("/v1/analytics/messages.csv"),
            Some("/v1/analytics/messages.csv")
        );
        let (_, methods) = route_of(&["v1", "sender-pools", "pool_1"]).unwrap();
        assert_eq!(methods, ["GET", "PATCH", "DELETE"]);
    }

    #[test]
    fn route_of_rest_matches_any_tail() {
        let callback = Some("/v1/carriers/{name}/callback/{secret}/{rest*}");
        assert_eq!(pattern("/v1/carriers/acme/callback/s3cr3t/dlr"), callback);
        assert_eq!(pattern("/v1/carriers/acme/callback/s3cr3t/a/b/c"), callback);
        assert_eq!(pattern("/v1/carriers/acme/callback/s3cr3t"), callback);
        assert_eq!(pattern("/v1/carriers/acme/callback"), None);
    }

    #[test]
    fn route_of_unknown_paths_is_none() {
        assert_eq!(pattern("/v2/messages"), None);
        assert_eq!(pattern("/v1/messages/msg_1/parts"), None);
        assert_eq!(pattern("/v1/nothing"), None);
        assert_eq!(pattern("/"), None);
        assert_eq!(pattern("/v1/openapi.json"), Some("/v1/openapi.json"));
    }

    #[test]
    fn callback_secrets_are_kept_out_of_logged_paths() {
        assert_eq!(
            super::loggable_path("/v1/carriers/acme/callback/s3cr3tS3CR3Ts3cr3t/dlr"),
            "/v1/carriers/acme/callback/{secret}/dlr"
        );
        assert_eq!(
            super::loggable_path("/v1/carriers/acme/callback/s3cr3t"),
            "/v1/carriers/acme/callback/{secret}"
        );
        assert_eq!(super::loggable_path("/v1/messages"), "/v1/messages");
    }
}
