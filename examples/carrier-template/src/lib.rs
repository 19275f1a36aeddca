//! A carrier adapter for "Acme SMS", an imaginary HTTP carrier, written as a
//! starting point for real ones. Replace the request and response shapes
//! with your carrier's.
//!
//! Acme's API, as this adapter assumes it:
//! - `POST /v1/sms`, HTTP basic auth, a form body `to`, `from`, `text`,
//!   `udh` (hex, for concatenated parts; absent for a single SMS) and
//!   `callback_url` (where to report on this SMS). One request per SMS part;
//!   `200` answers `{"id": "..."}`, `429` has `Retry-After`, `400` answers
//!   `{"error": "...", "detail": "..."}`, `401` means bad credentials.
//! - Delivery reports: `POST` to the part's `callback_url` with a form body
//!   `id`, `status` (`DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, `ACCEPTD`),
//!   `err` and `ts` (Unix seconds), signed with `X-Acme-Signature`: hex
//!   HMAC-SHA256 of the body under the webhook secret.
//!
//! The `callback_url` this adapter hands Acme is this carrier's callback URL
//! in Pigeon (`pigeon_sdk::host::callback_url()`) followed by `/dlr`, so the
//! reports come back to `parse_callback` with the path `/dlr`.

use pigeon_sdk::Carrier;
use pigeon_sdk::encoding::hex_encode;
use pigeon_sdk::signature::verify_hmac_sha256_hex;
use pigeon_sdk::types::{
    CallbackReply, CallbackRequest, DeliveryReport, Failure, HttpRequest, HttpResponse, Info,
    Message, ReportState, Step,
};
use serde::{Deserialize, Serialize};

/// The adapter. Rename it (and the crate) for your carrier.
pub struct Acme;

pigeon_sdk::export_carrier!(Acme);

/// The carrier's `settings` table in `pigeon.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    username: String,
    password: String,
    /// Sender used when the message has none.
    #[serde(default)]
    default_sender: Option<String>,
    /// Secret the carrier signs delivery reports with. Without it, reports
    /// are accepted unsigned.
    #[serde(default)]
    webhook_secret: Option<String>,
}

impl Settings {
    fn parse(text: &str) -> Result<Self, String> {
        let settings: Settings = pigeon_sdk::settings::parse(text).map_err(|e| e.to_string())?;
        if settings.username.is_empty() {
            return Err("username must not be empty".into());
        }
        Ok(settings)
    }
}

/// Everything the next step needs, carried by the host between calls:
/// the parts still to send and the ids collected so far.
#[derive(Serialize, Deserialize)]
struct Continuation {
    to: String,
    from: String,
    /// (text, UDH in hex) of each part, in order.
    parts: Vec<(String, String)>,
    ids: Vec<String>,
}

impl Continuation {
    /// The request for the next part to send.
    fn next_request(&self, settings: &Settings) -> HttpRequest {
        let (text, udh) = &self.parts[self.ids.len()];
        // Where Acme reports on this part: Pigeon's callback URL for this
        // carrier, with a path of our own.
        let report_url = format!("{}/dlr", pigeon_sdk::host::callback_url());
        let mut form = vec![("to", self.to.as_str()), ("from", self.from.as_str())];
        form.push(("text", text));
        if !udh.is_empty() {
            form.push(("udh", udh));
        }
        form.push(("callback_url", &report_url));
        HttpRequest::post("/v1/sms")
            .with_basic_auth(&settings.username, &settings.password)
            .with_form(&form)
    }

    fn into_step(self, settings: &Settings) -> Step {
        if self.ids.len() == self.parts.len() {
            Step::accepted(self.ids)
        } else {
            let request = self.next_request(settings);
            Step::send(request, pigeon_sdk::json::body(&self))
        }
    }
}

#[derive(Deserialize)]
struct SentPart {
    id: String,
}

#[derive(Deserialize, Default)]
struct AcmeError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    detail: String,
}

impl Carrier for Acme {
    fn describe() -> Info {
        Info::new(
            "acme",
            env!("CARGO_PKG_VERSION"),
            &["submit", "delivery-reports"],
        )
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<String>> {
        Settings::parse(settings).map(drop).map_err(|e| vec![e])
    }

    fn start_submit(settings: &str, message: Message) -> Result<Step, Failure> {
        let settings = Settings::parse(settings).map_err(Failure::misconfigured)?;
        let Some(from) = message.from.or_else(|| settings.default_sender.clone()) else {
            return Err(Failure::permanent(
                "no_sender",
                "the message has no sender and no default_sender is configured",
            ));
        };
        let continuation = Continuation {
            to: message.to,
            from,
            parts: message
                .parts
                .into_iter()
                .map(|p| (p.text, hex_encode(&p.udh)))
                .collect(),
            ids: Vec::new(),
        };
        Ok(continuation.into_step(&settings))
    }

    fn resume_submit(
        settings: &str,
        continuation: Vec<u8>,
        response: HttpResponse,
    ) -> Result<Step, Failure> {
        let settings = Settings::parse(settings).map_err(Failure::misconfigured)?;
        let mut state: Continuation =
            pigeon_sdk::json::parse(&continuation).map_err(Failure::retryable)?;
        match response.status {
            200 => {
                let sent: SentPart = response.parse_json().map_err(Failure::retryable)?;
                state.ids.push(sent.id);
                Ok(state.into_step(&settings))
            }
            429 => Err(Failure::throttled(
                response.retry_after_ms().unwrap_or(1_000),
            )),
            400 => {
                let error: AcmeError = response.parse_json().unwrap_or_default();
                Err(Failure::permanent(error.error, error.detail))
            }
            401 | 403 => Err(Failure::misconfigured(
                "Acme refused the credentials (check username and password)",
            )),
            status => Err(Failure::retryable(format!(
                "Acme answered {status}: {}",
                response.text()
            ))),
        }
    }

    fn parse_callback(settings: &str, request: CallbackRequest) -> Result<CallbackReply, String> {
        let settings = Settings::parse(settings)?;
        // The path after the callback URL: `/dlr`, as `next_request` asked.
        if request.path != "/dlr" {
            return Err(format!("unknown callback path {}", request.path));
        }
        if let Some(secret) = &settings.webhook_secret {
            let signature = request
                .header("X-Acme-Signature")
                .ok_or("missing X-Acme-Signature")?;
            if !verify_hmac_sha256_hex(secret.as_bytes(), &request.body, signature) {
                return Err("bad X-Acme-Signature".into());
            }
        }
        let form = request.form_params();
        let id = form.get("id").ok_or("no `id` in the report")?;
        let status = form.get("status").ok_or("no `status` in the report")?;
        let state = match status {
            "DELIVRD" => ReportState::Delivered,
            "UNDELIV" => ReportState::Undeliverable,
            "EXPIRED" => ReportState::Expired,
            "REJECTD" => ReportState::Rejected,
            "ACCEPTD" => ReportState::Enroute,
            _ => ReportState::Unknown,
        };
        let mut report = DeliveryReport::new(id, state, status);
        report.error_code = form.get("err").filter(|e| *e != "000").map(str::to_owned);
        report.at = form
            .get("ts")
            .and_then(|ts| ts.parse::<u64>().ok())
            .map(|seconds| seconds * 1000);
        let ok = HttpResponse::new(200).with_body("OK");
        Ok(CallbackReply::new(ok).with_report(report))
    }
}
