//! `pigeon policy test [DIR]`: runs the fixtures in `DIR/tests/` and
//! reports each case.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::cli_check::print_error;
use super::{PoliciesConfig, PolicySet, run_fixtures};

pub fn test_command(dir: &Path) -> ExitCode {
    let deadline = Duration::from_millis(PoliciesConfig::default().deadline_ms);
    let set = match PolicySet::compile(dir, deadline) {
        Ok(set) => set,
        Err(err) => {
            print_error(dir, &err);
            return ExitCode::FAILURE;
        }
    };
    let reports = match run_fixtures(&set, &dir.join("tests")) {
        Ok(reports) => reports,
        Err(err) => {
            print_error(dir, &err);
            return ExitCode::FAILURE;
        }
    };
    for report in &reports {
        println!("{report}");
    }
    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
    println!(
        "policy tests: {} passed, {failed} failed (of {})",
        reports.len() - failed,
        reports.len()
    );
    if reports.is_empty() {
        println!("no tests found in {}", dir.join("tests").display());
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
