//! Errors in Twilio's shape, `{code, message, more_info, status}`, with
//! Twilio's code where one fits (docs/twilio.md lists them), so Twilio's
//! SDKs raise their own exceptions with the codes applications test for.

use hyper::StatusCode;
use serde_json::json;

use crate::api::{ApiError, Response, json_response};
use crate::submit::{ErrorKind, SubmitError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    /// Seconds, for a `Retry-After` header (429s).
    pub retry_after: Option<u64>,
}

impl TwilioError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: a parameter is wrong.
    pub fn invalid(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    pub fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            &json!({
                "code": self.code,
                "message": self.message,
                "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
                "status": self.status.as_u16(),
            }),
        );
        if let Some(secs) = self.retry_after
            && let Ok(value) = hyper::header::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, value);
        }
        response
    }

    /// The accept path's refusal in Twilio's terms.
    pub fn from_submit(err: SubmitError) -> Self {
        let (status, code) = submit_code(&err);
        let retry_after = match err.kind {
            // Logged where the store's faults are turned into answers.
            ErrorKind::Store(store) => return Self::from_api(ApiError::from(*store)),
            ErrorKind::QuotaExceeded { retry_after } => Some(retry_after),
            _ => None,
        };
        Self {
            status,
            code,
            message: err.message,
            retry_after,
        }
    }

    /// One of the JSON API's own refusals (a body too large, the rate).
    pub fn from_api(err: ApiError) -> Self {
        let code = match err.status {
            StatusCode::TOO_MANY_REQUESTS => 20429,
            StatusCode::PAYLOAD_TOO_LARGE => 21617,
            StatusCode::REQUEST_TIMEOUT => 20408,
            status if status.is_server_error() => 20500,
            _ => 20001,
        };
        Self {
            status: if err.status == StatusCode::UNPROCESSABLE_ENTITY {
                StatusCode::BAD_REQUEST
            } else {
                err.status
            },
            code,
            message: err.message,
            retry_after: err.retry_after,
        }
    }
}

/// The accept path's codes and Twilio's.
fn submit_code(err: &SubmitError) -> (StatusCode, u32) {
    let bad = StatusCode::BAD_REQUEST;
    match (&err.kind, err.code.as_ref()) {
        (ErrorKind::QuotaExceeded { .. }, _) => (StatusCode::TOO_MANY_REQUESTS, 20429),
        (ErrorKind::KeyReused, _) => (StatusCode::CONFLICT, 20409),
        (_, "invalid_number" | "invalid_country") => (bad, 21211),
        (_, "empty_body") => (bad, 21602),
        (_, "body_too_long") => (bad, 21617),
        (_, "invalid_sender") => (bad, 21212),
        (_, "sender_not_owned" | "sender_cannot_send") => (bad, 21606),
        (_, "sender_not_allowed_in_country") => (bad, 21612),
        (_, "unknown_pool") => (bad, 21701),
        (_, "no_sender_for_country") => (bad, 21703),
        (_, "recipient_opted_out" | "no_consent") => (bad, 21610),
        (_, "invalid_url") => (bad, 21609),
        (_, "send_at_in_past" | "send_at_too_far") => (bad, 35114),
        (_, "invalid_validity") => (bad, 21623),
        // A content policy's own refusal: Twilio's "filtered".
        (ErrorKind::Refused, _) => (bad, 30007),
        _ => (bad, 20001),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_paths_codes_become_twilios() {
        let code = |code: &'static str| {
            TwilioError::from_submit(SubmitError::invalid(code, "to", "x")).code
        };
        assert_eq!(code("invalid_number"), 21211);
        assert_eq!(code("empty_body"), 21602);
        assert_eq!(code("body_too_long"), 21617);
        assert_eq!(code("recipient_opted_out"), 21610);
        assert_eq!(code("sender_not_owned"), 21606);
        assert_eq!(code("invalid_sender"), 21212);
    }
}
