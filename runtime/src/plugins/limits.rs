//! What one plugin call may use, and the per-call store state that enforces it.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, pigeon::carrier::host, types};

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size any one linear memory of a call's instance may grow to, in bytes
    /// (a Rust plugin has one).
    pub memory_bytes: usize,
    /// Wall-clock time a call may run (measured in epoch ticks, so it is
    /// enforced to within one tick).
    pub deadline: Duration,
    /// Elements in any one table.
    pub table_elements: usize,
    /// `log` calls honoured per plugin call; later ones are dropped.
    pub logs_per_call: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 32 << 20,
            deadline: Duration::from_millis(100),
            table_elements: 20_000,
            logs_per_call: 64,
        }
    }
}

/// Who a call is for: the carrier, and where that carrier reaches Pigeon.
#[derive(Debug, Clone)]
pub struct Caller {
    pub carrier: Arc<str>,
    /// The carrier's callback URL (`host.callback-url`).
    pub callback_url: Arc<str>,
}

/// What a plugin's stdout and stderr keep (a panic message fits).
const OUTPUT_BYTES: usize = 8192;

/// The data of one call's store: who is calling, the limiter, and WASI with
/// no files, no network, no environment, and stdout/stderr kept in memory.
pub(super) struct CallState {
    pub carrier: Arc<str>,
    callback_url: Arc<str>,
    pub limiter: Limiter,
    logs_left: u32,
    wasi: WasiCtx,
    table: ResourceTable,
    output: MemoryOutputPipe,
}

impl CallState {
    pub fn new(caller: &Caller, limits: &Limits) -> Self {
        let output = MemoryOutputPipe::new(OUTPUT_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            output,
            carrier: caller.carrier.clone(),
            callback_url: caller.callback_url.clone(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                table_elements: limits.table_elements,
                denied: false,
            },
            logs_left: limits.logs_per_call,
        }
    }
}

impl CallState {
    /// What the plugin wrote to stdout and stderr, on one line (a panic
    /// message, typically).
    pub fn output(&self) -> Option<String> {
        let bytes = self.output.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!lines.is_empty()).then(|| lines.join(" "))
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses growth past the caps and remembers that it did, so a trap that
/// follows (Rust aborts when an allocation fails) is reported as what it is.
pub(super) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    /// A growth was refused during this call.
    pub denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.table_elements;
        self.denied |= !allowed;
        Ok(allowed)
    }
}

/// Longest plugin log line kept; the rest is cut.
const MAX_LOG_CHARS: usize = 2048;

impl host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        let message = match message.char_indices().nth(MAX_LOG_CHARS) {
            Some((cut, _)) => &message[..cut],
            None => &message,
        };
        let carrier = &*self.carrier;
        match level {
            Level::Trace => tracing::trace!(target: "pigeon::plugin", carrier, "{message}"),
            Level::Debug => tracing::debug!(target: "pigeon::plugin", carrier, "{message}"),
            Level::Info => tracing::info!(target: "pigeon::plugin", carrier, "{message}"),
            Level::Warn => tracing::warn!(target: "pigeon::plugin", carrier, "{message}"),
            Level::Error => tracing::error!(target: "pigeon::plugin", carrier, "{message}"),
        }
    }

    fn callback_url(&mut self) -> String {
        self.callback_url.to_string()
    }
}

/// The types interface has no functions.
impl types::Host for CallState {}
