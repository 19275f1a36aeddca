//! Sender rules per destination country, shipped as data
//! (`country_rules.toml`) and parsed once, at first use.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::inventory::SenderKind;

/// What a country's carriers make of alphanumeric senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alphanumeric {
    Allowed,
    /// Allowed once registered with the country's carriers or regulator.
    Registered,
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryRules {
    pub alphanumeric: Alphanumeric,
    /// The kinds of sender that can receive replies.
    pub two_way: Vec<SenderKind>,
}

static RULES: LazyLock<BTreeMap<String, CountryRules>> = LazyLock::new(|| {
    // Checked by a unit test: the shipped file always parses.
    toml::from_str(include_str!("country_rules.toml")).unwrap_or_default()
});

/// The rules for `country`, if the table has it.
pub fn rules_for(country: &str) -> Option<&'static CountryRules> {
    RULES.get(country)
}

/// Whether a sender of `kind` may send to `country`.
pub fn kind_allowed_in(kind: SenderKind, country: &str) -> bool {
    kind != SenderKind::Alphanumeric
        || rules_for(country).is_none_or(|r| r.alphanumeric != Alphanumeric::Forbidden)
}

/// Whether replies reach a sender of `kind` in `country` (unlisted
/// countries: any kind but alphanumeric).
pub fn two_way(kind: SenderKind, country: &str) -> bool {
    match rules_for(country) {
        Some(rules) => rules.two_way.contains(&kind),
        None => kind != SenderKind::Alphanumeric,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_knows_the_big_markets() {
        let table: BTreeMap<String, CountryRules> =
            toml::from_str(include_str!("country_rules.toml")).unwrap();
        for country in [
            "VN", "HK", "US", "GB", "IN", "CN", "JP", "SG", "DE", "FR", "BR", "AU",
        ] {
            assert!(table.contains_key(country), "{country}");
        }
        assert!(!kind_allowed_in(SenderKind::Alphanumeric, "US"));
        assert!(kind_allowed_in(SenderKind::Alphanumeric, "GB"));
        assert!(kind_allowed_in(SenderKind::LongCode, "US"));
        assert_eq!(
            rules_for("VN").unwrap().alphanumeric,
            Alphanumeric::Registered
        );
        assert!(two_way(SenderKind::TollFree, "US"));
        assert!(!two_way(SenderKind::Alphanumeric, "GB"));
    }
}
