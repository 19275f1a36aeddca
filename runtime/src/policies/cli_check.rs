//! `pigeon policy check [DIR]`: compiles the set and runs its tests, as a
//! reload would.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{PoliciesConfig, PolicyError, PolicySet};

/// Prints `ok` with the digest, or the error as `file:line:col: message`
/// with the offending line; exits non-zero on error.
pub fn check_command(dir: &Path) -> ExitCode {
    let deadline = Duration::from_millis(PoliciesConfig::default().deadline_ms);
    match PolicySet::load(dir, deadline) {
        Ok((set, reports)) => {
            println!(
                "{}: ok: {} files, {} tests passed, digest {}",
                dir.display(),
                set.files().len(),
                reports.len(),
                set.digest()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            print_error(dir, &err);
            ExitCode::FAILURE
        }
    }
}

/// The error, and for one with a place, the line it points at with a caret
/// under the column.
pub(super) fn print_error(dir: &Path, err: &PolicyError) {
    eprintln!("{err}");
    let Some(located) = err.located() else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(dir.join(&located.file)) else {
        return;
    };
    if let Some(line) = text.lines().nth(located.line.max(1) - 1) {
        let number = located.line.max(1).to_string();
        eprintln!("{number} | {line}");
        let indent: String = line
            .chars()
            .take(located.col.max(1) - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        eprintln!("{} | {indent}^", " ".repeat(number.len()));
    }
}
