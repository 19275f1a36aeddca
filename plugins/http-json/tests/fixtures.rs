//! Runs every fixture in `tests/fixtures/` with the SDK's test kit.

#[test]
fn fixtures() {
    let ran = pigeon_sdk::testkit::run_fixture_dir::<http_json::HttpJson>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures"
    ));
    assert!(ran >= 12, "only {ran} fixtures ran");
}
