//! Twilio's request parameters: form-encoded bodies and query strings.
//! Names are case-sensitive as Twilio's are; a repeated name keeps its
//! first value. Parameters Pigeon does not know are ignored, as Twilio
//! ignores them.

use super::error::TwilioError;

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(encoded: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(encoded)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// A parameter that is present and not empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// `true`/`false` as Twilio's SDKs write them (any case).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, TwilioError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(TwilioError::invalid(
                20001,
                format!("{name} must be true or false"),
            )),
        }
    }

    /// A positive whole number.
    pub fn number(&self, name: &str, code: u32) -> Result<Option<u64>, TwilioError> {
        match self.text(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| TwilioError::invalid(code, format!("{name} must be a whole number"))),
        }
    }

    /// Every parameter, sorted: what an idempotency token covers.
    pub fn canonical(&self) -> String {
        let mut sorted = self.0.clone();
        sorted.sort();
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(sorted)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_as_twilios_sdks_encode_them() {
        let params = Params::parse(
            b"To=%2B84912345678&Body=Hi+there&SmartEncoded=True&DateSent%3E=2026-12-01",
        );
        assert_eq!(params.get("To"), Some("+84912345678"));
        assert_eq!(params.get("Body"), Some("Hi there"));
        assert_eq!(params.boolean("SmartEncoded").unwrap(), Some(true));
        assert_eq!(params.get("DateSent>"), Some("2026-12-01"));
        assert_eq!(params.get("to"), None);
        assert!(params.boolean("Body").is_err());
    }
}
