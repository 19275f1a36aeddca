//! Runs every fixture in `tests/fixtures/` with Pigeon's test kit.

#[test]
fn fixtures() {
    pigeon_sdk::testkit::run_fixture_dir::<carrier_template::Acme>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures"
    ));
}
