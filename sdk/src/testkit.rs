//! Runs a [`Carrier`] natively, without WebAssembly or a server, against
//! JSON fixtures (enable the `testkit` feature, usually in `[dev-dependencies]`).
//!
//! ```ignore
//! #[test]
//! fn fixtures() {
//!     pigeon_sdk::testkit::run_fixture_dir::<my_carrier::MyCarrier>(
//!         concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"),
//!     );
//! }
//! ```
//!
//! A fixture is one JSON file, one of three kinds.
//!
//! **`submit`**: the settings, the message, the scripted HTTP exchange and
//! the expected outcome. The kit calls `start-submit`; each time the plugin
//! asks to send a request it is checked against the next `exchange` entry's
//! `request`, and that entry's `response` is handed to `resume-submit`.
//! Every scripted exchange must be used.
//!
//! ```json
//! {
//!   "kind": "submit",
//!   "description": "a single-part message is accepted",
//!   "settings": {"api_key": "k"},
//!   "message": {"id": "m1", "to": "+15550001234", "from": "Pigeon", "text": "hi"},
//!   "exchange": [{
//!     "request": {"method": "POST", "path": "/send",
//!                 "headers": {"content-type": "application/json"},
//!                 "body_contains": ["\"to\":\"+15550001234\""]},
//!     "response": {"status": 200, "body_json": {"ids": ["c-1"]}}
//!   }],
//!   "expect": {"accepted": ["c-1"]}
//! }
//! ```
//!
//! `callback_url` (optional) is what `host::callback_url()` answers during
//! the fixture (default [`crate::host::DEFAULT_TEST_CALLBACK_URL`]).
//! `message` fields: `id`, `to`, `text` (required), `from`, `type`
//! (`otp|transactional|marketing`, default `transactional`), `encoding`
//! (`gsm7|ucs2`, default `gsm7`), `parts` (default: one part carrying the
//! whole text, no UDH, empty payload); a part has `index`, `text`,
//! `udh_hex`, `payload_hex`, `units`.
//! A request expectation may check `method`, `path` (exact, with query),
//! `headers` (each named header has exactly this value; names in any case),
//! `body_contains` (substrings), `body_json` (the body equals this JSON) and
//! `body_form` (these form fields have these values). A response has
//! `status`, `headers` and a `body` string or a `body_json` value.
//! `expect` is one of `{"accepted": [ids]}`, `{"retryable": "substring"}`,
//! `{"throttled": ms}`, `{"permanent": {"code": "...", "reason_contains": "..."}}`
//! or `{"misconfigured": "substring"}` (substrings may be empty).
//!
//! **`callback`**: a request to the callback URL and what must come of it.
//!
//! ```json
//! {
//!   "kind": "callback",
//!   "request": {"method": "POST", "path": "/dlr", "query": "",
//!               "body_json": {"id": "c-1", "status": "delivered"}},
//!   "expect": {
//!     "reports": [{"carrier_message_id": "c-1", "state": "delivered",
//!                  "raw_status": "delivered", "error_code": null, "at": null}],
//!     "inbound": [],
//!     "status": 204
//!   }
//! }
//! ```
//!
//! Reports and inbound messages are compared exactly and in order
//! (`error_code` and `at` default to `null`, lists to empty); `status`,
//! `headers` and `body_contains` check the answer given to the carrier.
//! `{"expect": {"error": "substring"}}` expects `parse-callback` to fail.
//!
//! **`settings`**: `{"kind": "settings", "settings": {...}, "expect": {"valid": true}}`
//! or `"expect": {"errors": ["substring", ...]}` (each substring must be in
//! one of the problems reported).
//!
//! In every kind `settings` defaults to `{}`; a JSON *string* is passed
//! as-is, so malformed settings can be tested too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::Carrier;
use crate::encoding::{hex_decode, hex_encode};
use crate::form::Params;
use crate::types::{
    CallbackReply, CallbackRequest, DeliveryReport, Encoding, Failure, Header, HttpRequest,
    HttpResponse, InboundMessage, InboundPart, Message, MessageType, Method, Part, ReportState,
    Step,
};

/// Calls `start-submit` and then `resume-submit` with whatever `respond`
/// answers to each request, until the plugin accepts or fails. Gives up
/// after 32 requests.
pub fn drive_submit<C: Carrier>(
    settings: &str,
    message: Message,
    mut respond: impl FnMut(&HttpRequest) -> HttpResponse,
) -> Result<Vec<String>, Failure> {
    let mut step = C::start_submit(settings, message)?;
    for _ in 0..32 {
        match step {
            Step::Accepted(ids) => return Ok(ids),
            Step::Send(out) => {
                let response = respond(&out.request);
                step = C::resume_submit(settings, out.continuation, response)?;
            }
        }
    }
    panic!("the plugin sent more than 32 requests for one submission");
}

/// A single-part GSM-7 transactional message with an empty payload, for tests.
pub fn message(id: &str, to: &str, text: &str) -> Message {
    Message {
        id: id.to_owned(),
        to: to.to_owned(),
        from: None,
        text: text.to_owned(),
        message_type: MessageType::Transactional,
        encoding: Encoding::Gsm7,
        parts: vec![Part {
            index: 0,
            text: text.to_owned(),
            udh: Vec::new(),
            payload: Vec::new(),
            units: text.chars().count() as u32,
        }],
    }
}

/// Runs one fixture file; `Err` says what did not match.
pub fn check_fixture_file<C: Carrier>(path: impl AsRef<Path>) -> Result<(), String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read fixture {}: {e}", path.display()))?;
    check_fixture_str::<C>(&text)
}

/// Runs one fixture given as JSON text; `Err` says what did not match.
pub fn check_fixture_str<C: Carrier>(json: &str) -> Result<(), String> {
    let fixture: Fixture =
        serde_json::from_str(json).map_err(|e| format!("malformed fixture: {e}"))?;
    Runner::<C>(PhantomData).run(fixture)
}

/// Runs one fixture file and panics with the mismatch, for a `#[test]`.
pub fn run_fixture<C: Carrier>(path: impl AsRef<Path>) {
    let path = path.as_ref();
    if let Err(e) = check_fixture_file::<C>(path) {
        panic!("fixture {} failed: {e}", path.display());
    }
}

/// Runs every `*.json` fixture in `dir` (sorted by name) and panics listing
/// every failure. Returns how many ran; panics if there are none.
pub fn run_fixture_dir<C: Carrier>(dir: impl AsRef<Path>) -> usize {
    let dir = dir.as_ref();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read fixture directory {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no *.json fixtures in {}", dir.display());
    let mut failures = String::new();
    for path in &paths {
        match check_fixture_file::<C>(path) {
            Ok(()) => eprintln!("fixture {} ... ok", path.display()),
            Err(e) => {
                eprintln!("fixture {} ... FAILED", path.display());
                let _ = writeln!(failures, "\n{}:\n  {e}", path.display());
            }
        }
    }
    if !failures.is_empty() {
        panic!("fixtures failed:{failures}");
    }
    paths.len()
}

/// A failure as text: `retryable: reason`, `permanent (code): reason`, …
pub fn describe_failure(failure: &Failure) -> String {
    match failure {
        Failure::Retryable(reason) => format!("retryable: {reason}"),
        Failure::Throttled(ms) => format!("throttled: retry after {ms} ms"),
        Failure::Permanent(p) => format!("permanent ({}): {}", p.code, p.reason),
        Failure::Misconfigured(reason) => format!("misconfigured: {reason}"),
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Fixture {
    Submit(SubmitFixture),
    Callback(CallbackFixture),
    Settings(SettingsFixture),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitFixture {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    settings: Option<Value>,
    /// What `host::callback_url()` answers during this fixture.
    #[serde(default)]
    callback_url: Option<String>,
    message: MessageSpec,
    #[serde(default)]
    exchange: Vec<Exchange>,
    expect: SubmitExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageSpec {
    id: String,
    to: String,
    #[serde(default)]
    from: Option<String>,
    text: String,
    #[serde(default, rename = "type")]
    message_type: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    parts: Option<Vec<PartSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartSpec {
    index: u32,
    text: String,
    #[serde(default)]
    udh_hex: String,
    #[serde(default)]
    payload_hex: String,
    #[serde(default)]
    units: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    #[serde(default)]
    request: RequestExpect,
    response: ResponseSpec,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestExpect {
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body_contains: Vec<String>,
    body_json: Option<Value>,
    #[serde(default)]
    body_form: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseSpec {
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_json: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SubmitExpect {
    Accepted(Vec<String>),
    Retryable(String),
    Throttled(u64),
    Permanent {
        code: String,
        #[serde(default)]
        reason_contains: String,
    },
    Misconfigured(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackFixture {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    settings: Option<Value>,
    request: CallbackSpec,
    expect: CallbackExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackSpec {
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_json: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackExpect {
    error: Option<String>,
    #[serde(default)]
    reports: Vec<ReportSpec>,
    #[serde(default)]
    inbound: Vec<InboundSpec>,
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body_contains: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportSpec {
    carrier_message_id: String,
    state: String,
    #[serde(default)]
    error_code: Option<String>,
    raw_status: String,
    #[serde(default)]
    at: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundSpec {
    from: String,
    to: String,
    text: String,
    carrier_message_id: String,
    #[serde(default)]
    at: Option<u64>,
    /// `{"reference", "count", "sequence"}` for one part of a longer message.
    #[serde(default)]
    part: Option<InboundPartSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundPartSpec {
    reference: u32,
    count: u8,
    sequence: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFixture {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    settings: Option<Value>,
    expect: SettingsExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsExpect {
    #[serde(default)]
    valid: bool,
    #[serde(default)]
    errors: Vec<String>,
}

fn settings_text(settings: Option<Value>) -> String {
    match settings {
        None => "{}".to_owned(),
        Some(Value::String(raw)) => raw,
        Some(value) => value.to_string(),
    }
}

fn headers_of(map: BTreeMap<String, String>) -> Vec<Header> {
    map.into_iter().map(|(k, v)| Header::new(k, v)).collect()
}

fn body_of(body: Option<String>, json: Option<Value>) -> Result<Vec<u8>, String> {
    match (body, json) {
        (Some(_), Some(_)) => Err("give either `body` or `body_json`, not both".into()),
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(json)) => Ok(json.to_string().into_bytes()),
        (None, None) => Ok(Vec::new()),
    }
}

impl MessageSpec {
    fn build(self) -> Result<Message, String> {
        let message_type = match self.message_type.as_deref().unwrap_or("transactional") {
            "otp" => MessageType::Otp,
            "transactional" => MessageType::Transactional,
            "marketing" => MessageType::Marketing,
            other => return Err(format!("unknown message type {other:?}")),
        };
        let encoding = match self.encoding.as_deref().unwrap_or("gsm7") {
            "gsm7" => Encoding::Gsm7,
            "ucs2" => Encoding::Ucs2,
            other => return Err(format!("unknown encoding {other:?}")),
        };
        let parts = match self.parts {
            None => message(&self.id, &self.to, &self.text).parts,
            Some(parts) => parts
                .into_iter()
                .map(|p| {
                    let udh = hex_decode(&p.udh_hex)
                        .ok_or_else(|| format!("udh_hex of part {} is not hex", p.index))?;
                    let payload = hex_decode(&p.payload_hex)
                        .ok_or_else(|| format!("payload_hex of part {} is not hex", p.index))?;
                    Ok(Part {
                        index: p.index,
                        units: p.units.unwrap_or(p.text.chars().count() as u32),
                        text: p.text,
                        udh,
                        payload,
                    })
                })
                .collect::<Result<_, String>>()?,
        };
        Ok(Message {
            id: self.id,
            to: self.to,
            from: self.from,
            text: self.text,
            message_type,
            encoding,
            parts,
        })
    }
}

fn check_headers(
    what: &str,
    headers: &[Header],
    expected: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, value) in expected {
        match headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
            Some(h) if &h.value == value => {}
            Some(h) => {
                return Err(format!(
                    "{what} header {name}: expected {value:?}, got {:?}",
                    h.value
                ));
            }
            None => return Err(format!("{what} has no header {name} (expected {value:?})")),
        }
    }
    Ok(())
}

fn check_contains(what: &str, body: &[u8], needles: &[String]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    for needle in needles {
        if !text.contains(needle.as_str()) {
            return Err(format!(
                "{what} does not contain {needle:?}; it is {text:?}"
            ));
        }
    }
    Ok(())
}

impl RequestExpect {
    fn check(&self, request: &HttpRequest) -> Result<(), String> {
        if let Some(method) = &self.method {
            let expected = Method::parse(method)
                .ok_or_else(|| format!("fixture has unknown method {method:?}"))?;
            if request.method != expected {
                return Err(format!(
                    "expected method {expected}, got {}",
                    request.method
                ));
            }
        }
        if let Some(path) = &self.path
            && &request.path != path
        {
            return Err(format!("expected path {path:?}, got {:?}", request.path));
        }
        check_headers("request", &request.headers, &self.headers)?;
        check_contains("request body", &request.body, &self.body_contains)?;
        if let Some(expected) = &self.body_json {
            let actual: Value = serde_json::from_slice(&request.body).map_err(|e| {
                format!(
                    "request body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&request.body)
                )
            })?;
            if &actual != expected {
                return Err(format!(
                    "request JSON body differs:\n    expected {expected}\n    got      {actual}"
                ));
            }
        }
        if !self.body_form.is_empty() {
            let form = Params::parse(&request.text());
            for (name, value) in &self.body_form {
                match form.get(name) {
                    Some(v) if v == value => {}
                    other => {
                        return Err(format!(
                            "request form field {name}: expected {value:?}, got {other:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_failure(expect: &SubmitExpect, failure: &Failure) -> Result<(), String> {
    let ok = match (expect, failure) {
        (SubmitExpect::Retryable(s), Failure::Retryable(r)) => r.contains(s.as_str()),
        (SubmitExpect::Throttled(ms), Failure::Throttled(got)) => ms == got,
        (
            SubmitExpect::Permanent {
                code,
                reason_contains,
            },
            Failure::Permanent(p),
        ) => &p.code == code && p.reason.contains(reason_contains.as_str()),
        (SubmitExpect::Misconfigured(s), Failure::Misconfigured(r)) => r.contains(s.as_str()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {}, got {}",
            describe_expect(expect),
            describe_failure(failure)
        ))
    }
}

fn describe_expect(expect: &SubmitExpect) -> String {
    match expect {
        SubmitExpect::Accepted(ids) => format!("accepted {ids:?}"),
        SubmitExpect::Retryable(s) => format!("retryable containing {s:?}"),
        SubmitExpect::Throttled(ms) => format!("throttled {ms} ms"),
        SubmitExpect::Permanent {
            code,
            reason_contains,
        } => format!("permanent ({code}) containing {reason_contains:?}"),
        SubmitExpect::Misconfigured(s) => format!("misconfigured containing {s:?}"),
    }
}

struct Runner<C>(PhantomData<C>);

impl<C: Carrier> Runner<C> {
    fn run(&self, fixture: Fixture) -> Result<(), String> {
        match fixture {
            Fixture::Submit(f) => self.submit(f),
            Fixture::Callback(f) => self.callback(f),
            Fixture::Settings(f) => self.settings(f),
        }
    }

    fn submit(&self, f: SubmitFixture) -> Result<(), String> {
        let settings = settings_text(f.settings);
        crate::host::set_test_callback_url(
            f.callback_url
                .as_deref()
                .unwrap_or(crate::host::DEFAULT_TEST_CALLBACK_URL),
        );
        let message = f.message.build()?;
        let mut exchanges = f.exchange.into_iter().enumerate();
        let mut step = C::start_submit(&settings, message);
        let mut sent = 0;
        loop {
            match step {
                Ok(Step::Send(out)) => {
                    sent += 1;
                    let (i, exchange) = exchanges.next().ok_or_else(|| {
                        format!(
                            "request #{sent} ({} {}) is not in the script: {}",
                            out.request.method,
                            out.request.path,
                            out.request.text()
                        )
                    })?;
                    exchange
                        .request
                        .check(&out.request)
                        .map_err(|e| format!("exchange #{}: {e}", i + 1))?;
                    let r = exchange.response;
                    let response = HttpResponse {
                        status: r.status,
                        headers: headers_of(r.headers),
                        body: body_of(r.body, r.body_json)
                            .map_err(|e| format!("exchange #{}: {e}", i + 1))?,
                    };
                    step = C::resume_submit(&settings, out.continuation, response);
                }
                Ok(Step::Accepted(ids)) => {
                    match &f.expect {
                        SubmitExpect::Accepted(expected) if expected == &ids => {}
                        other => {
                            return Err(format!(
                                "expected {}, got accepted {ids:?}",
                                describe_expect(other)
                            ));
                        }
                    }
                    break;
                }
                Err(failure) => {
                    check_failure(&f.expect, &failure)?;
                    break;
                }
            }
        }
        let unused = exchanges.count();
        if unused > 0 {
            return Err(format!(
                "the plugin finished after {sent} request(s); {unused} scripted exchange(s) unused"
            ));
        }
        Ok(())
    }

    fn callback(&self, f: CallbackFixture) -> Result<(), String> {
        let settings = settings_text(f.settings);
        let r = f.request;
        let request = CallbackRequest {
            method: Method::parse(&r.method)
                .ok_or_else(|| format!("fixture has unknown method {:?}", r.method))?,
            path: r.path,
            query: r.query,
            headers: headers_of(r.headers),
            body: body_of(r.body, r.body_json)?,
        };
        let reply = C::parse_callback(&settings, request);
        let expect = f.expect;
        let reply: CallbackReply = match (reply, &expect.error) {
            (Err(e), Some(needle)) if e.contains(needle.as_str()) => return Ok(()),
            (Err(e), Some(needle)) => {
                return Err(format!(
                    "expected an error containing {needle:?}, got {e:?}"
                ));
            }
            (Err(e), None) => return Err(format!("parse-callback failed: {e}")),
            (Ok(reply), Some(needle)) => {
                return Err(format!(
                    "expected an error containing {needle:?}, got {reply:?}"
                ));
            }
            (Ok(reply), None) => reply,
        };
        let reports = expect
            .reports
            .into_iter()
            .map(|r| {
                Ok(DeliveryReport {
                    carrier_message_id: r.carrier_message_id,
                    state: ReportState::parse(&r.state)
                        .ok_or_else(|| format!("fixture has unknown report state {:?}", r.state))?,
                    error_code: r.error_code,
                    raw_status: r.raw_status,
                    at: r.at,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if reply.reports != reports {
            return Err(format!(
                "reports differ:\n    expected {reports:?}\n    got      {:?}",
                reply.reports
            ));
        }
        let inbound: Vec<InboundMessage> = expect
            .inbound
            .into_iter()
            .map(|m| InboundMessage {
                from: m.from,
                to: m.to,
                text: m.text,
                carrier_message_id: m.carrier_message_id,
                at: m.at,
                part: m.part.map(|p| InboundPart {
                    reference: p.reference,
                    count: p.count,
                    sequence: p.sequence,
                }),
            })
            .collect();
        if reply.inbound != inbound {
            return Err(format!(
                "inbound messages differ:\n    expected {inbound:?}\n    got      {:?}",
                reply.inbound
            ));
        }
        if let Some(status) = expect.status
            && reply.response.status != status
        {
            return Err(format!(
                "expected response status {status}, got {}",
                reply.response.status
            ));
        }
        check_headers("response", &reply.response.headers, &expect.headers)?;
        check_contains("response body", &reply.response.body, &expect.body_contains)
    }

    fn settings(&self, f: SettingsFixture) -> Result<(), String> {
        let settings = settings_text(f.settings);
        let result = C::validate_settings(&settings);
        match (result, f.expect.valid) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err(format!(
                "expected problems containing {:?}, but the settings were accepted",
                f.expect.errors
            )),
            (Err(problems), true) => Err(format!("expected valid settings, got {problems:?}")),
            (Err(problems), false) => {
                if problems.is_empty() {
                    return Err("validate-settings returned an empty list of problems".into());
                }
                for needle in &f.expect.errors {
                    if !problems.iter().any(|p| p.contains(needle.as_str())) {
                        return Err(format!("no problem mentions {needle:?}: {problems:?}"));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Hex of a byte string, for fixture authors comparing UDHs by eye.
pub fn hex(bytes: &[u8]) -> String {
    hex_encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Info;

    /// Sends `POST /send` with the text; accepts the `ids` of a 200;
    /// reports `{"id","status"}` callbacks.
    struct Echo;

    impl Carrier for Echo {
        fn describe() -> Info {
            Info::new("echo", "0.0.0", &["submit"])
        }

        fn start_submit(_: &str, message: Message) -> Result<Step, Failure> {
            if message.to.ends_with('9') {
                return Err(Failure::permanent("blocked", "numbers ending in 9"));
            }
            let req = HttpRequest::post("/send")
                .with_json(&serde_json::json!({"to": message.to, "text": message.text}));
            Ok(Step::send(req, message.id.into_bytes()))
        }

        fn resume_submit(_: &str, c: Vec<u8>, r: HttpResponse) -> Result<Step, Failure> {
            #[derive(Deserialize)]
            struct Ids {
                ids: Vec<String>,
            }
            match r.status {
                200 => Ok(Step::accepted(
                    r.parse_json::<Ids>().map_err(Failure::retryable)?.ids,
                )),
                429 => Err(Failure::throttled(r.retry_after_ms().unwrap_or(1000))),
                _ => Err(Failure::retryable(format!(
                    "{} for {}",
                    r.status,
                    String::from_utf8_lossy(&c)
                ))),
            }
        }

        fn parse_callback(_: &str, req: CallbackRequest) -> Result<CallbackReply, String> {
            let p = req.params();
            let id = p.get("id").ok_or("no id")?;
            let status = p.get("status").ok_or("no status")?;
            let state = ReportState::parse(status).unwrap_or(ReportState::Unknown);
            Ok(CallbackReply::new(HttpResponse::new(204))
                .with_report(DeliveryReport::new(id, state, status)))
        }
    }

    fn check(json: Value) -> Result<(), String> {
        check_fixture_str::<Echo>(&json.to_string())
    }

    fn submit(exchange: Value, expect: Value) -> Value {
        serde_json::json!({
            "kind": "submit",
            "message": {"id": "m1", "to": "+15550001234", "text": "hi"},
            "exchange": exchange,
            "expect": expect,
        })
    }

    #[test]
    fn submit_accepted_and_failures() {
        let ok = serde_json::json!([{
            "request": {"method": "post", "path": "/send",
                        "headers": {"CONTENT-TYPE": "application/json"},
                        "body_contains": ["hi"],
                        "body_json": {"to": "+15550001234", "text": "hi"}},
            "response": {"status": 200, "body_json": {"ids": ["c1"]}}
        }]);
        check(submit(ok.clone(), serde_json::json!({"accepted": ["c1"]}))).unwrap();
        let err = check(submit(ok, serde_json::json!({"accepted": ["c2"]}))).unwrap_err();
        assert!(err.contains("got accepted [\"c1\"]"), "{err}");

        let throttled = serde_json::json!([{
            "response": {"status": 429, "headers": {"Retry-After": "3"}}
        }]);
        check(submit(throttled, serde_json::json!({"throttled": 3000}))).unwrap();

        let retry = serde_json::json!([{"response": {"status": 500, "body": ""}}]);
        check(submit(
            retry.clone(),
            serde_json::json!({"retryable": "500 for m1"}),
        ))
        .unwrap();
        let err = check(submit(retry, serde_json::json!({"misconfigured": ""}))).unwrap_err();
        assert!(err.contains("got retryable: 500 for m1"), "{err}");
    }

    #[test]
    fn submit_script_mismatches_are_reported() {
        let wrong_path = serde_json::json!([{
            "request": {"path": "/other"}, "response": {"status": 200}
        }]);
        let err = check(submit(wrong_path, serde_json::json!({"accepted": []}))).unwrap_err();
        assert!(
            err.contains("exchange #1: expected path \"/other\""),
            "{err}"
        );

        let err = check(submit(
            serde_json::json!([]),
            serde_json::json!({"accepted": []}),
        ))
        .unwrap_err();
        assert!(err.contains("not in the script"), "{err}");

        let mut f = submit(
            serde_json::json!([{"response": {"status": 200}}]),
            serde_json::json!({"permanent": {"code": "blocked"}}),
        );
        f["message"]["to"] = "+15550001239".into();
        let err = check(f).unwrap_err();
        assert!(err.contains("1 scripted exchange(s) unused"), "{err}");
    }

    #[test]
    fn callback_fixtures() {
        let f = serde_json::json!({
            "kind": "callback",
            "request": {"method": "GET", "path": "/dlr", "query": "id=c1&status=delivered"},
            "expect": {"reports": [{"carrier_message_id": "c1", "state": "delivered",
                                    "raw_status": "delivered"}], "status": 204}
        });
        check(f).unwrap();
        let f = serde_json::json!({
            "kind": "callback",
            "request": {"method": "GET", "query": "status=delivered"},
            "expect": {"error": "no id"}
        });
        check(f).unwrap();
        let f = serde_json::json!({
            "kind": "callback",
            "request": {"method": "GET", "query": "id=c1&status=delivered"},
            "expect": {"reports": [], "status": 200}
        });
        let err = check(f).unwrap_err();
        assert!(err.contains("reports differ"), "{err}");
    }

    #[test]
    fn settings_fixtures_and_malformed_fixtures() {
        check(serde_json::json!({"kind": "settings", "expect": {"valid": true}})).unwrap();
        check(serde_json::json!({
            "kind": "settings", "settings": "[1]", "expect": {"errors": ["invalid type"]}
        }))
        .unwrap();
        let err = check(serde_json::json!({"kind": "submit", "mesage": {}})).unwrap_err();
        assert!(err.starts_with("malformed fixture"), "{err}");
        let mut typo = submit(serde_json::json!([]), serde_json::json!({"accepted": []}));
        typo["exchagne"] = serde_json::json!([]);
        let err = check(typo).unwrap_err();
        assert!(err.contains("unknown field `exchagne`"), "{err}");
    }

    #[test]
    fn drive_submit_uses_the_responder() {
        let ids = drive_submit::<Echo>("{}", message("m", "+1555", "x"), |req| {
            assert_eq!(req.path, "/send");
            HttpResponse::new(200).with_json(&serde_json::json!({"ids": ["a"]}))
        })
        .unwrap();
        assert_eq!(ids, ["a"]);
    }
}
