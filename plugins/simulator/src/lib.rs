//! The sandbox carrier: sends messages to Pigeon's in-process fake endpoint,
//! which answers like a carrier and calls back with delivery reports, so
//! `pigeon serve` works with no real carrier. The endpoint's shape is
//! described in this crate's README.
//!
//! Outcomes depend on the recipient's number suffix (longest match wins):
//! `…0001` is reported undeliverable, `…0002` is rejected by the plugin
//! itself (permanent failure, no request), `…0003` fails once with a
//! retryable error (the endpoint answers 503 the first time it sees the
//! message). Settings may override or add suffixes; other messages are
//! delivered with probability `delivery_rate`, decided by a hash of the
//! message id so a message always gets the same outcome.

use std::collections::BTreeMap;

use pigeon_sdk::Carrier;
use pigeon_sdk::encoding::hex_encode;
use pigeon_sdk::json::kind;
use pigeon_sdk::types::{
    BatchStep, CallbackReply, CallbackRequest, DeliveryReport, Failure, HttpRequest, HttpResponse,
    InboundMessage, InboundPart, Info, Message, Method, ReportState, Step,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The simulator carrier.
pub struct Simulator;

pigeon_sdk::export_carrier!(Simulator);

/// Longest accepted DLR delay: one hour.
const MAX_DLR_DELAY_MS: u64 = 3_600_000;
/// Most messages in one `POST /submit-batch`.
const MAX_BATCH: u32 = 100;
/// Retry delay when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted, then reported delivered.
    Delivered,
    /// Accepted, then reported undeliverable (`absent_subscriber`).
    Undeliverable,
    /// Accepted, then reported expired (`validity_expired`).
    Expired,
    /// Rejected by the plugin without a request: permanent `carrier_rejected`.
    Rejected,
    /// The endpoint answers 503 the first time, then accepts (delivered).
    RetryOnce,
    /// The endpoint answers 429 with `Retry-After: 1` the first time, then accepts.
    ThrottleOnce,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Delivered,
        Outcome::Undeliverable,
        Outcome::Expired,
        Outcome::Rejected,
        Outcome::RetryOnce,
        Outcome::ThrottleOnce,
    ];

    /// The name used in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Undeliverable => "undeliverable",
            Outcome::Expired => "expired",
            Outcome::Rejected => "rejected",
            Outcome::RetryOnce => "retry_once",
            Outcome::ThrottleOnce => "throttle_once",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// The delivery report the endpoint sends once the message is accepted.
    fn report(self) -> (&'static str, Option<&'static str>) {
        match self {
            Outcome::Undeliverable => ("undeliverable", Some("absent_subscriber")),
            Outcome::Expired => ("expired", Some("validity_expired")),
            _ => ("delivered", None),
        }
    }

    fn fail_once(self) -> Option<&'static str> {
        match self {
            Outcome::RetryOnce => Some("retryable"),
            Outcome::ThrottleOnce => Some("throttled"),
            _ => None,
        }
    }
}

/// The simulator's settings, all optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Share of messages without a suffix rule that are delivered (0..=1).
    pub delivery_rate: f64,
    /// How long the endpoint waits before sending the delivery report.
    pub dlr_delay_ms: u64,
    /// Outcome by number suffix: the defaults with the configured overrides.
    pub outcomes_by_suffix: BTreeMap<String, Outcome>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            delivery_rate: 1.0,
            dlr_delay_ms: 50,
            outcomes_by_suffix: [
                ("0001", Outcome::Undeliverable),
                ("0002", Outcome::Rejected),
                ("0003", Outcome::RetryOnce),
            ]
            .into_iter()
            .map(|(s, o)| (s.to_owned(), o))
            .collect(),
        }
    }
}

impl Settings {
    /// Reads and checks the settings JSON, reporting every problem.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let map = pigeon_sdk::settings::object(text)?;
        let mut settings = Settings::default();
        let mut problems = Vec::new();
        for (key, value) in &map {
            match key.as_str() {
                "delivery_rate" => match value.as_f64() {
                    Some(rate) if (0.0..=1.0).contains(&rate) => settings.delivery_rate = rate,
                    _ => problems.push(format!(
                        "delivery_rate must be a number from 0 to 1, got {value}"
                    )),
                },
                "dlr_delay_ms" => match value.as_u64() {
                    Some(ms) if ms <= MAX_DLR_DELAY_MS => settings.dlr_delay_ms = ms,
                    _ => problems.push(format!(
                        "dlr_delay_ms must be a whole number of milliseconds from 0 to \
                         {MAX_DLR_DELAY_MS}, got {value}"
                    )),
                },
                "outcomes_by_suffix" => match value {
                    Value::Object(rules) => {
                        for (suffix, outcome) in rules {
                            if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                                problems.push(format!(
                                    "outcomes_by_suffix: suffix {suffix:?} must be one or more digits"
                                ));
                            }
                            match outcome.as_str().and_then(Outcome::parse) {
                                Some(o) => {
                                    settings.outcomes_by_suffix.insert(suffix.clone(), o);
                                }
                                None => problems.push(format!(
                                    "outcomes_by_suffix: outcome for {suffix:?} must be one of {}, got {outcome}",
                                    Outcome::ALL.map(Outcome::as_str).join(", ")
                                )),
                            }
                        }
                    }
                    other => problems.push(format!(
                        "outcomes_by_suffix must be an object of suffix to outcome, got {}",
                        kind(other)
                    )),
                },
                other => problems.push(format!(
                    "unknown setting {other:?} (known: delivery_rate, dlr_delay_ms, outcomes_by_suffix)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// The outcome for a message: the longest matching suffix rule, else
    /// delivered or undeliverable by `delivery_rate` (a hash of the id, so
    /// the same message always gets the same outcome).
    pub fn outcome(&self, message_id: &str, to: &str) -> Outcome {
        let by_suffix = self
            .outcomes_by_suffix
            .iter()
            .filter(|(suffix, _)| to.ends_with(suffix.as_str()))
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, outcome)| *outcome);
        by_suffix.unwrap_or_else(|| {
            if unit_hash(message_id) < self.delivery_rate {
                Outcome::Delivered
            } else {
                Outcome::Undeliverable
            }
        })
    }
}

/// FNV-1a of `text` with a SplitMix64 finaliser (so that ids differing in
/// one character spread evenly), mapped to `[0, 1)`.
fn unit_hash(text: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// `POST /submit` body.
#[derive(Serialize)]
struct SubmitBody<'a> {
    message_id: &'a str,
    to: &'a str,
    from: Option<&'a str>,
    parts: Vec<SubmitPart<'a>>,
    report: ReportPlan,
    /// `retryable` (answer 503) or `throttled` (answer 429) the first time
    /// this message id is seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_once: Option<&'static str>,
}

#[derive(Serialize)]
struct SubmitPart<'a> {
    index: u32,
    text: &'a str,
    udh_hex: String,
}

/// The delivery report the endpoint sends for each accepted part.
#[derive(Serialize)]
struct ReportPlan {
    status: &'static str,
    error_code: Option<&'static str>,
    delay_ms: u64,
}

/// What `resume-submit` needs: how many ids to expect.
#[derive(Serialize, Deserialize)]
struct Continuation {
    message_id: String,
    parts: usize,
}

#[derive(Deserialize)]
struct Accepted {
    ids: Vec<String>,
}

impl Accepted {
    /// The ids, if there is one per part.
    fn ids_for(self, c: &Continuation) -> Result<Vec<String>, Failure> {
        if self.ids.len() == c.parts {
            Ok(self.ids)
        } else {
            Err(Failure::retryable(format!(
                "simulator returned {} id(s) for the {} part(s) of {}",
                self.ids.len(),
                c.parts,
                c.message_id
            )))
        }
    }
}

/// `POST /submit-batch` body.
#[derive(Serialize)]
struct BatchBody<'a> {
    messages: Vec<SubmitBody<'a>>,
}

/// Each message of a batch, in order: sent (and what to expect back), or
/// refused by the plugin without a request.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Slot {
    Sent(Continuation),
    Refused { code: String, reason: String },
}

impl Slot {
    fn refusal(self) -> Result<Vec<String>, Failure> {
        match self {
            Slot::Refused { code, reason } => Err(Failure::permanent(code, reason)),
            Slot::Sent(c) => Err(Failure::retryable(format!(
                "{} was not answered",
                c.message_id
            ))),
        }
    }
}

/// `POST /submit-batch` answer: one result per message sent, in order.
#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BatchResult {
    Accepted(Accepted),
    Failed(BatchError),
}

/// A message of a batch the endpoint did not take: the status it would
/// have answered alone.
#[derive(Deserialize)]
struct BatchError {
    status: u16,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(flatten)]
    error: ErrorBody,
}

#[derive(Deserialize, Default, Clone)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `POST /dlr` body (one report or a list) and `GET /dlr` query. Unknown
/// fields are ignored.
#[derive(Deserialize)]
struct DlrBody {
    id: String,
    status: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// `POST /inbound` body. Unknown fields are ignored.
#[derive(Deserialize)]
struct InboundBody {
    id: String,
    from: String,
    to: String,
    text: String,
    #[serde(default)]
    at: Option<u64>,
    /// One part of a longer message.
    #[serde(default)]
    part: Option<PartBody>,
}

/// `"part": {"reference", "count", "sequence"}` of an inbound part.
#[derive(Deserialize)]
struct PartBody {
    reference: u32,
    count: u8,
    sequence: u8,
}

impl DlrBody {
    fn into_report(self) -> DeliveryReport {
        let state = match self.status.as_str() {
            "delivered" => ReportState::Delivered,
            "undeliverable" => ReportState::Undeliverable,
            "expired" => ReportState::Expired,
            "enroute" => ReportState::Enroute,
            "rejected" => ReportState::Rejected,
            _ => ReportState::Unknown,
        };
        DeliveryReport {
            carrier_message_id: self.id,
            state,
            error_code: self.error_code,
            raw_status: self.status,
            at: self.at,
        }
    }
}

fn settings_or_misconfigured(text: &str) -> Result<Settings, Failure> {
    Settings::parse(text).map_err(|problems| Failure::misconfigured(problems.join("; ")))
}

/// What the endpoint is asked to do with `message`, or the permanent
/// failure of a message the simulator rejects without a request.
fn submit_body<'a>(settings: &Settings, message: &'a Message) -> Result<SubmitBody<'a>, Failure> {
    let outcome = settings.outcome(&message.id, &message.to);
    if outcome == Outcome::Rejected {
        return Err(Failure::permanent(
            "carrier_rejected",
            format!("the simulator rejects {} (suffix rule)", message.to),
        ));
    }
    let (status, error_code) = outcome.report();
    Ok(SubmitBody {
        message_id: &message.id,
        to: &message.to,
        from: message.from.as_deref(),
        parts: message
            .parts
            .iter()
            .map(|p| SubmitPart {
                index: p.index,
                text: &p.text,
                udh_hex: hex_encode(&p.udh),
            })
            .collect(),
        report: ReportPlan {
            status,
            error_code,
            delay_ms: settings.dlr_delay_ms,
        },
        fail_once: outcome.fail_once(),
    })
}

/// The continuation and the endpoint's `2xx` answer, or the failure that
/// another answer means.
fn read_answer<C: serde::de::DeserializeOwned, A: serde::de::DeserializeOwned>(
    continuation: &[u8],
    response: &HttpResponse,
) -> Result<(C, A), Failure> {
    let c = pigeon_sdk::json::parse(continuation)
        .map_err(|e| Failure::retryable(format!("bad continuation: {e}")))?;
    if !(200..=299).contains(&response.status) {
        return Err(answer_failure(
            response.status,
            response.retry_after_ms(),
            response.parse_json().unwrap_or_default(),
            &response.text(),
        ));
    }
    let answer = response
        .parse_json()
        .map_err(|e| Failure::retryable(format!("simulator answer: {e}")))?;
    Ok((c, answer))
}

/// The failure an answer other than 2xx means (for a whole request, or for
/// one message of a batch).
fn answer_failure(
    status: u16,
    retry_after_ms: Option<u64>,
    error: ErrorBody,
    text: &str,
) -> Failure {
    let message = || error.message.clone().unwrap_or_else(|| text.to_owned());
    match status {
        429 => Failure::throttled(retry_after_ms.unwrap_or(DEFAULT_RETRY_AFTER_MS)),
        400 => Failure::permanent(
            error
                .code
                .clone()
                .unwrap_or_else(|| "bad_request".to_owned()),
            message(),
        ),
        401 | 403 => Failure::misconfigured(format!("simulator answered {status}: {}", message())),
        status => Failure::retryable(format!("simulator answered {status}: {}", message())),
    }
}

impl Carrier for Simulator {
    fn describe() -> Info {
        Info::new(
            "simulator",
            env!("CARGO_PKG_VERSION"),
            &["submit", "delivery-reports", "inbound"],
        )
        .with_max_batch(MAX_BATCH)
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<String>> {
        Settings::parse(settings).map(drop)
    }

    fn start_submit(settings: &str, message: Message) -> Result<Step, Failure> {
        let settings = settings_or_misconfigured(settings)?;
        let body = submit_body(&settings, &message)?;
        let continuation = Continuation {
            message_id: message.id.clone(),
            parts: message.parts.len(),
        };
        Ok(Step::send(
            HttpRequest::post("/submit").with_json(&body),
            pigeon_sdk::json::body(&continuation),
        ))
    }

    fn resume_submit(
        _settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure> {
        let (c, accepted): (Continuation, Accepted) = read_answer(&continuation, &response)?;
        accepted.ids_for(&c).map(Step::accepted)
    }

    fn start_submit_batch(settings: &str, messages: Vec<Message>) -> Result<BatchStep, Failure> {
        let settings = settings_or_misconfigured(settings)?;
        let mut slots = Vec::with_capacity(messages.len());
        let mut bodies = Vec::with_capacity(messages.len());
        for message in &messages {
            match submit_body(&settings, message) {
                Ok(body) => {
                    bodies.push(body);
                    slots.push(Slot::Sent(Continuation {
                        message_id: message.id.clone(),
                        parts: message.parts.len(),
                    }));
                }
                Err(Failure::Permanent(p)) => slots.push(Slot::Refused {
                    code: p.code,
                    reason: p.reason,
                }),
                Err(other) => return Err(other),
            }
        }
        if bodies.is_empty() {
            return Ok(BatchStep::done(
                slots.into_iter().map(Slot::refusal).collect(),
            ));
        }
        Ok(BatchStep::send(
            HttpRequest::post("/submit-batch").with_json(&BatchBody { messages: bodies }),
            pigeon_sdk::json::body(&slots),
        ))
    }

    fn resume_submit_batch(
        _settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<BatchStep, Failure> {
        let (slots, answer): (Vec<Slot>, BatchAnswer) = read_answer(&continuation, &response)?;
        let mut results = answer.results.into_iter();
        let outcomes = slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Sent(c) => match results.next() {
                    Some(BatchResult::Accepted(accepted)) => accepted.ids_for(&c),
                    Some(BatchResult::Failed(e)) => {
                        Err(answer_failure(e.status, e.retry_after_ms, e.error, ""))
                    }
                    None => Err(Failure::retryable(format!(
                        "simulator answered no result for {}",
                        c.message_id
                    ))),
                },
                refused => refused.refusal(),
            })
            .collect();
        Ok(BatchStep::done(outcomes))
    }

    fn parse_callback(_settings: &str, request: CallbackRequest) -> Result<CallbackReply, String> {
        let ok = CallbackReply::new(HttpResponse::new(204));
        match (request.method, request.path.trim_matches('/')) {
            (Method::Post, "dlr") => {
                let reports = match request.parse_json::<OneOrMany<DlrBody>>()? {
                    OneOrMany::One(dlr) => vec![dlr],
                    OneOrMany::Many(dlrs) => dlrs,
                };
                Ok(reports
                    .into_iter()
                    .fold(ok, |reply, dlr| reply.with_report(dlr.into_report())))
            }
            (Method::Get, "dlr") => {
                let query = request.query_params();
                let field =
                    |name: &str| query.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
                let dlr = DlrBody {
                    id: field("id").ok_or("GET /dlr needs an `id` query parameter")?,
                    status: field("status").ok_or("GET /dlr needs a `status` query parameter")?,
                    error_code: field("error_code"),
                    at: match field("at") {
                        Some(at) => {
                            Some(at.parse().map_err(|_| {
                                format!("`at` must be Unix milliseconds, got {at:?}")
                            })?)
                        }
                        None => None,
                    },
                };
                Ok(ok.with_report(dlr.into_report()))
            }
            (Method::Post, "inbound") => {
                let m: InboundBody = request.parse_json()?;
                Ok(ok.with_inbound(InboundMessage {
                    from: m.from,
                    to: m.to,
                    text: m.text,
                    carrier_message_id: m.id,
                    at: m.at,
                    part: m.part.map(|p| InboundPart {
                        reference: p.reference,
                        count: p.count,
                        sequence: p.sequence,
                    }),
                }))
            }
            (method, path) => Err(format!(
                "unknown callback {method} /{path}: the simulator calls back with POST /dlr, \
                 GET /dlr?id=…&status=… or POST /inbound"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_reports_the_contract() {
        let info = Simulator::describe();
        assert_eq!(info.name, "simulator");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.contract_version, "0.3.0");
        assert_eq!(info.capabilities, ["submit", "delivery-reports", "inbound"]);
        assert_eq!(info.max_batch, MAX_BATCH);
    }

    #[test]
    fn a_batch_sends_what_it_can_and_answers_each_message_in_order() {
        let message = |id: &str, to: &str| pigeon_sdk::testkit::message(id, to, "Hi");
        let messages = vec![
            message("m1", "+84912345678"),
            message("m2", "+84912340002"),
            message("m3", "+84912340003"),
            message("m4", "+84912345679"),
        ];
        let step = Simulator::start_submit_batch("{}", messages).unwrap();
        let BatchStep::Send(outgoing) = step else {
            panic!("expected a request, got {step:?}");
        };
        assert_eq!(outgoing.request.path, "/submit-batch");
        let body: Value = serde_json::from_slice(&outgoing.request.body).unwrap();
        let sent: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap())
            .collect();
        // m2 is rejected by the plugin itself: it is not sent.
        assert_eq!(sent, ["m1", "m3", "m4"]);
        assert_eq!(body["messages"][1]["fail_once"], "retryable");

        let answer = HttpResponse::new(200).with_json(&serde_json::json!({"results": [
            {"ids": ["sim-1"]},
            {"status": 503, "code": "busy", "message": "failing once, as asked"},
            {"status": 429, "code": "throttled", "message": "slow down", "retry_after_ms": 2000},
        ]}));
        let step = Simulator::resume_submit_batch("{}", outgoing.continuation, answer).unwrap();
        let BatchStep::Done(outcomes) = step else {
            panic!("expected outcomes, got {step:?}");
        };
        assert_eq!(outcomes.len(), 4);
        assert_eq!(outcomes[0], Ok(vec!["sim-1".to_owned()]));
        assert!(matches!(&outcomes[1], Err(Failure::Permanent(p)) if p.code == "carrier_rejected"));
        assert!(matches!(&outcomes[2], Err(Failure::Retryable(r)) if r.contains("failing once")));
        assert_eq!(outcomes[3], Err(Failure::Throttled(2000)));

        // A batch the endpoint refuses as a whole fails as a whole.
        let step = Simulator::start_submit_batch(
            "{}",
            vec![message("m5", "+84912345670"), message("m6", "+84912345671")],
        )
        .unwrap();
        let BatchStep::Send(outgoing) = step else {
            panic!()
        };
        let refused =
            Simulator::resume_submit_batch("{}", outgoing.continuation, HttpResponse::new(401));
        assert!(matches!(refused, Err(Failure::Misconfigured(_))));
    }

    #[test]
    fn defaults_and_longest_suffix() {
        let s = Settings::parse(r#"{"outcomes_by_suffix": {"10001": "delivered"}}"#).unwrap();
        assert_eq!(s.outcome("m", "+15550000001"), Outcome::Undeliverable);
        assert_eq!(s.outcome("m", "+15550010001"), Outcome::Delivered);
        assert_eq!(s.outcome("m", "+15550000002"), Outcome::Rejected);
        assert_eq!(s.outcome("m", "+15550000003"), Outcome::RetryOnce);
        assert_eq!(s.outcome("m", "+15550000004"), Outcome::Delivered);
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
    }

    #[test]
    fn delivery_rate_is_deterministic_and_roughly_right() {
        let s = Settings::parse(r#"{"delivery_rate": 0.7}"#).unwrap();
        let delivered = (0..10_000)
            .filter(|i| s.outcome(&format!("msg-{i}"), "+15550000009") == Outcome::Delivered)
            .count();
        assert!((6_500..7_500).contains(&delivered), "{delivered}");
        let first = s.outcome("msg-42", "+1555");
        assert!((0..10).all(|_| s.outcome("msg-42", "+1555") == first));
        let none = Settings::parse(r#"{"delivery_rate": 0}"#).unwrap();
        assert_eq!(none.outcome("x", "+1555"), Outcome::Undeliverable);
    }

    #[test]
    fn every_problem_is_reported() {
        let problems = Settings::parse(
            r#"{"delivery_rate": "high", "dlr_delay_ms": -1, "speed": 1,
                "outcomes_by_suffix": {"x1": "delivered", "0005": "lost"}}"#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(Settings::parse("[]").unwrap_err()[0].contains("got an array"));
        assert!(Settings::parse("{").unwrap_err()[0].contains("not valid JSON"));
    }
}
