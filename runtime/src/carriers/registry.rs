//! The carriers Pigeon sends through: each a plugin with its configuration,
//! pacing, callback secret and counters, and the choice of carrier for a
//! message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pacing::{Rate, SharedRate};
use super::sandbox::SandboxEndpoint;
use super::stats::CarrierStats;
use crate::config::{CarrierConfig, Config, SANDBOX_CARRIER};
use crate::plugins::{
    CarrierSpec, HttpClient, Limits, LoadError, Plugin, PluginCarrier, PluginEngine,
};
use crate::store::reports::AppliedEarly;
use crate::store::{MessageRecord, Store, StoreError, inbound};

/// Longest a submission waits for its carrier's rate or window before it
/// goes back to the queue instead (so a slow carrier does not hold up the
/// dispatcher's slots).
pub const MAX_PACING_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("carrier `{carrier}`: no plugin `{plugin}` (looked for {looked})")]
    UnknownPlugin {
        carrier: String,
        plugin: String,
        looked: String,
    },
    #[error("cannot start the sandbox carrier's endpoint: {0}")]
    Sandbox(std::io::Error),
}

/// What happened on one carrier, since start.
#[derive(Debug, Default)]
pub struct CarrierCounters {
    /// Submissions the carrier accepted, and their parts.
    pub submitted: AtomicU64,
    pub parts_submitted: AtomicU64,
    /// Submissions that failed for good.
    pub failed: AtomicU64,
    /// Submissions to try again (retryable failures and throttling).
    pub retried: AtomicU64,
    pub throttled: AtomicU64,
    /// Submissions handed back to the queue by pacing.
    pub deferred: AtomicU64,
    pub dlrs: AtomicU64,
    pub inbound: AtomicU64,
    /// Inbound messages whose text was cut to the 10-part maximum.
    pub inbound_truncated: AtomicU64,
    /// Callbacks the plugin refused or could not parse.
    pub callbacks_rejected: AtomicU64,
}

impl CarrierCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One configured carrier.
pub struct CarrierHandle {
    pub config: CarrierConfig,
    pub carrier: PluginCarrier,
    pub callback_secret: String,
    /// Where the carrier calls back (shown to operators).
    pub callback_url: String,
    pub base_url: String,
    rate: Rate,
    /// The rate as all nodes on a shared database keep it (instead of `rate`).
    shared_rate: Option<SharedRate>,
    window: Arc<Semaphore>,
    /// This node's part of the window: `config.window`, or on a shared
    /// store its share ([`CarrierHandle::share_window`]).
    window_share: AtomicUsize,
    /// Permits `window` has, handed out or not: the share, or more while
    /// the ones a smaller share gave up are still in use.
    window_permits: std::sync::Mutex<usize>,
    pub counters: CarrierCounters,
    /// Delivery and error rates and report latency, by minute.
    pub stats: CarrierStats,
    /// [`CarrierHandle::recent_stats`] of the current second.
    #[allow(clippy::type_complexity)]
    stats_cache: std::sync::Mutex<
        Option<(
            i64,
            (crate::policies::CarrierStats, crate::policies::CarrierStats),
        )>,
    >,
    /// The last submission failed as misconfigured (cleared by a success).
    pub misconfigured: AtomicBool,
}

/// The `place`-th of `nodes` nodes' part of `window`: the parts add up to
/// it.
fn window_share(window: usize, place: usize, nodes: usize) -> usize {
    let nodes = nodes.max(1);
    window / nodes + usize::from(place < window % nodes)
}

/// Brings `semaphore`'s `permits` (handed out or not) to `target`, as far
/// as the ones not in use allow.
fn resize(semaphore: &Semaphore, permits: &mut usize, target: usize) {
    if target > *permits {
        semaphore.add_permits(target - *permits);
        *permits = target;
    } else {
        *permits -= semaphore.forget_permits(*permits - target);
    }
}

/// Permission to submit: a slot of the carrier's window.
pub type Admission = OwnedSemaphorePermit;

impl CarrierHandle {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        self.carrier.plugin()
    }

    /// Submissions in flight now.
    pub fn in_flight(&self) -> usize {
        let permits = *self
            .window_permits
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        permits.saturating_sub(self.window.available_permits())
    }

    /// A final delivery report applied to its part (committed): in the
    /// carrier's statistics and metrics.
    pub fn count_final_report(&self, status: crate::model::Status, latency_ms: Option<i64>) {
        let delivered = status == crate::model::Status::Delivered;
        self.stats
            .record_report(crate::time::now_ms(), delivered, latency_ms);
        ::metrics::counter!("pigeon_parts_final_total",
            "carrier" => self.name().to_owned(), "status" => status.as_str())
        .increment(1);
        if let Some(ms) = latency_ms {
            ::metrics::histogram!("pigeon_dlr_latency_seconds", "carrier" => self.name().to_owned())
                .record(ms as f64 / 1000.0);
        }
    }

    /// This node's part of the carrier's window.
    pub fn window_share(&self) -> usize {
        self.window_share.load(Ordering::Relaxed)
    }

    /// Takes this node's share of the carrier's window, the `place`-th of
    /// `nodes` live nodes: a split of `window` that adds up to it (a node
    /// may get none when the window is smaller than the cluster). Permits in
    /// use when the share shrinks are given up as they come back, by the
    /// next call (each heartbeat).
    pub fn share_window(&self, place: usize, nodes: usize) {
        let share = window_share(self.config.window, place, nodes);
        self.window_share.store(share, Ordering::Relaxed);
        let mut permits = self
            .window_permits
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        resize(&self.window, &mut permits, share);
    }

    /// Waits for the carrier's window and rate to allow `parts` more parts,
    /// or says how long to put them back in the queue for. The window
    /// first: rate time booked by a part that then waits for a slot would
    /// go unused (on a shared store, by every node).
    pub async fn admit(&self, parts: usize) -> Result<Admission, Duration> {
        let acquire = self.window.clone().acquire_owned();
        let permit = match tokio::time::timeout(MAX_PACING_WAIT, acquire).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(MAX_PACING_WAIT),
        };
        let wait = match &self.shared_rate {
            Some(shared) => {
                let wait = shared
                    .reserve(parts, MAX_PACING_WAIT)
                    .await
                    .map_err(|error| {
                        tracing::warn!(carrier = %self.name(), %error, "leasing the carrier's sending time failed");
                        MAX_PACING_WAIT
                    })?;
                // A longer wait booked nothing.
                if wait > MAX_PACING_WAIT {
                    return Err(wait);
                }
                wait
            }
            None => self.rate.reserve(parts, Instant::now()),
        };
        if wait > MAX_PACING_WAIT {
            self.release(parts).await;
            return Err(wait);
        }
        tokio::time::sleep(wait).await;
        Ok(permit)
    }

    async fn release(&self, parts: usize) {
        match &self.shared_rate {
            Some(shared) => shared.release(parts).await,
            None => self.rate.release(parts),
        }
    }

    /// What routing and pacing policies see of this carrier for a message
    /// to `country`.
    /// Whether it may take `message`'s sender: any carrier may, unless the
    /// sender is a number another carrier provides.
    pub fn carries_sender_of(&self, message: &MessageRecord) -> bool {
        message
            .sender
            .as_ref()
            .and_then(|s| s.carrier.as_deref())
            .is_none_or(|carrier| carrier == self.config.name)
    }

    /// What the routing and pacing policies see of this carrier for `message`.
    pub fn view(&self, message: &MessageRecord, now_ms: i64) -> crate::policies::CarrierView {
        let country = message.country.as_deref();
        let (last_15m, last_24h) = self.recent_stats(now_ms);
        crate::policies::CarrierView {
            name: self.config.name.clone(),
            healthy: !self
                .misconfigured
                .load(std::sync::atomic::Ordering::Relaxed),
            countries: self.config.countries.clone(),
            price: self.config.price_for(country),
            tps: self.config.tps,
            carries_sender: self.carries_sender_of(message),
            last_15m,
            last_24h,
        }
    }

    /// The stats over 15 minutes and 24 hours, summed at most once a second
    /// (every message's routing reads them).
    fn recent_stats(
        &self,
        now_ms: i64,
    ) -> (crate::policies::CarrierStats, crate::policies::CarrierStats) {
        let second = now_ms / 1000;
        let mut cached = self.stats_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, stats)) = &*cached
            && *at == second
        {
            return stats.clone();
        }
        let window = |minutes| {
            let w = self.stats.window(now_ms, minutes);
            crate::policies::CarrierStats {
                sent: w.submissions,
                delivery_rate: w.delivery_rate,
                error_rate: w.error_rate,
                median_dlr_latency_ms: w.median_dlr_latency_ms,
            }
        };
        let stats = (window(15), window(24 * 60));
        *cached = Some((second, stats.clone()));
        stats
    }

    /// Whether `secret` is this carrier's callback secret (constant time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        let (a, b) = (self.callback_secret.as_bytes(), secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Every carrier, the sandbox first.
pub struct CarrierSet {
    carriers: Vec<Arc<CarrierHandle>>,
    by_name: HashMap<String, usize>,
    /// Live traffic goes to the sandbox: no carriers are configured.
    live_to_sandbox: bool,
    sandbox_endpoint: SandboxEndpoint,
    plugins: Vec<Arc<Plugin>>,
}

impl CarrierSet {
    /// Loads each carrier's plugin, has it check its settings, and starts
    /// the sandbox's fake endpoint. `listen` is where this Pigeon's own API
    /// is reachable (the sandbox calls back there, with `self_client`).
    pub async fn load(
        config: &Config,
        store: &Store,
        engine: &PluginEngine,
        client: HttpClient,
        self_client: HttpClient,
    ) -> Result<Self, CarrierError> {
        let local_api = local_base_url(config.listen, config.server.tls_cert.is_some());
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| local_api.clone());
        let public_url = public_url.trim_end_matches('/').to_owned();
        let sandbox_endpoint = SandboxEndpoint::start(self_client)
            .await
            .map_err(CarrierError::Sandbox)?;

        let mut sandbox = CarrierConfig::new(SANDBOX_CARRIER, "simulator");
        sandbox.settings = config.sandbox.settings.clone();
        sandbox.tps = config.sandbox.tps;
        sandbox.window = config.sandbox.window;
        let limits = Limits {
            memory_bytes: config.plugins.memory_mib << 20,
            deadline: Duration::from_millis(config.plugins.deadline_ms),
            ..Limits::default()
        };

        let mut plugins: HashMap<PathBuf, Arc<Plugin>> = HashMap::new();
        let mut carriers = Vec::new();
        for carrier_config in std::iter::once(sandbox).chain(config.carriers.iter().cloned()) {
            let path = plugin_path(&carrier_config, config.plugins.dir.as_deref())?;
            let plugin = match plugins.get(&path) {
                Some(plugin) => plugin.clone(),
                None => {
                    let engine = engine.clone();
                    let load_path = path.clone();
                    let plugin = tokio::task::spawn_blocking(move || {
                        Plugin::load(&engine, load_path, limits)
                    })
                    .await
                    .map_err(|e| LoadError::Engine(format!("loading task failed: {e}")))??;
                    plugins.insert(path, plugin.clone());
                    plugin
                }
            };
            let name = carrier_config.name.clone();
            let secret = match &carrier_config.callback_secret {
                Some(secret) => secret.clone(),
                None => {
                    let name = name.clone();
                    store
                        .write(move |c| inbound::callback_secret(c, &name, crate::time::now_ms()))
                        .await?
                }
            };
            let callback_path = format!("/v1/carriers/{name}/callback/{secret}");
            let callback_url = format!("{public_url}{callback_path}");
            let is_simulator = plugin.info().name == "simulator";
            let base_url = match (&carrier_config.base_url, is_simulator) {
                (Some(url), _) => url.clone(),
                (None, true) => {
                    sandbox_endpoint.register(&name, format!("{local_api}{callback_path}"))
                }
                (None, false) => {
                    return Err(CarrierError::UnknownPlugin {
                        carrier: name,
                        plugin: carrier_config.plugin.clone(),
                        looked: "a base_url (only the simulator has a default)".into(),
                    });
                }
            };
            let spec = CarrierSpec {
                name: name.clone(),
                base_url: base_url.clone(),
                settings: carrier_config.settings.clone(),
                timeout: Duration::from_millis(carrier_config.timeout_ms),
                max_response_bytes: 1 << 20,
                callback_url: callback_url.clone(),
            };
            let carrier = PluginCarrier::new(spec, plugin, client.clone()).await?;
            let info = carrier.plugin().info();
            tracing::info!(
                carrier = %name,
                plugin = %info.name,
                version = %info.version,
                %base_url,
                "carrier ready"
            );
            carriers.push(Arc::new(CarrierHandle {
                rate: Rate::per_second(carrier_config.tps),
                shared_rate: store
                    .is_shared()
                    .then(|| SharedRate::new(store.clone(), &name, carrier_config.tps)),
                window: Arc::new(Semaphore::new(carrier_config.window)),
                window_share: AtomicUsize::new(carrier_config.window),
                window_permits: std::sync::Mutex::new(carrier_config.window),
                config: carrier_config,
                carrier,
                callback_secret: secret,
                callback_url,
                base_url,
                counters: CarrierCounters::default(),
                stats: if store.is_shared() {
                    CarrierStats::shared()
                } else {
                    CarrierStats::default()
                },
                stats_cache: std::sync::Mutex::default(),
                misconfigured: AtomicBool::new(false),
            }));
        }
        let by_name = carriers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name().to_owned(), i))
            .collect();
        let live_to_sandbox = config.carriers.is_empty();
        if live_to_sandbox {
            tracing::warn!(
                "no [[carriers]] configured: live messages go to the sandbox carrier and reach no handset"
            );
        }
        Ok(Self {
            carriers,
            by_name,
            live_to_sandbox,
            sandbox_endpoint,
            plugins: plugins.into_values().collect(),
        })
    }

    pub fn all(&self) -> &[Arc<CarrierHandle>] {
        &self.carriers
    }

    /// Counts the reports that waited for their part and were applied
    /// with it (committed).
    pub fn record_early_reports(&self, reports: &[AppliedEarly]) {
        for report in reports {
            if let Some(carrier) = self.get(&report.carrier) {
                carrier.count_final_report(report.status, report.latency_ms);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CarrierHandle>> {
        self.by_name.get(name).map(|&i| &self.carriers[i])
    }

    /// The loaded plugins (each once, however many carriers use it).
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    pub fn sandbox_endpoint(&self) -> &SandboxEndpoint {
        &self.sandbox_endpoint
    }

    /// The `[[carriers]]`, without the sandbox.
    pub fn configured(&self) -> &[Arc<CarrierHandle>] {
        &self.carriers[1..]
    }

    /// Whether a message goes to the sandbox whatever the policies say.
    pub fn uses_sandbox(&self, message: &MessageRecord) -> bool {
        message.sandbox || self.live_to_sandbox
    }

    /// The carrier for a message: the sandbox for sandbox messages (and for
    /// all when no carriers are configured); otherwise the cheapest carrier
    /// that serves the destination country and may carry its sender, the
    /// first configured on a tie.
    pub fn route(&self, message: &MessageRecord) -> Option<&Arc<CarrierHandle>> {
        if self.uses_sandbox(message) {
            return self.carriers.first();
        }
        let country = message.country.as_deref();
        self.carriers[1..]
            .iter()
            .filter(|c| c.config.serves(country) && c.carries_sender_of(message))
            .min_by(|a, b| {
                let price = |c: &CarrierHandle| c.config.price_for(country).unwrap_or(f64::MAX);
                price(a).total_cmp(&price(b))
            })
    }
}

/// `http://{listen}` (`https` with TLS), with an unspecified address
/// replaced by loopback.
fn local_base_url(listen: std::net::SocketAddr, tls: bool) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// Where a carrier's plugin is: a path to a `.wasm` file as given, else
/// `<plugins.dir>/<name>.wasm`, else the plugin of that name built with Pigeon.
fn plugin_path(carrier: &CarrierConfig, dir: Option<&Path>) -> Result<PathBuf, CarrierError> {
    let name = carrier.plugin.as_str();
    if name.ends_with(".wasm") || name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let mut looked = Vec::new();
    if let Some(dir) = dir {
        let path = dir.join(format!("{name}.wasm"));
        if path.exists() {
            return Ok(path);
        }
        looked.push(path.display().to_string());
    }
    if let Some(path) = bundled_plugin(name) {
        if Path::new(path).exists() {
            return Ok(PathBuf::from(path));
        }
        looked.push(path.to_owned());
    }
    Err(CarrierError::UnknownPlugin {
        carrier: carrier.name.clone(),
        plugin: name.to_owned(),
        looked: if looked.is_empty() {
            "plugins.dir and the plugins built with Pigeon".into()
        } else {
            looked.join(", ")
        },
    })
}

/// The `.wasm` built from `plugins/<name>` by build.rs, if it built.
fn bundled_plugin(name: &str) -> Option<&'static str> {
    match name {
        "simulator" => option_env!("PIGEON_PLUGIN_SIMULATOR"),
        "http-json" => option_env!("PIGEON_PLUGIN_HTTP_JSON"),
        "kannel" => option_env!("PIGEON_PLUGIN_KANNEL"),
        "vonage" => option_env!("PIGEON_PLUGIN_VONAGE"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_shares_add_up_to_the_window() {
        for (window, nodes) in [(512, 3), (10, 3), (2, 3), (1, 1), (7, 0)] {
            let shares: Vec<usize> = (0..nodes.max(1))
                .map(|place| window_share(window, place, nodes))
                .collect();
            assert_eq!(
                shares.iter().sum::<usize>(),
                window,
                "{window} over {nodes}"
            );
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn a_shrunk_window_gives_up_permits_in_use_as_they_come_back() {
        let semaphore = Arc::new(Semaphore::new(4));
        let mut permits = 4;
        let in_use: Vec<_> = (0..3)
            .map(|_| semaphore.clone().try_acquire_owned().unwrap())
            .collect();
        resize(&semaphore, &mut permits, 1);
        // One was free: given up now; two more are owed.
        assert_eq!((permits, semaphore.available_permits()), (3, 0));
        drop(in_use);
        resize(&semaphore, &mut permits, 1);
        assert_eq!((permits, semaphore.available_permits()), (1, 1));
        resize(&semaphore, &mut permits, 5);
        assert_eq!((permits, semaphore.available_permits()), (5, 5));
    }
}
