//! The tests in `policies/tests/*.json`: a message (and carriers, and a
//! fixed "now") in, the decision expected out. Run by `pigeon policy test`,
//! `pigeon policy check` and every reload.
//!
//! ```json
//! {
//!   "policy": "pacing",
//!   "now": "2026-11-26T15:30:00Z",
//!   "carrier": { "name": "viettel", "tps": 50 },
//!   "cases": [
//!     { "name": "marketing at 22:30 in Hanoi waits for 08:00",
//!       "message": { "to": "+84912345678", "type": "marketing", "text": "Sale! Reply STOP to opt out" },
//!       "expect": { "decision": "defer", "until": "2026-11-27T01:00:00Z" } }
//!   ]
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::decision::{ContentDecision, PaceDecision, RouteDecision};
use super::set::PolicySet;
use super::view::{CarrierStats, CarrierView, MessageView};
use super::{PolicyError, PolicyKind};
use crate::model::MessageType;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    policy: PolicyKind,
    /// Default "now" of the cases (RFC 3339).
    #[serde(default)]
    now: Option<String>,
    /// Default carriers of the routing cases.
    #[serde(default)]
    carriers: Option<Vec<CarrierFixture>>,
    /// Default carrier of the pacing cases.
    #[serde(default)]
    carrier: Option<CarrierFixture>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    now: Option<String>,
    message: MessageFixture,
    #[serde(default)]
    carriers: Option<Vec<CarrierFixture>>,
    #[serde(default)]
    carrier: Option<CarrierFixture>,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFixture {
    #[serde(default = "default_id")]
    id: String,
    #[serde(default = "default_account")]
    account: String,
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    sender_kind: Option<String>,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    consent: Option<ConsentFixture>,
    #[serde(rename = "type", default = "default_type")]
    message_type: String,
    text: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// `msg.consent` in a case; `consent_at` is RFC 3339.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentFixture {
    #[serde(default)]
    opted_out: bool,
    #[serde(default)]
    marketing_consent: bool,
    #[serde(default)]
    consent_at: Option<String>,
}

fn default_id() -> String {
    "msg_test".into()
}
fn default_account() -> String {
    "acc_test".into()
}
fn default_type() -> String {
    "transactional".into()
}
fn default_true() -> bool {
    true
}
fn default_countries() -> Vec<String> {
    vec!["*".into()]
}
fn default_tps() -> u32 {
    100
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CarrierFixture {
    name: String,
    #[serde(default = "default_true")]
    healthy: bool,
    #[serde(default = "default_countries")]
    countries: Vec<String>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default = "default_tps")]
    tps: u32,
    #[serde(default = "default_true")]
    carries_sender: bool,
    #[serde(default)]
    sent_15m: u64,
    #[serde(default)]
    sent_24h: u64,
    #[serde(default)]
    delivery_rate_15m: Option<f64>,
    #[serde(default)]
    delivery_rate_24h: Option<f64>,
    #[serde(default)]
    error_rate_15m: Option<f64>,
    #[serde(default)]
    error_rate_24h: Option<f64>,
    #[serde(default)]
    dlr_latency_ms_15m: Option<f64>,
    #[serde(default)]
    dlr_latency_ms_24h: Option<f64>,
}

impl From<&CarrierFixture> for CarrierView {
    fn from(c: &CarrierFixture) -> Self {
        CarrierView {
            name: c.name.clone(),
            healthy: c.healthy,
            countries: c.countries.clone(),
            price: c.price,
            tps: c.tps,
            carries_sender: c.carries_sender,
            last_15m: CarrierStats {
                sent: c.sent_15m,
                delivery_rate: c.delivery_rate_15m,
                error_rate: c.error_rate_15m,
                median_dlr_latency_ms: c.dlr_latency_ms_15m,
            },
            last_24h: CarrierStats {
                sent: c.sent_24h,
                delivery_rate: c.delivery_rate_24h,
                error_rate: c.error_rate_24h,
                median_dlr_latency_ms: c.dlr_latency_ms_24h,
            },
        }
    }
}

/// The decision a case expects. Only the fields written are compared
/// (`reason`, `sender`), except `carriers` and `keys`, compared whole.
#[derive(Debug, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
enum Expected {
    Allow,
    Reject {
        code: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Rewrite {
        text: String,
    },
    Route {
        carriers: Vec<String>,
        /// `null` expects no sender; absent is not checked.
        #[serde(default, deserialize_with = "present")]
        sender: Option<Option<String>>,
    },
    Pace {
        keys: Vec<ExpectedKey>,
    },
    Defer {
        /// RFC 3339.
        until: String,
    },
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedKey {
    key: String,
    /// `"3/day"`, `"50/second"`, ... (or `rate_per_sec`).
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    rate_per_sec: Option<f64>,
    burst: u32,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// `tests/quiet_hours.json`.
    pub file: String,
    pub name: String,
    /// What went wrong: the difference, or the script's error.
    pub outcome: Result<(), String>,
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(()) => write!(f, "ok    {}: {}", self.file, self.name),
            Err(why) => write!(f, "FAIL  {}: {}: {why}", self.file, self.name),
        }
    }
}

/// Runs every `*.json` fixture in `tests_dir` (sorted by name) against
/// `set`. A missing directory is no tests; an unreadable or malformed file
/// is an error.
pub fn run_fixtures(set: &PolicySet, tests_dir: &Path) -> Result<Vec<CaseReport>, PolicyError> {
    let mut files = Vec::new();
    match std::fs::read_dir(tests_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|source| PolicyError::Io {
                    path: tests_dir.to_owned(),
                    source,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !name.starts_with('.') {
                    files.push(name);
                }
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PolicyError::Io {
                path: tests_dir.to_owned(),
                source,
            });
        }
    }
    files.sort();
    let mut reports = Vec::new();
    for name in files {
        let relative = format!("tests/{name}");
        let path = tests_dir.join(&name);
        let text =
            std::fs::read_to_string(&path).map_err(|source| PolicyError::Io { path, source })?;
        let fixture: FixtureFile =
            serde_json::from_str(&text).map_err(|err| PolicyError::Fixture {
                file: relative.clone(),
                message: err.to_string(),
            })?;
        for case in &fixture.cases {
            let outcome = match run_case(set, &fixture, case) {
                Ok(()) => Ok(()),
                Err(CaseError::Failed(why)) => Err(why),
                Err(CaseError::Fixture(message)) => {
                    return Err(PolicyError::Fixture {
                        file: relative,
                        message: format!("case \"{}\": {message}", case.name),
                    });
                }
            };
            reports.push(CaseReport {
                file: relative.clone(),
                name: case.name.clone(),
                outcome,
            });
        }
    }
    Ok(reports)
}

enum CaseError {
    /// The fixture itself is wrong (bad number, bad time).
    Fixture(String),
    /// The policy decided something else, or failed.
    Failed(String),
}

fn parse_time(value: &str, field: &str) -> Result<i64, CaseError> {
    crate::time::parse_rfc3339(value).ok_or_else(|| {
        CaseError::Fixture(format!(
            "`{field}` must be an RFC 3339 time like 2026-11-26T15:30:00Z, not `{value}`"
        ))
    })
}

fn message_view(m: &MessageFixture) -> Result<MessageView, CaseError> {
    let message_type = MessageType::parse(&m.message_type).ok_or_else(|| {
        CaseError::Fixture(format!(
            "message type `{}` is not otp, transactional or marketing",
            m.message_type
        ))
    })?;
    let recipient = crate::numbers::normalize(&m.to, None)
        .map_err(|err| CaseError::Fixture(format!("`to` {}: {err}", m.to)))?;
    let mut view = MessageView::new(&recipient.e164, message_type, &m.text);
    view.id = m.id.clone();
    view.account = m.account.clone();
    view.from = m.from.clone();
    view.sender_kind = m.sender_kind.clone();
    view.pool = m.pool.clone();
    if let Some(consent) = &m.consent {
        view.consent = crate::compliance::ConsentView {
            opted_out: consent.opted_out,
            marketing_consent: consent.marketing_consent,
            consent_at: match &consent.consent_at {
                None => None,
                Some(at) => Some(crate::time::parse_rfc3339(at).ok_or_else(|| {
                    CaseError::Fixture(format!("`consent_at` {at:?} is not an RFC 3339 time"))
                })?),
            },
        };
    }
    view.metadata = m.metadata.clone();
    Ok(view)
}

fn run_case(set: &PolicySet, file: &FixtureFile, case: &Case) -> Result<(), CaseError> {
    let now = case
        .now
        .as_deref()
        .or(file.now.as_deref())
        .ok_or_else(|| CaseError::Fixture("no `now` (in the case or the file)".into()))?;
    let now_ms = parse_time(now, "now")?;
    let msg = message_view(&case.message)?;
    let failed = |err: PolicyError| CaseError::Failed(format!("the policy failed: {err}"));
    let got = match file.policy {
        PolicyKind::Content => Got::Content(set.check_content(&msg, now_ms).map_err(failed)?),
        PolicyKind::Routing => {
            let carriers: Vec<CarrierView> = case
                .carriers
                .as_ref()
                .or(file.carriers.as_ref())
                .ok_or_else(|| CaseError::Fixture("routing cases need `carriers`".into()))?
                .iter()
                .map(CarrierView::from)
                .collect();
            Got::Route(set.route(&msg, &carriers, now_ms).map_err(failed)?)
        }
        PolicyKind::Pacing => {
            let carrier = case
                .carrier
                .as_ref()
                .or(file.carrier.as_ref())
                .ok_or_else(|| CaseError::Fixture("pacing cases need a `carrier`".into()))?;
            Got::Pace(
                set.pace(&msg, &CarrierView::from(carrier), now_ms)
                    .map_err(failed)?,
            )
        }
    };
    let matches = match (&case.expect, &got) {
        (Expected::Allow, Got::Content(ContentDecision::Allow)) => true,
        (
            Expected::Reject { code, reason },
            Got::Content(ContentDecision::Reject {
                code: got_code,
                reason: got_reason,
            })
            | Got::Route(RouteDecision::Reject {
                code: got_code,
                reason: got_reason,
            }),
        ) => code == got_code && reason.as_ref().is_none_or(|r| r == got_reason),
        (Expected::Rewrite { text }, Got::Content(ContentDecision::Rewrite { text: got })) => {
            text == got
        }
        (
            Expected::Route { carriers, sender },
            Got::Route(RouteDecision::Route {
                carriers: got_carriers,
                sender: got_sender,
            }),
        ) => carriers == got_carriers && sender.as_ref().is_none_or(|s| s == got_sender),
        (Expected::Pace { keys }, Got::Pace(PaceDecision::Keys(got_keys))) => {
            keys.len() == got_keys.len()
                && keys.iter().zip(got_keys).all(|(want, got)| {
                    want.key == got.key
                        && want.burst == got.burst
                        && expected_rate(want).is_ok_and(|rate| close(rate, got.rate_per_sec))
                })
        }
        (Expected::Defer { until }, Got::Pace(PaceDecision::DeferUntil(got_until))) => {
            parse_time(until, "until")? == *got_until
        }
        _ => false,
    };
    for key in match &case.expect {
        Expected::Pace { keys } => keys.as_slice(),
        _ => &[],
    } {
        expected_rate(key).map_err(CaseError::Fixture)?;
    }
    if matches {
        Ok(())
    } else {
        Err(CaseError::Failed(format!(
            "expected {}, got {}",
            describe_expected(&case.expect),
            got.describe()
        )))
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn expected_rate(key: &ExpectedKey) -> Result<f64, String> {
    match (&key.rate, key.rate_per_sec) {
        (Some(rate), None) => parse_rate(rate)
            .ok_or_else(|| format!("rate `{rate}` must look like 3/day, 10/minute or 50/second")),
        (None, Some(rate)) => Ok(rate),
        _ => Err(format!(
            "key `{}`: give `rate` (like \"3/day\") or `rate_per_sec`, one of them",
            key.key
        )),
    }
}

fn parse_rate(rate: &str) -> Option<f64> {
    let (count, unit) = rate.split_once('/')?;
    let count: f64 = count.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "second" | "s" => 1.0,
        "minute" | "min" => 60.0,
        "hour" | "h" => 3_600.0,
        "day" | "d" => 86_400.0,
        _ => return None,
    };
    Some(count / seconds)
}

fn format_rate(rate_per_sec: f64) -> String {
    for (unit, seconds) in [
        ("second", 1.0),
        ("minute", 60.0),
        ("hour", 3_600.0),
        ("day", 86_400.0),
    ] {
        let count = rate_per_sec * seconds;
        if count >= 1.0 && close(count, count.round()) {
            return format!("{}/{unit}", count.round());
        }
    }
    format!("{rate_per_sec}/second")
}

enum Got {
    Content(ContentDecision),
    Route(RouteDecision),
    Pace(PaceDecision),
}

impl Got {
    fn describe(&self) -> String {
        match self {
            Got::Content(ContentDecision::Allow) => "allow".into(),
            Got::Content(ContentDecision::Reject { code, reason })
            | Got::Route(RouteDecision::Reject { code, reason }) => {
                format!("reject {code} (\"{reason}\")")
            }
            Got::Content(ContentDecision::Rewrite { text }) => format!("rewrite to \"{text}\""),
            Got::Route(RouteDecision::Route { carriers, sender }) => format!(
                "route to [{}]{}",
                carriers.join(", "),
                sender
                    .as_ref()
                    .map(|s| format!(" as \"{s}\""))
                    .unwrap_or_default()
            ),
            Got::Pace(PaceDecision::Keys(keys)) => format!(
                "limits [{}]",
                keys.iter()
                    .map(|k| format!(
                        "{} {} burst {}",
                        k.key,
                        format_rate(k.rate_per_sec),
                        k.burst
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Got::Pace(PaceDecision::DeferUntil(ms)) => {
                format!("defer until {}", crate::time::to_rfc3339(*ms))
            }
        }
    }
}

fn describe_expected(e: &Expected) -> String {
    match e {
        Expected::Allow => "allow".into(),
        Expected::Reject { code, reason } => match reason {
            Some(reason) => format!("reject {code} (\"{reason}\")"),
            None => format!("reject {code}"),
        },
        Expected::Rewrite { text } => format!("rewrite to \"{text}\""),
        Expected::Route { carriers, sender } => format!(
            "route to [{}]{}",
            carriers.join(", "),
            match sender {
                Some(Some(s)) => format!(" as \"{s}\""),
                Some(None) => " with no sender".into(),
                None => String::new(),
            }
        ),
        Expected::Pace { keys } => format!(
            "limits [{}]",
            keys.iter()
                .map(|k| format!(
                    "{} {} burst {}",
                    k.key,
                    k.rate
                        .clone()
                        .unwrap_or_else(|| format_rate(k.rate_per_sec.unwrap_or(0.0))),
                    k.burst
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Expected::Defer { until } => format!("defer until {until}"),
    }
}
