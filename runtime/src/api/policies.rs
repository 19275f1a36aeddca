//! Policies for compliance staff and admins: the active set and its last
//! error (`GET /v1/policies`), every reload (`GET /v1/policies/history`),
//! and what the policies would decide for a message, optionally with draft
//! sources, without storing or sending anything (`POST /v1/policies/simulate`).

use std::sync::Arc;

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::json::{Fields, parse_object, read_body};
use super::{ApiError, App, Response, json_response};
use crate::auth::Principal;
use crate::dispatch::message_view;
use crate::policies::{
    CarrierView, ContentDecision, PaceDecision, Policies, PolicyError, PolicyKind, PolicySet,
    RouteDecision,
};
use crate::time::{now_ms, to_rfc3339};

fn active(app: &App) -> Result<&Arc<Policies>, ApiError> {
    app.policies.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "policies_off",
            "no policies are in use: the policies directory did not exist at start",
        )
    })
}

/// `GET /v1/policies`
pub async fn show(app: &App) -> Result<Response, ApiError> {
    let policies = active(app)?;
    let set = policies.active();
    let counters = policies.counters();
    let per_policy: serde_json::Map<String, Value> = PolicyKind::ALL
        .iter()
        .map(|&kind| {
            (
                kind.as_str().to_owned(),
                json!({
                    "calls": counters.calls(kind),
                    "errors": counters.errors(kind),
                    "cut_offs": counters.cut_offs(kind),
                }),
            )
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "digest": &**set.digest(),
            "loaded_at": to_rfc3339(set.loaded_at_ms()),
            "dir": set.dir().display().to_string(),
            "files": set.files(),
            "last_error": policies.last_error(),
            "counters": per_policy,
            "failed_reloads": counters.reloads_failed,
        }),
    ))
}

/// `GET /v1/policies/history`: newest first.
pub async fn history(app: &App) -> Result<Response, ApiError> {
    let policies = active(app)?;
    let data: Vec<Value> = policies
        .history()
        .into_iter()
        .rev()
        .map(|r| {
            json!({
                "at": to_rfc3339(r.at_ms),
                "result": r.outcome.as_str(),
                "digest": r.digest,
                "error": r.error,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

/// `POST /v1/policies/simulate {message, carriers?, sources?}`
pub async fn simulate(app: &App, principal: &Principal, body: Body) -> Result<Response, ApiError> {
    let policies = active(app)?;
    let bytes = read_body(body)?;
    let mut fields = Fields::new(parse_object(&bytes)?);
    let message = fields
        .optional_object("message")?
        .ok_or_else(|| ApiError::invalid("missing_field", "message", "`message` is required"))?;
    let only = match fields.take("carriers") {
        None | Some(Value::Null) => None,
        Some(Value::Array(names)) => Some(
            names
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    ApiError::invalid("invalid_type", "carriers", "`carriers` must be names")
                })?,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_type",
                "carriers",
                "`carriers` must be a list of carrier names",
            ));
        }
    };
    let sources = fields.optional_object("sources")?;
    fields.finish()?;

    let now = now_ms();
    let request = super::messages::parse_request(Fields::nested(message, "message.".into()), None)?;
    let record = app
        .submit
        .preview(principal, request)
        .await
        .map_err(|err| ApiError::from_submit(err, "message."))?;
    let views: Vec<CarrierView> = app
        .carriers
        .configured()
        .iter()
        .filter(|c| {
            only.as_ref()
                .is_none_or(|names| names.iter().any(|n| n == c.name()))
        })
        .map(|c| c.view(&record, now))
        .collect();
    if let Some(names) = &only
        && let Some(unknown) = names.iter().find(|n| app.carriers.get(n).is_none())
    {
        return Err(ApiError::invalid(
            "unknown_carrier",
            "carriers",
            format!("no carrier is named `{unknown}`"),
        ));
    }
    let set = match sources {
        None => policies.active(),
        Some(sources) => {
            let dir = policies.config().dir.clone();
            let deadline = std::time::Duration::from_millis(policies.config().deadline_ms.max(1));
            tokio::task::spawn_blocking(move || draft_set(&dir, sources, deadline))
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                })??
        }
    };
    let pool = record.sender.as_ref().and_then(|s| s.pool_id.as_deref());
    let consent = app.compliance.view(&record.account_id, &record.to, pool);
    let view = message_view(&record, consent);
    let content = match set.check_content(&view, now) {
        Ok(ContentDecision::Allow) => json!({"decision": "allow"}),
        Ok(ContentDecision::Reject { code, reason }) => {
            json!({"decision": "reject", "code": code, "reason": reason})
        }
        Ok(ContentDecision::Rewrite { text }) => json!({"decision": "rewrite", "text": text}),
        Err(e) => json!({"error": e.to_string(), "decision": "reject", "code": "policy_error"}),
    };
    let (route, first) = match set.route(&view, &views, now) {
        Ok(RouteDecision::Route { carriers, sender }) => {
            let first = carriers.first().cloned();
            let reasons: Vec<Value> = carriers
                .iter()
                .filter_map(|name| views.iter().find(|v| &v.name == name))
                .map(carrier_facts)
                .collect();
            (
                json!({"decision": "route", "carriers": carriers, "sender": sender, "considered": reasons}),
                first,
            )
        }
        Ok(RouteDecision::Reject { code, reason }) => (
            json!({"decision": "reject", "code": code, "reason": reason}),
            None,
        ),
        Err(e) => {
            let fallback = &policies.config().fallback_carriers;
            (
                json!({"error": e.to_string(), "decision": "route", "carriers": fallback, "fallback": true}),
                fallback.first().cloned(),
            )
        }
    };
    let pacing = match first.and_then(|name| views.iter().find(|v| v.name == name)) {
        None => Value::Null,
        Some(carrier) => match set.pace(&view, carrier, now) {
            Ok(PaceDecision::DeferUntil(at)) => {
                json!({"carrier": carrier.name, "decision": "defer_until", "until": to_rfc3339(at)})
            }
            Ok(PaceDecision::Keys(keys)) => json!({
                "carrier": carrier.name,
                "decision": "limits",
                "keys": keys.iter().map(|k| json!({"key": k.key, "rate_per_sec": k.rate_per_sec, "burst": k.burst})).collect::<Vec<_>>(),
            }),
            Err(e) => {
                json!({"carrier": carrier.name, "error": e.to_string(), "decision": "carrier_rate"})
            }
        },
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "digest": &**set.digest(),
            "draft": set.digest() != policies.active().digest(),
            "message": {
                "to": view.to,
                "country": view.country,
                "type": view.message_type.as_str(),
                "encoding": view.encoding.as_str(),
                "segments": view.segments,
            },
            "content": content,
            "route": route,
            "pacing": pacing,
        }),
    ))
}

fn carrier_facts(view: &CarrierView) -> Value {
    json!({
        "name": view.name,
        "healthy": view.healthy,
        "price": view.price,
        "delivery_rate_15m": view.last_15m.delivery_rate,
        "delivery_rate_24h": view.last_24h.delivery_rate,
        "error_rate_15m": view.last_15m.error_rate,
        "median_dlr_latency_ms_15m": view.last_15m.median_dlr_latency_ms,
    })
}

/// The active directory with the draft files laid over it, compiled (not
/// tested: a draft may be work in progress).
fn draft_set(
    dir: &std::path::Path,
    sources: serde_json::Map<String, Value>,
    deadline: std::time::Duration,
) -> Result<Arc<PolicySet>, ApiError> {
    let invalid = |message: String| ApiError::invalid("invalid_sources", "sources", message);
    let draft = tempfile::tempdir()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    copy_dir(dir, draft.path()).map_err(|e| invalid(format!("cannot copy the policies: {e}")))?;
    for (file, text) in sources {
        let ok_name = matches!(
            file.as_str(),
            "content.rhai" | "routing.rhai" | "pacing.rhai"
        ) || (file.starts_with("lib/")
            && file.ends_with(".rhai")
            && !file[4..].contains(['/', '\\'])
            && !file.contains(".."));
        if !ok_name {
            return Err(invalid(format!(
                "`{file}`: only content.rhai, routing.rhai, pacing.rhai and lib/<name>.rhai can be drafted"
            )));
        }
        let Value::String(text) = text else {
            return Err(invalid(format!("`{file}` must be the file's text")));
        };
        std::fs::write(draft.path().join(&file), text)
            .map_err(|e| invalid(format!("`{file}`: {e}")))?;
    }
    PolicySet::compile(draft.path(), deadline)
        .map(Arc::new)
        .map_err(|e: PolicyError| {
            let mut err = invalid(e.to_string());
            err.code = "policy_compile_error".into();
            err
        })
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
