//! The number inventory: the senders a business may send from. Each is a
//! long code, short code, toll-free number or alphanumeric sender ID of one
//! country, optionally bound to the carrier that provides it, owned by one
//! account or by none (available to claim).

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderKind {
    LongCode,
    ShortCode,
    TollFree,
    Alphanumeric,
}

impl SenderKind {
    pub const ALL: [Self; 4] = [
        Self::LongCode,
        Self::ShortCode,
        Self::TollFree,
        Self::Alphanumeric,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LongCode => "long_code",
            Self::ShortCode => "short_code",
            Self::TollFree => "toll_free",
            Self::Alphanumeric => "alphanumeric",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Sending to handsets.
    SmsMt,
    /// Receiving from handsets.
    SmsMo,
}

impl Capability {
    pub const ALL: [Self; 2] = [Self::SmsMt, Self::SmsMo];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SmsMt => "sms_mt",
            Self::SmsMo => "sms_mo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One sender of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    pub id: String,
    /// E.164 for long codes and toll-free numbers, digits for short codes,
    /// the text for alphanumeric senders.
    pub sender: String,
    pub kind: SenderKind,
    /// ISO 3166 alpha-2.
    pub country: String,
    /// The configured carrier that provides it; `None`: any carrier.
    pub carrier: Option<String>,
    pub capabilities: Vec<Capability>,
    /// The owning account; `None`: available.
    pub account_id: Option<String>,
    /// The owner's sender pool it is in, if any.
    pub pool_id: Option<String>,
    /// Where its inbound messages are posted.
    pub inbound_url: Option<String>,
    /// Where its inbound messages are posted in Twilio's form, signed as
    /// Twilio signs; a TwiML `<Message>` answer is sent back from it.
    pub sms_url: Option<String>,
    pub created_at: i64,
}

/// The inventory sender a message goes from, fixed when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSender {
    pub number_id: String,
    pub kind: SenderKind,
    /// Only this carrier may take the message (the number's carrier).
    pub carrier: Option<String>,
    /// The pool it was picked from.
    pub pool_id: Option<String>,
}

impl MessageSender {
    pub fn of(number: &NumberRecord, pool_id: Option<String>) -> Self {
        Self {
            number_id: number.id.clone(),
            kind: number.kind,
            carrier: number.carrier.clone(),
            pool_id,
        }
    }
}

/// Why a sender does not fit its kind: (field, message).
pub type SenderProblem = (&'static str, String);

/// Checks `sender` against its `kind` and `country` and gives its stored
/// form (E.164 for numbers).
pub fn check_sender(
    kind: SenderKind,
    sender: &str,
    country: &str,
) -> Result<String, SenderProblem> {
    let sender = sender.trim();
    match kind {
        SenderKind::LongCode | SenderKind::TollFree => {
            if !sender.starts_with('+') {
                return Err((
                    "sender",
                    format!("a {} is written in E.164 (+CC...)", kind.as_str()),
                ));
            }
            let number = super::normalize(sender, Some(country))
                .map_err(|e| ("sender", format!("`sender`: {e}")))?;
            if number.country.as_deref() != Some(country) {
                return Err((
                    "country",
                    format!("{} is not a number of {country}", number.e164),
                ));
            }
            Ok(number.e164)
        }
        SenderKind::ShortCode => {
            if (3..=8).contains(&sender.len()) && sender.bytes().all(|b| b.is_ascii_digit()) {
                Ok(sender.to_owned())
            } else {
                Err(("sender", "a short code is 3 to 8 digits".into()))
            }
        }
        SenderKind::Alphanumeric => {
            let fits = (1..=11).contains(&sender.len())
                && sender
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b' ')
                && sender.bytes().any(|b| b.is_ascii_alphabetic());
            if fits {
                Ok(sender.to_owned())
            } else {
                Err((
                    "sender",
                    "an alphanumeric sender is 1 to 11 of A-Z, a-z, 0-9 and space, with a letter"
                        .into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_must_fit_their_kind() {
        assert_eq!(
            check_sender(SenderKind::LongCode, "+84912345678", "VN").unwrap(),
            "+84912345678"
        );
        assert_eq!(
            check_sender(SenderKind::LongCode, "+84912345678", "HK")
                .unwrap_err()
                .0,
            "country"
        );
        assert_eq!(
            check_sender(SenderKind::LongCode, "0912345678", "VN")
                .unwrap_err()
                .0,
            "sender"
        );
        assert!(check_sender(SenderKind::ShortCode, "8088", "US").is_ok());
        assert!(check_sender(SenderKind::ShortCode, "80a8", "US").is_err());
        assert!(check_sender(SenderKind::Alphanumeric, "Acme Shop", "GB").is_ok());
        assert!(check_sender(SenderKind::Alphanumeric, "TwelveLetter", "GB").is_err());
        assert!(check_sender(SenderKind::Alphanumeric, "12345", "GB").is_err());
    }
}
