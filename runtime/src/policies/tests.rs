//! The engine against the shipped policies and broken copies of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::model::MessageType;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the shipped policies in a temporary directory.
fn copy_of_shipped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn config(dir: &Path) -> PoliciesConfig {
    PoliciesConfig {
        dir: dir.to_owned(),
        fallback_carriers: vec!["backup".into()],
        ..PoliciesConfig::default()
    }
}

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn rfc3339(s: &str) -> i64 {
    crate::time::parse_rfc3339(s).unwrap()
}

#[test]
fn shipped_policies_load_and_pass_their_tests() {
    let (set, reports) = PolicySet::load(&shipped(), Duration::from_millis(20)).unwrap();
    assert!(reports.len() >= 15, "{} cases", reports.len());
    assert!(reports.iter().all(|r| r.outcome.is_ok()));
    assert_eq!(set.digest().len(), 64);
    assert_eq!(
        set.files(),
        [
            "content.rhai",
            "routing.rhai",
            "pacing.rhai",
            "lib/countries.rhai",
            "lib/lists.rhai"
        ]
    );
}

#[test]
fn quiet_hours_defer_marketing_to_08_local() {
    let policies = Policies::load(config(&shipped())).unwrap();
    let msg = MessageView::new("+84912345678", MessageType::Marketing, "Sale! Reply STOP");
    let carrier = CarrierView::new("viettel");
    // 23:10 in Hanoi.
    let (decision, digest) = policies.pace(&msg, &carrier, rfc3339("2026-11-26T16:10:00Z"));
    assert_eq!(
        decision,
        PaceDecision::DeferUntil(rfc3339("2026-11-27T01:00:00Z"))
    );
    assert_eq!(&*digest, &**policies.active().digest());
    // 09:00 in Hanoi: sent, under the daily cap of 3.
    let (decision, _) = policies.pace(&msg, &carrier, rfc3339("2026-11-26T02:00:00Z"));
    let PaceDecision::Keys(keys) = decision else {
        panic!("not deferred at 09:00: {decision:?}");
    };
    let daily = keys
        .iter()
        .find(|k| k.key == "marketing-per-recipient:+84912345678")
        .unwrap();
    assert_eq!(daily.burst, 3);
    assert!((daily.rate_per_sec - 3.0 / 86_400.0).abs() < 1e-12);
}

#[test]
fn a_broken_edit_keeps_the_old_set_and_names_the_place() {
    let dir = copy_of_shipped();
    let policies = Policies::load(config(dir.path())).unwrap();
    let before = policies.active().digest().clone();
    edit(
        dir.path(),
        "routing.rhai",
        "let order_by = if msg.type == \"otp\" { \"loss\" } else { \"cost\" };",
        "let order_by = if msg.type == \"otp\" { \"loss\" } else { \"cost\" ;",
    );
    let err = policies.reload().unwrap_err();
    let located = err.located().expect("a place").clone();
    assert_eq!(located.file, "routing.rhai");
    assert!(located.line > 1 && located.col > 0, "{located}");
    assert!(err.to_string().starts_with("routing.rhai:"), "{err}");
    assert_eq!(policies.active().digest(), &before);
    assert_eq!(policies.last_error(), Some(err.to_string()));
    let history = policies.history();
    assert_eq!(history.last().unwrap().outcome, ReloadOutcome::Failed);
    assert_eq!(policies.counters().reloads_failed, 1);
    // The old rules still decide.
    let msg = MessageView::new("+84912345678", MessageType::Otp, "Code 1234 bit.ly/x");
    let (decision, digest) = policies.check_content(&msg, 0);
    assert!(
        matches!(decision, ContentDecision::Reject { code, .. } if code == "otp_link_shortener")
    );
    assert_eq!(digest, before);
}

#[test]
fn a_failing_test_keeps_the_old_set() {
    let dir = copy_of_shipped();
    let policies = Policies::load(config(dir.path())).unwrap();
    // Quiet hours from 23:00: the quiet-hours tests fail.
    edit(
        dir.path(),
        "pacing.rhai",
        "msg.local_hour >= 21",
        "msg.local_hour >= 23",
    );
    let err = policies.reload().unwrap_err();
    assert!(matches!(err, PolicyError::TestsFailed { .. }), "{err}");
    assert!(err.to_string().contains("quiet_hours.json"), "{err}");
}

#[test]
fn a_good_edit_is_swapped_in() {
    let dir = copy_of_shipped();
    let policies = Policies::load(config(dir.path())).unwrap();
    let before = policies.active().digest().clone();
    edit(
        dir.path(),
        "lib/lists.rhai",
        "\"t.ly\",",
        "\"t.ly\", \"s.id\",",
    );
    let set = policies.reload().unwrap();
    assert_ne!(set.digest(), &before);
    assert_eq!(
        policies.history().last().unwrap().outcome,
        ReloadOutcome::Loaded
    );
    let msg = MessageView::new("+84912345678", MessageType::Otp, "Code 1234 s.id/x");
    assert!(matches!(
        policies.check_content(&msg, 0).0,
        ContentDecision::Reject { .. }
    ));
    // Unchanged files: recorded, not swapped.
    policies.reload().unwrap();
    assert_eq!(
        policies.history().last().unwrap().outcome,
        ReloadOutcome::Unchanged
    );
}

#[test]
fn an_error_in_a_lib_module_is_reported_there() {
    let dir = copy_of_shipped();
    edit(
        dir.path(),
        "lib/countries.rhai",
        "export const DEFAULT = #{",
        "export const DEFAULT = #{ ,",
    );
    let err = PolicySet::compile(dir.path(), Duration::from_millis(20)).unwrap_err();
    let located = err.located().unwrap();
    assert_eq!(located.file, "lib/countries.rhai", "{err}");
    assert!(located.line > 1, "{err}");
}

#[test]
fn imports_come_only_from_lib() {
    let dir = copy_of_shipped();
    std::fs::write(dir.path().join("secret.rhai"), "export const X = 1;").unwrap();
    edit(
        dir.path(),
        "content.rhai",
        "import \"lists\" as lists;",
        "import \"lists\" as lists;\nimport \"../secret\" as secret;",
    );
    let err = PolicySet::compile(dir.path(), Duration::from_millis(20)).unwrap_err();
    assert!(
        err.to_string().contains("cannot import \"../secret\""),
        "{err}"
    );
    assert!(err.to_string().starts_with("content.rhai:"), "{err}");
    edit(dir.path(), "content.rhai", "\"../secret\"", "\"missing\"");
    let err = PolicySet::compile(dir.path(), Duration::from_millis(20)).unwrap_err();
    assert!(err.to_string().contains("lib/missing.rhai"), "{err}");
}

#[test]
fn eval_is_disabled_and_variables_are_strict() {
    let dir = copy_of_shipped();
    edit(
        dir.path(),
        "content.rhai",
        "allow()\n}",
        "eval(\"allow()\")\n}",
    );
    assert!(PolicySet::compile(dir.path(), Duration::from_millis(20)).is_err());
    let dir = copy_of_shipped();
    edit(dir.path(), "content.rhai", "allow()\n}", "alow\n}");
    let err = PolicySet::compile(dir.path(), Duration::from_millis(20)).unwrap_err();
    assert!(err.to_string().contains("alow"), "{err}");
}

#[test]
fn an_endless_loop_is_cut_off_counted_and_fails_closed() {
    let dir = copy_of_shipped();
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    edit(
        dir.path(),
        "content.rhai",
        "fn check(msg) {",
        "fn check(msg) {\n    let n = 0;\n    while n >= 0 { n += 1; }",
    );
    let policies = Policies::load(config(dir.path())).unwrap();
    let msg = MessageView::new("+84912345678", MessageType::Otp, "Code 1234");
    let started = std::time::Instant::now();
    let (decision, _) = policies.check_content(&msg, 0);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(decision, ContentDecision::Reject { code, .. } if code == "policy_error"));
    let counters = policies.counters();
    assert_eq!(counters.cut_offs(PolicyKind::Content), 1);
    assert_eq!(counters.errors(PolicyKind::Content), 0);
    let err = policies.active().check_content(&msg, 0).unwrap_err();
    assert!(matches!(err, PolicyError::CutOff(_)), "{err}");
    let fn_line = std::fs::read_to_string(dir.path().join("content.rhai"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("fn check("))
        .unwrap()
        + 1;
    assert!(
        err.to_string()
            .starts_with(&format!("content.rhai:{fn_line}:1: stopped")),
        "{err}"
    );
}

#[test]
fn the_wall_clock_cap_stops_a_slow_script() {
    let dir = copy_of_shipped();
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    // Each step is slow (string work), so the clock runs out before the
    // operation count.
    edit(
        dir.path(),
        "content.rhai",
        "fn check(msg) {",
        "fn check(msg) {\n    let s = \"\";\n    for i in 0..90000 { s = msg.text + msg.text + msg.text; s.to_upper(); s.to_lower(); }",
    );
    let mut config = config(dir.path());
    config.deadline_ms = 1;
    let policies = Policies::load(config).unwrap();
    let text = "x".repeat(2000);
    let msg = MessageView::new("+84912345678", MessageType::Otp, &text);
    let err = policies.active().check_content(&msg, 0).unwrap_err();
    assert!(matches!(err, PolicyError::CutOff(_)), "{err}");
    assert!(err.to_string().contains("time allowed"), "{err}");
}

#[test]
fn routing_and_pacing_errors_fall_back() {
    let dir = copy_of_shipped();
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    edit(
        dir.path(),
        "routing.rhai",
        "let order_by = ",
        "let x = 1 / 0;\n    let order_by = ",
    );
    edit(
        dir.path(),
        "pacing.rhai",
        "    limits\n}",
        "    limits.push(#{ key: \"x\", rate_per_sec: 1, burst: 1, brust: 2 });\n    limits\n}",
    );
    let policies = Policies::load(config(dir.path())).unwrap();
    let msg = MessageView::new("+84912345678", MessageType::Transactional, "Hello");
    let mut carrier = CarrierView::new("viettel");
    carrier.tps = 40;
    carrier.price = Some(0.02);
    let (route, _) = policies.route(&msg, std::slice::from_ref(&carrier), 0);
    assert_eq!(
        route,
        RouteDecision::Route {
            carriers: vec!["backup".into()],
            sender: None
        }
    );
    let (pace, _) = policies.pace(&msg, &carrier, 0);
    assert_eq!(
        pace,
        PaceDecision::Keys(vec![PacingKey {
            key: "carrier:viettel".into(),
            rate_per_sec: 40.0,
            burst: 40
        }])
    );
    let counters = policies.counters();
    assert_eq!(counters.errors(PolicyKind::Routing), 1);
    assert_eq!(counters.errors(PolicyKind::Pacing), 1);
    let err = policies.active().pace(&msg, &carrier, 0).unwrap_err();
    assert!(err.to_string().contains("unknown key `brust`"), "{err}");
    let err = policies.active().route(&msg, &[carrier], 0).unwrap_err();
    assert!(err.to_string().starts_with("routing.rhai:"), "{err}");
}

#[test]
fn a_missing_function_is_named() {
    let dir = copy_of_shipped();
    edit(
        dir.path(),
        "pacing.rhai",
        "fn pace(msg, carrier)",
        "fn pace_it(msg, carrier)",
    );
    let err = PolicySet::compile(dir.path(), Duration::from_millis(20)).unwrap_err();
    assert!(err.to_string().contains("fn pace(msg, carrier)"), "{err}");
}

#[test]
fn messages_and_carriers_are_read_only_and_printable() {
    let dir = copy_of_shipped();
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    edit(
        dir.path(),
        "routing.rhai",
        "fn route(msg, carriers) {",
        "fn route(msg, carriers) {\n    print(msg);\n    debug(carriers[0]);\n    if msg.type == \"otp\" { return route_to(names_of(carriers)); }",
    );
    edit(
        dir.path(),
        "content.rhai",
        "fn check(msg) {",
        "fn check(msg) {\n    msg.text = \"changed\";",
    );
    let policies = Policies::load(config(dir.path())).unwrap();
    let carriers = [CarrierView::new("a"), CarrierView::new("b")];
    let otp = MessageView::new("+84912345678", MessageType::Otp, "Code 1234");
    let (route, _) = policies.route(&otp, &carriers, 0);
    assert_eq!(
        route,
        RouteDecision::Route {
            carriers: vec!["a".into(), "b".into()],
            sender: None
        }
    );
    let err = policies.active().check_content(&otp, 0).unwrap_err();
    assert!(err.to_string().starts_with("content.rhai:"), "{err}");
    assert!(err.to_string().contains("text"), "{err}");
}

#[test]
fn routing_sees_the_sender_its_pool_and_which_carriers_may_carry_it() {
    let dir = copy_of_shipped();
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    edit(
        dir.path(),
        "routing.rhai",
        "fn route(msg, carriers) {",
        "fn route(msg, carriers) {\n    if msg.sender_kind == \"short_code\" && msg.pool == \"pool_1\" {\n        return route_to(carriers.filter(|c| c.carries_sender).map(|c| c.name));\n    }",
    );
    let policies = Policies::load(config(dir.path())).unwrap();
    let mut msg = MessageView::new("+84912345678", MessageType::Otp, "Code 1234");
    msg.from = Some("8088".into());
    msg.sender_kind = Some("short_code".into());
    msg.pool = Some("pool_1".into());
    let mut other = CarrierView::new("other");
    other.carries_sender = false;
    let carriers = [other, CarrierView::new("provider")];
    let (route, _) = policies.route(&msg, &carriers, 0);
    assert_eq!(
        route,
        RouteDecision::Route {
            carriers: vec!["provider".into()],
            sender: None
        }
    );
}

#[test]
fn content_rules_can_read_the_recipients_consent() {
    let dir = copy_of_shipped();
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    edit(
        dir.path(),
        "content.rhai",
        "fn check(msg) {",
        "fn check(msg) {\n    if msg.type == \"marketing\" && !msg.consent.marketing_consent {\n        return reject(\"needs_consent\", \"no consent on record\");\n    }",
    );
    let policies = Policies::load(config(dir.path())).unwrap();
    let mut msg = MessageView::new(
        "+84912345678",
        MessageType::Marketing,
        "Sale today. Reply STOP to opt out",
    );
    let (decision, _) = policies.check_content(&msg, 0);
    assert!(
        matches!(&decision, ContentDecision::Reject { code, .. } if code == "needs_consent"),
        "{decision:?}"
    );
    msg.consent = crate::compliance::ConsentView {
        opted_out: false,
        marketing_consent: true,
        consent_at: Some(1_700_000_000_000),
    };
    let (decision, _) = policies.check_content(&msg, 0);
    assert_eq!(decision, ContentDecision::Allow);
}
