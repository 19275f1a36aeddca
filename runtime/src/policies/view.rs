//! What scripts receive: a message and carriers, with the field names
//! docs/policies.md lists.
//!
//! Scripts get them as read-only Rhai values (`Message`, `Carrier`) behind
//! an `Arc`, with a getter per field, not as maps: passing, copying
//! (`for carrier in carriers`) and dropping them is then a reference count,
//! where a map of a dozen fields is rebuilt and copied key by key, which was
//! most of a policy call's cost.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, ImmutableString, Map};

use super::engine::local_clock;
use super::timezones::zone_for_country;
use crate::encoding::Encoding;
use crate::model::MessageType;

/// A message as a policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageView {
    pub id: String,
    pub account: String,
    /// E.164.
    pub to: String,
    /// ISO 3166 alpha-2 of the recipient's number, when known.
    pub country: Option<String>,
    /// The sender: the one the application asked for, or the one Pigeon
    /// picked from its pool.
    pub from: Option<String>,
    /// `long_code`, `short_code`, `toll_free` or `alphanumeric` when `from`
    /// is a number of the inventory.
    pub sender_kind: Option<String>,
    /// The sender pool `from` was picked from.
    pub pool: Option<String>,
    /// The recipient's opt-out and marketing consent, for this account.
    pub consent: crate::compliance::ConsentView,
    pub message_type: MessageType,
    pub text: String,
    pub encoding: Encoding,
    pub segments: u32,
    pub metadata: BTreeMap<String, String>,
}

impl MessageView {
    /// A view of `text` to `to` with the encoding and segment count Pigeon
    /// would use; for tests, fixtures and benchmarks.
    pub fn new(to: &str, message_type: MessageType, text: &str) -> Self {
        let recipient = crate::numbers::normalize(to, None).ok();
        let analysis = crate::encoding::analyze(text);
        Self {
            id: "msg_test".into(),
            account: "acc_test".into(),
            to: recipient
                .as_ref()
                .map_or_else(|| to.to_owned(), |r| r.e164.clone()),
            country: recipient.and_then(|r| r.country),
            from: None,
            sender_kind: None,
            pool: None,
            consent: Default::default(),
            message_type,
            text: text.to_owned(),
            encoding: analysis.encoding,
            segments: analysis.segments as u32,
            metadata: BTreeMap::new(),
        }
    }

    /// The value scripts get as `msg`. `now_ms` gives `now` and the
    /// recipient's local time (from the country's zone, UTC when unknown).
    pub(crate) fn to_dynamic(&self, now_ms: i64) -> Dynamic {
        let zone = self
            .country
            .as_deref()
            .and_then(zone_for_country)
            .unwrap_or(chrono_tz::UTC);
        let (hour, minute, weekday) = local_clock(zone, now_ms);
        Dynamic::from(ScriptMessage(Arc::new(MessageFields {
            id: self.id.as_str().into(),
            account: self.account.as_str().into(),
            to: self.to.as_str().into(),
            country: self.country.as_deref().unwrap_or_default().into(),
            from: self.from.as_deref().unwrap_or_default().into(),
            sender_kind: self.sender_kind.as_deref().unwrap_or_default().into(),
            pool: self.pool.as_deref().unwrap_or_default().into(),
            consent: self.consent,
            message_type: self.message_type.as_str().into(),
            text: self.text.as_str().into(),
            encoding: self.encoding.as_str().into(),
            segments: i64::from(self.segments),
            metadata: self.metadata.clone(),
            now: now_ms,
            zone,
            local_hour: i64::from(hour),
            local_minute: i64::from(minute),
            local_weekday: weekday,
        })))
    }
}

/// `msg` in a script.
#[derive(Debug, Clone)]
pub(crate) struct ScriptMessage(Arc<MessageFields>);

#[derive(Debug)]
pub(crate) struct MessageFields {
    id: ImmutableString,
    account: ImmutableString,
    to: ImmutableString,
    country: ImmutableString,
    from: ImmutableString,
    sender_kind: ImmutableString,
    pool: ImmutableString,
    consent: crate::compliance::ConsentView,
    message_type: ImmutableString,
    text: ImmutableString,
    encoding: ImmutableString,
    segments: i64,
    metadata: BTreeMap<String, String>,
    now: i64,
    zone: chrono_tz::Tz,
    local_hour: i64,
    local_minute: i64,
    local_weekday: &'static str,
}

impl ScriptMessage {
    pub(crate) fn now(&self) -> i64 {
        self.0.now
    }
    pub(crate) fn zone(&self) -> chrono_tz::Tz {
        self.0.zone
    }
}

/// Delivery figures measured from Pigeon's own records over one window;
/// `None` when the carrier carried nothing then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarrierStats {
    /// Parts submitted in the window.
    pub sent: u64,
    /// Delivered / parts with a final report, 0 to 1.
    pub delivery_rate: Option<f64>,
    /// Failed submissions / submissions, 0 to 1.
    pub error_rate: Option<f64>,
    /// Median time from submission to delivery report.
    pub median_dlr_latency_ms: Option<f64>,
}

/// A carrier as the routing and pacing policies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierView {
    pub name: String,
    /// Up and accepting traffic (not misconfigured, not failing).
    pub healthy: bool,
    /// ISO alpha-2 codes served, or `*`.
    pub countries: Vec<String>,
    /// Price of one segment to this message's destination, if configured.
    pub price: Option<f64>,
    /// The configured rate, parts per second.
    pub tps: u32,
    /// Whether it may take this message's sender: false when the sender is
    /// a number another carrier provides.
    pub carries_sender: bool,
    pub last_15m: CarrierStats,
    pub last_24h: CarrierStats,
}

impl CarrierView {
    /// A healthy carrier serving every country, with no price and no
    /// figures; for tests and benchmarks.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            healthy: true,
            countries: vec!["*".into()],
            price: None,
            tps: 100,
            carries_sender: true,
            last_15m: CarrierStats::default(),
            last_24h: CarrierStats::default(),
        }
    }

    pub(crate) fn to_dynamic(&self) -> Dynamic {
        Dynamic::from(ScriptCarrier(Arc::new(CarrierFields {
            name: self.name.as_str().into(),
            view: self.clone(),
        })))
    }
}

/// A carrier in a script.
#[derive(Debug, Clone)]
pub(crate) struct ScriptCarrier(Arc<CarrierFields>);

#[derive(Debug)]
pub(crate) struct CarrierFields {
    name: ImmutableString,
    view: CarrierView,
}

impl ScriptCarrier {
    pub(crate) fn name(&self) -> &ImmutableString {
        &self.0.name
    }

    pub(crate) fn view(&self) -> &CarrierView {
        &self.0.view
    }

    /// Whether the carrier takes messages to `country` (`*`: all).
    pub(crate) fn serves(&self, country: &str) -> bool {
        self.0
            .view
            .countries
            .iter()
            .any(|c| c == "*" || c == country)
    }
}

fn opt(value: Option<f64>) -> Dynamic {
    value.map_or(Dynamic::UNIT, Dynamic::from)
}

fn count(value: u64) -> i64 {
    value.min(i64::MAX as u64) as i64
}

/// The field names, in the order `print` shows them.
const MESSAGE_FIELDS: [&str; 18] = [
    "id",
    "account",
    "to",
    "country",
    "from",
    "sender_kind",
    "pool",
    "consent",
    "type",
    "text",
    "encoding",
    "segments",
    "metadata",
    "now",
    "timezone",
    "local_hour",
    "local_minute",
    "local_weekday",
];

const CARRIER_FIELDS: [&str; 14] = [
    "name",
    "healthy",
    "countries",
    "price",
    "tps",
    "carries_sender",
    "sent_15m",
    "sent_24h",
    "delivery_rate_15m",
    "delivery_rate_24h",
    "error_rate_15m",
    "error_rate_24h",
    "dlr_latency_ms_15m",
    "dlr_latency_ms_24h",
];

fn message_field(m: &MessageFields, field: &str) -> Dynamic {
    match field {
        "id" => m.id.clone().into(),
        "account" => m.account.clone().into(),
        "to" => m.to.clone().into(),
        "country" => m.country.clone().into(),
        "from" => m.from.clone().into(),
        "sender_kind" => m.sender_kind.clone().into(),
        "pool" => m.pool.clone().into(),
        "consent" => {
            let mut map = Map::new();
            map.insert("opted_out".into(), m.consent.opted_out.into());
            map.insert(
                "marketing_consent".into(),
                m.consent.marketing_consent.into(),
            );
            map.insert(
                "consent_at".into(),
                m.consent.consent_at.map_or(Dynamic::UNIT, Dynamic::from),
            );
            Dynamic::from_map(map)
        }
        "type" => m.message_type.clone().into(),
        "text" => m.text.clone().into(),
        "encoding" => m.encoding.clone().into(),
        "segments" => m.segments.into(),
        "metadata" => Dynamic::from_map(
            m.metadata
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect::<Map>(),
        ),
        "now" => m.now.into(),
        "timezone" => m.zone.name().into(),
        "local_hour" => m.local_hour.into(),
        "local_minute" => m.local_minute.into(),
        "local_weekday" => m.local_weekday.into(),
        _ => Dynamic::UNIT,
    }
}

fn carrier_field(c: &CarrierFields, field: &str) -> Dynamic {
    let v = &c.view;
    match field {
        "name" => c.name.clone().into(),
        "healthy" => v.healthy.into(),
        "countries" => Dynamic::from_array(
            v.countries
                .iter()
                .map(|c| Dynamic::from(c.clone()))
                .collect::<Array>(),
        ),
        "price" => opt(v.price),
        "tps" => i64::from(v.tps).into(),
        "carries_sender" => v.carries_sender.into(),
        "sent_15m" => count(v.last_15m.sent).into(),
        "sent_24h" => count(v.last_24h.sent).into(),
        "delivery_rate_15m" => opt(v.last_15m.delivery_rate),
        "delivery_rate_24h" => opt(v.last_24h.delivery_rate),
        "error_rate_15m" => opt(v.last_15m.error_rate),
        "error_rate_24h" => opt(v.last_24h.error_rate),
        "dlr_latency_ms_15m" => opt(v.last_15m.median_dlr_latency_ms),
        "dlr_latency_ms_24h" => opt(v.last_24h.median_dlr_latency_ms),
        _ => Dynamic::UNIT,
    }
}

/// `#{name: "x", ...}`, for `print` and `debug`.
fn render(fields: &[&str], get: impl Fn(&str) -> Dynamic) -> String {
    let mut out = String::from("#{");
    for (i, field) in fields.iter().enumerate() {
        let value = get(field);
        let sep = if i == 0 { "" } else { ", " };
        if value.is_string() {
            let _ = write!(out, "{sep}{field}: {value:?}");
        } else {
            let _ = write!(out, "{sep}{field}: {value}");
        }
    }
    out.push('}');
    out
}

/// Registers `Message` and `Carrier`: a getter per field (no setters: they
/// are read-only), and how `print` shows them.
pub(crate) fn register_types(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptMessage>("Message");
    for field in MESSAGE_FIELDS {
        engine.register_get(field, move |m: &mut ScriptMessage| {
            message_field(&m.0, field)
        });
    }
    let show_message = |m: &mut ScriptMessage| render(&MESSAGE_FIELDS, |f| message_field(&m.0, f));
    engine.register_fn("to_string", show_message);
    engine.register_fn("to_debug", show_message);

    engine.register_type_with_name::<ScriptCarrier>("Carrier");
    for field in CARRIER_FIELDS {
        engine.register_get(field, move |c: &mut ScriptCarrier| {
            carrier_field(&c.0, field)
        });
    }
    let show_carrier = |c: &mut ScriptCarrier| render(&CARRIER_FIELDS, |f| carrier_field(&c.0, f));
    engine.register_fn("to_string", show_carrier);
    engine.register_fn("to_debug", show_carrier);
}
