//! Carrier adapter for the Vonage (formerly Nexmo) SMS API.
//!
//! - Submit: `POST /sms/json` with a form body (`api_key`, `api_secret`,
//!   `from`, `to` without `+`, `text`, `type`, `status-report-req`,
//!   `callback`, `client-ref`). Vonage splits long text itself and answers
//!   one entry (with its own `message-id` and `status`) per SMS part.
//! - Delivery receipts: Vonage calls `{callback}/dlr` (GET query, POST form
//!   or POST JSON) with `messageId`, `status`, `err-code`, …
//! - Inbound SMS: the number's inbound webhook pointed at `{callback}/inbound`.
//! - Optional signed webhooks (`sig`, HMAC-SHA256) with `signature_secret`.
//!
//! The README describes the exchanges, the status tables and the choices
//! made where the API leaves room.

use std::collections::BTreeMap;

use pigeon_sdk::Carrier;
use pigeon_sdk::form::Params;
use pigeon_sdk::json::kind;
use pigeon_sdk::signature::verify_hmac_sha256_hex;
use pigeon_sdk::types::{
    CallbackReply, CallbackRequest, DeliveryReport, Encoding, Failure, HttpRequest, HttpResponse,
    InboundMessage, InboundPart, Info, Message, ReportState, Step,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Vonage adapter.
pub struct Vonage;

pigeon_sdk::export_carrier!(Vonage);

/// The submission endpoint, relative to the carrier's base URL
/// (`https://rest.nexmo.com`).
const SUBMIT_PATH: &str = "/sms/json";
/// Retry delay for throttling answers that carry no `Retry-After`.
const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;
/// Known settings, for the "unknown setting" message.
const KNOWN_SETTINGS: &str = "api_key, api_secret, default_from, signature_secret, dlr";

/// The carrier's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The account's API key.
    pub api_key: String,
    /// The account's API secret.
    pub api_secret: String,
    /// Sender used when a message has none.
    pub default_from: Option<String>,
    /// Secret of Vonage's signed webhooks (dashboard: "SHA-256 HMAC").
    /// When set, every callback must carry a valid `sig`.
    pub signature_secret: Option<String>,
    /// Ask for delivery receipts, sent to this carrier's callback URL.
    pub dlr: bool,
}

impl Settings {
    /// Reads and checks the settings JSON, reporting every problem.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let map = pigeon_sdk::settings::object(text)?;
        let mut problems = Vec::new();
        let mut string = |key: &str, required: bool| -> Option<String> {
            match map.get(key) {
                None | Some(Value::Null) if required => {
                    problems.push(format!("{key} is required (from the Vonage dashboard)"));
                    None
                }
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => {
                    problems.push(format!("{key} must not be empty"));
                    None
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    problems.push(format!("{key} must be a string, got {}", kind(other)));
                    None
                }
            }
        };
        let api_key = string("api_key", true);
        let api_secret = string("api_secret", true);
        let default_from = string("default_from", false);
        let signature_secret = string("signature_secret", false);
        let dlr = match map.get("dlr") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                problems.push(format!("dlr must be true or false, got {}", kind(other)));
                true
            }
        };
        for key in map.keys() {
            if !KNOWN_SETTINGS.split(", ").any(|known| known == key) {
                problems.push(format!("unknown setting {key:?} (known: {KNOWN_SETTINGS})"));
            }
        }
        match (api_key, api_secret) {
            (Some(api_key), Some(api_secret)) if problems.is_empty() => Ok(Settings {
                api_key,
                api_secret,
                default_from,
                signature_secret,
                dlr,
            }),
            _ => Err(problems),
        }
    }
}

fn settings_or_misconfigured(text: &str) -> Result<Settings, Failure> {
    Settings::parse(text).map_err(|problems| Failure::misconfigured(problems.join("; ")))
}

/// How Pigeon treats a non-zero `status` in Vonage's submit answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Throttled,
    Retryable,
    Permanent,
    Misconfigured,
}

/// Vonage's SMS API status codes (developer.vonage.com, "API Errors: SMS
/// API"): name, short code for Pigeon, and how it is treated.
fn status_info(status: u32) -> (&'static str, &'static str, Class) {
    use Class::*;
    match status {
        1 => ("Throttled", "throttled", Throttled),
        2 => ("Missing Parameters", "missing_parameters", Permanent),
        3 => ("Invalid Parameters", "invalid_parameters", Permanent),
        4 => ("Invalid Credentials", "invalid_credentials", Misconfigured),
        5 => ("Internal Error", "internal_error", Retryable),
        6 => ("Invalid Message", "invalid_message", Permanent),
        7 => ("Number Barred", "number_barred", Permanent),
        8 => ("Partner Account Barred", "account_barred", Misconfigured),
        9 => ("Partner Quota Violation", "quota_exceeded", Misconfigured),
        10 => ("Too Many Existing Binds", "too_many_binds", Throttled),
        11 => (
            "Account Not Enabled For HTTP",
            "http_not_enabled",
            Misconfigured,
        ),
        12 => ("Message Too Long", "message_too_long", Permanent),
        14 => ("Invalid Signature", "invalid_signature", Misconfigured),
        15 => ("Invalid Sender Address", "invalid_sender", Permanent),
        16 => ("Invalid TTL", "invalid_ttl", Permanent),
        19 => (
            "Facility Not Allowed",
            "facility_not_allowed",
            Misconfigured,
        ),
        20 => ("Invalid Message Class", "invalid_message_class", Permanent),
        22 => ("Invalid Network Code", "invalid_network_code", Permanent),
        23 => (
            "Invalid Callback URL",
            "invalid_callback_url",
            Misconfigured,
        ),
        29 => (
            "Non-Whitelisted Destination",
            "non_whitelisted_destination",
            Permanent,
        ),
        32 => (
            "Signature And API Secret Disallowed",
            "signature_and_secret_disallowed",
            Misconfigured,
        ),
        33 => ("Number De-activated", "number_deactivated", Permanent),
        _ => ("Unknown", "vonage_error", Permanent),
    }
}

/// One request to `/sms/json`: a text and how many SMS parts Pigeon
/// expects Vonage to make of it.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    text: String,
    parts: usize,
}

/// What the next step needs. Holds no credentials: they are read from the
/// settings on every call.
#[derive(Debug, Serialize, Deserialize)]
struct Continuation {
    message_id: String,
    to: String,
    from: String,
    unicode: bool,
    batches: Vec<Batch>,
    /// Carrier ids collected so far (one per part).
    ids: Vec<String>,
    /// Index of the batch whose answer is awaited.
    next: usize,
}

impl Continuation {
    fn request(&self, settings: &Settings) -> HttpRequest {
        let batch = &self.batches[self.next];
        let mut form: Vec<(&str, String)> = vec![
            ("api_key", settings.api_key.clone()),
            ("api_secret", settings.api_secret.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("text", batch.text.clone()),
            (
                "type",
                if self.unicode { "unicode" } else { "text" }.to_owned(),
            ),
        ];
        if settings.dlr {
            form.push(("status-report-req", "1".to_owned()));
            form.push((
                "callback",
                format!("{}/dlr", pigeon_sdk::host::callback_url()),
            ));
        } else {
            form.push(("status-report-req", "0".to_owned()));
        }
        form.push(("client-ref", self.message_id.clone()));
        HttpRequest::post(SUBMIT_PATH)
            .with_header("Accept", "application/json")
            .with_form(&form)
    }

    fn step(self, settings: &Settings) -> Step {
        if self.next == self.batches.len() {
            Step::accepted(self.ids)
        } else {
            let request = self.request(settings);
            Step::send(request, pigeon_sdk::json::body(&self))
        }
    }
}

/// The texts to submit: the whole message text when `parts` are all of its
/// parts (Vonage splits it again, the same way), else each part's text on
/// its own (a retry of some parts only).
fn batches(message: &Message) -> Vec<Batch> {
    let complete = message
        .parts
        .iter()
        .enumerate()
        .all(|(i, p)| p.index as usize == i)
        && message
            .parts
            .iter()
            .map(|p| p.text.as_str())
            .collect::<String>()
            == message.text;
    if complete {
        vec![Batch {
            text: message.text.clone(),
            parts: message.parts.len(),
        }]
    } else {
        message
            .parts
            .iter()
            .map(|p| Batch {
                text: p.text.clone(),
                parts: 1,
            })
            .collect()
    }
}

/// A JSON value Vonage sends either as a string or as a number.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads a `200` answer of `/sms/json`: the message ids, or the failure of
/// the first part with a non-zero status.
fn read_answer(response: &HttpResponse, expected_parts: usize) -> Result<Vec<String>, Failure> {
    let body: Value = response
        .parse_json()
        .map_err(|e| Failure::retryable(format!("Vonage answer: {e}")))?;
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(Failure::retryable(format!(
            "Vonage answer has no `messages` list: {}",
            response.text()
        )));
    };
    let mut ids = Vec::with_capacity(messages.len());
    for entry in messages {
        let status = entry.get("status").and_then(as_text).unwrap_or_default();
        let status = status.trim();
        if status == "0" {
            let id = entry
                .get("message-id")
                .and_then(as_text)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    Failure::retryable(format!(
                        "Vonage accepted a part without a message-id: {entry}"
                    ))
                })?;
            ids.push(id);
            continue;
        }
        let text = entry
            .get("error-text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Ok(code) = status.parse::<u32>() else {
            return Err(Failure::retryable(format!(
                "Vonage answered an unreadable status {status:?}: {entry}"
            )));
        };
        let (name, short, class) = status_info(code);
        let reason = if text.is_empty() {
            format!("Vonage status {code} ({name})")
        } else {
            format!("Vonage status {code} ({name}): {text}")
        };
        return Err(match class {
            Class::Throttled => {
                Failure::throttled(response.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS))
            }
            Class::Retryable => Failure::retryable(reason),
            Class::Misconfigured => Failure::misconfigured(reason),
            Class::Permanent => Failure::permanent(short, reason),
        });
    }
    let count = body
        .get("message-count")
        .and_then(as_text)
        .and_then(|c| c.trim().parse::<usize>().ok())
        .unwrap_or(ids.len());
    if count != expected_parts || ids.len() != expected_parts {
        // Vonage took (and charges for) the message: retrying would send it
        // twice, so this is final.
        return Err(Failure::permanent(
            "part_count_mismatch",
            format!(
                "Vonage split the text into {count} part(s) (ids {ids:?}) where Pigeon made \
                 {expected_parts}; it was sent, but its parts cannot be tracked"
            ),
        ));
    }
    Ok(ids)
}

/// Parameters of a callback: the JSON object of a JSON body (values as
/// text), else the query and a form body.
fn callback_params(request: &CallbackRequest) -> Result<Params, String> {
    let is_json = request
        .header("Content-Type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    let mut params = request.query_params();
    if is_json {
        let body: Value = request.parse_json()?;
        let Value::Object(map) = body else {
            return Err(format!("expected a JSON object, got {}", kind(&body)));
        };
        params.extend(
            map.into_iter()
                .filter_map(|(k, v)| as_text(&v).map(|v| (k, v)))
                .collect(),
        );
        Ok(params)
    } else {
        Ok(request.params())
    }
}

/// Checks Vonage's `sig`: the HMAC-SHA256, keyed by the signature secret,
/// of `&key=value` for every other parameter sorted by key, with `&` and
/// `=` in values replaced by `_`.
fn check_signature(params: &Params, secret: &str) -> Result<(), String> {
    let sig = params
        .get("sig")
        .filter(|s| !s.is_empty())
        .ok_or("unsigned callback: `sig` is missing and signature_secret is set")?;
    let signed = signing_string(params);
    if verify_hmac_sha256_hex(secret.as_bytes(), signed.as_bytes(), sig) {
        Ok(())
    } else {
        Err(
            "bad signature: `sig` is not the HMAC-SHA256 of the parameters under \
             signature_secret (the dashboard's signature method must be SHA-256 HMAC)"
                .into(),
        )
    }
}

fn signing_string(params: &Params) -> String {
    let mut sorted: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in params.iter().filter(|(k, _)| *k != "sig") {
        sorted.entry(key).or_insert(value);
    }
    sorted
        .into_iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC, as Vonage's `message-timestamp`) as Unix ms.
fn parse_timestamp(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|n| n.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let mut t = time.splitn(3, ':').map(|n| n.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || year < 1970
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    u64::try_from(seconds).ok().map(|s| s * 1_000)
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

/// When the callback says it happened: `message-timestamp`, else the
/// Unix-seconds `timestamp` of signed callbacks.
fn callback_time(params: &Params) -> Option<u64> {
    params
        .get("message-timestamp")
        .and_then(parse_timestamp)
        .or_else(|| {
            params
                .get("timestamp")
                .and_then(|t| t.trim().parse::<u64>().ok())
                .map(|s| s * 1_000)
        })
}

fn report_state(status: &str) -> ReportState {
    match status.to_ascii_lowercase().as_str() {
        "delivered" => ReportState::Delivered,
        "expired" => ReportState::Expired,
        "failed" => ReportState::Undeliverable,
        "rejected" => ReportState::Rejected,
        "accepted" | "buffered" => ReportState::Enroute,
        _ => ReportState::Unknown,
    }
}

/// A number as Vonage writes it (digits, no `+`) in E.164; sender names
/// and short codes as they are.
fn e164(number: &str) -> String {
    let digits = number.trim();
    if digits.len() > 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{digits}")
    } else {
        digits.to_owned()
    }
}

fn required<'a>(params: &'a Params, name: &str, what: &str) -> Result<&'a str, String> {
    params
        .get(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{what} has no `{name}`"))
}

fn parse_dlr(params: &Params) -> Result<DeliveryReport, String> {
    let id = required(params, "messageId", "delivery receipt")?;
    let status = required(params, "status", "delivery receipt")?;
    let mut report = DeliveryReport::new(id, report_state(status), status);
    report.error_code = params
        .get("err-code")
        .map(str::trim)
        .filter(|code| !code.is_empty() && *code != "0")
        .map(str::to_owned);
    report.at = callback_time(params);
    Ok(report)
}

fn parse_inbound(params: &Params) -> Result<Option<InboundMessage>, String> {
    let from = required(params, "msisdn", "inbound message")?;
    let to = required(params, "to", "inbound message")?;
    let id = required(params, "messageId", "inbound message")?;
    if params.get("type") == Some("binary") {
        pigeon_sdk::log::warn(&format!(
            "Vonage inbound message {id} is binary; binary messages are not passed on"
        ));
        return Ok(None);
    }
    let text = params.get("text").unwrap_or("");
    Ok(Some(InboundMessage {
        from: e164(from),
        to: e164(to),
        text: text.to_owned(),
        carrier_message_id: id.to_owned(),
        at: callback_time(params),
        part: concat_part(params)?,
    }))
}

/// Vonage's `concat`, `concat-ref`, `concat-total` and `concat-part`: where
/// a part stands in a long message (Pigeon joins them).
fn concat_part(params: &Params) -> Result<Option<InboundPart>, String> {
    if params.get("concat") != Some("true") {
        return Ok(None);
    }
    let number = |name: &str| {
        let value = required(params, name, "inbound message part")?;
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("`{name}` must be a number, got {value:?}"))
    };
    let (reference, count, sequence) = (
        number("concat-ref")?,
        number("concat-total")?,
        number("concat-part")?,
    );
    let (Ok(count), Ok(sequence)) = (u8::try_from(count), u8::try_from(sequence)) else {
        return Err("`concat-total` and `concat-part` must be 1 to 255".into());
    };
    if sequence == 0 || sequence > count {
        return Err(format!(
            "`concat-part` {sequence} is not within 1 to `concat-total` {count}"
        ));
    }
    Ok(Some(InboundPart {
        reference,
        count,
        sequence,
    }))
}

impl Carrier for Vonage {
    fn describe() -> Info {
        Info::new(
            "vonage",
            env!("CARGO_PKG_VERSION"),
            &["submit", "delivery-reports", "inbound"],
        )
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<String>> {
        Settings::parse(settings).map(drop)
    }

    fn start_submit(settings: &str, message: Message) -> Result<Step, Failure> {
        let settings = settings_or_misconfigured(settings)?;
        let Some(from) = message
            .from
            .clone()
            .filter(|f| !f.is_empty())
            .or_else(|| settings.default_from.clone())
        else {
            return Err(Failure::permanent(
                "no_sender",
                "the message has no sender and the vonage carrier has no default_from",
            ));
        };
        if message.parts.is_empty() {
            return Err(Failure::permanent("no_parts", "the message has no parts"));
        }
        let continuation = Continuation {
            message_id: message.id.clone(),
            to: message.to.trim_start_matches('+').to_owned(),
            from: from.trim_start_matches('+').to_owned(),
            unicode: message.encoding == Encoding::Ucs2,
            batches: batches(&message),
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
        match response.status {
            200..=299 => {
                let expected = state.batches[state.next].parts;
                let ids = read_answer(&response, expected)?;
                state.ids.extend(ids);
                state.next += 1;
                Ok(state.step(&settings))
            }
            429 => Err(Failure::throttled(
                response.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS),
            )),
            401 | 403 => Err(Failure::misconfigured(format!(
                "Vonage answered {}: check api_key and api_secret",
                response.status
            ))),
            404 | 405 => Err(Failure::misconfigured(format!(
                "Vonage answered {} for POST {SUBMIT_PATH}: check the carrier's base_url \
                 (https://rest.nexmo.com)",
                response.status
            ))),
            400 | 413 | 422 => Err(Failure::permanent(
                format!("http_{}", response.status),
                format!("Vonage answered {}: {}", response.status, response.text()),
            )),
            status => Err(Failure::retryable(format!(
                "Vonage answered {status}: {}",
                response.text()
            ))),
        }
    }

    fn parse_callback(settings: &str, request: CallbackRequest) -> Result<CallbackReply, String> {
        let settings = Settings::parse(settings).map_err(|p| p.join("; "))?;
        let path = request.path.trim_matches('/').to_owned();
        if path != "dlr" && path != "inbound" {
            return Err(format!(
                "unknown callback path /{path}: point Vonage's delivery receipts at \
                 …/dlr and inbound messages at …/inbound"
            ));
        }
        let ok = CallbackReply::new(HttpResponse::new(200));
        let params = callback_params(&request)?;
        if params.is_empty() {
            // Vonage checks a webhook URL with an empty request when it is set.
            return Ok(ok);
        }
        if let Some(secret) = &settings.signature_secret {
            check_signature(&params, secret)?;
        }
        if path == "dlr" {
            Ok(ok.with_report(parse_dlr(&params)?))
        } else {
            Ok(match parse_inbound(&params)? {
                Some(message) => ok.with_inbound(message),
                None => ok,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_sdk::encoding::hex_encode;
    use pigeon_sdk::signature::hmac_sha256;
    use pigeon_sdk::testkit::{drive_submit, message};
    use pigeon_sdk::types::{Header, Method, Part};

    const SETTINGS: &str =
        r#"{"api_key": "abcd1234", "api_secret": "s3cr3t", "default_from": "Pigeon"}"#;

    #[test]
    fn describe_reports_the_contract() {
        let info = Vonage::describe();
        assert_eq!(info.name, "vonage");
        assert_eq!(info.contract_version, "0.3.0");
        assert_eq!(info.capabilities, ["submit", "delivery-reports", "inbound"]);
    }

    #[test]
    fn settings_report_every_problem() {
        let problems = Settings::parse(
            r#"{"api_key": "", "dlr": "yes", "sender": "x", "signature_secret": 5}"#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("api_secret is required"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("api_key must not be empty"))
        );
        assert!(Settings::parse("[]").unwrap_err()[0].contains("got an array"));
        assert!(Settings::parse("{").unwrap_err()[0].contains("not valid JSON"));
        let s = Settings::parse(SETTINGS).unwrap();
        assert!(s.dlr);
        assert_eq!(s.default_from.as_deref(), Some("Pigeon"));
    }

    #[test]
    fn every_documented_status_has_a_class() {
        assert_eq!(status_info(1).2, Class::Throttled);
        assert_eq!(status_info(4).2, Class::Misconfigured);
        assert_eq!(status_info(5).2, Class::Retryable);
        assert_eq!(status_info(7).1, "number_barred");
        assert_eq!(status_info(9).2, Class::Misconfigured);
        assert_eq!(status_info(999).1, "vonage_error");
    }

    #[test]
    fn a_partial_retry_sends_each_part_alone() {
        let mut m = message("m1", "+447700900001", "aaaabbbb");
        m.parts = vec![Part {
            index: 1,
            text: "bbbb".into(),
            udh: vec![5, 0, 3, 1, 2, 2],
            payload: Vec::new(),
            units: 4,
        }];
        let mut texts = Vec::new();
        let ids = drive_submit::<Vonage>(SETTINGS, m, |req| {
            texts.push(Params::parse(&req.text()).get("text").unwrap().to_owned());
            HttpResponse::new(200).with_json(&serde_json::json!({
                "message-count": "1",
                "messages": [{"status": "0", "message-id": "X1"}]
            }))
        })
        .unwrap();
        assert_eq!(ids, ["X1"]);
        assert_eq!(texts, ["bbbb"]);
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("2020-01-01 12:00:00"),
            Some(1_577_880_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-02-29 23:59:59"),
            Some(1_709_251_199_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2020-13-01 00:00:00"), None);
    }

    #[test]
    fn signatures_are_checked() {
        let secret = "sigsecret";
        let mut pairs = vec![
            ("messageId".to_owned(), "0A00".to_owned()),
            ("status".to_owned(), "delivered".to_owned()),
            ("text".to_owned(), "a&b=c".to_owned()),
            ("timestamp".to_owned(), "1700000000".to_owned()),
        ];
        let signed = signing_string(&pairs.iter().cloned().collect());
        assert_eq!(
            signed,
            "&messageId=0A00&status=delivered&text=a_b_c&timestamp=1700000000"
        );
        let sig = hex_encode(&hmac_sha256(secret.as_bytes(), signed.as_bytes())).to_uppercase();
        pairs.push(("sig".to_owned(), sig));
        let params: Params = pairs.iter().cloned().collect();
        check_signature(&params, secret).unwrap();
        assert!(check_signature(&params, "other").is_err());
        pairs.pop();
        let unsigned: Params = pairs.into_iter().collect();
        assert!(
            check_signature(&unsigned, secret)
                .unwrap_err()
                .contains("unsigned")
        );
    }

    #[test]
    fn json_callbacks_are_read() {
        let request = CallbackRequest {
            method: Method::Post,
            path: "/dlr".into(),
            query: String::new(),
            headers: vec![Header::new("Content-Type", "application/json")],
            body: br#"{"messageId": "0B1", "status": "failed", "err-code": 4, "price": 0.0333}"#
                .to_vec(),
        };
        let reply = Vonage::parse_callback(SETTINGS, request).unwrap();
        assert_eq!(reply.reports.len(), 1);
        assert_eq!(reply.reports[0].state, ReportState::Undeliverable);
        assert_eq!(reply.reports[0].error_code.as_deref(), Some("4"));
    }
}
