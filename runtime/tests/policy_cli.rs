//! The policy tools and hot reload, end to end: `pigeon policy check` and
//! `pigeon policy test` run as the real binary on the shipped policies and
//! on broken copies; the watcher picks up edits and keeps the last good set
//! when an edit is broken.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pigeon::model::MessageType;
use pigeon::policies::{
    CarrierView, ContentDecision, MessageView, PaceDecision, Policies, PoliciesConfig, PolicyKind,
    ReloadOutcome,
};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Replaces the first `from` in `file` with `to`; returns the 1-based line
/// of the edit.
fn edit(dir: &Path, file: &str, from: &str, to: &str) -> usize {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("{file} has no {from:?}"));
    let line = text[..at].lines().count().max(1);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    line
}

fn pigeon(args: &[&str], dir: &Path) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

fn rfc3339(s: &str) -> i64 {
    pigeon::time::parse_rfc3339(s).unwrap()
}

/// Polls `condition` every 20 ms for up to `limit`.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

#[test]
fn check_and_test_pass_on_the_shipped_policies() {
    let (output, text) = pigeon(&["policy", "check"], &shipped());
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ok:") && text.contains("digest"), "{text}");

    let (output, text) = pigeon(&["policy", "test"], &shipped());
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ok    tests/quiet_hours.json"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn a_syntax_error_is_reported_with_file_line_and_column() {
    let dir = common::shipped_policies_copy();
    let line = edit(
        dir.path(),
        "routing.rhai",
        "let names = rank_carriers(",
        "let names = rank_carriers(,",
    );
    let (output, text) = pigeon(&["policy", "check"], dir.path());
    assert!(!output.status.success(), "{text}");
    assert!(text.contains(&format!("routing.rhai:{line}:")), "{text}");
    // The offending line is shown under the message.
    assert!(text.contains("let names = rank_carriers(,"), "{text}");

    let (output, text) = pigeon(&["policy", "test"], dir.path());
    assert!(!output.status.success(), "{text}");
    assert!(text.contains(&format!("routing.rhai:{line}:")), "{text}");
}

#[test]
fn a_failing_case_is_reported_and_fails_the_check() {
    let dir = common::shipped_policies_copy();
    edit(
        dir.path(),
        "pacing.rhai",
        "msg.local_hour >= 21",
        "msg.local_hour >= 23",
    );
    let (output, text) = pigeon(&["policy", "test"], dir.path());
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("FAIL  tests/quiet_hours.json: marketing at 22:30 in Hanoi"),
        "{text}"
    );
    let (output, text) = pigeon(&["policy", "check"], dir.path());
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("policy tests failed"), "{text}");
}

#[test]
fn an_endless_loop_is_cut_off() {
    let dir = common::shipped_policies_copy();
    edit(
        dir.path(),
        "content.rhai",
        "fn check(msg) {",
        "fn check(msg) {\n    let n = 0;\n    while true { n += 1; }",
    );
    // Through the tool: every content case fails, none hangs.
    let started = Instant::now();
    let (output, text) = pigeon(&["policy", "test"], dir.path());
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("is there a loop that never ends?"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Through the engine: fail closed, counted.
    std::fs::remove_dir_all(dir.path().join("tests")).unwrap();
    let policies = Policies::load(PoliciesConfig {
        dir: dir.path().to_owned(),
        ..PoliciesConfig::default()
    })
    .unwrap();
    let msg = MessageView::new("+84912345678", MessageType::Otp, "Your code is 1234");
    let (decision, _) = policies.check_content(&msg, 0);
    assert_eq!(
        decision,
        ContentDecision::Reject {
            code: "policy_error".into(),
            reason: "the content policy failed on this message; it was not accepted".into()
        }
    );
    assert_eq!(policies.counters().cut_offs(PolicyKind::Content), 1);
}

#[test]
fn quiet_hours_defer_marketing_until_08_local() {
    let policies = Policies::load(PoliciesConfig {
        dir: shipped(),
        ..PoliciesConfig::default()
    })
    .unwrap();
    let carrier = CarrierView::new("hk-direct");
    let marketing = MessageView::new(
        "+85261234567",
        MessageType::Marketing,
        "New arrivals. Reply STOP to opt out",
    );
    // 02:15 in Hong Kong: held until 08:00 Hong Kong time, not dropped.
    let (decision, _) = policies.pace(&marketing, &carrier, rfc3339("2026-11-26T18:15:00Z"));
    assert_eq!(
        decision,
        PaceDecision::DeferUntil(rfc3339("2026-11-27T00:00:00Z"))
    );
    // At 08:00 it goes.
    let (decision, _) = policies.pace(&marketing, &carrier, rfc3339("2026-11-27T00:00:00Z"));
    assert!(matches!(decision, PaceDecision::Keys(_)), "{decision:?}");
    // An OTP at 02:15 goes at once.
    let otp = MessageView::new("+85261234567", MessageType::Otp, "Your code is 1234");
    let (decision, _) = policies.pace(&otp, &carrier, rfc3339("2026-11-26T18:15:00Z"));
    assert!(matches!(decision, PaceDecision::Keys(_)), "{decision:?}");
}

#[test]
fn the_watcher_reloads_edits_and_keeps_the_last_good_set() {
    let dir = common::shipped_policies_copy();
    let policies = Arc::new(
        Policies::load(PoliciesConfig {
            dir: dir.path().to_owned(),
            debounce_ms: 100,
            ..PoliciesConfig::default()
        })
        .unwrap(),
    );
    let _watcher = policies.watch().unwrap();
    let first = policies.active().digest().clone();
    let otp = MessageView::new("+84912345678", MessageType::Otp, "Code 1234: s.id/x");
    assert_eq!(policies.check_content(&otp, 0).0, ContentDecision::Allow);

    // A good edit, saved the way many editors do: write a temporary file,
    // then rename it over the original.
    let lists = dir.path().join("lib/lists.rhai");
    let text =
        std::fs::read_to_string(&lists)
            .unwrap()
            .replacen("\"t.ly\",", "\"t.ly\", \"s.id\",", 1);
    let temporary = dir.path().join("lib/.lists.rhai.tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, &lists).unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || policies.active().digest()
            != &first),
        "the edit was not picked up within 2 s: {:?}",
        policies.history()
    );
    let second = policies.active().digest().clone();
    assert!(matches!(
        policies.check_content(&otp, 0),
        (ContentDecision::Reject { .. }, ref digest) if *digest == second
    ));

    // A broken edit: reported with file:line:col, the good set stays.
    let line = edit(
        dir.path(),
        "routing.rhai",
        "let names = rank_carriers(",
        "let names = rank_carriers(,",
    );
    assert!(
        wait_for(Duration::from_secs(2), || policies.last_error().is_some()),
        "the broken edit was not noticed within 2 s: {:?}",
        policies.history()
    );
    let error = policies.last_error().unwrap();
    assert!(
        error.starts_with(&format!("routing.rhai:{line}:")),
        "{error}"
    );
    assert_eq!(policies.active().digest(), &second);
    assert_eq!(
        policies.history().last().unwrap().outcome,
        ReloadOutcome::Failed
    );
    assert!(matches!(
        policies.check_content(&otp, 0).0,
        ContentDecision::Reject { .. }
    ));
}
