//! Carriers: the operator's list (`GET /v1/carriers`), and the callback
//! route carriers call with delivery reports and inbound messages (handed
//! to `tracking`).

use std::sync::atomic::Ordering;

use super::json::Body;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{StatusCode, http};
use serde_json::{Value, json};

use super::json::read_body;
use super::{ApiError, App, Response, json_response};
use crate::auth::Principal;
use crate::carriers::{CarrierCounters, CarrierHandle};
use crate::plugins::{CallbackError, CallbackRequest};

/// `GET /v1/carriers`: operator admins only.
pub async fn list(app: &App, principal: &Principal) -> Result<Response, ApiError> {
    if !principal.operator {
        return Err(ApiError::forbidden());
    }
    let data: Vec<Value> = app.carriers.all().iter().map(|c| carrier_json(c)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

fn carrier_json(carrier: &CarrierHandle) -> Value {
    let plugin = carrier.plugin();
    let info = plugin.info();
    let stats = plugin.stats();
    let reload_error = plugin.reload_error();
    let c = &carrier.counters;
    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let now = crate::time::now_ms();
    let state = if carrier.misconfigured.load(Ordering::Relaxed) {
        "misconfigured"
    } else {
        "active"
    };
    json!({
        "name": carrier.name(),
        "state": state,
        "plugin": {
            "name": info.name,
            "version": info.version,
            "contract_version": info.contract_version,
            "capabilities": info.capabilities,
            "path": plugin.path().display().to_string(),
            "reload_error": reload_error,
        },
        "base_url": carrier.base_url,
        "callback_url": carrier.callback_url,
        "countries": carrier.config.countries,
        "price": carrier.config.price,
        "tps": carrier.config.tps,
        "window": carrier.config.window,
        "window_share": carrier.window_share(),
        "in_flight": carrier.in_flight(),
        "stats": {
            "last_15_minutes": window_json(carrier.stats.window(now, 15)),
            "last_24_hours": window_json(carrier.stats.window(now, 24 * 60)),
        },
        "counters": {
            "submitted": read(&c.submitted),
            "parts_submitted": read(&c.parts_submitted),
            "requests": carrier.carrier.requests_sent(),
            "failed": read(&c.failed),
            "retried": read(&c.retried),
            "throttled": read(&c.throttled),
            "deferred": read(&c.deferred),
            "dlrs": read(&c.dlrs),
            "inbound": read(&c.inbound),
            "inbound_truncated": read(&c.inbound_truncated),
            "callbacks_rejected": read(&c.callbacks_rejected),
        },
        "plugin_calls": {
            "calls": stats.calls,
            "traps": stats.traps,
            "deadlines": stats.deadlines,
            "memory_exceeded": stats.memory_exceeded,
            "reloads": stats.reloads,
            "reload_failures": stats.reload_failures,
        },
    })
}

fn window_json(w: crate::carriers::Window) -> Value {
    json!({
        "delivery_rate": w.delivery_rate,
        "error_rate": w.error_rate,
        "median_dlr_latency_ms": w.median_dlr_latency_ms.map(f64::round),
        "submissions": w.submissions,
        "reports": w.reports,
    })
}

static REJECTED_CALLBACK_LOG: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(1000, 5);

/// `GET|POST /v1/carriers/{name}/callback/{secret}/{path}`: no API key; the
/// secret in the path is the credential. An unknown carrier and a wrong
/// secret both answer 404, so neither can be probed for.
pub async fn callback(
    app: &App,
    name: &str,
    secret: &str,
    path: &str,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let carrier = app
        .carriers
        .get(name)
        .filter(|c| c.secret_matches(secret))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no such endpoint: {}",
                    super::loggable_path(parts.uri.path())
                ),
            )
        })?;
    let body = read_body(body)?;
    let request = CallbackRequest {
        method: parts.method.clone(),
        path: format!("/{path}"),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    let counters = &carrier.counters;
    let outcome = match carrier.carrier.parse_callback(request).await {
        Ok(outcome) => outcome,
        Err(CallbackError::Rejected(reason)) => {
            CarrierCounters::add(&counters.callbacks_rejected, 1);
            // Not the reason: plugins may quote the body, which can carry a
            // message's text (an OTP). The carrier gets the reason back.
            if let Some(suppressed) = REJECTED_CALLBACK_LOG.allow() {
                tracing::warn!(
                    carrier = name,
                    path = %super::loggable_path(parts.uri.path()),
                    body_bytes = body.len(),
                    suppressed,
                    "carrier callback rejected by the plugin"
                );
            }
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "callback_rejected",
                reason,
            ));
        }
        Err(CallbackError::Method(method)) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            ));
        }
        Err(CallbackError::Call(e)) => {
            // Our fault, not the carrier's: ask it to try again later.
            CarrierCounters::add(&counters.callbacks_rejected, 1);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "plugin_failed",
                e.to_string(),
            ));
        }
    };
    let reports = outcome.reports.len();
    let applied = crate::tracking::apply(
        &app.store,
        &app.compliance,
        outcome.reports,
        outcome.inbound,
    )
    .await?;
    if applied.replies > 0 {
        app.submit.dispatch_waker.notify_one();
    }
    CarrierCounters::add(&counters.dlrs, reports as u64);
    for (status, latency_ms) in &applied.applied {
        if status.is_final() {
            carrier.count_final_report(*status, *latency_ms);
        }
    }
    CarrierCounters::add(&counters.inbound, applied.inbound as u64);
    CarrierCounters::add(&counters.inbound_truncated, applied.truncated as u64);
    if applied.pruned > 0 {
        tracing::info!(
            pruned = applied.pruned,
            "delivery reports for unknown carrier ids dropped (too old or too many)"
        );
    }
    if applied.early > 0 || applied.ignored > 0 {
        tracing::debug!(
            carrier = name,
            early = applied.early,
            ignored = applied.ignored,
            "delivery reports kept out of parts' state (early, duplicate or not final)"
        );
    }
    let mut response = hyper::Response::new(Full::new(outcome.response.body.into()));
    *response.status_mut() =
        StatusCode::from_u16(outcome.response.status).unwrap_or(StatusCode::OK);
    for (name, value) in outcome.response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}
