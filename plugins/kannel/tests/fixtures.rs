//! Runs every fixture in `tests/fixtures/` with the SDK's test kit.

#[test]
fn fixtures() {
    let ran = pigeon_sdk::testkit::run_fixture_dir::<kannel::Kannel>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures"
    ));
    assert!(ran >= 30, "only {ran} fixtures ran");
}
