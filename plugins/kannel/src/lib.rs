//! A carrier adapter for [Kannel](https://www.kannel.org/)'s smsbox HTTP
//! interface. The configuration Kannel needs and the whole flow are in this
//! crate's README; in short:
//!
//! - **Submit.** One `GET {sendsms_path}` per SMS part, with `username`,
//!   `password`, `to`, `from`, `text`, `coding` (0 GSM-7, 2 UCS-2),
//!   `charset`, `udh` (the encoder's concatenation header, for multi-part
//!   messages), `dlr-mask` and a `dlr-url` pointing back at Pigeon. The
//!   parts go one request after another through the continuation, so each
//!   part reaches the handset exactly as Pigeon's encoder cut it.
//! - **Carrier ids.** Kannel's answer (`0: Accepted for delivery`) carries no
//!   message id, so the plugin names each part `{message_id}.{part_index}`
//!   and puts that name into the part's `dlr-url`; the delivery report names
//!   the part it is about.
//! - **Delivery reports.** Kannel fetches `…/dlr?id=…&type=%d&reply=%A&at=%T&smsc=%i`;
//!   type 1 is delivered, 2 undeliverable, 4 (buffered) and 8 (accepted by
//!   the SMSC) en route, 16 (rejected by the SMSC) rejected.
//! - **Inbound.** An `sms-service` whose `get-url` is `…/inbound?…` with
//!   the sender, receiver, the raw text (`%b`), its coding and charset and
//!   Kannel's message id.

use pigeon_sdk::Carrier;
use pigeon_sdk::json::kind;
use pigeon_sdk::types::{
    CallbackReply, CallbackRequest, DeliveryReport, Encoding, Failure, HttpRequest, HttpResponse,
    InboundMessage, Info, Message, Method, Part, ReportState, Step,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Kannel adapter.
pub struct Kannel;

pigeon_sdk::export_carrier!(Kannel);

/// Where smsbox serves `sendsms` unless `sendsms-url` says otherwise.
pub const DEFAULT_SENDSMS_PATH: &str = "/cgi-bin/sendsms";
/// Every report type Kannel knows: 1 + 2 + 4 + 8 + 16.
pub const DEFAULT_DLR_MASK: u8 = 31;
/// Retry delay when Kannel answers 503 without a usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;
/// Longest validity Kannel's `validity` takes that still makes sense (a week).
const MAX_VALIDITY_MINUTES: u64 = 7 * 24 * 60;

const KNOWN_SETTINGS: &str = "username, password, dlr_mask, smsc, default_sender, account, \
                              validity_minutes, strip_plus, sendsms_path";

/// The carrier's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `sendsms-user` username (required).
    pub username: String,
    /// `sendsms-user` password (required).
    pub password: String,
    /// Which delivery reports to ask for (Kannel's `dlr-mask`); 0 asks for none.
    pub dlr_mask: u8,
    /// Kannel `smsc-id` to route through (`smsc`); Kannel's routing otherwise.
    pub smsc: Option<String>,
    /// Sender for messages that have none; without it Kannel's
    /// `default-sender`/`global-sender` applies.
    pub default_sender: Option<String>,
    /// Kannel's `account` (shows up in its logs and accounting).
    pub account: Option<String>,
    /// Kannel's `validity`, in minutes.
    pub validity_minutes: Option<u32>,
    /// Send `84912345678` instead of `+84912345678`.
    pub strip_plus: bool,
    /// The sendsms path under the carrier's base URL.
    pub sendsms_path: String,
}

impl Settings {
    /// Reads and checks the settings JSON, reporting every problem.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let map = pigeon_sdk::settings::object(text)?;
        let mut problems = Vec::new();
        let mut username = None;
        let mut password = None;
        let mut settings = Settings {
            username: String::new(),
            password: String::new(),
            dlr_mask: DEFAULT_DLR_MASK,
            smsc: None,
            default_sender: None,
            account: None,
            validity_minutes: None,
            strip_plus: false,
            sendsms_path: DEFAULT_SENDSMS_PATH.to_owned(),
        };
        for (key, value) in &map {
            match key.as_str() {
                "username" => username = non_empty(key, value, &mut problems),
                "password" => match value {
                    Value::String(p) if !p.is_empty() => password = Some(p.clone()),
                    Value::String(_) => problems.push("password must not be empty".to_owned()),
                    other => problems.push(format!("password must be a string, got {}", kind(other))),
                },
                "dlr_mask" => match value.as_u64() {
                    Some(mask) if mask <= 31 => settings.dlr_mask = mask as u8,
                    _ => problems.push(format!(
                        "dlr_mask must be a whole number from 0 to 31 (1 delivered, 2 failed, \
                         4 buffered, 8 SMSC accepted, 16 SMSC rejected), got {value}"
                    )),
                },
                "smsc" => {
                    settings.smsc = non_empty(key, value, &mut problems);
                    if let Some(id) = &settings.smsc
                        && id.contains(char::is_whitespace)
                    {
                        problems.push(format!("smsc must be a Kannel smsc-id, without spaces, got {id:?}"));
                    }
                }
                "default_sender" => settings.default_sender = non_empty(key, value, &mut problems),
                "account" => settings.account = non_empty(key, value, &mut problems),
                "validity_minutes" => match value.as_u64() {
                    Some(m) if (1..=MAX_VALIDITY_MINUTES).contains(&m) => {
                        settings.validity_minutes = Some(m as u32)
                    }
                    _ => problems.push(format!(
                        "validity_minutes must be a whole number from 1 to {MAX_VALIDITY_MINUTES}, got {value}"
                    )),
                },
                "strip_plus" => match value {
                    Value::Bool(b) => settings.strip_plus = *b,
                    other => problems.push(format!("strip_plus must be true or false, got {}", kind(other))),
                },
                "sendsms_path" => match value.as_str() {
                    Some(p) if p.starts_with('/') && !p.contains(['?', '#']) && !p.contains(char::is_whitespace) => {
                        settings.sendsms_path = p.to_owned()
                    }
                    _ => problems.push(format!(
                        "sendsms_path must be a path starting with `/`, without query, got {value}"
                    )),
                },
                other => problems.push(format!("unknown setting {other:?} (known: {KNOWN_SETTINGS})")),
            }
        }
        match username {
            Some(u) => settings.username = u,
            None if !map.contains_key("username") => {
                problems.push("username is required (the sendsms-user's username)".to_owned())
            }
            None => {}
        }
        match password {
            Some(p) => settings.password = p,
            None if !map.contains_key("password") => {
                problems.push("password is required (the sendsms-user's password)".to_owned())
            }
            None => {}
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }
}

fn non_empty(key: &str, value: &Value, problems: &mut Vec<String>) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::String(_) => {
            problems.push(format!("{key} must not be empty"));
            None
        }
        other => {
            problems.push(format!("{key} must be a string, got {}", kind(other)));
            None
        }
    }
}

fn settings_or_misconfigured(text: &str) -> Result<Settings, Failure> {
    Settings::parse(text).map_err(|problems| Failure::misconfigured(problems.join("; ")))
}

/// Percent-encodes bytes for a query value: unreserved characters are
/// kept, a space becomes `+`, everything else `%XX`.
pub fn encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out
}

/// Decodes a query value to bytes (`+` is a space, `%XX` a byte; a
/// malformed escape is kept as it is). Unlike the SDK's form decoding this
/// keeps the bytes, which matters for Kannel's `%b` (UTF-16BE for UCS-2).
pub fn decode_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The raw (still encoded) value of the first `name` in a query string.
fn raw_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .strip_prefix('?')
        .unwrap_or(query)
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| String::from_utf8_lossy(&decode_bytes(k)) == name)
        .map(|(_, v)| v)
}

/// A query parameter decoded as UTF-8 (invalid sequences replaced).
fn param(query: &str, name: &str) -> Option<String> {
    raw_param(query, name).map(|v| String::from_utf8_lossy(&decode_bytes(v)).into_owned())
}

/// Characters that survive inside a `dlr-url` untouched: Kannel expands
/// every `%` escape it knows (`%A`, `%d`, `%C`, …), so a percent-encoded id
/// would be mangled on the way back.
fn is_dlr_safe(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The carrier id of one part: Kannel gives none, so the plugin makes one.
pub fn carrier_id(message_id: &str, part_index: u32) -> String {
    format!("{message_id}.{part_index}")
}

/// The `dlr-url` for one part, before Kannel fills in its escapes.
pub fn dlr_url(callback_url: &str, carrier_id: &str) -> String {
    format!("{callback_url}/dlr?id={carrier_id}&type=%d&reply=%A&at=%T&smsc=%i")
}

/// The sendsms path (with query) for one part.
fn sendsms_path(
    settings: &Settings,
    message: &Message,
    to: &str,
    from: Option<&str>,
    part: &Part,
    callback_url: &str,
) -> String {
    let (coding, charset, text) = match message.encoding {
        Encoding::Gsm7 => ("0", "UTF-8", part.text.as_bytes().to_vec()),
        Encoding::Ucs2 => {
            let bytes = if part.payload.is_empty() {
                part.text
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect()
            } else {
                part.payload.clone()
            };
            ("2", "UTF-16BE", bytes)
        }
    };
    let mut query: Vec<(&str, String)> = vec![
        ("username", encode_bytes(settings.username.as_bytes())),
        ("password", encode_bytes(settings.password.as_bytes())),
        ("to", encode_bytes(to.as_bytes())),
    ];
    if let Some(from) = from {
        query.push(("from", encode_bytes(from.as_bytes())));
    }
    query.push(("text", encode_bytes(&text)));
    query.push(("coding", coding.to_owned()));
    query.push(("charset", charset.to_owned()));
    if !part.udh.is_empty() {
        query.push(("udh", encode_bytes(&part.udh)));
    }
    if settings.dlr_mask != 0 {
        let id = carrier_id(&message.id, part.index);
        query.push(("dlr-mask", settings.dlr_mask.to_string()));
        query.push((
            "dlr-url",
            encode_bytes(dlr_url(callback_url, &id).as_bytes()),
        ));
    }
    if let Some(smsc) = &settings.smsc {
        query.push(("smsc", encode_bytes(smsc.as_bytes())));
    }
    if let Some(account) = &settings.account {
        query.push(("account", encode_bytes(account.as_bytes())));
    }
    if let Some(validity) = settings.validity_minutes {
        query.push(("validity", validity.to_string()));
    }
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}?{}", settings.sendsms_path, query.join("&"))
}

/// Carried between the requests of one submission: the request of every
/// part, the ids they get, and how many Kannel has taken.
#[derive(Serialize, Deserialize)]
struct Continuation {
    paths: Vec<String>,
    ids: Vec<String>,
    sent: usize,
}

impl Continuation {
    fn into_step(self) -> Step {
        if self.sent >= self.paths.len() {
            Step::accepted(self.ids)
        } else {
            let request = HttpRequest::get(self.paths[self.sent].clone());
            Step::send(request, pigeon_sdk::json::body(&self))
        }
    }

    /// Names the part a failure happened on, when earlier parts went out.
    fn context(&self) -> String {
        if self.paths.len() > 1 {
            format!(
                " (part {} of {}; {} already accepted)",
                self.sent + 1,
                self.paths.len(),
                self.sent
            )
        } else {
            String::new()
        }
    }
}

/// How Kannel's answer to one sendsms request is read.
fn classify(response: &HttpResponse, c: &Continuation) -> Result<(), Failure> {
    let body = response.text();
    let body = body.trim();
    let context = c.context();
    match response.status {
        200..=299 => {
            // "0: Accepted for delivery" or "3: Queued for later delivery"
            // (Kannel keeps it until the SMSC connection is up).
            if !(body.starts_with("0:") || body.starts_with("3:")) {
                pigeon_sdk::log::warn(&format!(
                    "Kannel answered {} with an unexpected body {body:?}; taking it as accepted",
                    response.status
                ));
            }
            Ok(())
        }
        401 | 403 => Err(Failure::misconfigured(format!(
            "Kannel refused the sendsms-user credentials ({}: {body}){context}",
            response.status
        ))),
        404 => Err(Failure::misconfigured(format!(
            "Kannel has no sendsms at this path (404: {body}); check base_url and sendsms_path{context}"
        ))),
        400 => {
            let lower = body.to_ascii_lowercase();
            let code = if lower.contains("receiver") {
                "invalid_recipient"
            } else if lower.contains("sender missing") {
                "no_sender"
            } else if lower.contains("denied by white") || lower.contains("black-list") {
                "recipient_blocked"
            } else {
                "carrier_rejected"
            };
            Err(Failure::permanent(
                code,
                format!("Kannel rejected the message: {body}{context}"),
            ))
        }
        503 => Err(Failure::throttled(
            response.retry_after_ms().unwrap_or(DEFAULT_RETRY_AFTER_MS),
        )),
        status if (400..500).contains(&status) => Err(Failure::permanent(
            "carrier_rejected",
            format!("Kannel answered {status}: {body}{context}"),
        )),
        status => Err(Failure::retryable(format!(
            "Kannel answered {status}: {body}{context}"
        ))),
    }
}

/// The report state of a Kannel DLR type.
pub fn report_state(dlr_type: u32) -> ReportState {
    match dlr_type {
        1 => ReportState::Delivered,
        2 => ReportState::Undeliverable,
        4 | 8 => ReportState::Enroute,
        16 => ReportState::Rejected,
        _ => ReportState::Unknown,
    }
}

/// An error code from the SMSC's reply (`%A`): the `err:` field of an SMPP
/// receipt (`… stat:UNDELIV err:001 …`, `000` meaning none), or the code of
/// a `NACK/<code>/<text>` Kannel gives for an SMSC rejection.
fn error_code(reply: &str) -> Option<String> {
    if let Some(rest) = reply.strip_prefix("NACK/") {
        let code = rest.split('/').next().unwrap_or_default().trim();
        return (!code.is_empty()).then(|| code.to_owned());
    }
    let err = reply
        .split_whitespace()
        .find_map(|field| field.strip_prefix("err:"))?;
    (!err.is_empty() && err.bytes().any(|b| b != b'0')).then(|| err.to_owned())
}

fn parse_dlr(query: &str) -> Result<DeliveryReport, String> {
    let id = param(query, "id")
        .filter(|v| !v.is_empty())
        .ok_or("a Kannel DLR needs `id` in the dlr-url's query")?;
    let type_text = param(query, "type")
        .filter(|v| !v.is_empty())
        .ok_or("a Kannel DLR needs `type` (Kannel's %d) in the dlr-url's query")?;
    let dlr_type: u32 = type_text
        .trim()
        .parse()
        .map_err(|_| format!("`type` must be Kannel's DLR type (a number), got {type_text:?}"))?;
    let reply = param(query, "reply").unwrap_or_default();
    let state = report_state(dlr_type);
    let error_code = match state {
        ReportState::Undeliverable | ReportState::Rejected => error_code(&reply),
        _ => None,
    };
    let raw_status = if reply.is_empty() {
        dlr_type.to_string()
    } else {
        format!("{dlr_type} {reply}")
    };
    Ok(DeliveryReport {
        carrier_message_id: id,
        state,
        error_code,
        raw_status,
        at: unix_seconds_ms(param(query, "at").as_deref()),
    })
}

/// Kannel's `%T` (Unix seconds) as milliseconds; absent or garbled is `None`.
fn unix_seconds_ms(value: Option<&str>) -> Option<u64> {
    value?.trim().parse::<u64>().ok()?.checked_mul(1000)
}

/// Text of an inbound message from Kannel's `%b` (raw bytes) and its
/// `%c`/`%C`: UTF-16BE for UCS-2, Latin-1 if Kannel says so, else UTF-8.
pub fn inbound_text(bytes: &[u8], coding: Option<&str>, charset: Option<&str>) -> String {
    let charset = charset
        .unwrap_or_default()
        .to_ascii_uppercase()
        .replace('_', "-");
    let ucs2 = coding == Some("2") || charset.starts_with("UTF-16") || charset == "UCS-2";
    if ucs2 {
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16_lossy(&units)
    } else if charset == "ISO-8859-1" || charset == "LATIN1" {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

fn parse_inbound(query: &str) -> Result<InboundMessage, String> {
    let required = |name: &str, escape: &str| {
        param(query, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("a Kannel MO needs `{name}` ({escape}) in the get-url's query"))
    };
    let from = required("from", "%p")?;
    let to = required("to", "%P")?;
    let id = required("id", "%I")?;
    let text =
        raw_param(query, "text").ok_or("a Kannel MO needs `text` (%b) in the get-url's query")?;
    let text = inbound_text(
        &decode_bytes(text),
        param(query, "coding").as_deref(),
        param(query, "charset").as_deref(),
    );
    Ok(InboundMessage {
        from,
        to,
        text,
        carrier_message_id: id,
        at: unix_seconds_ms(param(query, "at").as_deref()),
        // bearerbox joins concatenated MO itself (sms-combine-concatenated-mo).
        part: None,
    })
}

/// Kannel does not look at the body of a dlr-url answer; for an
/// sms-service a body would be sent back as a reply SMS unless the service
/// has `max-messages = 0`, so the answer is empty.
fn ok() -> CallbackReply {
    CallbackReply::new(
        HttpResponse::new(200).with_header("Content-Type", "text/plain; charset=utf-8"),
    )
}

impl Carrier for Kannel {
    fn describe() -> Info {
        Info::new(
            "kannel",
            env!("CARGO_PKG_VERSION"),
            &["submit", "delivery-reports", "inbound"],
        )
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<String>> {
        Settings::parse(settings).map(drop)
    }

    fn start_submit(settings: &str, message: Message) -> Result<Step, Failure> {
        let settings = settings_or_misconfigured(settings)?;
        if !is_dlr_safe(&message.id) {
            return Err(Failure::permanent(
                "invalid_message_id",
                format!(
                    "message id {:?} cannot go into a Kannel dlr-url (only letters, digits, `-._~`)",
                    message.id
                ),
            ));
        }
        let callback_url = pigeon_sdk::host::callback_url();
        if settings.dlr_mask != 0 {
            if callback_url.is_empty() {
                return Err(Failure::misconfigured(
                    "Pigeon has no public URL, so Kannel cannot be given a dlr-url; set \
                     public_url, or dlr_mask = 0 to go without delivery reports",
                ));
            }
            if callback_url.contains('%') {
                return Err(Failure::misconfigured(format!(
                    "the callback URL {callback_url:?} contains `%`, which Kannel would take \
                     for an escape code in the dlr-url"
                )));
            }
        }
        let to = if settings.strip_plus {
            message.to.trim_start_matches('+').to_owned()
        } else {
            message.to.clone()
        };
        let from = message
            .from
            .as_deref()
            .or(settings.default_sender.as_deref());
        let continuation = Continuation {
            paths: message
                .parts
                .iter()
                .map(|part| sendsms_path(&settings, &message, &to, from, part, &callback_url))
                .collect(),
            ids: message
                .parts
                .iter()
                .map(|part| carrier_id(&message.id, part.index))
                .collect(),
            sent: 0,
        };
        Ok(continuation.into_step())
    }

    fn resume_submit(
        _settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure> {
        let mut c: Continuation = pigeon_sdk::json::parse(&continuation)
            .map_err(|e| Failure::retryable(format!("bad continuation: {e}")))?;
        classify(&response, &c)?;
        c.sent += 1;
        Ok(c.into_step())
    }

    fn parse_callback(_settings: &str, request: CallbackRequest) -> Result<CallbackReply, String> {
        // Kannel calls back with GET; a POST with a form body is read too.
        let mut query = request.query.clone();
        if request.method == Method::Post && !request.body.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&request.text());
        }
        match (request.method, request.path.trim_matches('/')) {
            (Method::Get | Method::Post, "dlr") => Ok(ok().with_report(parse_dlr(&query)?)),
            (Method::Get | Method::Post, "inbound") => {
                Ok(ok().with_inbound(parse_inbound(&query)?))
            }
            (method, path) => Err(format!(
                "unknown callback {method} /{path}: Kannel calls back with GET /dlr (dlr-url) \
                 or GET /inbound (sms-service get-url)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_reports_the_contract() {
        let info = Kannel::describe();
        assert_eq!(info.name, "kannel");
        assert_eq!(info.contract_version, "0.3.0");
        assert_eq!(info.capabilities, ["submit", "delivery-reports", "inbound"]);
    }

    #[test]
    fn settings_defaults_and_every_problem() {
        let s = Settings::parse(r#"{"username": "u", "password": "p"}"#).unwrap();
        assert_eq!(s.dlr_mask, 31);
        assert_eq!(s.sendsms_path, "/cgi-bin/sendsms");
        assert!(!s.strip_plus);
        let problems = Settings::parse(
            r#"{"dlr_mask": 32, "smsc": "a b", "validity_minutes": 0, "speed": 1,
                "strip_plus": "yes", "sendsms_path": "cgi-bin"}"#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 8, "{problems:?}");
        assert!(Settings::parse("[]").unwrap_err()[0].contains("got an array"));
        assert!(Settings::parse("{").unwrap_err()[0].contains("not valid JSON"));
    }

    #[test]
    fn bytes_round_trip_through_the_query_encoding() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_bytes(&encode_bytes(&bytes)), bytes);
        assert_eq!(encode_bytes(b"a b+c"), "a+b%2Bc");
        assert_eq!(decode_bytes("100%"), b"100%");
    }

    #[test]
    fn dlr_types_map_to_states() {
        assert_eq!(report_state(1), ReportState::Delivered);
        assert_eq!(report_state(2), ReportState::Undeliverable);
        assert_eq!(report_state(4), ReportState::Enroute);
        assert_eq!(report_state(8), ReportState::Enroute);
        assert_eq!(report_state(16), ReportState::Rejected);
        assert_eq!(report_state(3), ReportState::Unknown);
        assert_eq!(
            error_code("id:1 stat:UNDELIV err:001 text:x"),
            Some("001".into())
        );
        assert_eq!(error_code("id:1 stat:DELIVRD err:000"), None);
        assert_eq!(
            error_code("NACK/0x0000000b/Invalid Dest Addr"),
            Some("0x0000000b".into())
        );
        assert_eq!(error_code(""), None);
    }

    #[test]
    fn inbound_text_by_coding() {
        let ucs2: Vec<u8> = "Привет 😀"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(
            inbound_text(&ucs2, Some("2"), Some("UTF-16BE")),
            "Привет 😀"
        );
        assert_eq!(inbound_text(&ucs2, None, Some("utf-16be")), "Привет 😀");
        assert_eq!(inbound_text("é".as_bytes(), Some("0"), Some("UTF-8")), "é");
        assert_eq!(inbound_text(&[0xe9], Some("0"), Some("ISO-8859-1")), "é");
    }

    #[test]
    fn only_plain_ids_go_into_a_dlr_url() {
        assert!(is_dlr_safe("msg_01M8D06GNH8Z1ZJN0Q868WS952.3"));
        assert!(!is_dlr_safe("a%41"));
        assert!(!is_dlr_safe("a b"));
        assert!(!is_dlr_safe(""));
    }
}
