//! Consent and opt-out over HTTP: keywords and their replies
//! (`/v1/account/keywords`, `/v1/sender-pools/{id}/keywords`), the
//! suppression list (`/v1/suppressions`, with CSV import) and consent
//! records with their history (`/v1/consents`). Admins and compliance
//! staff write; every role reads. Each change is also made to the
//! in-memory sets the accept path checks (`compliance::Compliance`).

use super::json::Body;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::json::{Fields, parse_limit, parse_object, query_params, read_body, unknown_parameter};
use super::{ApiError, App, Response, json_response};
use crate::auth::Principal;
use crate::compliance::keywords::Keywords;
use crate::compliance::{
    CONSENT_SOURCES, Consent, ConsentEvent, Purpose, Suppression, WHOLE_ACCOUNT,
};
use crate::store::compliance as store;
use crate::time::{now_ms, parse_rfc3339, to_rfc3339};

const MAX_KEYWORDS: usize = 50;
const MAX_KEYWORD_CHARS: usize = 40;
const MAX_REPLY_CHARS: usize = 480;
const MAX_REASON_CHARS: usize = 200;
const MAX_EVIDENCE_CHARS: usize = 1000;
/// Most lines one CSV import takes.
const MAX_IMPORT_LINES: usize = 100_000;

/// A handset's number as the routes and bodies give it: E.164 only.
fn e164(raw: &str, field: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    if !raw.starts_with('+') {
        return Err(ApiError::invalid(
            "invalid_number",
            field,
            format!("`{raw}`: write the number in E.164 (+CC...)"),
        ));
    }
    crate::numbers::normalize(raw, None)
        .map(|r| r.e164)
        .map_err(|e| ApiError::invalid("invalid_number", field, format!("`{raw}`: {e}")))
}

// ---- Keywords ----

/// `GET /v1/account/keywords` and `GET /v1/sender-pools/{id}/keywords`:
/// what applies there (the pool's own, else the account's, else the
/// defaults), and whether it is that scope's own setting.
pub async fn get_keywords(
    app: &App,
    principal: &Principal,
    pool: Option<&str>,
) -> Result<Response, ApiError> {
    let (keywords, own) = load_keywords(app, principal, pool).await?;
    Ok(json_response(
        StatusCode::OK,
        &keywords_json(&keywords, own),
    ))
}

async fn load_keywords(
    app: &App,
    principal: &Principal,
    pool: Option<&str>,
) -> Result<(Keywords, bool), ApiError> {
    let (account, pool) = (principal.account_id.clone(), pool.map(str::to_owned));
    app.store
        .read(move |c| {
            if let Some(pool) = &pool
                && crate::store::pools::get_pool(c, &account, pool)?.is_none()
            {
                return Ok(None);
            }
            let own_set = store::own_keywords(c, &account, pool.as_deref())?.is_some();
            let keywords = store::effective_keywords(c, &account, pool.as_deref())?;
            Ok(Some((keywords, own_set)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("sender pool"))
}

/// `PUT /v1/account/keywords` and `PUT /v1/sender-pools/{id}/keywords`:
/// the fields given replace what applies now; the others stay.
pub async fn put_keywords(
    app: &App,
    principal: &Principal,
    pool: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let (mut keywords, _) = load_keywords(app, principal, pool).await?;
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    for (name, list) in [
        ("opt_out", &mut keywords.opt_out),
        ("opt_in", &mut keywords.opt_in),
        ("help", &mut keywords.help),
    ] {
        if let Some(value) = fields.take(name) {
            *list = keyword_list(name, value)?;
        }
    }
    for (name, reply) in [
        ("opt_out_reply", &mut keywords.opt_out_reply),
        ("opt_in_reply", &mut keywords.opt_in_reply),
        ("help_reply", &mut keywords.help_reply),
    ] {
        if let Some(text) = fields.optional_str(name)? {
            if text.chars().count() > MAX_REPLY_CHARS {
                return Err(ApiError::invalid(
                    "invalid_reply",
                    name,
                    format!("a reply is at most {MAX_REPLY_CHARS} characters (\"\" sends none)"),
                ));
            }
            *reply = text;
        }
    }
    fields.finish()?;
    let (account, pool_id, stored) = (
        principal.account_id.clone(),
        pool.map(str::to_owned),
        keywords.clone(),
    );
    app.store
        .write(move |c| store::set_keywords(c, &account, pool_id.as_deref(), &stored, now_ms()))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &keywords_json(&keywords, true),
    ))
}

fn keyword_list(name: &str, value: Value) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::invalid(
            "invalid_keywords",
            name,
            format!(
                "`{name}` is a list of at most {MAX_KEYWORDS} words of 1 to {MAX_KEYWORD_CHARS} characters"
            ),
        )
    };
    let Value::Array(items) = value else {
        return Err(invalid());
    };
    if items.len() > MAX_KEYWORDS {
        return Err(invalid());
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::String(word)
                if !crate::compliance::keywords::fold(&word).is_empty()
                    && word.chars().count() <= MAX_KEYWORD_CHARS =>
            {
                Ok(word.trim().to_owned())
            }
            _ => Err(invalid()),
        })
        .collect()
}

fn keywords_json(k: &Keywords, own: bool) -> Value {
    json!({
        "opt_out": k.opt_out,
        "opt_in": k.opt_in,
        "help": k.help,
        "opt_out_reply": k.opt_out_reply,
        "opt_in_reply": k.opt_in_reply,
        "help_reply": k.help_reply,
        "custom": own,
    })
}

// ---- Suppressions ----

fn suppression_json(s: &Suppression) -> Value {
    json!({
        "number": s.number,
        "scope": if s.scope == WHOLE_ACCOUNT { "account" } else { "pool" },
        "pool_id": (s.scope != WHOLE_ACCOUNT).then_some(&s.scope),
        "source": s.source,
        "reason": s.reason,
        "evidence": s.evidence,
        "created_at": to_rfc3339(s.created_at),
    })
}

/// `GET /v1/suppressions?cursor=&limit=`: by number, then scope.
pub async fn list_suppressions(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let (mut limit, mut cursor) = (50, None);
    for (key, value) in query_params(query) {
        match key.as_str() {
            "limit" => limit = parse_limit(&value)?,
            // `<number>|<scope>`, as `next_cursor` gave it.
            "cursor" => {
                let (number, scope) = value.split_once('|').unwrap_or((&value, ""));
                cursor = Some((e164(number, "cursor")?, scope.to_owned()));
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    let account = principal.account_id.clone();
    let entries = app
        .store
        .read(move |c| {
            let after = cursor.as_ref().map(|(n, s)| (n.as_str(), s.as_str()));
            store::list_suppressions(c, &account, after, limit)
        })
        .await?;
    let next_cursor = (entries.len() == limit)
        .then(|| entries.last().map(|e| format!("{}|{}", e.number, e.scope)))
        .flatten();
    let data: Vec<Value> = entries.iter().map(suppression_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": next_cursor}),
    ))
}

/// `GET /v1/suppressions/{e164}`: its entries (one per scope).
pub async fn get_suppression(
    app: &App,
    principal: &Principal,
    number: &str,
) -> Result<Response, ApiError> {
    let number = e164(number, "number")?;
    let account = principal.account_id.clone();
    let entries = app
        .store
        .read(move |c| store::suppressions_of(c, &account, &number))
        .await?;
    if entries.is_empty() {
        return Err(ApiError::not_found("suppression"));
    }
    let data: Vec<Value> = entries.iter().map(suppression_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

/// Suppresses `numbers` account-wide, each with its history event; the
/// ones that were not already.
async fn suppress(
    app: &App,
    principal: &Principal,
    numbers: Vec<(String, Option<String>)>,
    source: &'static str,
) -> Result<usize, ApiError> {
    let (account, key) = (principal.account_id.clone(), principal.key_id.clone());
    // Before the commit, as for keywords.
    let hold = app.compliance.hold();
    for (number, _) in &numbers {
        hold.handle().add(&account, number, WHOLE_ACCOUNT);
    }
    let added = app
        .store
        .write(move |c| {
            let now = now_ms();
            let mut added = 0;
            for (number, reason) in &numbers {
                let entry = Suppression {
                    account_id: account.clone(),
                    number: number.clone(),
                    scope: WHOLE_ACCOUNT.to_owned(),
                    source: source.to_owned(),
                    reason: reason.clone(),
                    evidence: Some(key.clone()),
                    created_at: now,
                };
                if store::insert_suppression(c, &entry)? {
                    added += 1;
                    let mut event = ConsentEvent::new(&account, number, "opt_out", source, now);
                    event.scope = Some(WHOLE_ACCOUNT.to_owned());
                    event.evidence = reason.clone();
                    event.actor = Some(key.clone());
                    store::insert_event(c, &event)?;
                }
            }
            Ok(added)
        })
        .await?;
    Ok(added)
}

/// An optional text field of at most `max` characters (`invalid_<name>`).
fn bounded_text(fields: &mut Fields, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    let text = fields.optional_str(name)?;
    if text.as_ref().is_some_and(|t| t.chars().count() > max) {
        return Err(ApiError::invalid(
            format!("invalid_{name}"),
            name,
            format!("`{name}` is at most {max} characters"),
        ));
    }
    Ok(text)
}

/// `POST /v1/suppressions {number, reason?}`: an unsubscribe the
/// application took itself (its own page, its CRM).
pub async fn add_suppression(
    app: &App,
    principal: &Principal,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let number = e164(&fields.required_str("number")?, "number")?;
    let reason = bounded_text(&mut fields, "reason", MAX_REASON_CHARS)?;
    fields.finish()?;
    let added = suppress(app, principal, vec![(number.clone(), reason)], "api").await?;
    let account = principal.account_id.clone();
    let entries = app
        .store
        .read(move |c| store::suppressions_of(c, &account, &number))
        .await?;
    let status = if added > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let entry = entries
        .iter()
        .find(|e| e.scope == WHOLE_ACCOUNT)
        .map(suppression_json)
        .unwrap_or(Value::Null);
    Ok(json_response(status, &entry))
}

/// `DELETE /v1/suppressions/{e164}`: every entry of the number (an opt-in
/// on record, by this key).
pub async fn delete_suppression(
    app: &App,
    principal: &Principal,
    number: &str,
) -> Result<Response, ApiError> {
    let number = e164(number, "number")?;
    let (account, key, stored) = (
        principal.account_id.clone(),
        principal.key_id.clone(),
        number.clone(),
    );
    let removed = app
        .store
        .write(move |c| {
            let removed = store::delete_suppressions(c, &account, &stored, None)?;
            if removed > 0 {
                let mut event = ConsentEvent::new(&account, &stored, "opt_in", "api", now_ms());
                event.actor = Some(key.clone());
                store::insert_event(c, &event)?;
            }
            Ok(removed)
        })
        .await?;
    if removed == 0 {
        return Err(ApiError::not_found("suppression"));
    }
    app.compliance
        .remove_opt_out(&principal.account_id, &number, None);
    Ok(json_response(
        StatusCode::OK,
        &json!({"number": number, "deleted": removed}),
    ))
}

/// `POST /v1/suppressions/import`: a CSV body, `number[,reason]` a line (a
/// first line `number,reason` is a header). Good lines are imported, bad
/// ones listed with their line number and why.
pub async fn import_suppressions(
    app: &App,
    principal: &Principal,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the CSV must be UTF-8 text",
        )
    })?;
    let mut good = Vec::new();
    let mut errors = Vec::new();
    let mut lines = 0;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() {
            continue;
        }
        let (number, reason) = match line.split_once(',') {
            Some((n, r)) => (n.trim().trim_matches('"'), Some(r.trim().trim_matches('"'))),
            None => (line.trim_matches('"'), None),
        };
        if line_no == 1 && number.eq_ignore_ascii_case("number") {
            continue;
        }
        lines += 1;
        if lines > MAX_IMPORT_LINES {
            return Err(ApiError::invalid(
                "too_many_lines",
                "body",
                format!("an import takes at most {MAX_IMPORT_LINES} lines; split the file"),
            ));
        }
        match e164(number, "number") {
            Ok(number) if reason.is_none_or(|r| r.chars().count() <= MAX_REASON_CHARS) => {
                good.push((number, reason.filter(|r| !r.is_empty()).map(str::to_owned)))
            }
            Ok(_) => errors.push(json!({"line": line_no, "code": "invalid_reason",
                "message": format!("the reason is at most {MAX_REASON_CHARS} characters")})),
            Err(e) => errors.push(json!({"line": line_no, "code": e.code, "message": e.message})),
        }
    }
    let valid = good.len();
    let added = suppress(app, principal, good, "import").await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "imported": added,
            "already_suppressed": valid - added,
            "rejected": errors.len(),
            "errors": errors,
        }),
    ))
}

// ---- Consents ----

fn consent_json(c: &Consent) -> Value {
    json!({
        "id": c.id,
        "number": c.number,
        "purpose": c.purpose.as_str(),
        "source": c.source,
        "evidence": c.evidence,
        "collected_at": to_rfc3339(c.collected_at),
        "created_at": to_rfc3339(c.created_at),
        "created_by": c.created_by,
        "withdrawn_at": c.withdrawn_at.map(to_rfc3339),
        "withdrawn_by": c.withdrawn_by,
        "active": c.withdrawn_at.is_none(),
    })
}

fn purpose_of(value: &str, field: &str) -> Result<Purpose, ApiError> {
    Purpose::parse(value).ok_or_else(|| {
        ApiError::invalid(
            "invalid_purpose",
            field,
            "`purpose` is marketing, transactional or otp",
        )
    })
}

/// `POST /v1/consents {number, purpose, source, evidence?, collected_at?}`.
pub async fn add_consent(
    app: &App,
    principal: &Principal,
    body: Body,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(parse_object(&read_body(body)?)?);
    let number = e164(&fields.required_str("number")?, "number")?;
    let purpose = purpose_of(&fields.required_str("purpose")?, "purpose")?;
    let source = fields.required_str("source")?;
    let evidence = bounded_text(&mut fields, "evidence", MAX_EVIDENCE_CHARS)?;
    let collected_at = fields.optional_str("collected_at")?;
    fields.finish()?;
    if !CONSENT_SOURCES.contains(&source.as_str()) {
        return Err(ApiError::invalid(
            "invalid_source",
            "source",
            format!("`source` is one of {}", CONSENT_SOURCES.join(", ")),
        ));
    }
    let now = now_ms();
    let collected_at = match collected_at {
        None => now,
        Some(text) => parse_rfc3339(&text)
            .filter(|at| *at <= now + 60_000)
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_time",
                    "collected_at",
                    "`collected_at` is an RFC 3339 time, not in the future",
                )
            })?,
    };
    let consent = Consent {
        id: crate::ids::new_id("cns"),
        account_id: principal.account_id.clone(),
        number,
        purpose,
        source,
        evidence,
        collected_at,
        created_at: now,
        created_by: Some(principal.key_id.clone()),
        withdrawn_at: None,
        withdrawn_by: None,
    };
    let stored = consent.clone();
    let in_force = app
        .store
        .write(move |c| {
            store::insert_consent(c, &stored)?;
            let mut event = ConsentEvent::new(
                &stored.account_id,
                &stored.number,
                "consent",
                &stored.source,
                stored.created_at,
            );
            event.purpose = Some(stored.purpose.as_str().to_owned());
            event.evidence = Some(stored.id.clone());
            event.actor = stored.created_by.clone();
            store::insert_event(c, &event)?;
            store::marketing_consent_at(c, &stored.account_id, &stored.number)
        })
        .await?;
    if purpose == Purpose::Marketing {
        app.compliance
            .set_marketing_consent(&consent.account_id, &consent.number, in_force);
    }
    Ok(json_response(StatusCode::CREATED, &consent_json(&consent)))
}

/// `GET /v1/consents?number=&purpose=`: newest first.
pub async fn list_consents(
    app: &App,
    principal: &Principal,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let (mut number, mut purpose) = (None, None);
    for (key, value) in query_params(query) {
        match key.as_str() {
            "number" => number = Some(e164(&value, "number")?),
            "purpose" => purpose = Some(purpose_of(&value, "purpose")?),
            other => return Err(unknown_parameter(other)),
        }
    }
    let account = principal.account_id.clone();
    let consents = app
        .store
        .read(move |c| store::list_consents(c, &account, number.as_deref(), purpose))
        .await?;
    let data: Vec<Value> = consents.iter().map(consent_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

/// `DELETE /v1/consents/{id}`: withdrawn, kept on record.
pub async fn withdraw_consent(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let (account, id, key) = (
        principal.account_id.clone(),
        id.to_owned(),
        principal.key_id.clone(),
    );
    let outcome = app
        .store
        .write(move |c| {
            let Some(consent) = store::get_consent(c, &account, &id)? else {
                return Ok(None);
            };
            let now = now_ms();
            if store::withdraw_consent(c, &id, &key, now)? {
                let mut event =
                    ConsentEvent::new(&account, &consent.number, "withdrawal", "api", now);
                event.purpose = Some(consent.purpose.as_str().to_owned());
                event.evidence = Some(id.clone());
                event.actor = Some(key.clone());
                store::insert_event(c, &event)?;
            }
            let in_force = store::marketing_consent_at(c, &account, &consent.number)?;
            let consent = store::get_consent(c, &account, &id)?;
            Ok(consent.map(|c| (c, in_force)))
        })
        .await?;
    let (consent, in_force) = outcome.ok_or_else(|| ApiError::not_found("consent"))?;
    if consent.purpose == Purpose::Marketing {
        app.compliance
            .set_marketing_consent(&consent.account_id, &consent.number, in_force);
    }
    Ok(json_response(StatusCode::OK, &consent_json(&consent)))
}

/// `GET /v1/consents/{e164}/history`: every consent, withdrawal, opt-out
/// and opt-in of the number, oldest first, with who or what caused it.
pub async fn history(app: &App, principal: &Principal, number: &str) -> Result<Response, ApiError> {
    let number = e164(number, "number")?;
    let (account, stored) = (principal.account_id.clone(), number.clone());
    let events = app
        .store
        .read(move |c| store::history(c, &account, &stored))
        .await?;
    let data: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "kind": e.kind,
                "purpose": e.purpose,
                "scope": e.scope.as_ref().map(|s| if s == WHOLE_ACCOUNT { "account" } else { "pool" }),
                "pool_id": e.scope.as_ref().filter(|s| *s != WHOLE_ACCOUNT),
                "source": e.source,
                "evidence": e.evidence,
                "actor": e.actor,
                "at": to_rfc3339(e.at),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"number": number, "data": data}),
    ))
}
