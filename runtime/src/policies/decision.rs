//! What policies decide, read back from what scripts return. Anything else
//! (an unknown key, a wrong type, a carrier that was not offered) is an
//! error that names it.

use std::collections::HashSet;

use rhai::{Array, Dynamic, ImmutableString, Map};

/// The content policy's answer at accept time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentDecision {
    Allow,
    /// The API answers 422 with `code` and `reason`; the message is stored
    /// as `rejected`.
    Reject {
        code: String,
        reason: String,
    },
    /// Send `text` instead (the host encodes it again).
    Rewrite {
        text: String,
    },
}

/// The routing policy's answer at dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// Try `carriers` in order; a part failing retryably on one moves to the
    /// next. `sender` replaces the message's `from` when set.
    Route {
        carriers: Vec<String>,
        sender: Option<String>,
    },
    Reject {
        code: String,
        reason: String,
    },
}

/// One token bucket the host must take a token from before sending.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingKey {
    /// Names the bucket; parts with the same key share it.
    pub key: String,
    /// Tokens added per second (3 a day is 3/86400).
    pub rate_per_sec: f64,
    /// Most tokens the bucket holds: how many may go at once.
    pub burst: u32,
}

/// The pacing policy's answer at dispatch.
#[derive(Debug, Clone, PartialEq)]
pub enum PaceDecision {
    /// Send once every key has a token.
    Keys(Vec<PacingKey>),
    /// Hold the part until this Unix time (ms), then run the policies again.
    DeferUntil(i64),
}

const MAX_CODE_LEN: usize = 64;
const MAX_REASON_LEN: usize = 500;
const MAX_KEY_LEN: usize = 200;

/// Takes fields out of a returned map; what is left over is an error.
struct Fields {
    map: Map,
    what: &'static str,
}

impl Fields {
    fn new(value: Dynamic, what: &'static str, expected: &str) -> Result<Self, String> {
        let type_name = value.type_name();
        match value.try_cast::<Map>() {
            Some(map) => Ok(Self { map, what }),
            None => Err(format!(
                "{what} returned {}, not a decision; end it with {expected}",
                article(type_name)
            )),
        }
    }

    fn string(&mut self, key: &str) -> Result<String, String> {
        match self.map.remove(key) {
            None => Err(format!("{}: the answer has no `{key}`", self.what)),
            Some(value) => match value.clone().try_cast::<ImmutableString>() {
                Some(s) => Ok(s.to_string()),
                None => Err(format!(
                    "{}: `{key}` must be a string, not {}",
                    self.what,
                    article(value.type_name())
                )),
            },
        }
    }

    fn optional_string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.map.get(key) {
            None => Ok(None),
            Some(value) if value.is_unit() => {
                self.map.remove(key);
                Ok(None)
            }
            Some(_) => self.string(key).map(Some),
        }
    }

    fn take(&mut self, key: &str) -> Result<Dynamic, String> {
        self.map
            .remove(key)
            .ok_or_else(|| format!("{}: the answer has no `{key}`", self.what))
    }

    fn finish(self) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(key) => Err(format!("{}: unknown key `{key}` in the answer", self.what)),
        }
    }
}

fn article(type_name: &str) -> String {
    let short = type_name.rsplit("::").next().unwrap_or(type_name);
    match short {
        "()" => "nothing (`()`)".into(),
        "i64" | "i32" => "a number".into(),
        "f64" | "f32" => "a decimal number".into(),
        "bool" => "true/false".into(),
        "string" | "ImmutableString" => "a string".into(),
        "array" => "a list".into(),
        "map" => "a map".into(),
        other => format!("a value of type {other}"),
    }
}

fn reject_fields(fields: &mut Fields) -> Result<(String, String), String> {
    let code = fields.string("code")?;
    let reason = fields.string("reason")?;
    let valid_code = !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_code {
        return Err(format!(
            "{}: reject code `{code}` must be 1 to {MAX_CODE_LEN} lower-case letters, digits or `_`",
            fields.what
        ));
    }
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_LEN {
        return Err(format!(
            "{}: the reason must be 1 to {MAX_REASON_LEN} characters",
            fields.what
        ));
    }
    Ok((code, reason))
}

pub(crate) fn content_decision(value: Dynamic) -> Result<ContentDecision, String> {
    let what = "check(msg)";
    let mut fields = Fields::new(
        value,
        what,
        "allow(), reject(code, reason) or rewrite(text)",
    )?;
    let decision = fields.string("decision")?;
    let out = match decision.as_str() {
        "allow" => ContentDecision::Allow,
        "reject" => {
            let (code, reason) = reject_fields(&mut fields)?;
            ContentDecision::Reject { code, reason }
        }
        "rewrite" => {
            let text = fields.string("text")?;
            if text.is_empty() {
                return Err(format!("{what}: rewrite(text) needs a text"));
            }
            ContentDecision::Rewrite { text }
        }
        other => {
            return Err(format!(
                "{what}: unknown decision `{other}`; use allow(), reject(code, reason) or rewrite(text)"
            ));
        }
    };
    fields.finish()?;
    Ok(out)
}

pub(crate) fn route_decision(value: Dynamic, offered: &[&str]) -> Result<RouteDecision, String> {
    let what = "route(msg, carriers)";
    // A plain list of names is a route without a sender.
    let value = if value.is_array() {
        let mut map = Map::new();
        map.insert("decision".into(), "route".into());
        map.insert("carriers".into(), value);
        map.into()
    } else {
        value
    };
    let mut fields = Fields::new(
        value,
        what,
        "route_to(list_of_names) or reject(code, reason)",
    )?;
    let decision = fields.string("decision")?;
    let out = match decision.as_str() {
        "reject" => {
            let (code, reason) = reject_fields(&mut fields)?;
            RouteDecision::Reject { code, reason }
        }
        "route" => {
            let list = fields.take("carriers")?;
            let type_name = list.type_name();
            let Some(list) = list.try_cast::<Array>() else {
                return Err(format!(
                    "{what}: `carriers` must be a list of carrier names, not {}",
                    article(type_name)
                ));
            };
            if list.is_empty() {
                return Err(format!(
                    "{what}: the list of carriers is empty; use reject(code, reason) when no carrier fits"
                ));
            }
            let mut seen = HashSet::new();
            let mut carriers = Vec::with_capacity(list.len());
            for item in list {
                let type_name = item.type_name();
                let Some(name) = item.try_cast::<ImmutableString>() else {
                    return Err(format!(
                        "{what}: the list holds {}, not a carrier name (use names_of(list) for a list of carriers)",
                        article(type_name)
                    ));
                };
                if !offered.contains(&name.as_str()) {
                    return Err(format!(
                        "{what}: `{name}` is not one of the carriers offered ({})",
                        offered.join(", ")
                    ));
                }
                if !seen.insert(name.clone()) {
                    return Err(format!("{what}: `{name}` is in the list twice"));
                }
                carriers.push(name.to_string());
            }
            let sender = fields.optional_string("sender")?;
            if let Some(sender) = &sender
                && !valid_sender(sender)
            {
                return Err(format!(
                    "{what}: sender `{sender}` must be 1 to 11 letters, digits or spaces, or +digits"
                ));
            }
            RouteDecision::Route { carriers, sender }
        }
        other => {
            return Err(format!(
                "{what}: unknown decision `{other}`; use route_to(list) or reject(code, reason)"
            ));
        }
    };
    fields.finish()?;
    Ok(out)
}

/// The same rule as the API's `from`: alphanumeric up to 11, or +digits.
fn valid_sender(from: &str) -> bool {
    if let Some(digits) = from.strip_prefix('+') {
        return (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    }
    (1..=11).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
}

pub(crate) fn pace_decision(value: Dynamic) -> Result<PaceDecision, String> {
    let what = "pace(msg, carrier)";
    let expected = "a list of limit(key, rate, burst), or defer_until(time)";
    if value.is_array() {
        let list = value.cast::<Array>();
        if list.is_empty() {
            return Err(format!(
                "{what}: the list of limits is empty; give at least the carrier's"
            ));
        }
        let keys = list
            .into_iter()
            .map(pacing_key)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(PaceDecision::Keys(keys));
    }
    let is_defer = value
        .read_lock::<Map>()
        .is_some_and(|m| m.contains_key("decision"));
    if !is_defer {
        let type_name = value.type_name();
        if !value.is_map() {
            return Err(format!(
                "{what} returned {}; end it with {expected}",
                article(type_name)
            ));
        }
        return Ok(PaceDecision::Keys(vec![pacing_key(value)?]));
    }
    let mut fields = Fields::new(value, what, expected)?;
    let decision = fields.string("decision")?;
    if decision != "defer" {
        return Err(format!(
            "{what}: unknown decision `{decision}`; use {expected}"
        ));
    }
    let until = fields.take("until")?;
    let type_name = until.type_name();
    let Ok(until) = until.as_int() else {
        return Err(format!(
            "{what}: defer_until needs a time in milliseconds, not {}",
            article(type_name)
        ));
    };
    if until < 0 {
        return Err(format!("{what}: defer_until({until}) is before 1970"));
    }
    fields.finish()?;
    Ok(PaceDecision::DeferUntil(until))
}

fn pacing_key(value: Dynamic) -> Result<PacingKey, String> {
    let what = "pace(msg, carrier)";
    let mut fields = Fields::new(value, what, "limit(key, rate, burst)")?;
    let key = fields.string("key")?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "{what}: a limit's key must be 1 to {MAX_KEY_LEN} characters"
        ));
    }
    let rate = fields.take("rate_per_sec")?;
    let rate = rate
        .as_float()
        .ok()
        .or_else(|| rate.as_int().ok().map(|i| i as f64))
        .ok_or_else(|| {
            format!(
                "{what}: `rate_per_sec` of `{key}` must be a number, not {}",
                article(rate.type_name())
            )
        })?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!(
            "{what}: the rate of `{key}` must be above zero (got {rate})"
        ));
    }
    let burst = fields.take("burst")?;
    let burst = burst
        .as_int()
        .ok()
        .filter(|b| (1..=i64::from(u32::MAX)).contains(b))
        .ok_or_else(|| format!("{what}: the burst of `{key}` must be a whole number, 1 or more"))?;
    fields.finish()?;
    Ok(PacingKey {
        key,
        rate_per_sec: rate,
        burst: burst as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Dynamic)]) -> Dynamic {
        let map: Map = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect();
        map.into()
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let err = content_decision(map(&[
            ("decision", "reject".into()),
            ("code", "x".into()),
            ("reason", "y".into()),
            ("reson", "z".into()),
        ]))
        .unwrap_err();
        assert!(err.contains("unknown key `reson`"), "{err}");
        let err = content_decision(map(&[
            ("decision", "rewrite".into()),
            ("text", 5_i64.into()),
        ]))
        .unwrap_err();
        assert!(
            err.contains("`text` must be a string, not a number"),
            "{err}"
        );
        let err = content_decision(Dynamic::UNIT).unwrap_err();
        assert!(err.contains("returned nothing"), "{err}");
    }

    #[test]
    fn routes_name_only_offered_carriers() {
        let list: Array = vec!["a".into(), "c".into()];
        let err = route_decision(list.into(), &["a", "b"]).unwrap_err();
        assert!(
            err.contains("`c` is not one of the carriers offered"),
            "{err}"
        );
        let list: Array = vec!["b".into(), "a".into()];
        assert_eq!(
            route_decision(list.into(), &["a", "b"]).unwrap(),
            RouteDecision::Route {
                carriers: vec!["b".into(), "a".into()],
                sender: None
            }
        );
    }

    #[test]
    fn pacing_checks_rates_and_bursts() {
        let key = |rate: Dynamic, burst: Dynamic| {
            map(&[
                ("key", "k".into()),
                ("rate_per_sec", rate),
                ("burst", burst),
            ])
        };
        let err = pace_decision(key(0.0_f64.into(), 1_i64.into())).unwrap_err();
        assert!(err.contains("above zero"), "{err}");
        let err = pace_decision(key(1.0_f64.into(), 0_i64.into())).unwrap_err();
        assert!(err.contains("burst"), "{err}");
        let ok = pace_decision(vec![key(3_i64.into(), 3_i64.into())].into()).unwrap();
        assert_eq!(
            ok,
            PaceDecision::Keys(vec![PacingKey {
                key: "k".into(),
                rate_per_sec: 3.0,
                burst: 3
            }])
        );
    }
}
