//! The wasmtime engine, loading plugins, and running one call with limits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Enabled, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig, Store,
    Trap,
};

use super::bindings::{Carrier as Bindings, CarrierPre, types};
use super::carrier::{CallbackRequest, wit_callback};
use super::limits::{CallState, Caller, Limits};

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Plugin calls that may be in flight at once, over every plugin. Each holds
/// one instance from wasmtime's pooling allocator while it runs, and the
/// pool is sized for this many (below). Calls beyond it wait for a free
/// instance, up to their deadline, and then fail ([`CallError::Busy`]).
///
/// A call is CPU-bound and short, so more calls in flight than cores only
/// queue in the scheduler instead of here: 64 is far more than the dispatcher
/// needs on any machine Pigeon targets, and costs address space only (see
/// [`pooling`]).
const CALLS_IN_FLIGHT: u32 = 64;

/// Per call, the most of each resource the pool provides (summed over the
/// pool, not capped per call). A call of the simulator, a Rust
/// `wasm32-wasip2` component, takes 2 memories and 4 tables (its module's and
/// those of the WASI preview 1 adapter linked into it) and a few core
/// instances. A plugin that needs more than its share still runs while
/// others need less; when the pool runs out of one of them, the call fails
/// at once ([`CallError::Busy`]).
const CORE_INSTANCES_PER_CALL: u32 = 8;
const MEMORIES_PER_CALL: u32 = 2;
const TABLES_PER_CALL: u32 = 4;

/// Elements in any one table of the pool: [`Limits::table_elements`] cannot
/// go past it (the default does not).
const POOL_TABLE_ELEMENTS: usize = 20_000;

/// Bytes of each memory (and table) kept mapped, and reset in place, when
/// its instance is done, where the kernel can tell which pages a call wrote
/// (`PAGEMAP_SCAN`, Linux 6.7). A call of the simulator writes about four
/// pages; resetting just those beats giving them back to the kernel and
/// faulting them in again at the next call. A call that writes more has the
/// rest decommitted. Also the most a warm, unused slot keeps resident.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// One wasmtime engine for every plugin, with a thread that advances its
/// epoch so calls can be interrupted. Cheap to clone; the thread stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    stop: Arc<AtomicBool>,
    slots: CallSlots,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    pub fn new() -> Result<Self, LoadError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
        let engine = wasmtime::Engine::new(&config).map_err(|e| LoadError::Engine(chain(&e)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("pigeon-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                stop,
                slots: CallSlots::new(CALLS_IN_FLIGHT),
            }),
        })
    }

    pub(super) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }
}

/// Instances come from a pool made once, instead of being mapped and
/// unmapped for every call: a fresh instance then costs a few page resets
/// instead of `mmap`, `munmap` (with its TLB shootdown on every core) and
/// page faults. Each memory keeps wasmtime's default 4 GiB reservation and
/// guard, so compiled code needs no bounds checks and any memory cap up to
/// 4 GiB works; the pool reserves (but does not commit) that much address
/// space for each of its memories, about 0.5 TiB in all.
fn pooling() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(CALLS_IN_FLIGHT)
        .total_core_instances(CALLS_IN_FLIGHT * CORE_INSTANCES_PER_CALL)
        .total_memories(CALLS_IN_FLIGHT * MEMORIES_PER_CALL)
        .total_tables(CALLS_IN_FLIGHT * TABLES_PER_CALL)
        .table_elements(POOL_TABLE_ELEMENTS)
        .max_unused_warm_slots(CALLS_IN_FLIGHT);
    // Without PAGEMAP_SCAN, keeping memory resident means `memset`ting all of
    // it at every call: the kernel's `madvise` is cheaper then.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
    }
    pool
}

/// A counting semaphore over the pool's instances, so a call beyond
/// [`CALLS_IN_FLIGHT`] waits for one instead of failing at once.
struct CallSlots {
    free: Mutex<u32>,
    freed: Condvar,
}

impl CallSlots {
    fn new(count: u32) -> Self {
        Self {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    /// A slot, waiting at most `patience` for one.
    fn acquire(&self, patience: Duration) -> Option<CallSlot<'_>> {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (mut free, _) = self
            .freed
            .wait_timeout_while(free, patience, |free| *free == 0)
            .unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(CallSlot(self))
    }
}

struct CallSlot<'a>(&'a CallSlots);

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// What a plugin says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub contract_version: String,
    pub capabilities: Vec<String>,
    /// Most messages one batch submission takes (1: one per request).
    pub max_batch: u32,
}

impl From<types::Info> for PluginInfo {
    fn from(info: types::Info) -> Self {
        Self {
            name: info.name,
            version: info.version,
            contract_version: info.contract_version,
            capabilities: info.capabilities,
            max_batch: info.max_batch.max(1),
        }
    }
}

/// Counters of one plugin, over every carrier that uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Calls into the plugin (including failed ones).
    pub calls: u64,
    /// Calls that trapped (other than on a deadline or the memory cap).
    pub traps: u64,
    /// Calls stopped at the deadline.
    pub deadlines: u64,
    /// Calls that failed because the memory cap refused an allocation.
    pub memory_exceeded: u64,
    /// Calls that found no free instance until their deadline.
    pub busy: u64,
    /// Successful reloads from disk.
    pub reloads: u64,
    /// Reloads that failed (the previous version kept running).
    pub reload_failures: u64,
}

#[derive(Default)]
struct Counters {
    /// When the plugin was last put in quarantine (Unix ms; 0: never).
    quarantined_at_ms: std::sync::atomic::AtomicI64,
    calls: AtomicU64,
    traps: AtomicU64,
    deadlines: AtomicU64,
    memory_exceeded: AtomicU64,
    busy: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {path} is not a usable carrier component: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("plugin {path} failed in describe: {source}")]
    Describe { path: PathBuf, source: CallError },
    #[error(
        "plugin {path} was built for contract {found}, this Pigeon hosts {}",
        super::CONTRACT_VERSION
    )]
    Contract { path: PathBuf, found: String },
    #[error("carrier `{carrier}`: invalid settings: {}", problems.join("; "))]
    Settings {
        carrier: String,
        problems: Vec<String>,
    },
    #[error("carrier `{carrier}`: settings could not be checked: {source}")]
    Validate { carrier: String, source: CallError },
    #[error("carrier `{carrier}`: invalid base URL `{url}`: {message}")]
    BaseUrl {
        carrier: String,
        url: String,
        message: String,
    },
}

/// Why one call into a plugin failed. The plugin stays loaded; the next call
/// gets a fresh instance.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("plugin `{plugin}` ran past its {deadline_ms} ms deadline in {function}")]
    Deadline {
        plugin: String,
        function: &'static str,
        deadline_ms: u128,
    },
    #[error("plugin `{plugin}` exceeded its memory cap of {limit_bytes} bytes in {function}")]
    MemoryLimit {
        plugin: String,
        function: &'static str,
        limit_bytes: usize,
    },
    #[error("plugin `{plugin}` trapped in {function}: {message}")]
    Trap {
        plugin: String,
        function: &'static str,
        message: String,
    },
    /// No instance was free in the pool: all of `CALLS_IN_FLIGHT` stayed
    /// in use for the call's whole deadline, or the calls in flight held all
    /// of one of its resources.
    #[error(
        "plugin `{plugin}` could not run {function}: every plugin instance was in use (at most {CALLS_IN_FLIGHT} calls at once)"
    )]
    Busy {
        plugin: String,
        function: &'static str,
    },
}

/// One loaded version of a plugin file.
pub(super) struct Loaded {
    pre: CarrierPre<CallState>,
    pub info: PluginInfo,
    stamp: Option<FileStamp>,
}

/// Enough of a file's metadata to notice it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    pub(super) fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// A carrier plugin loaded from a `.wasm` component: compiled and linked
/// once, instantiated afresh for every call.
pub struct Plugin {
    engine: PluginEngine,
    path: PathBuf,
    /// Label for logs and errors: the file stem.
    label: Arc<str>,
    limits: Limits,
    current: ArcSwap<Loaded>,
    counters: Counters,
    reload_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("info", &self.current.load().info)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compiles and links the component at `path`, and checks its
    /// `describe` answer against the contract this host implements.
    /// Blocking (compiling takes a while): at start-up, or on a blocking
    /// thread.
    pub fn load(
        engine: &PluginEngine,
        path: impl Into<PathBuf>,
        limits: Limits,
    ) -> Result<Arc<Self>, LoadError> {
        let path = path.into();
        let label: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into())
            .into();
        let loaded = load_file(engine, &path, &label, &limits)?;
        tracing::info!(
            plugin = %loaded.info.name,
            version = %loaded.info.version,
            path = %path.display(),
            "plugin loaded"
        );
        Ok(Arc::new(Self {
            engine: engine.clone(),
            path,
            label,
            limits,
            current: ArcSwap::from_pointee(loaded),
            counters: Counters::default(),
            reload_error: Mutex::new(None),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What the version now in use said about itself.
    pub fn info(&self) -> PluginInfo {
        self.current.load().info.clone()
    }

    /// The version in use's `max-batch`.
    pub fn max_batch(&self) -> usize {
        self.current.load().info.max_batch as usize
    }

    pub fn stats(&self) -> PluginStats {
        let c = &self.counters;
        PluginStats {
            calls: c.calls.load(Ordering::Relaxed),
            traps: c.traps.load(Ordering::Relaxed),
            deadlines: c.deadlines.load(Ordering::Relaxed),
            memory_exceeded: c.memory_exceeded.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            reloads: c.reloads.load(Ordering::Relaxed),
            reload_failures: c.reload_failures.load(Ordering::Relaxed),
        }
    }

    /// Marks the plugin as one whose calls should not run on an async
    /// worker for a while (one ran into its deadline, or needed WASI I/O).
    pub fn quarantine(&self) {
        self.counters
            .quarantined_at_ms
            .store(crate::time::now_ms(), Ordering::Relaxed);
    }

    /// Whether [`Plugin::quarantine`] was called within `window`.
    pub fn quarantined(&self, window: Duration) -> bool {
        let at = self.counters.quarantined_at_ms.load(Ordering::Relaxed);
        at != 0 && crate::time::now_ms() - at < window.as_millis() as i64
    }

    /// Why the last reload failed, until one succeeds.
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads the file if its size or modification time changed. New calls
    /// use the new version, calls in flight finish on the old one; a file
    /// that fails to load leaves the old version in use and the error in
    /// [`Plugin::reload_error`]. Returns whether a new version was swapped in.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = FileStamp::of(&self.path);
        if stamp.is_none() || stamp == self.current.load().stamp {
            return false;
        }
        self.reload()
    }

    /// Loads the file again and swaps it in (see [`Plugin::reload_if_changed`]).
    pub fn reload(&self) -> bool {
        let mut error = self.reload_error.lock().unwrap_or_else(|e| e.into_inner());
        match load_file(&self.engine, &self.path, &self.label, &self.limits) {
            Ok(loaded) => {
                tracing::info!(
                    plugin = %loaded.info.name,
                    version = %loaded.info.version,
                    path = %self.path.display(),
                    "plugin reloaded"
                );
                self.current.store(Arc::new(loaded));
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                *error = None;
                true
            }
            Err(e) => {
                // Do not try the same broken file again until it changes.
                let stamp = FileStamp::of(&self.path);
                let old = self.current.load_full();
                self.current.store(Arc::new(Loaded {
                    pre: old.pre.clone(),
                    info: old.info.clone(),
                    stamp,
                }));
                tracing::error!(path = %self.path.display(), error = %e, "plugin reload failed; keeping the previous version");
                self.counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                *error = Some(e.to_string());
                false
            }
        }
    }

    /// Runs `f` on a fresh instance of the current version, within the
    /// limits. Blocking: call it from a blocking thread.
    pub(super) fn call<R>(
        &self,
        caller: &Caller,
        function: &'static str,
        f: impl FnOnce(&Bindings, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let loaded = self.current.load_full();
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let result = call_in(
            &self.engine,
            &loaded.pre,
            &loaded.info.name,
            caller,
            &self.limits,
            function,
            f,
        );
        if let Err(e) = &result {
            if matches!(e, CallError::Deadline { .. }) {
                self.quarantine();
            }
            let counter = match e {
                CallError::Deadline { .. } => &self.counters.deadlines,
                CallError::MemoryLimit { .. } => &self.counters.memory_exceeded,
                CallError::Trap { .. } => &self.counters.traps,
                CallError::Busy { .. } => &self.counters.busy,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(carrier = &*caller.carrier, error = %e, "plugin call failed");
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CallError::Deadline { .. }) => "deadline",
            Err(CallError::MemoryLimit { .. }) => "memory",
            Err(CallError::Trap { .. }) => "trap",
            Err(CallError::Busy { .. }) => "busy",
        };
        ::metrics::counter!("pigeon_plugin_calls_total",
            "plugin" => loaded.info.name.clone(), "outcome" => outcome)
        .increment(1);
        result
    }
}

/// Direct calls, outside any carrier: for benchmarks and tools. Each is one
/// call on a fresh instance within the limits, exactly as a carrier's calls
/// are made (and counted in [`Plugin::stats`]). Blocking. (Submissions have
/// one driver, the carrier's: see `PluginCarrier::submit_offline`.)
impl Plugin {
    /// `describe`.
    pub fn describe_now(&self) -> Result<PluginInfo, CallError> {
        let info = self.call(&self.direct_caller(), "describe", |b, s| b.call_describe(s))?;
        Ok(info.into())
    }

    /// `validate-settings`: `Ok(Err(problems))` when the plugin refuses them.
    pub fn validate_settings_now(
        &self,
        settings: &str,
    ) -> Result<Result<(), Vec<String>>, CallError> {
        let settings = settings.to_owned();
        self.call(&self.direct_caller(), "validate-settings", |b, s| {
            b.call_validate_settings(s, &settings)
        })
    }

    /// `parse-callback`: `Ok(Ok(n))` when the plugin accepted the callback,
    /// with `n` delivery reports and inbound messages in it; `Ok(Err(why))`
    /// when it rejected it.
    pub fn parse_callback_now(
        &self,
        settings: &str,
        request: &CallbackRequest,
    ) -> Result<Result<usize, String>, CallError> {
        let Some(wit) = wit_callback(request) else {
            return Ok(Err(format!("method {} is not supported", request.method)));
        };
        let settings = settings.to_owned();
        let reply = self.call(&self.direct_caller(), "parse-callback", |b, s| {
            b.call_parse_callback(s, &settings, &wit)
        })?;
        Ok(reply.map(|r| r.reports.len() + r.inbound.len()))
    }

    fn direct_caller(&self) -> Caller {
        Caller::new(self.label.clone(), "", &serde_json::Value::Null)
    }
}

fn load_file(
    engine: &PluginEngine,
    path: &Path,
    label: &Arc<str>,
    limits: &Limits,
) -> Result<Loaded, LoadError> {
    let stamp = FileStamp::of(path);
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |e: wasmtime::Error| LoadError::Invalid {
        path: path.to_owned(),
        message: chain(&e),
    };
    let component = Component::new(engine.wasmtime(), &bytes).map_err(invalid)?;
    let mut linker = Linker::<CallState>::new(engine.wasmtime());
    Bindings::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
        .map_err(invalid)?;
    // Rust's standard library imports WASI (stderr for panic messages,
    // clocks, random); the context in `CallState` grants nothing else.
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(invalid)?;
    let pre = linker.instantiate_pre(&component).map_err(invalid)?;
    let pre = CarrierPre::new(pre).map_err(invalid)?;
    let caller = Caller::new(label.clone(), "", &serde_json::Value::Null);
    let info = call_in(engine, &pre, label, &caller, limits, "describe", |b, s| {
        b.call_describe(s)
    })
    .map_err(|source| LoadError::Describe {
        path: path.to_owned(),
        source,
    })?;
    let info = PluginInfo::from(info);
    if !compatible(&info.contract_version) {
        return Err(LoadError::Contract {
            path: path.to_owned(),
            found: info.contract_version,
        });
    }
    Ok(Loaded { pre, info, stamp })
}

/// Same major and minor version (0.x contracts break on the minor).
fn compatible(version: &str) -> bool {
    let major_minor = |v: &str| {
        let mut it = v.split('.');
        (it.next().map(str::to_owned), it.next().map(str::to_owned))
    };
    major_minor(version) == major_minor(super::CONTRACT_VERSION)
}

fn call_in<R>(
    engine: &PluginEngine,
    pre: &CarrierPre<CallState>,
    plugin: &str,
    caller: &Caller,
    limits: &Limits,
    function: &'static str,
    f: impl FnOnce(&Bindings, &mut Store<CallState>) -> wasmtime::Result<R>,
) -> Result<R, CallError> {
    // Declared before the store, so dropped after it: the store gives its
    // instance back to the pool when dropped.
    let Some(_slot) = engine.inner.slots.acquire(limits.deadline) else {
        return Err(CallError::Busy {
            plugin: plugin.to_owned(),
            function,
        });
    };
    let mut store = Store::new(engine.wasmtime(), CallState::new(caller, limits));
    let carrier = &caller.carrier;
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(deadline_ticks(limits.deadline));
    store.epoch_deadline_trap();
    let result = pre
        .instantiate(&mut store)
        .and_then(|bindings| f(&bindings, &mut store));
    if result.is_ok()
        && let Some(output) = store.data().output()
    {
        tracing::debug!(carrier = &**carrier, function, "plugin output: {output}");
    }
    result.map_err(|e| {
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            CallError::Deadline {
                plugin: plugin.to_owned(),
                function,
                deadline_ms: limits.deadline.as_millis(),
            }
        } else if e.is::<PoolConcurrencyLimitError>() {
            CallError::Busy {
                plugin: plugin.to_owned(),
                function,
            }
        } else if store.data().limiter.denied {
            CallError::MemoryLimit {
                plugin: plugin.to_owned(),
                function,
                limit_bytes: limits.memory_bytes,
            }
        } else {
            tracing::debug!(carrier = &**carrier, function, "plugin trap: {e:?}");
            let mut message = e.root_cause().to_string();
            if let Some(output) = store.data().output() {
                message = format!("{message}; output: {}", truncate(&output, 500));
            }
            CallError::Trap {
                plugin: plugin.to_owned(),
                function,
                message,
            }
        }
    })
}

fn truncate(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// An error and its causes on one line.
fn chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_beyond_the_pool_waits_for_a_slot_then_gives_up() {
        let slots = Arc::new(CallSlots::new(1));
        let held = slots.acquire(Duration::ZERO).unwrap();
        assert!(slots.acquire(Duration::from_millis(20)).is_none());

        // A slot freed while a call waits goes to that call.
        let waiter = std::thread::spawn({
            let slots = slots.clone();
            move || slots.acquire(Duration::from_secs(10)).is_some()
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert!(waiter.join().unwrap());
        assert!(slots.acquire(Duration::ZERO).is_some());
    }
}
