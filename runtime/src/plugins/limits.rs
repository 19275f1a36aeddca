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
    /// Text the plugin is given that must not reach the log: the
    /// credentials in the carrier's settings and its callback secret.
    pub secrets: Arc<[String]>,
}

/// Shortest setting value taken for a credential: shorter ones (`"json"`,
/// `"1"`) are too common to cut out of a line without garbling it.
const MIN_SECRET_CHARS: usize = 6;

impl Caller {
    pub fn new(carrier: Arc<str>, callback_url: &str, settings: &serde_json::Value) -> Self {
        let mut secrets = Vec::new();
        collect_strings(settings, &mut secrets);
        // The secret is the path segment after `/callback/`.
        if let Some((_, rest)) = callback_url.split_once("/callback/")
            && let Some(secret) = rest.split('/').next()
        {
            secrets.push(secret.to_owned());
        }
        secrets.retain(|s| s.chars().count() >= MIN_SECRET_CHARS);
        // Longest first, so a secret containing another is cut whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self {
            carrier,
            callback_url: callback_url.into(),
            secrets: secrets.into(),
        }
    }
}

fn collect_strings(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => into.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, into)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, into)),
        _ => {}
    }
}

/// Shortest run of digits masked in a plugin's log line.
const MIN_MASKED_DIGITS: usize = 4;

/// A plugin's log line or output as it may be logged. What a plugin writes
/// is text the host cannot vouch for: a careless plugin echoes the request
/// it built, with the message's text and the carrier's credentials in it.
/// So the host cuts out what it knows is secret (the carrier's credentials
/// and callback secret, the texts of the messages in this call) and masks
/// every run of 4 or more digits, which covers what it cannot know: an OTP
/// in an inbound message a callback carries, a phone number. Carrier ids
/// made of digits are masked too; that is the price of a log that never
/// holds a code.
pub(super) fn scrub(line: &str, secrets: &[String], texts: &[String]) -> String {
    let mut line = line.to_owned();
    for secret in secrets.iter().chain(texts) {
        if !secret.is_empty() && line.contains(secret.as_str()) {
            line = line.replace(secret.as_str(), "[redacted]");
        }
    }
    let mut out = String::with_capacity(line.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().count() >= MIN_MASKED_DIGITS {
            out.extend(digits.chars().map(|_| '\u{2022}'));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in line.chars() {
        if c.is_numeric() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// What a plugin's stdout and stderr keep (a panic message fits).
const OUTPUT_BYTES: usize = 8192;

/// The data of one call's store: who is calling, the limiter, and WASI with
/// no files, no network, no environment, and stdout/stderr kept in memory.
pub(super) struct CallState {
    pub carrier: Arc<str>,
    callback_url: Arc<str>,
    secrets: Arc<[String]>,
    /// The texts of the messages this call is given (see [`scrub`]).
    texts: Arc<[String]>,
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
            secrets: caller.secrets.clone(),
            texts: Arc::from([]),
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
    /// Keeps `texts` (messages' bodies) out of what this call logs.
    pub fn hide_all(&mut self, texts: &Arc<[String]>) {
        self.texts = texts.clone();
    }

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
        (!lines.is_empty()).then(|| scrub(&lines.join(" "), &self.secrets, &self.texts))
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
        let message = scrub(message, &self.secrets, &self.texts);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_lines_lose_secrets_texts_and_codes() {
        let caller = Caller::new(
            "c".into(),
            "http://127.0.0.1:1/v1/carriers/c/callback/CallbackSecret123/",
            &serde_json::json!({"api_key": "key-AbCdEf", "format": "json", "n": [ "nested-Secret" ]}),
        );
        let texts: Vec<String> = vec!["Hello Ann, see you at noon".into()];
        let line = scrub(
            "POST key-AbCdEf nested-Secret /callback/CallbackSecret123 body=Hello Ann, see you at noon \
             code 771204 to +84912345678 format=json part 1/2",
            &caller.secrets,
            &texts,
        );
        for gone in [
            "key-AbCdEf",
            "nested-Secret",
            "CallbackSecret123",
            "Hello Ann",
            "771204",
            "84912345678",
        ] {
            assert!(!line.contains(gone), "{gone}: {line}");
        }
        assert!(line.contains("format=json part 1/2"), "{line}");
        assert!(line.contains("code ••••••"), "{line}");
    }
}
