//! The contract's types, as plain Rust, with constructors and accessors.
//!
//! These are the types generated from `sdk/wit/carrier.wit`; the methods
//! here make building requests and replies short.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::pigeon::carrier::types::{
    BatchStep, CallbackReply, CallbackRequest, DeliveryReport, Encoding, Failure, Header,
    HttpRequest, HttpResponse, InboundMessage, InboundPart, Info, Message, MessageType, Method,
    Outgoing, Part, PermanentFailure, ReportState, Settings, Step,
};

use crate::form::Params;

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn to_json_vec(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("value cannot be serialised as JSON")
}

impl Header {
    /// A header.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Method {
    /// The method in upper case, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Parses a method name, in any case.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Method::Get,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HttpRequest {
    /// A request with no headers and an empty body. `path` is relative to
    /// the carrier's base URL and may carry a query (`/sms/json?x=1`).
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    /// A `POST` request.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::Post, path)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    ///
    /// # Panics
    /// If `value`'s `Serialize` implementation fails (derived ones do not,
    /// unless a map has non-string keys).
    pub fn with_json(self, value: &impl Serialize) -> Self {
        self.with_header("Content-Type", "application/json")
            .with_body(to_json_vec(value))
    }

    /// Sets a form-urlencoded body and its `Content-Type`.
    pub fn with_form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        self.with_header("Content-Type", "application/x-www-form-urlencoded")
            .with_body(crate::form::encode(pairs))
    }

    /// Adds an `Authorization: Basic …` header.
    pub fn with_basic_auth(self, user: &str, password: &str) -> Self {
        self.with_header("Authorization", crate::auth::basic_auth(user, password))
    }

    /// The first header with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl HttpResponse {
    /// A response with no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    ///
    /// # Panics
    /// As [`HttpRequest::with_json`].
    pub fn with_json(self, value: &impl Serialize) -> Self {
        self.with_header("Content-Type", "application/json")
            .with_body(to_json_vec(value))
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON.
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, String> {
        crate::json::parse(&self.body)
    }

    /// A `Retry-After` header given in seconds, as milliseconds.
    /// (HTTP dates are not understood and give `None`.)
    pub fn retry_after_ms(&self) -> Option<u64> {
        let seconds: f64 = self.header("Retry-After")?.trim().parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
    }
}

impl CallbackRequest {
    /// The first header with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON.
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, String> {
        crate::json::parse(&self.body)
    }

    /// The query string's parameters.
    pub fn query_params(&self) -> Params {
        Params::parse(&self.query)
    }

    /// The body's parameters, for a form-urlencoded body.
    pub fn form_params(&self) -> Params {
        Params::parse(&self.text())
    }

    /// The query's parameters followed by the form body's, which is how
    /// carriers that call back with either GET or POST are read.
    pub fn params(&self) -> Params {
        let mut params = self.query_params();
        let is_form = self.header("Content-Type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if is_form || (self.method == Method::Post && self.header("Content-Type").is_none()) {
            params.extend(self.form_params());
        }
        params
    }
}

impl Step {
    /// Asks the host to send `request`, then to call `resume-submit` with
    /// `continuation` and the response.
    pub fn send(request: HttpRequest, continuation: impl Into<Vec<u8>>) -> Self {
        Step::Send(Outgoing {
            request,
            continuation: continuation.into(),
        })
    }

    /// The carrier took the parts: one carrier message id per part, in order.
    pub fn accepted(ids: Vec<String>) -> Self {
        Step::Accepted(ids)
    }
}

impl BatchStep {
    /// Asks the host to send `request`, then to call `resume-submit-batch`
    /// with `continuation` and the response.
    pub fn send(request: HttpRequest, continuation: impl Into<Vec<u8>>) -> Self {
        BatchStep::Send(Outgoing {
            request,
            continuation: continuation.into(),
        })
    }

    /// Each message's outcome, in the order the messages were given.
    pub fn done(outcomes: Vec<Result<Vec<String>, Failure>>) -> Self {
        BatchStep::Done(outcomes)
    }
}

impl Failure {
    /// Worth trying again later.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Failure::Retryable(reason.into())
    }

    /// The carrier asked to slow down: retry after this many milliseconds.
    pub fn throttled(retry_after_ms: u64) -> Self {
        Failure::Throttled(retry_after_ms)
    }

    /// Will never succeed for this message. `code` is a short machine-readable code.
    pub fn permanent(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Failure::Permanent(PermanentFailure {
            code: code.into(),
            reason: reason.into(),
        })
    }

    /// The carrier's settings are wrong: no message will succeed.
    pub fn misconfigured(reason: impl Into<String>) -> Self {
        Failure::Misconfigured(reason.into())
    }
}

impl ReportState {
    /// The state's name in the contract (`delivered`, `undeliverable`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Enroute => "enroute",
            ReportState::Delivered => "delivered",
            ReportState::Expired => "expired",
            ReportState::Undeliverable => "undeliverable",
            ReportState::Rejected => "rejected",
            ReportState::Unknown => "unknown",
        }
    }

    /// Parses a state name as [`ReportState::as_str`] writes it (any case).
    pub fn parse(name: &str) -> Option<Self> {
        [
            ReportState::Enroute,
            ReportState::Delivered,
            ReportState::Expired,
            ReportState::Undeliverable,
            ReportState::Rejected,
            ReportState::Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl DeliveryReport {
    /// A report with no error code and no time.
    pub fn new(
        carrier_message_id: impl Into<String>,
        state: ReportState,
        raw_status: impl Into<String>,
    ) -> Self {
        Self {
            carrier_message_id: carrier_message_id.into(),
            state,
            error_code: None,
            raw_status: raw_status.into(),
            at: None,
        }
    }
}

impl CallbackReply {
    /// A reply with no reports and no inbound messages.
    pub fn new(response: HttpResponse) -> Self {
        Self {
            reports: Vec::new(),
            inbound: Vec::new(),
            response,
        }
    }

    /// Adds a delivery report.
    pub fn with_report(mut self, report: DeliveryReport) -> Self {
        self.reports.push(report);
        self
    }

    /// Adds an inbound message.
    pub fn with_inbound(mut self, message: InboundMessage) -> Self {
        self.inbound.push(message);
        self
    }
}

impl Info {
    /// Describes an adapter built against this SDK's contract version.
    pub fn new(name: &str, version: &str, capabilities: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            contract_version: crate::CONTRACT_VERSION.to_owned(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            max_batch: 1,
        }
    }

    /// Says the adapter takes up to `max` messages per
    /// [`Carrier::start_submit_batch`](crate::Carrier::start_submit_batch).
    pub fn with_max_batch(mut self, max: u32) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

impl MessageType {
    /// `otp`, `transactional` or `marketing`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Otp => "otp",
            MessageType::Transactional => "transactional",
            MessageType::Marketing => "marketing",
        }
    }
}

impl Encoding {
    /// `gsm7` or `ucs2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_builder_sets_headers_and_body() {
        let req = HttpRequest::post("/x")
            .with_form(&[("a", "b c")])
            .with_basic_auth("u", "p");
        assert_eq!(req.method, Method::Post);
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(req.header("AUTHORIZATION"), Some("Basic dTpw"));
        assert_eq!(req.text(), "a=b+c");
    }

    #[test]
    fn retry_after_in_seconds() {
        let r = HttpResponse::new(429).with_header("retry-after", "2");
        assert_eq!(r.retry_after_ms(), Some(2000));
        let r = HttpResponse::new(429).with_header("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(r.retry_after_ms(), None);
    }

    #[test]
    fn callback_params_merge_query_and_form() {
        let req = CallbackRequest {
            method: Method::Post,
            path: "/dlr".into(),
            query: "id=1".into(),
            headers: vec![Header::new(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body: b"status=DELIVRD".to_vec(),
        };
        let p = req.params();
        assert_eq!(p.get("id"), Some("1"));
        assert_eq!(p.get("status"), Some("DELIVRD"));
    }

    #[test]
    fn names_round_trip() {
        for s in [
            "enroute",
            "delivered",
            "expired",
            "undeliverable",
            "rejected",
            "unknown",
        ] {
            assert_eq!(ReportState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(Method::parse("patch"), Some(Method::Patch));
        assert_eq!(Method::parse("HEAD"), None);
    }
}
