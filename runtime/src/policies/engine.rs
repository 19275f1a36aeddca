//! The one Rhai engine every policy runs on: its limits, the functions
//! scripts can call, `print`/`debug` to tracing, and imports restricted to
//! `lib/`.
//!
//! Per-call state (the wall-clock deadline, the file being run, the set
//! being compiled) lives in thread-locals: a policy call runs start to end
//! on one thread, and the engine itself is shared and immutable.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Instant;

use chrono::{Datelike, TimeZone, Timelike};
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Module, ModuleResolver, Position,
    Scope,
};

/// What Rhai's module resolvers hand out (`Arc` under the `sync` feature).
type SharedModule = std::sync::Arc<Module>;

use super::Located;
use super::view::{ScriptCarrier, ScriptMessage};
use crate::log_limit::LogLimiter;

/// Every limit a script runs under, pinned here rather than left to Rhai's
/// defaults (which change between versions).
pub mod limits {
    /// Steps (Rhai operations) in one call: a routing call over ten
    /// carriers takes a few thousand.
    pub const MAX_OPERATIONS: u64 = 100_000;
    /// Nested function calls.
    pub const MAX_CALL_LEVELS: usize = 16;
    /// Nesting of expressions, at the top level and inside functions.
    pub const MAX_EXPR_DEPTH: usize = 32;
    pub const MAX_FN_EXPR_DEPTH: usize = 32;
    /// Longest string, in bytes (a 10-part UCS-2 message is under 3 KiB).
    pub const MAX_STRING_SIZE: usize = 16 * 1024;
    pub const MAX_ARRAY_SIZE: usize = 1024;
    pub const MAX_MAP_SIZE: usize = 256;
    /// Modules imported from `lib/` by one script.
    pub const MAX_MODULES: usize = 16;
    pub const MAX_VARIABLES: usize = 256;
    pub const MAX_FUNCTIONS: usize = 256;
    /// The deadline is checked every this many operations (reading the
    /// clock at every step would double the cost of a script).
    pub const DEADLINE_CHECK_EVERY: u64 = 256;
    /// `print` and `debug` lines one call may write to the log, and bytes.
    pub const MAX_PRINT_LINES: u32 = 8;
    pub const MAX_PRINT_BYTES: usize = 4 * 1024;
    /// Longest line kept; the rest is cut.
    pub const MAX_PRINT_LINE: usize = 512;
}

/// Lines of script output let through per policy file: 20 a second.
fn print_limiter(file: &str) -> &'static LogLimiter {
    static LIMITERS: [LogLimiter; 4] = [
        LogLimiter::new(1000, 20),
        LogLimiter::new(1000, 20),
        LogLimiter::new(1000, 20),
        LogLimiter::new(1000, 20),
    ];
    let index = match file {
        "content.rhai" => 0,
        "routing.rhai" => 1,
        "pacing.rhai" => 2,
        _ => 3,
    };
    &LIMITERS[index]
}

thread_local! {
    /// When the running call must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The policy file being run, for `print`.
    static RUNNING_FILE: Cell<&'static str> = const { Cell::new("") };
    /// Lines and bytes the running call has printed.
    static PRINTED: Cell<(u32, usize)> = const { Cell::new((0, 0)) };
    /// The set being compiled, for resolving `import`.
    static COMPILING: RefCell<Option<CompileContext>> = const { RefCell::new(None) };
}

/// The shared engine.
pub(crate) static ENGINE: LazyLock<Engine> = LazyLock::new(build_engine);

/// Marks the current thread as running `file` until `deadline`; undone on drop.
pub(crate) struct RunGuard(());

pub(crate) fn enter(file: &'static str, deadline: Instant) -> RunGuard {
    DEADLINE.with(|d| d.set(Some(deadline)));
    RUNNING_FILE.with(|f| f.set(file));
    PRINTED.with(|p| p.set((0, 0)));
    RunGuard(())
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
        RUNNING_FILE.with(|f| f.set(""));
    }
}

/// What `import` needs while one set is compiled.
struct CompileContext {
    lib_dir: PathBuf,
    modules: HashMap<String, SharedModule>,
    /// Modules being loaded, to refuse an import cycle.
    loading: Vec<String>,
    /// The first error inside a `lib/` file, with its place there (Rhai's
    /// error would point at the `import` line).
    error: Option<Located>,
    deadline: Instant,
}

/// Compiles with `import` resolving to `policies_dir/lib/`; returns the
/// first error found inside a `lib/` file, if any, with the result.
pub(crate) fn with_lib_dir<T>(
    policies_dir: &Path,
    deadline: Instant,
    compile: impl FnOnce() -> T,
) -> (T, Option<Located>, Vec<String>) {
    COMPILING.with(|c| {
        *c.borrow_mut() = Some(CompileContext {
            lib_dir: policies_dir.join("lib"),
            modules: HashMap::new(),
            loading: Vec::new(),
            error: None,
            deadline,
        })
    });
    let result = compile();
    let context = COMPILING.with(|c| c.borrow_mut().take());
    let (error, mut loaded) = match context {
        Some(context) => (context.error, context.modules.into_keys().collect()),
        None => (None, Vec::new()),
    };
    loaded.sort();
    (result, error, loaded)
}

/// `import "name" as name;` loads `lib/name.rhai`, and nothing else.
struct LibResolver;

fn runtime_error(message: impl Into<String>, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        pos,
    ))
}

impl ModuleResolver for LibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let valid_name = !path.is_empty()
            && path.len() <= 64
            && path
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(runtime_error(
                format!(
                    "cannot import \"{path}\": name a module in lib/ without its .rhai, e.g. import \"lists\" as lists;"
                ),
                pos,
            ));
        }
        let (file, deadline) = {
            let found = COMPILING.with(|c| {
                let context = c.borrow();
                let context = context.as_ref()?;
                if let Some(module) = context.modules.get(path) {
                    return Some(Ok(module.clone()));
                }
                if context.loading.iter().any(|m| m == path) {
                    return Some(Err(format!(
                        "lib/{path}.rhai imports itself (through {})",
                        context.loading.join(" -> ")
                    )));
                }
                Some(Err(String::new()))
            });
            match found {
                // All imports are resolved when the set is compiled; running
                // scripts only see those.
                None => {
                    return Err(runtime_error(
                        format!(
                            "cannot import \"{path}\" here: import modules at the top of a file, with a fixed name"
                        ),
                        pos,
                    ));
                }
                Some(Ok(module)) => return Ok(module),
                Some(Err(cycle)) if !cycle.is_empty() => return Err(runtime_error(cycle, pos)),
                Some(Err(_)) => COMPILING.with(|c| {
                    let mut context = c.borrow_mut();
                    let context = context.as_mut().expect("checked above");
                    context.loading.push(path.to_owned());
                    (
                        context.lib_dir.join(format!("{path}.rhai")),
                        context.deadline,
                    )
                }),
            }
        };
        let relative = format!("lib/{path}.rhai");
        let loaded = load_lib_module(engine, &file, &relative, deadline);
        COMPILING.with(|c| {
            let mut context = c.borrow_mut();
            let context = context.as_mut().expect("still compiling");
            context.loading.pop();
            match &loaded {
                Ok(module) => {
                    context.modules.insert(path.to_owned(), module.clone());
                }
                Err(located) => {
                    if context.error.is_none() {
                        context.error = Some(located.clone());
                    }
                }
            }
        });
        loaded.map_err(|located| runtime_error(located.to_string(), pos))
    }
}

fn load_lib_module(
    engine: &Engine,
    file: &Path,
    relative: &str,
    deadline: Instant,
) -> Result<SharedModule, Located> {
    let source = std::fs::read_to_string(file).map_err(|err| Located {
        file: relative.to_owned(),
        line: 0,
        col: 0,
        message: format!("cannot read: {err}"),
    })?;
    let mut ast = engine
        .compile(&source)
        .map_err(|err| parse_error(relative, &err))?;
    ast.set_source(relative);
    let previous = DEADLINE.with(|d| d.replace(Some(deadline)));
    let module = Module::eval_ast_as_new(Scope::new(), &ast, engine);
    DEADLINE.with(|d| d.set(previous));
    module
        .map(SharedModule::new)
        .map_err(|err| locate(relative, &err).0)
}

/// `file:line:col: message` for a syntax error.
pub(crate) fn parse_error(file: &str, err: &rhai::ParseError) -> Located {
    let pos = err.position();
    Located {
        file: file.to_owned(),
        line: pos.line().unwrap_or(0),
        col: pos.position().unwrap_or(0),
        message: err.err_type().to_string(),
    }
}

/// Whether a run-time error is a limit cutting the script off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Error,
    CutOff,
}

/// Where a run-time error happened (the innermost function's file and
/// position) and what it was.
pub(crate) fn locate(file: &str, err: &EvalAltResult) -> (Located, Failure) {
    let mut file = file.to_owned();
    let mut err = err;
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(_, source, inner, _) => {
                if !source.is_empty() {
                    file = source.clone();
                }
                err = inner;
            }
            EvalAltResult::ErrorInModule(_, inner, _) => err = inner,
            _ => break,
        }
    }
    let pos = err.position();
    let (message, failure) = match err {
        EvalAltResult::ErrorTooManyOperations(_) => (
            format!(
                "stopped after {} steps: is there a loop that never ends?",
                limits::MAX_OPERATIONS
            ),
            Failure::CutOff,
        ),
        EvalAltResult::ErrorTerminated(..) => (
            "stopped: ran longer than the time allowed for one call; is there a loop that never ends?"
                .to_owned(),
            Failure::CutOff,
        ),
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => {
            (value.clone().into_string().unwrap_or_default(), Failure::Error)
        }
        other => (without_position(&other.to_string()), Failure::Error),
    };
    (
        Located {
            file,
            line: pos.line().unwrap_or(0),
            col: pos.position().unwrap_or(0),
            message,
        },
        failure,
    )
}

/// Rhai's message without the ` (line 3, position 7)` it ends with: the
/// position is reported in front, as `file:line:col`.
fn without_position(message: &str) -> String {
    match message.rfind(" (line ") {
        Some(at) if message.ends_with(')') => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}

fn build_engine() -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits::MAX_OPERATIONS)
        .set_max_call_levels(limits::MAX_CALL_LEVELS)
        .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH)
        .set_max_string_size(limits::MAX_STRING_SIZE)
        .set_max_array_size(limits::MAX_ARRAY_SIZE)
        .set_max_map_size(limits::MAX_MAP_SIZE)
        .set_max_modules(limits::MAX_MODULES)
        .set_max_variables(limits::MAX_VARIABLES)
        .set_max_functions(limits::MAX_FUNCTIONS)
        // A misspelt variable or field is an error, not a silent `()`.
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true)
        .set_module_resolver(LibResolver);
    // Scripts are what is in their files: no code built from strings.
    engine.disable_symbol("eval");
    engine.on_progress(|operations| {
        if operations % limits::DEADLINE_CHECK_EVERY != 0 {
            return None;
        }
        let late = DEADLINE.with(|d| d.get().is_some_and(|d| Instant::now() >= d));
        late.then(|| Dynamic::from("deadline"))
    });
    engine.on_print(|text| {
        let file = RUNNING_FILE.with(Cell::get);
        if let Some((text, suppressed)) = admit_print(file, text) {
            tracing::info!(target: "pigeon::policies::script", file, suppressed, "{text}");
        }
    });
    engine.on_debug(|text, source, pos| {
        let file = source.unwrap_or_else(|| RUNNING_FILE.with(Cell::get));
        if let Some((text, suppressed)) = admit_print(file, text) {
            tracing::debug!(
                target: "pigeon::policies::script",
                file,
                line = pos.line().unwrap_or(0),
                suppressed,
                "{text}"
            );
        }
    });
    super::view::register_types(&mut engine);
    register_helpers(&mut engine);
    engine
}

/// Whether a line a script prints may reach the log: within the call's
/// share and the policy's rate. Gives the line (cut to
/// `MAX_PRINT_LINE`) and how many lines the rate limit held back before it.
fn admit_print<'a>(file: &str, text: &'a str) -> Option<(&'a str, u64)> {
    let (lines, bytes) = PRINTED.with(Cell::get);
    let mut end = text.len().min(limits::MAX_PRINT_LINE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    if lines >= limits::MAX_PRINT_LINES || bytes + text.len() > limits::MAX_PRINT_BYTES {
        return None;
    }
    PRINTED.with(|p| p.set((lines + 1, bytes + text.len())));
    let suppressed = print_limiter(file).allow()?;
    Some((text, suppressed))
}

fn map<const N: usize>(pairs: [(&str, Dynamic); N]) -> Map {
    pairs
        .into_iter()
        .map(|(key, value)| (key.into(), value))
        .collect()
}

fn number(value: &Dynamic) -> Option<f64> {
    value
        .as_float()
        .ok()
        .or_else(|| value.as_int().ok().map(|i| i as f64))
}

/// The functions scripts call to answer, and helpers that keep scripts
/// readable. Documented for script authors in docs/policies.md.
fn register_helpers(engine: &mut Engine) {
    // Decisions.
    engine.register_fn("allow", || map([("decision", "allow".into())]));
    engine.register_fn(
        "reject",
        |code: ImmutableString, reason: ImmutableString| {
            map([
                ("decision", "reject".into()),
                ("code", code.into()),
                ("reason", reason.into()),
            ])
        },
    );
    engine.register_fn("rewrite", |text: ImmutableString| {
        map([("decision", "rewrite".into()), ("text", text.into())])
    });
    engine.register_fn("route_to", |carriers: Array| {
        map([
            ("decision", "route".into()),
            ("carriers", Dynamic::from_array(carriers)),
            ("sender", Dynamic::UNIT),
        ])
    });
    engine.register_fn("route_to", |carriers: Array, sender: ImmutableString| {
        map([
            ("decision", "route".into()),
            ("carriers", Dynamic::from_array(carriers)),
            ("sender", sender.into()),
        ])
    });
    engine.register_fn("defer_until", |until_ms: i64| {
        map([("decision", "defer".into()), ("until", until_ms.into())])
    });
    engine.register_fn("limit", |key: ImmutableString, rate: f64, burst: i64| {
        map([
            ("key", key.into()),
            ("rate_per_sec", rate.into()),
            ("burst", burst.into()),
        ])
    });
    engine.register_fn("limit", |key: ImmutableString, rate: i64, burst: i64| {
        map([
            ("key", key.into()),
            ("rate_per_sec", (rate as f64).into()),
            ("burst", burst.into()),
        ])
    });

    // Rates, in messages per second, from readable units.
    for (name, seconds) in [
        ("per_second", 1.0),
        ("per_minute", 60.0),
        ("per_hour", 3_600.0),
        ("per_day", 86_400.0),
    ] {
        engine.register_fn(name, move |n: i64| n as f64 / seconds);
        engine.register_fn(name, move |n: f64| n / seconds);
    }

    engine.register_fn("next_local_hour", next_local_hour);
    engine.register_fn("has_link_to", |text: &str, domains: Array| {
        has_link_to(text, &domains)
    });
    engine.register_fn("mentions_any", |text: &str, phrases: Array| {
        mentions_any(text, &phrases)
    });
    engine.register_fn("replace_each", |text: &str, swaps: Map| {
        let mut out = text.to_owned();
        for (from, to) in swaps {
            if !from.is_empty() {
                out = out.replace(from.as_str(), &to.to_string());
            }
        }
        out
    });
    engine.register_fn("serves", |carrier: &mut ScriptCarrier, country: &str| {
        carrier.serves(country)
    });
    engine.register_fn("sort_by", sort_by);
    engine.register_fn("names_of", names_of);
    engine.register_fn("rank_carriers", rank_carriers);
}

/// The names of the carriers worth trying for a message to `country`, best
/// first: healthy carriers that serve it and have a price for it, those
/// delivering at least `min_delivery_rate` before the others, each group
/// ordered by `order_by`: `"cost"` (price per delivered message: price /
/// delivery rate) or `"loss"` (share of messages not delivered). The
/// delivery rate counted on is the last 15 minutes' when the carrier sent
/// 20 messages or more then, else the last 24 hours', else 90%. What the
/// shipped routing policy describes, done natively: in script it cost about
/// 4 µs per carrier.
fn rank_carriers(
    carriers: Array,
    country: &str,
    min_delivery_rate: f64,
    order_by: &str,
) -> Result<Array, Box<EvalAltResult>> {
    let by_loss = match order_by {
        "cost" => false,
        "loss" => true,
        other => {
            return Err(runtime_error(
                format!("rank_carriers: order_by must be \"cost\" or \"loss\", not {other:?}"),
                Position::NONE,
            ));
        }
    };
    let mut good = Vec::new();
    let mut last_resort = Vec::new();
    for item in &carriers {
        let Some(carrier) = item.read_lock::<ScriptCarrier>() else {
            return Err(runtime_error(
                "rank_carriers: pass the `carriers` list route() was given",
                Position::NONE,
            ));
        };
        let view = carrier.view();
        let Some(price) = view.price else { continue };
        if !view.healthy || !carrier.serves(country) {
            continue;
        }
        let delivery = match (view.last_15m.sent, view.last_15m.delivery_rate) {
            (sent, Some(rate)) if sent >= 20 => rate,
            _ => view.last_24h.delivery_rate.unwrap_or(0.90),
        };
        let key = if by_loss {
            1.0 - delivery
        } else {
            price / delivery.max(0.01)
        };
        let entry = (key, Dynamic::from(carrier.name().clone()));
        if delivery >= min_delivery_rate {
            good.push(entry);
        } else {
            last_resort.push(entry);
        }
    }
    // Stable: carriers that tie keep their configured order.
    good.sort_by(|a, b| a.0.total_cmp(&b.0));
    last_resort.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(good
        .into_iter()
        .chain(last_resort)
        .map(|(_, name)| name)
        .collect())
}

/// The `name` of each item: carriers, or maps with a `name`.
fn names_of(list: &mut Array) -> Result<Array, Box<EvalAltResult>> {
    list.iter()
        .map(|item| {
            if let Some(carrier) = item.read_lock::<ScriptCarrier>() {
                return Some(carrier.name().clone().into());
            }
            item.read_lock::<Map>()
                .and_then(|m| m.get("name").cloned())
                .filter(Dynamic::is_string)
        })
        .map(|name| {
            name.ok_or_else(|| runtime_error("names_of: every item needs a `name`", Position::NONE))
        })
        .collect()
}

/// The Unix time (ms) at which the recipient's clock next shows `hour`:00,
/// from the message's time zone and `now`.
fn next_local_hour(msg: &mut ScriptMessage, hour: i64) -> Result<i64, Box<EvalAltResult>> {
    if !(0..24).contains(&hour) {
        return Err(runtime_error(
            format!("next_local_hour: hour must be 0 to 23, not {hour}"),
            Position::NONE,
        ));
    }
    Ok(next_local_hour_ms(msg.zone(), msg.now(), hour as u32))
}

/// Next time strictly after `now_ms` when `zone` shows `hour`:00. On a day
/// the clock skips that hour (DST), the first instant after the gap.
pub(crate) fn next_local_hour_ms(zone: chrono_tz::Tz, now_ms: i64, hour: u32) -> i64 {
    let Some(now) = chrono::DateTime::from_timestamp_millis(now_ms) else {
        return now_ms;
    };
    let local = now.with_timezone(&zone);
    let mut day = local.date_naive();
    if local.hour() >= hour {
        day = day.succ_opt().unwrap_or(day);
    }
    for _ in 0..3 {
        let Some(naive) = day.and_hms_opt(hour, 0, 0) else {
            break;
        };
        match zone.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                return t.timestamp_millis();
            }
            chrono::LocalResult::None => {
                // Skipped by a DST change: an hour later exists.
                if let chrono::LocalResult::Single(t) =
                    zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                {
                    return t.timestamp_millis();
                }
            }
        }
        day = day.succ_opt().unwrap_or(day);
    }
    now_ms
}

/// Local hour, minute and weekday ("Mon".."Sun") of `now_ms` in `zone`.
pub(crate) fn local_clock(zone: chrono_tz::Tz, now_ms: i64) -> (u32, u32, &'static str) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    match chrono::DateTime::from_timestamp_millis(now_ms) {
        Some(t) => {
            let local = t.with_timezone(&zone);
            (
                local.hour(),
                local.minute(),
                DAYS[local.weekday().num_days_from_monday() as usize],
            )
        }
        None => (0, 0, "Mon"),
    }
}

/// Whether `text` has a link whose host is one of `domains` or under one
/// (`bit.ly` matches `bit.ly/x`, `https://www.bit.ly/x`, not `habit.ly`).
pub(crate) fn has_link_to(text: &str, domains: &Array) -> bool {
    let domains: Vec<String> = domains
        .iter()
        .filter_map(|d| {
            d.read_lock::<ImmutableString>()
                .map(|d| d.to_ascii_lowercase())
        })
        .collect();
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | '"' | '\''))
        .filter_map(link_host)
        .any(|host| {
            domains.iter().any(|d| {
                host == *d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            })
        })
}

/// The host of a word that looks like a link (`bit.ly/abc`, `https://x.io`).
fn link_host(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .trim_end_matches(['.', ',', ';', '!']);
    let host = host.strip_prefix("www.").unwrap_or(host);
    (host.contains('.') && host.len() > 2).then(|| host.to_owned())
}

fn mentions_any(text: &str, phrases: &Array) -> bool {
    let text = text.to_lowercase();
    phrases.iter().any(|p| {
        p.read_lock::<ImmutableString>()
            .is_some_and(|p| !p.is_empty() && text.contains(&p.to_lowercase()))
    })
}

/// A copy of `list` (maps) ordered by the number in `field`, smallest first;
/// equal ones keep their order.
fn sort_by(list: &mut Array, field: &str) -> Result<Array, Box<EvalAltResult>> {
    let mut keyed = Vec::with_capacity(list.len());
    for item in list.iter() {
        let key = item
            .read_lock::<Map>()
            .and_then(|m| m.get(field).and_then(number))
            .ok_or_else(|| {
                runtime_error(
                    format!("sort_by: every item needs a number in `{field}`"),
                    Position::NONE,
                )
            })?;
        keyed.push((key, item.clone()));
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(keyed.into_iter().map(|(_, item)| item).collect())
}

#[cfg(test)]
mod print_tests {
    use super::*;

    #[test]
    fn one_call_prints_a_few_short_lines_at_most() {
        let _running = enter(
            "tests.rhai",
            Instant::now() + std::time::Duration::from_secs(1),
        );
        let long = "é".repeat(1000);
        let (first, _) = admit_print("tests.rhai", &long).unwrap();
        assert!(first.len() <= limits::MAX_PRINT_LINE, "{}", first.len());
        let admitted = (0..1000)
            .filter(|_| admit_print("tests.rhai", "again").is_some())
            .count();
        assert_eq!(admitted + 1, limits::MAX_PRINT_LINES as usize);
        // The next call has its own share.
        let _next = enter(
            "tests.rhai",
            Instant::now() + std::time::Duration::from_secs(1),
        );
        assert!(admit_print("tests.rhai", "new call").is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Array {
        items.iter().map(|s| Dynamic::from(s.to_string())).collect()
    }

    #[test]
    fn links_match_whole_hosts() {
        let shorteners = strings(&["bit.ly", "t.co"]);
        assert!(has_link_to("Your code: https://bit.ly/abc", &shorteners));
        assert!(has_link_to("see BIT.LY/x.", &shorteners));
        assert!(has_link_to("go to www.bit.ly/x", &shorteners));
        assert!(has_link_to("(t.co/abc)", &shorteners));
        assert!(!has_link_to("habit.ly/x and chat.co/y", &shorteners));
        assert!(!has_link_to("Your code is 123456", &shorteners));
    }

    #[test]
    fn next_local_hour_is_strictly_ahead() {
        let vn: chrono_tz::Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        // 2026-11-26 22:30 in Hanoi (15:30Z) -> 2026-11-27 08:00 (01:00Z).
        let now = crate::time::parse_rfc3339("2026-11-26T15:30:00Z").unwrap();
        let next = next_local_hour_ms(vn, now, 8);
        assert_eq!(crate::time::to_rfc3339(next), "2026-11-27T01:00:00.000Z");
        // 05:00 in Hanoi -> 08:00 the same day.
        let now = crate::time::parse_rfc3339("2026-11-26T22:00:00Z").unwrap();
        let next = next_local_hour_ms(vn, now, 8);
        assert_eq!(crate::time::to_rfc3339(next), "2026-11-27T01:00:00.000Z");
        assert_eq!(local_clock(vn, now), (5, 0, "Fri"));
    }

    #[test]
    fn dst_gap_moves_to_the_next_hour() {
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        // 2026-03-08: 02:00 does not exist in New York.
        let now = crate::time::parse_rfc3339("2026-03-08T05:00:00Z").unwrap();
        let next = next_local_hour_ms(ny, now, 2);
        assert_eq!(crate::time::to_rfc3339(next), "2026-03-08T07:00:00.000Z");
    }
}
