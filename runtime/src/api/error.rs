//! API errors: always JSON `{"error": {"code", "message", "field"}}`.

use hyper::StatusCode;
use serde_json::json;

use super::{Response, json_response};
use crate::log_limit::LogLimiter;
use crate::store::StoreError;
use crate::submit::{ErrorKind, SubmitError};

static STORAGE_LOG: LogLimiter = LogLimiter::new(10_000, 1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A fixed code, or one a content policy chose.
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub field: Option<String>,
    /// Seconds, for a `Retry-After` header (429s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422: the request is well-formed JSON but a field is wrong.
    pub fn invalid(
        code: impl Into<std::borrow::Cow<'static, str>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 429, to be tried again after `secs`.
    pub fn too_many(code: &'static str, message: impl Into<String>, secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this key's role does not allow that",
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "field": self.field,
            }
        })
    }

    pub fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.to_json());
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl ApiError {
    /// The accept path's refusal as the JSON API answers it; `prefix` is
    /// the request's place in the body (`messages[3].`).
    pub fn from_submit(err: SubmitError, prefix: &str) -> Self {
        let SubmitError {
            kind,
            code,
            message,
            field,
        } = err;
        let (status, field) = match kind {
            ErrorKind::Invalid | ErrorKind::Refused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                field.map(|f| format!("{prefix}{f}")),
            ),
            // A header, not a field of the body.
            ErrorKind::KeyReused => (StatusCode::CONFLICT, field),
            ErrorKind::QuotaExceeded { retry_after } => {
                return Self::too_many("quota_exceeded", message, retry_after);
            }
            ErrorKind::Store(store) => return (*store).into(),
        };
        Self {
            status,
            code,
            message,
            field,
            retry_after: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; try again",
            ),
            other => {
                // One line now and then: a failing disk fails every request.
                if let Some(suppressed) = STORAGE_LOG.allow() {
                    tracing::error!(error = %other, suppressed, "storage failed while serving a request");
                }
                match other {
                    StoreError::Full => Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_full",
                        "the server's disk is full; nothing was stored or accepted. Try again later",
                    ),
                    StoreError::ReadFailed(_) => Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "storage_error",
                        "stored data could not be read; try again",
                    ),
                    StoreError::Corrupt(_) => Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "storage_error",
                        "stored data could not be read: it is not what this Pigeon expects",
                    ),
                    _ => Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "storage_error",
                        "the request could not be stored; nothing was accepted",
                    ),
                }
            }
        }
    }
}
