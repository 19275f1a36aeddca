//! A policy set: content.rhai, routing.rhai and pacing.rhai (and the
//! `lib/` modules they import) compiled together, identified by a digest of
//! their files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Scope};
use sha2::{Digest, Sha256};

use super::decision::{self, ContentDecision, PaceDecision, RouteDecision};
use super::engine::{self, ENGINE, Failure};
use super::view::{CarrierView, MessageView};
use super::{Located, PolicyError, PolicyKind};

/// A compiled set of policies, ready to run. Immutable; replaced whole on
/// reload.
pub struct PolicySet {
    dir: PathBuf,
    digest: Arc<str>,
    files: Vec<String>,
    loaded_at_ms: i64,
    deadline: Duration,
    content: Compiled,
    routing: Compiled,
    pacing: Compiled,
}

/// One policy's compiled script.
struct Compiled {
    ast: AST,
    /// Line and column of the function the host calls.
    position: (usize, usize),
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("dir", &self.dir)
            .field("digest", &self.digest)
            .field("files", &self.files)
            .field("loaded_at_ms", &self.loaded_at_ms)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The `.rhai` files of a set, relative to `dir` and sorted: the three
/// policies, then `lib/*.rhai`.
fn policy_files(dir: &Path) -> Result<Vec<String>, PolicyError> {
    let mut files: Vec<String> = PolicyKind::ALL
        .iter()
        .map(|k| k.file().to_owned())
        .collect();
    let lib = dir.join("lib");
    match std::fs::read_dir(&lib) {
        Ok(entries) => {
            let mut libs = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| PolicyError::Io {
                    path: lib.clone(),
                    source,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".rhai") && !name.starts_with('.') {
                    libs.push(format!("lib/{name}"));
                }
            }
            libs.sort();
            files.extend(libs);
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(PolicyError::Io { path: lib, source }),
    }
    Ok(files)
}

impl PolicySet {
    /// Compiles the set in `dir`. Does not run its tests (see
    /// [`PolicySet::load`]). `deadline` is the wall-clock time one call may
    /// run.
    pub fn compile(dir: &Path, deadline: Duration) -> Result<Self, PolicyError> {
        let files = policy_files(dir)?;
        let mut hasher = Sha256::new();
        let mut sources = Vec::with_capacity(files.len());
        for file in &files {
            let text = read(&dir.join(file))?;
            // Name and length first, so that moving text between files
            // changes the digest.
            hasher.update(file.as_bytes());
            hasher.update([0]);
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
            sources.push(text);
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();

        let compile_deadline = Instant::now() + deadline.max(Duration::from_millis(100));
        let mut compiled = Vec::with_capacity(3);
        for (kind, source) in PolicyKind::ALL.iter().zip(&sources) {
            compiled.push(compile_policy(dir, *kind, source, compile_deadline)?);
        }
        let pacing = compiled.pop().expect("three policies");
        let routing = compiled.pop().expect("three policies");
        let content = compiled.pop().expect("three policies");
        Ok(Self {
            dir: dir.to_owned(),
            digest: digest.into(),
            files,
            loaded_at_ms: crate::time::now_ms(),
            deadline,
            content,
            routing,
            pacing,
        })
    }

    /// Compiles the set and runs the fixtures in `dir/tests/`; any failing
    /// case is an error.
    pub fn load(
        dir: &Path,
        deadline: Duration,
    ) -> Result<(Self, Vec<super::CaseReport>), PolicyError> {
        let set = Self::compile(dir, deadline)?;
        let reports = super::fixtures::run_fixtures(&set, &dir.join("tests"))?;
        let failed: Vec<&super::CaseReport> =
            reports.iter().filter(|r| r.outcome.is_err()).collect();
        if let Some(first) = failed.first() {
            return Err(PolicyError::TestsFailed {
                failed: failed.len(),
                total: reports.len(),
                first: first.to_string(),
            });
        }
        Ok((set, reports))
    }

    /// SHA-256 (hex) of the files' names and contents.
    pub fn digest(&self) -> &Arc<str> {
        &self.digest
    }

    /// The `.rhai` files, relative to the directory.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// When the set was compiled (Unix ms).
    pub fn loaded_at_ms(&self) -> i64 {
        self.loaded_at_ms
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `check(msg)`.
    pub fn check_content(
        &self,
        msg: &MessageView,
        now_ms: i64,
    ) -> Result<ContentDecision, PolicyError> {
        let kind = PolicyKind::Content;
        let answer = self.call(kind, &self.content, (msg.to_dynamic(now_ms),))?;
        decision::content_decision(answer).map_err(|message| answer_error(kind, message))
    }

    /// Runs `route(msg, carriers)`.
    pub fn route(
        &self,
        msg: &MessageView,
        carriers: &[CarrierView],
        now_ms: i64,
    ) -> Result<RouteDecision, PolicyError> {
        let kind = PolicyKind::Routing;
        let list: rhai::Array = carriers.iter().map(CarrierView::to_dynamic).collect();
        let answer = self.call(
            kind,
            &self.routing,
            (msg.to_dynamic(now_ms), Dynamic::from_array(list)),
        )?;
        let offered: Vec<&str> = carriers.iter().map(|c| c.name.as_str()).collect();
        decision::route_decision(answer, &offered).map_err(|message| answer_error(kind, message))
    }

    /// Runs `pace(msg, carrier)`.
    pub fn pace(
        &self,
        msg: &MessageView,
        carrier: &CarrierView,
        now_ms: i64,
    ) -> Result<PaceDecision, PolicyError> {
        let kind = PolicyKind::Pacing;
        let answer = self.call(
            kind,
            &self.pacing,
            (msg.to_dynamic(now_ms), carrier.to_dynamic()),
        )?;
        decision::pace_decision(answer).map_err(|message| answer_error(kind, message))
    }

    fn call(
        &self,
        kind: PolicyKind,
        entry: &Compiled,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, PolicyError> {
        let ast = &entry.ast;
        let _running = engine::enter(kind.file(), Instant::now() + self.deadline);
        // The script's top level (imports, constants) runs before the
        // function, in a fresh scope: calls share nothing.
        let mut scope = Scope::new();
        let started = Instant::now();
        let result = ENGINE.call_fn::<Dynamic>(&mut scope, ast, kind.function(), args);
        ::metrics::histogram!("pigeon_policy_duration_seconds", "policy" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        let outcome = result.map_err(|err| {
            let (mut located, failure) = engine::locate(kind.file(), &err);
            // Limits stop a script without a position: point at the
            // function that was running.
            if located.line == 0 && located.file == kind.file() {
                (located.line, located.col) = entry.position;
            }
            match failure {
                Failure::CutOff => PolicyError::CutOff(located),
                Failure::Error => PolicyError::Script(located),
            }
        });
        let label = match &outcome {
            Ok(_) => "ok",
            Err(PolicyError::CutOff(_)) => "cut_off",
            Err(_) => "error",
        };
        ::metrics::counter!("pigeon_policy_evaluations_total",
            "policy" => kind.as_str(), "outcome" => label)
        .increment(1);
        outcome
    }
}

fn answer_error(kind: PolicyKind, message: String) -> PolicyError {
    PolicyError::Answer {
        file: kind.file().to_owned(),
        message,
    }
}

fn compile_policy(
    dir: &Path,
    kind: PolicyKind,
    source: &str,
    deadline: Instant,
) -> Result<Compiled, PolicyError> {
    let file = kind.file();
    let (result, lib_error, _) = engine::with_lib_dir(dir, deadline, || {
        ENGINE.compile_into_self_contained(&Scope::new(), source)
    });
    let mut ast = match result {
        Ok(ast) => ast,
        Err(err) => {
            // An error inside a lib/ module is reported where it is.
            if let Some(located) = lib_error {
                return Err(PolicyError::Script(located));
            }
            let located = match *err {
                rhai::EvalAltResult::ErrorParsing(ref parse, pos) => Located {
                    file: file.to_owned(),
                    line: pos.line().unwrap_or(0),
                    col: pos.position().unwrap_or(0),
                    message: parse.to_string(),
                },
                ref other => engine::locate(file, other).0,
            };
            return Err(PolicyError::Script(located));
        }
    };
    ast.set_source(file);
    let declared = ast
        .iter_functions()
        .any(|f| f.name == kind.function() && f.params.len() == kind.arity());
    if !declared {
        return Err(PolicyError::Script(Located {
            file: file.to_owned(),
            line: 1,
            col: 1,
            message: format!(
                "the {} policy must define `{}`",
                kind.as_str(),
                kind.signature()
            ),
        }));
    }
    let signature = format!("fn {}(", kind.function());
    let position = source
        .lines()
        .enumerate()
        .find_map(|(i, line)| line.find(&signature).map(|col| (i + 1, col + 1)))
        .unwrap_or((1, 1));
    Ok(Compiled { ast, position })
}
