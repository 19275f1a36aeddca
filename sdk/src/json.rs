//! JSON bodies.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises a value as a JSON body.
///
/// # Panics
/// If `value`'s `Serialize` implementation fails (derived ones do not,
/// unless a map has non-string keys).
pub fn body(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("value cannot be serialised as JSON")
}

/// What kind of JSON value `value` is, with its article, for messages:
/// "a string", "an object", "null".
pub fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a JSON body; the error says what was wrong and shows the start of
/// the body.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        let shown: String = text.chars().take(80).collect();
        let more = if text.chars().count() > 80 { "…" } else { "" };
        format!("body is not the expected JSON ({e}): {shown:?}{more}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Serialize, Debug, PartialEq)]
    struct Reply {
        ids: Vec<String>,
    }

    #[test]
    fn round_trip_and_errors() {
        let r = Reply {
            ids: vec!["a".into()],
        };
        assert_eq!(parse::<Reply>(&body(&r)).unwrap(), r);
        let err = parse::<Reply>(b"{\"ids\": 3}").unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        assert!(err.contains("{\\\"ids\\\": 3}"), "{err}");
    }
}
