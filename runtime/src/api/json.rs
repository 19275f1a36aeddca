//! Reading request bodies and their fields with errors that name the field.
//! Bodies are parsed to a JSON object first; each field is then taken out by
//! name and type-checked, and whatever is left over is an unknown field.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Longest a request body may take to arrive (the head has its own limit,
/// `server.header_read_timeout_ms`): a client trickling a body must not
/// hold its connection for ever.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request's body, read in full before the request is routed. hyper
/// closes a kept-alive connection whose request body was left unread when
/// the answer went out, without saying so in the answer, and a client that
/// sends its next request on it sees the connection drop. So every body is
/// read first (within [`MAX_BODY`] and [`BODY_READ_TIMEOUT`]), whether or
/// not the request gets as far as needing it; what went wrong reading it
/// is told only to a handler that asks for it.
pub struct Body(Result<Bytes, ApiError>);

impl Body {
    pub async fn read(incoming: Incoming) -> Self {
        Self(read_incoming(incoming).await)
    }
}

/// The body's bytes, or why it could not be read.
pub fn read_body(body: Body) -> Result<Bytes, ApiError> {
    body.0
}

async fn read_incoming(body: Incoming) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_BODY).collect());
    let Ok(read) = read.await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body could not be read",
        )),
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request bodies are limited to {MAX_BODY} bytes"),
    )
}

/// Parses a body that must be a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_request",
            "the request body is empty; send a JSON object",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "the request body must be a JSON object",
        )),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {err}"),
        )),
    }
}

/// The fields of one JSON object, taken out one by one.
pub struct Fields {
    map: Map<String, Value>,
    /// Prefix for field names in errors, e.g. `messages[3].`.
    prefix: String,
}

impl Fields {
    pub fn new(map: Map<String, Value>) -> Self {
        Self {
            map,
            prefix: String::new(),
        }
    }

    pub fn nested(map: Map<String, Value>, prefix: String) -> Self {
        Self { map, prefix }
    }

    pub fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// Whether the request has the field (even as `null`).
    pub fn map_has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    /// Takes a field; JSON `null` counts as absent.
    pub fn take(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field).filter(|v| !v.is_null())
    }

    /// A field as given, `null` included (absent: `None`).
    pub fn take_nullable(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field)
    }

    /// A settable string: absent (`None`), `null` to clear it
    /// (`Some(None)`), or a string.
    pub fn nullable_str(&mut self, field: &str) -> Result<Option<Option<String>>, ApiError> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s))),
            Some(other) => Err(self.wrong_type(field, "a string or null", &other)),
        }
    }

    pub fn required_str(&mut self, field: &str) -> Result<String, ApiError> {
        self.optional_str(field)?.ok_or_else(|| {
            ApiError::invalid(
                "missing_field",
                self.name(field),
                format!("`{}` is required", self.name(field)),
            )
        })
    }

    pub fn optional_str(&mut self, field: &str) -> Result<Option<String>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(field, "a string", &other)),
        }
    }

    pub fn optional_bool(&mut self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong_type(field, "true or false", &other)),
        }
    }

    pub fn optional_u64(&mut self, field: &str) -> Result<Option<u64>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => Err(self.wrong_type(field, "a whole number ≥ 0", &other)),
        }
    }

    /// A settable number: absent (`None`), `null` to clear it
    /// (`Some(None)`), or a whole number ≥ 0.
    pub fn nullable_u64(&mut self, field: &str) -> Result<Option<Option<u64>>, ApiError> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(Some(n.as_u64())),
            Some(other) => Err(self.wrong_type(field, "a whole number ≥ 0 or null", &other)),
        }
    }

    pub fn optional_object(&mut self, field: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.wrong_type(field, "an object", &other)),
        }
    }

    pub fn required_array(&mut self, field: &str) -> Result<Vec<Value>, ApiError> {
        match self.take(field) {
            None => Err(ApiError::invalid(
                "missing_field",
                self.name(field),
                format!("`{}` is required", self.name(field)),
            )),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong_type(field, "an array", &other)),
        }
    }

    /// Fails on any field that was not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(key) => {
                let name = format!("{}{key}", self.prefix);
                Err(ApiError::invalid(
                    "unknown_field",
                    name.clone(),
                    format!("`{name}` is not a field of this request"),
                ))
            }
        }
    }

    fn wrong_type(&self, field: &str, expected: &str, got: &Value) -> ApiError {
        let got = match got {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        ApiError::invalid(
            "invalid_type",
            self.name(field),
            format!("`{}` must be {expected}, not {got}", self.name(field)),
        )
    }
}

/// Query-string parameters, percent-decoded (a `+` stays a plus, so
/// `to=+8491…` works unescaped).
/// 422 for a query parameter the endpoint does not take.
/// A list's `limit`: 1 to 100.
pub fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| ApiError::invalid("invalid_limit", "limit", "`limit` must be 1 to 100"))
}

pub fn unknown_parameter(name: &str) -> ApiError {
    ApiError::invalid(
        "unknown_parameter",
        name,
        format!("`{name}` is not a parameter of this request"),
    )
}

pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_percent_escapes_but_keep_plus() {
        let params = query_params(Some("to=+84912345678&since=2026-01-01T00%3A00%3A00Z&x"));
        assert_eq!(params[0], ("to".into(), "+84912345678".into()));
        assert_eq!(params[1].1, "2026-01-01T00:00:00Z");
        assert_eq!(params[2], ("x".into(), String::new()));
        assert_eq!(query_params(Some("a=%2"))[0].1, "%2");
        assert_eq!(query_params(Some("a=%zz%41"))[0].1, "%zzA");
    }

    #[test]
    fn field_errors_name_the_field() {
        let map = parse_object(br#"{"to": 5, "extra": 1}"#).unwrap();
        let mut fields = Fields::nested(map, "messages[2].".into());
        let err = fields.required_str("to").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messages[2].to"));
        assert_eq!(err.code, "invalid_type");
        let err = fields.required_str("body").unwrap_err();
        assert_eq!(err.code, "missing_field");
        assert_eq!(
            fields.finish().unwrap_err().field.as_deref(),
            Some("messages[2].extra")
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(parse_object(b"").unwrap_err().code, "empty_request");
        assert_eq!(parse_object(b"{").unwrap_err().code, "invalid_json");
        assert_eq!(parse_object(b"[1]").unwrap_err().code, "invalid_request");
    }
}
