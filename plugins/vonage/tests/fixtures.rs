//! Runs every fixture in `tests/fixtures/` with the SDK's test kit.

#[test]
fn fixtures() {
    let ran = pigeon_sdk::testkit::run_fixture_dir::<vonage::Vonage>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures"
    ));
    assert!(ran >= 12, "only {ran} fixtures ran");
}
