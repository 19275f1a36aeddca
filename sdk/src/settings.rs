//! The carrier's `settings` (a JSON object from Pigeon's configuration) as a
//! typed struct.
//!
//! ```
//! #[derive(serde::Deserialize, Debug)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     api_key: String,
//!     #[serde(default)]
//!     sender: Option<String>,
//! }
//!
//! let s: Settings = pigeon_sdk::settings::parse(r#"{"api_key": "k"}"#).unwrap();
//! assert_eq!(s.api_key, "k");
//! let err = pigeon_sdk::settings::parse::<Settings>(r#"{"api_key": 7}"#).unwrap_err();
//! assert!(err.to_string().contains("api_key"));
//! ```

use std::fmt;

use serde::de::DeserializeOwned;

/// Why settings could not be read: serde's message and where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    message: String,
}

impl SettingsError {
    /// An error with this message (for checks serde cannot express).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid settings: {}", self.message)
    }
}

impl std::error::Error for SettingsError {}

/// The settings as a JSON object, for adapters that check each key
/// themselves (to report every problem at once). Empty settings are `{}`.
pub fn object(settings: &str) -> Result<serde_json::Map<String, serde_json::Value>, Vec<String>> {
    let text = if settings.trim().is_empty() {
        "{}"
    } else {
        settings
    };
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(vec![format!(
            "settings must be a JSON object, got {}",
            crate::json::kind(&other)
        )]),
        Err(e) => Err(vec![format!("settings are not valid JSON: {e}")]),
    }
}

/// Parses the settings JSON into `T`. Empty settings are read as `{}`.
///
/// The error names what serde expected and shows the settings text just
/// before the point where it went wrong (which is where the field name is).
pub fn parse<T: DeserializeOwned>(settings: &str) -> Result<T, SettingsError> {
    let text = if settings.trim().is_empty() {
        "{}"
    } else {
        settings
    };
    serde_json::from_str(text).map_err(|e| {
        let near = context(text, e.line(), e.column());
        let mut message = e.to_string();
        // serde_json appends " at line L column C"; the snippet says it better.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        if near.is_empty() {
            SettingsError::new(message)
        } else {
            SettingsError::new(format!("{message}, near `{near}`"))
        }
    })
}

/// Up to 40 characters of `text` ending at 1-based `line`:`column`.
fn context(text: &str, line: usize, column: usize) -> String {
    let Some(line_text) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let upto: String = line_text.chars().take(column).collect();
    let chars: Vec<char> = upto.trim().chars().collect();
    let start = chars.len().saturating_sub(40);
    chars[start..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        #[serde(default)]
        rate: f64,
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn empty_is_an_empty_object() {
        let s: S = parse("  ").unwrap();
        assert_eq!(s.rate, 0.0);
    }

    #[test]
    fn errors_point_at_the_field() {
        let err = parse::<S>(r#"{"name": "x", "rate": "fast"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid settings: invalid type"), "{text}");
        assert!(text.contains("\"rate\": \"fast\""), "{text}");
        let err = parse::<S>(r#"{"rat": 1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `rat`"), "{err}");
        let err = parse::<S>("{").unwrap_err().to_string();
        assert!(err.contains("EOF"), "{err}");
    }
}
