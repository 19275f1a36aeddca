//! Phone numbers: parsing E.164 or national numbers with a country hint,
//! validating them against libphonenumber's metadata (the `rlibphonenumber`
//! crate), and naming the country.

pub mod inventory;
pub mod pools;
pub mod rules;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, Region};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("`{0}` is not a known ISO 3166 alpha-2 country code")]
    UnknownCountry(String),
    #[error("a national number needs a `country` hint, or write it in E.164 (+CC...)")]
    NeedsCountry,
    #[error("not a phone number")]
    Unparseable,
    #[error("not a valid number for its country")]
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The number in E.164, e.g. `+84912345678`.
    pub e164: String,
    /// ISO 3166 alpha-2 of the number's country, when the number maps to one.
    pub country: Option<String>,
}

/// Parses a country hint (`"VN"`, `"hk"`): a region libphonenumber has
/// numbering rules for.
pub fn parse_country(hint: &str) -> Result<Region, NumberError> {
    Region::from_code(hint)
        .ok()
        .filter(|region| {
            PHONE_NUMBER_UTIL
                .get_country_code_for_region(*region)
                .is_some()
        })
        .ok_or_else(|| NumberError::UnknownCountry(hint.to_owned()))
}

/// Normalises `raw` to E.164. A number starting with `+` stands alone;
/// any other needs `country`.
///
/// ```
/// let vn = pigeon::numbers::normalize("0912 345 678", Some("VN")).unwrap();
/// assert_eq!(vn.e164, "+84912345678");
/// assert_eq!(vn.country.as_deref(), Some("VN"));
/// assert!(pigeon::numbers::normalize("0912 345 678", None).is_err());
/// ```
pub fn normalize(raw: &str, country: Option<&str>) -> Result<Recipient, NumberError> {
    let hint = country.map(parse_country).transpose()?;
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.len() > 32 {
        return Err(NumberError::Unparseable);
    }
    if !trimmed.starts_with('+') && hint.is_none() {
        return Err(NumberError::NeedsCountry);
    }
    let number = PHONE_NUMBER_UTIL
        .parse(trimmed, hint)
        .map_err(|_| NumberError::Unparseable)?;
    if !PHONE_NUMBER_UTIL.is_valid_number(&number) {
        return Err(NumberError::Invalid);
    }
    Ok(Recipient {
        e164: PHONE_NUMBER_UTIL
            .format(&number, PhoneNumberFormat::E164)
            .into_owned(),
        country: PHONE_NUMBER_UTIL
            .get_region_for_number(&number)
            .filter(|region| *region != Region::World)
            .map(|region| region.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_stand_alone() {
        let r = normalize("+84912345678", None).unwrap();
        assert_eq!(r.e164, "+84912345678");
        assert_eq!(r.country.as_deref(), Some("VN"));
        let r = normalize("+852 6123 4567", None).unwrap();
        assert_eq!(r.e164, "+85261234567");
        assert_eq!(r.country.as_deref(), Some("HK"));
    }

    #[test]
    fn national_numbers_use_the_hint() {
        let r = normalize("0912 345 678", Some("vn")).unwrap();
        assert_eq!(r.e164, "+84912345678");
        assert_eq!(r.country.as_deref(), Some("VN"));
        let r = normalize("6123 4567", Some("HK")).unwrap();
        assert_eq!(r.e164, "+85261234567");
        let r = normalize("07400 123456", Some("GB")).unwrap();
        assert_eq!(r.e164, "+447400123456");
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert_eq!(
            normalize("0912345678", None),
            Err(NumberError::NeedsCountry)
        );
        assert_eq!(normalize("+8412", None), Err(NumberError::Invalid));
        assert_eq!(
            normalize("hello", Some("VN")),
            Err(NumberError::Unparseable)
        );
        assert_eq!(normalize("", None), Err(NumberError::Unparseable));
        assert!(matches!(
            normalize("+84912345678", Some("XX")),
            Err(NumberError::UnknownCountry(_))
        ));
    }
}
