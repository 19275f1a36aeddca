//! A generic JSON-over-HTTP carrier, configured entirely by its settings:
//! the request (method, path, headers, auth, a JSON body template), where
//! the carrier's message ids are in its answer, how its errors map to
//! Pigeon's failure classes, and where delivery reports and inbound
//! messages carry their fields. A simple carrier needs no code.
//!
//! The README documents every setting with a worked example.

use std::collections::BTreeMap;

use pigeon_sdk::Carrier;
use pigeon_sdk::encoding::hex_encode;
use pigeon_sdk::form::encode_component;
use pigeon_sdk::json::kind;
use pigeon_sdk::types::{
    CallbackReply, CallbackRequest, DeliveryReport, Failure, HttpRequest, HttpResponse,
    InboundMessage, Info, Message, Method, ReportState, Step,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The adapter.
pub struct HttpJson;

pigeon_sdk::export_carrier!(HttpJson);

/// Retry delay for throttling answers that carry no `Retry-After`.
const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;
/// How much of an answer's body goes into a failure reason.
const REASON_CHARS: usize = 200;

/// Placeholders available in every template.
const MESSAGE_VARS: [&str; 9] = [
    "to",
    "to_digits",
    "from",
    "text",
    "id",
    "type",
    "encoding",
    "parts",
    "callback_url",
];
/// Placeholders available only with `per_part`.
const PART_VARS: [&str; 3] = ["part_text", "udh_hex", "part_index"];

/// What becomes of a submission the carrier did not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Try again later.
    Retryable,
    /// Slow down: retry after `Retry-After` (1 s if absent).
    Throttled,
    /// Never retried: the message fails.
    Permanent,
    /// The carrier's settings are wrong.
    Misconfigured,
}

impl Outcome {
    const NAMES: &str = "retryable, throttled, permanent, misconfigured";

    fn parse(name: &str) -> Option<Self> {
        match name {
            "retryable" => Some(Outcome::Retryable),
            "throttled" => Some(Outcome::Throttled),
            "permanent" => Some(Outcome::Permanent),
            "misconfigured" => Some(Outcome::Misconfigured),
            _ => None,
        }
    }
}

/// Credentials added to every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic …`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer …`.
    Bearer(String),
}

/// Where the carrier's ids are in a successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSpec {
    /// Dot path to the id (or to a list of ids, one per part).
    pub id_path: String,
    /// HTTP statuses that mean "accepted".
    pub success_status: Vec<u16>,
}

/// How failures are classified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorSpec {
    /// By HTTP status: `"400"` or a class `"4xx"`; exact statuses win.
    pub by_status: BTreeMap<String, Outcome>,
    /// Dot path to an error code in the answer's body.
    pub code_path: Option<String>,
    /// By that code; checked first, even on a success status.
    pub by_code: BTreeMap<String, Outcome>,
    /// Dot path to a human-readable reason in the answer's body.
    pub reason_path: Option<String>,
}

/// Where the fields of a delivery report are (`POST /dlr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlrSpec {
    /// Dot path to the list of reports, if the body wraps them.
    pub items_path: Option<String>,
    /// The carrier's message id.
    pub id_path: String,
    /// The carrier's status.
    pub status_path: String,
    /// Carrier status → report state; unmapped statuses are `unknown`.
    pub status_map: BTreeMap<String, ReportState>,
    /// An error code, if any.
    pub error_code_path: Option<String>,
    /// When it happened (Unix seconds or ms, or RFC 3339).
    pub timestamp_path: Option<String>,
}

/// Where the fields of an inbound message are (`POST /inbound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSpec {
    /// Dot path to the list of messages, if the body wraps them.
    pub items_path: Option<String>,
    /// Sender.
    pub from_path: String,
    /// Recipient (our number).
    pub to_path: String,
    /// Text.
    pub text_path: String,
    /// The carrier's id for it.
    pub id_path: String,
    /// When it was received.
    pub timestamp_path: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// HTTP method of the submission.
    pub method: Method,
    /// Path (and query) template, relative to the base URL.
    pub path: String,
    /// Header templates.
    pub headers: Vec<(String, String)>,
    /// Credentials.
    pub auth: Option<Auth>,
    /// JSON body template; no body if absent.
    pub body: Option<Value>,
    /// One request per part instead of one per message.
    pub per_part: bool,
    /// Reading a successful answer.
    pub response: ResponseSpec,
    /// Classifying the others.
    pub errors: ErrorSpec,
    /// Delivery reports, if the carrier sends them.
    pub dlr: Option<DlrSpec>,
    /// Inbound messages, if the carrier sends them.
    pub inbound: Option<InboundSpec>,
}

/// Collects every problem found while reading settings.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: String) {
        self.0.push(problem);
    }

    /// Complains about keys of `map` that are not in `known`.
    fn unknown_keys(&mut self, map: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.add(format!(
                    "unknown setting {prefix}{key:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
    }

    fn string(&mut self, map: &Map<String, Value>, key: &str, name: &str) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.add(format!("{name} must be a string, got {}", kind(other)));
                None
            }
        }
    }

    fn required_string(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        name: &str,
    ) -> Option<String> {
        let value = self.string(map, key, name);
        if value.is_none() && matches!(map.get(key), None | Some(Value::Null)) {
            self.add(format!("{name} is required"));
        }
        value
    }

    fn object<'a>(
        &mut self,
        map: &'a Map<String, Value>,
        key: &str,
        name: &str,
    ) -> Option<&'a Map<String, Value>> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(inner)) => Some(inner),
            Some(other) => {
                self.add(format!("{name} must be an object, got {}", kind(other)));
                None
            }
        }
    }

    /// Checks the placeholders of a template string.
    fn template(&mut self, text: &str, name: &str, per_part: bool) {
        for placeholder in placeholders(text) {
            match placeholder {
                Ok(var) if MESSAGE_VARS.contains(&var) => {}
                Ok(var) if PART_VARS.contains(&var) => {
                    if !per_part {
                        self.add(format!(
                            "{name}: {{{{{var}}}}} is only available with per_part = true"
                        ));
                    }
                }
                Ok(var) => self.add(format!(
                    "{name}: unknown placeholder {{{{{var}}}}} (known: {}, and with per_part: {})",
                    MESSAGE_VARS.join(", "),
                    PART_VARS.join(", ")
                )),
                Err(()) => self.add(format!("{name}: a `{{{{` is not closed by `}}}}`")),
            }
        }
    }

    fn template_value(&mut self, value: &Value, name: &str, per_part: bool) {
        match value {
            Value::String(s) => self.template(s, name, per_part),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.template_value(item, &format!("{name}[{i}]"), per_part);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.template_value(item, &format!("{name}.{key}"), per_part);
                }
            }
            _ => {}
        }
    }

    fn outcomes(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        name: &str,
    ) -> BTreeMap<String, Outcome> {
        let mut out = BTreeMap::new();
        if let Some(entries) = self.object(map, key, name) {
            for (k, v) in entries {
                match v.as_str().and_then(Outcome::parse) {
                    Some(outcome) => {
                        out.insert(k.clone(), outcome);
                    }
                    None => self.add(format!(
                        "{name}.{k} must be one of {}, got {v}",
                        Outcome::NAMES
                    )),
                }
            }
        }
        out
    }
}

/// Whether `key` is a valid `errors.by_status` key: `NNN` or `Nxx`.
fn is_status_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 3
        && (b'1'..=b'5').contains(&b[0])
        && ((b[1].is_ascii_digit() && b[2].is_ascii_digit()) || &key[1..] == "xx")
}

impl Settings {
    /// Reads and checks the settings JSON, reporting every problem.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let map = pigeon_sdk::settings::object(text)?;
        let mut p = Problems::default();
        p.unknown_keys(
            &map,
            "",
            &[
                "method",
                "path",
                "headers",
                "basic_auth",
                "bearer_token",
                "body",
                "per_part",
                "response",
                "errors",
                "dlr",
                "inbound",
            ],
        );

        let per_part = match map.get("per_part") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                p.add(format!(
                    "per_part must be true or false, got {}",
                    kind(other)
                ));
                false
            }
        };
        let method = match p.string(&map, "method", "method") {
            None => Method::Post,
            Some(name) => Method::parse(&name).unwrap_or_else(|| {
                p.add(format!(
                    "method must be GET, POST, PUT, PATCH or DELETE, got {name:?}"
                ));
                Method::Post
            }),
        };
        let path = p.required_string(&map, "path", "path").unwrap_or_default();
        if !path.is_empty() && !path.starts_with('/') {
            p.add(format!("path must start with `/`, got {path:?}"));
        }
        p.template(&path, "path", per_part);

        let mut headers = Vec::new();
        if let Some(entries) = p.object(&map, "headers", "headers") {
            for (name, value) in entries {
                match value {
                    Value::String(v) => {
                        p.template(v, &format!("headers.{name}"), per_part);
                        headers.push((name.clone(), v.clone()));
                    }
                    other => p.add(format!(
                        "headers.{name} must be a string, got {}",
                        kind(other)
                    )),
                }
            }
        }

        let basic = p.object(&map, "basic_auth", "basic_auth").map(|auth| {
            p.unknown_keys(auth, "basic_auth.", &["username", "password"]);
            let username = p.required_string(auth, "username", "basic_auth.username");
            let password = p.required_string(auth, "password", "basic_auth.password");
            (username, password)
        });
        let bearer = p.string(&map, "bearer_token", "bearer_token");
        let auth = match (basic, bearer) {
            (Some(_), Some(_)) => {
                p.add("set basic_auth or bearer_token, not both".into());
                None
            }
            (Some((Some(username), Some(password))), None) => {
                Some(Auth::Basic { username, password })
            }
            (None, Some(token)) if token.is_empty() => {
                p.add("bearer_token must not be empty".into());
                None
            }
            (None, Some(token)) => Some(Auth::Bearer(token)),
            _ => None,
        };

        let body = map.get("body").filter(|b| !b.is_null()).cloned();
        if let Some(body) = &body {
            p.template_value(body, "body", per_part);
        }

        let response = match p.object(&map, "response", "response") {
            Some(r) => {
                p.unknown_keys(r, "response.", &["id_path", "success_status"]);
                let id_path = p
                    .required_string(r, "id_path", "response.id_path")
                    .unwrap_or_default();
                let success_status = match r.get("success_status") {
                    None | Some(Value::Null) => vec![200, 201, 202],
                    Some(Value::Array(list)) if !list.is_empty() => list
                        .iter()
                        .filter_map(|s| match s.as_u64() {
                            Some(n @ 100..=599) => Some(n as u16),
                            _ => {
                                p.add(format!(
                                    "response.success_status: {s} is not an HTTP status"
                                ));
                                None
                            }
                        })
                        .collect(),
                    Some(other) => {
                        p.add(format!(
                            "response.success_status must be a non-empty list of HTTP statuses, got {other}"
                        ));
                        Vec::new()
                    }
                };
                ResponseSpec {
                    id_path,
                    success_status,
                }
            }
            None => {
                if !map.contains_key("response") || map["response"].is_null() {
                    p.add("response is required: {\"id_path\": \"…\"} at least".into());
                }
                ResponseSpec {
                    id_path: String::new(),
                    success_status: Vec::new(),
                }
            }
        };

        let errors = match p.object(&map, "errors", "errors") {
            Some(e) => {
                p.unknown_keys(
                    e,
                    "errors.",
                    &["by_status", "code_path", "by_code", "reason_path"],
                );
                let by_status = p.outcomes(e, "by_status", "errors.by_status");
                for key in by_status.keys() {
                    if !is_status_key(key) {
                        p.add(format!(
                            "errors.by_status: {key:?} must be an HTTP status (\"400\") or class (\"4xx\")"
                        ));
                    }
                }
                let by_code = p.outcomes(e, "by_code", "errors.by_code");
                let code_path = p.string(e, "code_path", "errors.code_path");
                if !by_code.is_empty() && code_path.is_none() {
                    p.add("errors.by_code needs errors.code_path".into());
                }
                ErrorSpec {
                    by_status,
                    code_path,
                    by_code,
                    reason_path: p.string(e, "reason_path", "errors.reason_path"),
                }
            }
            None => ErrorSpec::default(),
        };

        let dlr = p.object(&map, "dlr", "dlr").map(|d| {
            p.unknown_keys(
                d,
                "dlr.",
                &[
                    "items_path",
                    "id_path",
                    "status_path",
                    "status_map",
                    "error_code_path",
                    "timestamp_path",
                ],
            );
            let mut status_map = BTreeMap::new();
            if let Some(entries) = p.object(d, "status_map", "dlr.status_map") {
                for (status, state) in entries {
                    match state.as_str().and_then(ReportState::parse) {
                        Some(s) => {
                            status_map.insert(status.clone(), s);
                        }
                        None => p.add(format!(
                            "dlr.status_map.{status} must be one of enroute, delivered, expired, \
                             undeliverable, rejected, unknown, got {state}"
                        )),
                    }
                }
            }
            DlrSpec {
                items_path: p.string(d, "items_path", "dlr.items_path"),
                id_path: p
                    .required_string(d, "id_path", "dlr.id_path")
                    .unwrap_or_default(),
                status_path: p
                    .required_string(d, "status_path", "dlr.status_path")
                    .unwrap_or_default(),
                status_map,
                error_code_path: p.string(d, "error_code_path", "dlr.error_code_path"),
                timestamp_path: p.string(d, "timestamp_path", "dlr.timestamp_path"),
            }
        });

        let inbound = p.object(&map, "inbound", "inbound").map(|i| {
            p.unknown_keys(
                i,
                "inbound.",
                &[
                    "items_path",
                    "from_path",
                    "to_path",
                    "text_path",
                    "id_path",
                    "timestamp_path",
                ],
            );
            let mut req = |key: &str| {
                p.required_string(i, key, &format!("inbound.{key}"))
                    .unwrap_or_default()
            };
            let (from_path, to_path, text_path, id_path) = (
                req("from_path"),
                req("to_path"),
                req("text_path"),
                req("id_path"),
            );
            InboundSpec {
                items_path: p.string(i, "items_path", "inbound.items_path"),
                from_path,
                to_path,
                text_path,
                id_path,
                timestamp_path: p.string(i, "timestamp_path", "inbound.timestamp_path"),
            }
        });

        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(Settings {
            method,
            path,
            headers,
            auth,
            body,
            per_part,
            response,
            errors,
            dlr,
            inbound,
        })
    }
}

fn settings_or_misconfigured(text: &str) -> Result<Settings, Failure> {
    Settings::parse(text).map_err(|problems| Failure::misconfigured(problems.join("; ")))
}

/// The `{{name}}` placeholders of a template, in order (`Err` for an
/// unclosed one). Spaces inside the braces are allowed.
fn placeholders(text: &str) -> Vec<Result<&str, ()>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                found.push(Ok(after[..end].trim()));
                rest = &after[end + 2..];
            }
            None => {
                found.push(Err(()));
                break;
            }
        }
    }
    found
}

/// One part as the continuation keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartData {
    index: u32,
    text: String,
    udh_hex: String,
}

/// Everything a template can refer to, kept between calls.
#[derive(Debug, Serialize, Deserialize)]
struct Continuation {
    id: String,
    to: String,
    from: Option<String>,
    text: String,
    message_type: String,
    encoding: String,
    parts: Vec<PartData>,
    /// Ids collected so far (one per part).
    ids: Vec<String>,
    /// With `per_part`, the index in `parts` of the part being sent.
    next: usize,
}

impl Continuation {
    /// The typed value of a placeholder for the request being built.
    fn var(&self, name: &str, per_part: bool, callback_url: &str) -> Option<Value> {
        let part = per_part.then(|| &self.parts[self.next]);
        Some(match name {
            "to" => Value::from(self.to.clone()),
            "to_digits" => Value::from(self.to.trim_start_matches('+')),
            "from" => self.from.clone().map_or(Value::Null, Value::from),
            "text" => Value::from(self.text.clone()),
            "id" => Value::from(self.id.clone()),
            "type" => Value::from(self.message_type.clone()),
            "encoding" => Value::from(self.encoding.clone()),
            "parts" => Value::from(self.parts.len()),
            "callback_url" => Value::from(callback_url),
            "part_text" => Value::from(part?.text.clone()),
            "udh_hex" => Value::from(part?.udh_hex.clone()),
            "part_index" => Value::from(part?.index),
            _ => return None,
        })
    }

    /// Renders a template string, each placeholder by its text (null is
    /// empty); `encode` form-encodes the values (for the path).
    fn render_str(
        &self,
        template: &str,
        per_part: bool,
        callback_url: &str,
        encode: bool,
    ) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = after[..end].trim();
            let text = match self.var(name, per_part, callback_url) {
                Some(Value::String(s)) => s,
                Some(Value::Null) => String::new(),
                Some(other) => other.to_string(),
                None => format!("{{{{{name}}}}}"),
            };
            if encode {
                out.push_str(&encode_component(&text));
            } else {
                out.push_str(&text);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Renders a JSON template: a string that is exactly one placeholder
    /// becomes the typed value, other strings are rendered as text.
    fn render_value(&self, template: &Value, per_part: bool, callback_url: &str) -> Value {
        match template {
            Value::String(s) => {
                let whole = s.trim();
                if whole.starts_with("{{")
                    && whole.ends_with("}}")
                    && whole.matches("{{").count() == 1
                    && let Some(value) =
                        self.var(whole[2..whole.len() - 2].trim(), per_part, callback_url)
                {
                    return value;
                }
                Value::String(self.render_str(s, per_part, callback_url, false))
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render_value(v, per_part, callback_url))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.render_value(v, per_part, callback_url)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn request(&self, settings: &Settings) -> HttpRequest {
        let callback_url = pigeon_sdk::host::callback_url();
        let per_part = settings.per_part;
        let path = self.render_str(&settings.path, per_part, &callback_url, true);
        let mut request = HttpRequest::new(settings.method, path);
        for (name, value) in &settings.headers {
            let value = self.render_str(value, per_part, &callback_url, false);
            request = request.with_header(name.clone(), value);
        }
        match &settings.auth {
            Some(Auth::Basic { username, password }) => {
                request = request.with_basic_auth(username, password);
            }
            Some(Auth::Bearer(token)) => {
                request = request.with_header("Authorization", format!("Bearer {token}"));
            }
            None => {}
        }
        if let Some(body) = &settings.body {
            let body = self.render_value(body, per_part, &callback_url);
            if request.header("Content-Type").is_none() {
                request = request.with_header("Content-Type", "application/json");
            }
            request = request.with_body(pigeon_sdk::json::body(&body));
        }
        request.with_header("Accept", "application/json")
    }

    fn step(self, settings: &Settings) -> Step {
        let done = if settings.per_part {
            self.next == self.parts.len()
        } else {
            !self.ids.is_empty()
        };
        if done {
            Step::accepted(self.ids)
        } else {
            let request = self.request(settings);
            Step::send(request, pigeon_sdk::json::body(&self))
        }
    }
}

/// The value at a dot path (`messages.0.id`); numeric segments index
/// lists. The empty path is the value itself.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A scalar as text (`null`, lists and objects are not).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text_at(value: &Value, path: &str) -> Option<String> {
    lookup(value, path).and_then(scalar_text)
}

/// Unix ms from a number or digits (seconds, or ms from 10^12 up) or an
/// RFC 3339 / `YYYY-MM-DD HH:MM:SS` time (UTC unless an offset is given).
fn parse_time(value: &Value) -> Option<u64> {
    let from_number = |n: f64| {
        (n.is_finite() && n >= 0.0).then(|| {
            if n >= 1e12 {
                n as u64
            } else {
                (n * 1000.0).round() as u64
            }
        })
    };
    match value {
        Value::Number(n) => from_number(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                return from_number(n);
            }
            parse_datetime(s)
        }
        _ => None,
    }
}

fn parse_datetime(text: &str) -> Option<u64> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(&text[0..4])?, num(&text[5..7])?, num(&text[8..10])?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        num(&text[11..13])?,
        num(&text[14..16])?,
        num(&text[17..19])?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = num(&padded)?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            sign * (num(h)? * 60 + num(m)?)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(REASON_CHARS).collect();
    if text.chars().count() > REASON_CHARS {
        out.push('…');
    }
    out
}

/// The outcome configured or defaulted for an HTTP status.
fn status_outcome(errors: &ErrorSpec, status: u16) -> Outcome {
    let class = format!("{}xx", status / 100);
    if let Some(outcome) = errors
        .by_status
        .get(&status.to_string())
        .or_else(|| errors.by_status.get(&class))
    {
        return *outcome;
    }
    match status {
        429 => Outcome::Throttled,
        401 | 403 => Outcome::Misconfigured,
        400..=499 => Outcome::Permanent,
        _ => Outcome::Retryable,
    }
}

/// Turns an answer that is not an acceptance into a failure.
fn failure(
    errors: &ErrorSpec,
    response: &HttpResponse,
    body: Option<&Value>,
    outcome: Outcome,
    code: Option<String>,
) -> Failure {
    let reason_text = errors
        .reason_path
        .as_deref()
        .and_then(|path| body.and_then(|b| text_at(b, path)))
        .unwrap_or_else(|| response.text().into_owned());
    let reason = match &code {
        Some(code) => format!(
            "carrier answered {} with code {code}: {}",
            response.status,
            shorten(&reason_text)
        ),
        None => format!(
            "carrier answered {}: {}",
            response.status,
            shorten(&reason_text)
        ),
    };
    match outcome {
        Outcome::Retryable => Failure::retryable(reason),
        Outcome::Throttled => {
            Failure::throttled(response.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS))
        }
        Outcome::Permanent => Failure::permanent(
            code.unwrap_or_else(|| format!("http_{}", response.status)),
            reason,
        ),
        Outcome::Misconfigured => Failure::misconfigured(reason),
    }
}

/// The ids of an accepted request, one per part it carried.
fn accepted_ids(
    settings: &Settings,
    body: Option<&Value>,
    parts: usize,
    response: &HttpResponse,
) -> Result<Vec<String>, Failure> {
    let path = &settings.response.id_path;
    let found = body.and_then(|b| lookup(b, path)).ok_or_else(|| {
        Failure::misconfigured(format!(
            "response.id_path {path:?} is not in the carrier's {} answer: {}",
            response.status,
            shorten(&response.text())
        ))
    })?;
    let ids: Vec<String> = match found {
        Value::Array(items) => items
            .iter()
            .map(|item| {
                scalar_text(item).ok_or_else(|| {
                    Failure::misconfigured(format!(
                        "response.id_path {path:?} is a list of {item}, not of ids"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        // One id for the whole message: it stands for each of its parts.
        other => {
            let id = scalar_text(other).ok_or_else(|| {
                Failure::misconfigured(format!("response.id_path {path:?} is {other}, not an id"))
            })?;
            vec![id; parts]
        }
    };
    if ids.len() != parts || ids.iter().any(String::is_empty) {
        // The carrier took the message: retrying would send it twice.
        return Err(Failure::permanent(
            "part_count_mismatch",
            format!(
                "the carrier answered {} id(s) {ids:?} for {parts} part(s); it was sent, but \
                 its parts cannot be tracked",
                ids.len()
            ),
        ));
    }
    Ok(ids)
}

/// The items of a callback body: the list at `items_path` (or the body),
/// a single object standing for a list of one.
fn items<'a>(body: &'a Value, items_path: Option<&str>) -> Result<Vec<&'a Value>, String> {
    let root = match items_path {
        Some(path) => lookup(body, path).ok_or_else(|| format!("no {path:?} in the callback"))?,
        None => body,
    };
    match root {
        Value::Array(list) => Ok(list.iter().collect()),
        Value::Object(_) => Ok(vec![root]),
        other => Err(format!(
            "expected a JSON object or a list of them, got {}",
            kind(other)
        )),
    }
}

fn required_text(item: &Value, path: &str, what: &str) -> Result<String, String> {
    text_at(item, path)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{what} has no {path:?}: {item}"))
}

fn parse_dlrs(spec: &DlrSpec, body: &Value) -> Result<Vec<DeliveryReport>, String> {
    items(body, spec.items_path.as_deref())?
        .into_iter()
        .map(|item| {
            let id = required_text(item, &spec.id_path, "delivery report")?;
            let status = required_text(item, &spec.status_path, "delivery report")?;
            let state = spec
                .status_map
                .get(&status)
                .copied()
                .unwrap_or(ReportState::Unknown);
            let mut report = DeliveryReport::new(id, state, status);
            report.error_code = spec
                .error_code_path
                .as_deref()
                .and_then(|path| text_at(item, path))
                .filter(|code| !code.is_empty());
            report.at = spec
                .timestamp_path
                .as_deref()
                .and_then(|path| lookup(item, path))
                .and_then(parse_time);
            Ok(report)
        })
        .collect()
}

fn parse_inbound(spec: &InboundSpec, body: &Value) -> Result<Vec<InboundMessage>, String> {
    items(body, spec.items_path.as_deref())?
        .into_iter()
        .map(|item| {
            Ok(InboundMessage {
                from: required_text(item, &spec.from_path, "inbound message")?,
                to: required_text(item, &spec.to_path, "inbound message")?,
                text: text_at(item, &spec.text_path).unwrap_or_default(),
                carrier_message_id: required_text(item, &spec.id_path, "inbound message")?,
                at: spec
                    .timestamp_path
                    .as_deref()
                    .and_then(|path| lookup(item, path))
                    .and_then(parse_time),
                part: None,
            })
        })
        .collect()
}

impl Carrier for HttpJson {
    fn describe() -> Info {
        Info::new(
            "http-json",
            env!("CARGO_PKG_VERSION"),
            &["submit", "delivery-reports", "inbound"],
        )
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<String>> {
        Settings::parse(settings).map(drop)
    }

    fn start_submit(settings: &str, message: Message) -> Result<Step, Failure> {
        let settings = settings_or_misconfigured(settings)?;
        if message.parts.is_empty() {
            return Err(Failure::permanent("no_parts", "the message has no parts"));
        }
        // On a retry of some parts only, `{{text}}` is the text of those
        // parts: the whole text would send the others again.
        let joined: String = message.parts.iter().map(|p| p.text.as_str()).collect();
        let complete = message
            .parts
            .iter()
            .enumerate()
            .all(|(i, p)| p.index as usize == i)
            && joined == message.text;
        let continuation = Continuation {
            id: message.id,
            to: message.to,
            from: message.from,
            text: if complete { message.text } else { joined },
            message_type: message.message_type.as_str().to_owned(),
            encoding: message.encoding.as_str().to_owned(),
            parts: message
                .parts
                .into_iter()
                .map(|p| PartData {
                    index: p.index,
                    text: p.text,
                    udh_hex: hex_encode(&p.udh),
                })
                .collect(),
            ids: Vec::new(),
            next: 0,
        };
        Ok(continuation.step(&settings))
    }

    fn resume_submit(
        settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure> {
        let settings = settings_or_misconfigured(settings)?;
        let mut state: Continuation = pigeon_sdk::json::parse(&continuation)
            .map_err(|e| Failure::retryable(format!("bad continuation: {e}")))?;
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        let errors = &settings.errors;
        let code = errors
            .code_path
            .as_deref()
            .and_then(|path| body.as_ref().and_then(|b| text_at(b, path)));
        if let Some(outcome) = code.as_ref().and_then(|c| errors.by_code.get(c)) {
            return Err(failure(errors, &response, body.as_ref(), *outcome, code));
        }
        if !settings.response.success_status.contains(&response.status) {
            let outcome = status_outcome(errors, response.status);
            return Err(failure(errors, &response, body.as_ref(), outcome, code));
        }
        let parts = if settings.per_part {
            1
        } else {
            state.parts.len()
        };
        let ids = accepted_ids(&settings, body.as_ref(), parts, &response)?;
        state.ids.extend(ids);
        state.next += 1;
        Ok(state.step(&settings))
    }

    fn parse_callback(settings: &str, request: CallbackRequest) -> Result<CallbackReply, String> {
        let settings = Settings::parse(settings).map_err(|p| p.join("; "))?;
        let ok = CallbackReply::new(HttpResponse::new(200));
        match request.path.trim_matches('/') {
            "dlr" => {
                let spec = settings
                    .dlr
                    .as_ref()
                    .ok_or("delivery report received, but the carrier has no `dlr` settings")?;
                let body: Value = request.parse_json()?;
                Ok(parse_dlrs(spec, &body)?
                    .into_iter()
                    .fold(ok, CallbackReply::with_report))
            }
            "inbound" => {
                let spec = settings
                    .inbound
                    .as_ref()
                    .ok_or("inbound message received, but the carrier has no `inbound` settings")?;
                let body: Value = request.parse_json()?;
                Ok(parse_inbound(spec, &body)?
                    .into_iter()
                    .fold(ok, CallbackReply::with_inbound))
            }
            other => Err(format!(
                "unknown callback path /{other}: delivery reports go to …/dlr, inbound \
                 messages to …/inbound"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_sdk::testkit::{drive_submit, message};
    use pigeon_sdk::types::Part;
    use serde_json::json;

    fn settings(extra: Value) -> String {
        let mut base = json!({
            "path": "/v1/messages",
            "body": {"to": "{{to}}", "text": "{{text}}"},
            "response": {"id_path": "id"}
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base.to_string()
    }

    #[test]
    fn describe_reports_the_contract() {
        let info = HttpJson::describe();
        assert_eq!(info.name, "http-json");
        assert_eq!(info.contract_version, "0.3.0");
    }

    #[test]
    fn dot_paths() {
        let v = json!({"messages": [{"id": "a"}, {"id": 7}], "ids": ["x", "y"]});
        assert_eq!(lookup(&v, "messages.1.id"), Some(&json!(7)));
        assert_eq!(text_at(&v, "messages.1.id").as_deref(), Some("7"));
        assert_eq!(lookup(&v, "ids"), Some(&json!(["x", "y"])));
        assert_eq!(lookup(&v, "messages.2.id"), None);
        assert_eq!(lookup(&v, "messages.x"), None);
        assert_eq!(lookup(&v, ""), Some(&v));
    }

    #[test]
    fn whole_placeholders_keep_their_type() {
        let c = Continuation {
            id: "m1".into(),
            to: "+15550001234".into(),
            from: None,
            text: "hi".into(),
            message_type: "otp".into(),
            encoding: "gsm7".into(),
            parts: vec![PartData {
                index: 0,
                text: "hi".into(),
                udh_hex: String::new(),
            }],
            ids: Vec::new(),
            next: 0,
        };
        let t = json!({"n": "{{parts}}", "f": "{{from}}", "s": "{{ to_digits }} x", "k": ["{{part_index}}"], "u": "{{nope}}"});
        let v = c.render_value(&t, true, "https://cb");
        assert_eq!(
            v,
            json!({"n": 1, "f": null, "s": "15550001234 x", "k": [0], "u": "{{nope}}"})
        );
        assert_eq!(
            c.render_str(
                "/send?to={{to}}&cb={{callback_url}}/dlr",
                false,
                "https://cb",
                true
            ),
            "/send?to=%2B15550001234&cb=https%3A%2F%2Fcb/dlr"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let problems = Settings::parse(
            &json!({
                "method": "FETCH",
                "path": "v1",
                "headers": {"X-Key": 5, "X-To": "{{toh}}"},
                "basic_auth": {"username": "u"},
                "bearer_token": "t",
                "body": {"t": "{{part_text}}", "x": "{{unclosed"},
                "response": {"success_status": [200, 999]},
                "errors": {"by_status": {"4x": "permanent", "500": "later"}, "by_code": {"A": "throttled"}},
                "dlr": {"id_path": "id", "status_map": {"OK": "done"}},
                "inbound": {"from_path": "from"},
                "extra": 1
            })
            .to_string(),
        )
        .unwrap_err();
        let expect = [
            "unknown setting \"extra\"",
            "method must be",
            "path must start with `/`",
            "headers.X-Key must be a string",
            "unknown placeholder {{toh}}",
            "basic_auth.password is required",
            "not both",
            "{{part_text}} is only available with per_part",
            "is not closed",
            "response.id_path is required",
            "999 is not an HTTP status",
            "\"4x\" must be an HTTP status",
            "errors.by_status.500 must be one of",
            "errors.by_code needs errors.code_path",
            "dlr.status_path is required",
            "dlr.status_map.OK must be one of",
            "inbound.to_path is required",
            "inbound.text_path is required",
            "inbound.id_path is required",
        ];
        for needle in expect {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle:?} not in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn status_classes_and_defaults() {
        let s = Settings::parse(&settings(
            json!({"errors": {"by_status": {"4xx": "retryable", "404": "misconfigured"}}}),
        ))
        .unwrap();
        assert_eq!(status_outcome(&s.errors, 404), Outcome::Misconfigured);
        assert_eq!(status_outcome(&s.errors, 409), Outcome::Retryable);
        let d = ErrorSpec::default();
        assert_eq!(status_outcome(&d, 429), Outcome::Throttled);
        assert_eq!(status_outcome(&d, 403), Outcome::Misconfigured);
        assert_eq!(status_outcome(&d, 422), Outcome::Permanent);
        assert_eq!(status_outcome(&d, 502), Outcome::Retryable);
        assert_eq!(status_outcome(&d, 302), Outcome::Retryable);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time(&json!(1_700_000_000)), Some(1_700_000_000_000));
        assert_eq!(
            parse_time(&json!(1_700_000_000_123u64)),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time(&json!("1700000000")), Some(1_700_000_000_000));
        assert_eq!(
            parse_time(&json!("2020-01-01T12:00:00Z")),
            Some(1_577_880_000_000)
        );
        assert_eq!(
            parse_time(&json!("2020-01-01T13:30:00.25+01:30")),
            Some(1_577_880_000_250)
        );
        assert_eq!(
            parse_time(&json!("2020-01-01 12:00:00")),
            Some(1_577_880_000_000)
        );
        assert_eq!(parse_time(&json!("soon")), None);
        assert_eq!(parse_time(&json!(null)), None);
    }

    #[test]
    fn per_part_sends_one_request_per_part() {
        let s = settings(json!({
            "per_part": true,
            "body": {"to": "{{to_digits}}", "text": "{{part_text}}", "udh": "{{udh_hex}}", "i": "{{part_index}}"}
        }));
        let mut m = message("m1", "+15550001234", "aaabbb");
        m.parts = (0..2u8)
            .map(|i| Part {
                index: u32::from(i),
                text: if i == 0 { "aaa" } else { "bbb" }.into(),
                udh: vec![5, 0, 3, 9, 2, i + 1],
                payload: Vec::new(),
                units: 3,
            })
            .collect();
        let mut bodies = Vec::new();
        let ids = drive_submit::<HttpJson>(&s, m, |req| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            bodies.push(body);
            HttpResponse::new(201).with_json(&json!({"id": format!("c{}", bodies.len())}))
        })
        .unwrap();
        assert_eq!(ids, ["c1", "c2"]);
        assert_eq!(
            bodies[1],
            json!({"to": "15550001234", "text": "bbb", "udh": "050003090202", "i": 1})
        );
    }
}
