//! Configuration: embedded defaults, optionally a TOML file, then command-line
//! and environment overrides. Unknown keys are an error that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("carrier `{carrier}`: invalid `{key}`: {message}")]
    Carrier {
        carrier: String,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Directory holding the SQLite database.
    pub data_dir: PathBuf,
    /// The URL carriers reach this Pigeon at (callbacks); `http://{listen}`
    /// when unset.
    pub public_url: Option<String>,
    /// Connection limits and timeouts of the HTTP API.
    pub server: crate::server::ServerConfig,
    pub store: StoreConfig,
    pub dispatch: DispatchConfig,
    pub webhooks: WebhooksConfig,
    pub senders: SendersConfig,
    pub inbound: InboundConfig,
    pub plugins: PluginsConfig,
    pub sandbox: SandboxConfig,
    /// The carriers live traffic goes to; with none, it goes to the sandbox.
    pub carriers: Vec<CarrierConfig>,
    /// Content, routing and pacing policies (Rhai); off when `dir` does
    /// not exist.
    pub policies: crate::policies::PoliciesConfig,
    pub metrics: MetricsConfig,
    /// How long bodies, webhook rows and events are kept (see
    /// `compliance::retention`).
    pub retention: crate::compliance::retention::RetentionConfig,
    /// The SMPP 3.4 server for customers' ESMEs (see docs/smpp.md).
    pub smpp: crate::smpp::SmppConfig,
}

/// `GET /metrics`: who may scrape it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A bearer token for the scraper (24 characters or more), so
    /// Prometheus needs no admin key. Operator admin keys always work.
    pub token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            data_dir: PathBuf::from("data"),
            public_url: None,
            server: crate::server::ServerConfig::default(),
            store: StoreConfig::default(),
            dispatch: DispatchConfig::default(),
            webhooks: WebhooksConfig::default(),
            senders: SendersConfig::default(),
            inbound: InboundConfig::default(),
            plugins: PluginsConfig::default(),
            sandbox: SandboxConfig::default(),
            carriers: Vec::new(),
            policies: crate::policies::PoliciesConfig::default(),
            metrics: MetricsConfig::default(),
            retention: crate::compliance::retention::RetentionConfig::default(),
            smpp: crate::smpp::SmppConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync the write-ahead log at every (group) commit: survives power loss.
    Full,
    /// fsync only at checkpoints: survives a crash of Pigeon, not of the machine.
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A PostgreSQL database (`postgres://user:password@host:port/db`,
    /// TLS by libpq's `?sslmode=…&sslrootcert=…`)
    /// instead of SQLite under the data directory; also
    /// `PIGEON_DATABASE_URL`.
    pub url: Option<String>,
    pub synchronous: Synchronous,
    /// Most write operations grouped into one commit.
    pub max_batch: usize,
    /// Read-only connections for API reads.
    pub readers: usize,
    /// Start over on an empty (0-byte) database file. Off: an empty file
    /// where the database should be is refused, as it is most likely a
    /// database lost to a truncation or a failed copy.
    pub initialize_empty_file: bool,
    /// On PostgreSQL, how long a node may go unseen (it says it is alive
    /// every second) before the other nodes take back the parts it was
    /// sending and queue them again.
    pub node_lease_ms: u64,
}

/// How often a node on PostgreSQL says it is alive (`store.node_lease_ms`
/// is counted in these).
pub const NODE_HEARTBEAT_MS: u64 = 1_000;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            synchronous: Synchronous::Full,
            max_batch: 1024,
            readers: 4,
            initialize_empty_file: false,
            node_lease_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Carrier submissions in flight at once.
    pub concurrency: usize,
    /// Most parts claimed from the queue at a time.
    pub batch_size: usize,
    /// Attempts per part before it fails with `retries_exhausted`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long a message may wait to be sent when the request gives no
    /// `validity_secs`.
    pub default_validity_secs: u64,
    /// How often the queue is polled for scheduled parts when idle.
    pub poll_interval_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            concurrency: 256,
            batch_size: 512,
            max_attempts: 8,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            default_validity_secs: 48 * 3600,
            poll_interval_ms: 200,
        }
    }
}

/// How carrier plugins are found and what each call may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Where `plugin = "<name>"` is looked up first, as `<dir>/<name>.wasm`;
    /// the plugins built with Pigeon are the fallback.
    pub dir: Option<PathBuf>,
    /// Wall-clock time one plugin call may run.
    pub deadline_ms: u64,
    /// Memory one plugin call may use, in MiB.
    pub memory_mib: usize,
    /// How often plugin files are checked for changes (0: never reload).
    pub reload_interval_ms: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            deadline_ms: 100,
            memory_mib: 32,
            reload_interval_ms: 1_000,
        }
    }
}

/// The sandbox carrier: the `simulator` plugin against a fake carrier that
/// Pigeon serves in-process. Messages sent with sandbox keys always go to it,
/// and so does live traffic when no `[[carriers]]` are configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// The simulator's settings (delivery_rate, dlr_delay_ms,
    /// outcomes_by_suffix; see plugins/simulator/README.md).
    pub settings: serde_json::Value,
    /// Parts per second.
    pub tps: u32,
    /// Submissions in flight.
    pub window: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            settings: serde_json::Value::Object(Default::default()),
            tps: 100_000,
            window: 512,
        }
    }
}

/// The name the sandbox carrier goes by (not available to `[[carriers]]`).
pub const SANDBOX_CARRIER: &str = "sandbox";

/// One `[[carriers]]` entry: a carrier connection served by a plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Lower-case letters, digits, `-` and `_`; unique.
    pub name: String,
    /// A plugin's name (`simulator`, `http-json`, `kannel`, `vonage`, or one
    /// in `plugins.dir`) or a path to a `.wasm` component.
    pub plugin: String,
    /// Every request of the plugin goes under this URL. Required, except for
    /// the simulator (which defaults to the in-process fake carrier).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Handed to the plugin as JSON and checked by it at start.
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    /// Parts per second.
    #[serde(default = "default_tps")]
    pub tps: u32,
    /// Submissions in flight at once.
    #[serde(default = "default_window")]
    pub window: usize,
    /// ISO 3166 alpha-2 codes of the destinations served, or `*` for all.
    #[serde(default = "all_countries")]
    pub countries: Vec<String>,
    /// Price per segment by country code, `default` for the others.
    #[serde(default)]
    pub price: BTreeMap<String, f64>,
    /// The secret in the callback URL; generated and kept in the database
    /// when unset.
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// For one whole request to the carrier.
    #[serde(default = "default_carrier_timeout_ms")]
    pub timeout_ms: u64,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
fn default_tps() -> u32 {
    100
}
fn default_window() -> usize {
    64
}
fn all_countries() -> Vec<String> {
    vec!["*".into()]
}
fn default_carrier_timeout_ms() -> u64 {
    10_000
}

impl CarrierConfig {
    /// A carrier with the defaults for everything but its name and plugin.
    pub fn new(name: &str, plugin: &str) -> Self {
        Self {
            name: name.into(),
            plugin: plugin.into(),
            base_url: None,
            settings: empty_object(),
            tps: default_tps(),
            window: default_window(),
            countries: all_countries(),
            price: BTreeMap::new(),
            callback_secret: None,
            timeout_ms: default_carrier_timeout_ms(),
        }
    }

    /// Whether this carrier takes messages to `country` (ISO alpha-2).
    pub fn serves(&self, country: Option<&str>) -> bool {
        self.countries
            .iter()
            .any(|c| c == "*" || Some(c.as_str()) == country)
    }

    /// The price of one segment to `country`, if the carrier names one.
    pub fn price_for(&self, country: Option<&str>) -> Option<f64> {
        country
            .and_then(|c| self.price.get(c))
            .or_else(|| self.price.get("default"))
            .copied()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Carrier {
            carrier: self.name.clone(),
            key,
            message,
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "name",
                "use lower-case letters, digits, `-` and `_`".into(),
            ));
        }
        if self.name == SANDBOX_CARRIER {
            return Err(invalid(
                "name",
                format!("`{SANDBOX_CARRIER}` is the built-in sandbox carrier's name"),
            ));
        }
        if self.plugin.is_empty() {
            return Err(invalid(
                "plugin",
                "must name a plugin or a .wasm file".into(),
            ));
        }
        if self.base_url.is_none() && self.plugin != "simulator" {
            return Err(invalid(
                "base_url",
                "is required (only the simulator has a default)".into(),
            ));
        }
        if !self.settings.is_object() {
            return Err(invalid("settings", "must be a table".into()));
        }
        if self.tps == 0 {
            return Err(invalid("tps", "must be greater than 0".into()));
        }
        if self.window == 0 {
            return Err(invalid("window", "must be greater than 0".into()));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be greater than 0".into()));
        }
        if self.countries.is_empty() {
            return Err(invalid(
                "countries",
                "name at least one country, or \"*\"".into(),
            ));
        }
        let is_country = |c: &str| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase());
        if let Some(bad) = self.countries.iter().find(|c| *c != "*" && !is_country(c)) {
            return Err(invalid(
                "countries",
                format!("{bad:?} is not an upper-case ISO 3166 alpha-2 code or \"*\""),
            ));
        }
        for (country, price) in &self.price {
            if country != "default" && !is_country(country) {
                return Err(invalid(
                    "price",
                    format!("{country:?} is not an ISO 3166 alpha-2 code or \"default\""),
                ));
            }
            if !price.is_finite() || *price < 0.0 {
                return Err(invalid(
                    "price",
                    format!("{country}: must be a number of at least 0"),
                ));
            }
        }
        if let Some(secret) = &self.callback_secret
            && (secret.len() < 16
                || !secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(invalid(
                "callback_secret",
                "must be at least 16 letters, digits, `-` or `_`".into(),
            ));
        }
        Ok(())
    }
}

/// Who may send from what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendersConfig {
    /// A message's `from` must be a sender of the number inventory that the
    /// account owns (`422 sender_not_owned`); sandbox keys may use any. Off
    /// only for a deployment that trusts every account with every sender.
    pub require_owned: bool,
}

impl Default for SendersConfig {
    fn default() -> Self {
        Self {
            require_owned: true,
        }
    }
}

/// Messages handsets send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// How long the parts of a long inbound message wait for the rest;
    /// then what came is filed as the message.
    pub part_timeout_ms: u64,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            part_timeout_ms: 5 * 60 * 1000,
        }
    }
}

/// Status webhooks to messages' `callback_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Longest wait for an endpoint's answer (connect included).
    pub timeout_ms: u64,
    /// Attempts per webhook before it is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, half of it jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests in flight at once for one account's messages.
    pub per_account_concurrency: usize,
    /// Requests in flight at once to one endpoint (scheme, host and port).
    pub per_endpoint_concurrency: usize,
    /// Allow callback URLs that resolve to loopback, private, link-local,
    /// unique-local or unspecified addresses (refused by default: SSRF).
    pub allow_private_networks: bool,
    /// How often the outbox is checked for webhooks that fell due.
    pub poll_interval_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_attempts: 12,
            retry_base_ms: 5_000,
            retry_max_ms: 3_600_000,
            concurrency: 64,
            per_account_concurrency: 16,
            per_endpoint_concurrency: 8,
            allow_private_networks: false,
            poll_interval_ms: 250,
        }
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("server.max_connections", self.server.max_connections as u64)?;
        if let Some(url) = &self.store.url
            && let Err(err) = url.parse::<tokio_postgres::Config>()
        {
            // The URL itself is not repeated: it may hold a password.
            return Err(ConfigError::Invalid {
                key: "store.url",
                message: format!("is not a PostgreSQL connection URL: {err}"),
            });
        }
        self.smpp
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        positive("inbound.part_timeout_ms", self.inbound.part_timeout_ms)?;
        positive("server.idle_timeout_ms", self.server.idle_timeout_ms)?;
        positive(
            "server.header_read_timeout_ms",
            self.server.header_read_timeout_ms,
        )?;
        if self.server.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "server.max_header_bytes",
                message: "must be at least 1024".into(),
            });
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "server.tls_key",
                    message: "must be set when server.tls_cert is".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "server.tls_cert",
                    message: "must be set when server.tls_key is".into(),
                });
            }
            _ => {}
        }
        if let Some(bad) = self
            .server
            .trusted_proxies
            .iter()
            .find(|p| crate::auth::network::parse_network(p).is_none())
        {
            return Err(ConfigError::Invalid {
                key: "server.trusted_proxies",
                message: format!("`{bad}` is not an IP address or a CIDR"),
            });
        }
        if self
            .metrics
            .token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 24)
        {
            return Err(ConfigError::Invalid {
                key: "metrics.token",
                message: "must be at least 24 characters".into(),
            });
        }
        positive("store.max_batch", self.store.max_batch as u64)?;
        positive("store.readers", self.store.readers as u64)?;
        if self.store.node_lease_ms < 2 * NODE_HEARTBEAT_MS {
            return Err(ConfigError::Invalid {
                key: "store.node_lease_ms",
                message: format!(
                    "must be at least {} ms (two of a node's heartbeats)",
                    2 * NODE_HEARTBEAT_MS
                ),
            });
        }
        positive("dispatch.concurrency", self.dispatch.concurrency as u64)?;
        positive("dispatch.batch_size", self.dispatch.batch_size as u64)?;
        positive("dispatch.max_attempts", self.dispatch.max_attempts as u64)?;
        positive("dispatch.retry_base_ms", self.dispatch.retry_base_ms)?;
        positive("dispatch.poll_interval_ms", self.dispatch.poll_interval_ms)?;
        positive(
            "dispatch.default_validity_secs",
            self.dispatch.default_validity_secs,
        )?;
        positive("webhooks.timeout_ms", self.webhooks.timeout_ms)?;
        positive("webhooks.max_attempts", self.webhooks.max_attempts as u64)?;
        positive("webhooks.retry_base_ms", self.webhooks.retry_base_ms)?;
        positive("webhooks.retry_max_ms", self.webhooks.retry_max_ms)?;
        positive("webhooks.concurrency", self.webhooks.concurrency as u64)?;
        positive(
            "webhooks.per_account_concurrency",
            self.webhooks.per_account_concurrency as u64,
        )?;
        positive(
            "webhooks.per_endpoint_concurrency",
            self.webhooks.per_endpoint_concurrency as u64,
        )?;
        positive("webhooks.poll_interval_ms", self.webhooks.poll_interval_ms)?;
        if self.webhooks.retry_max_ms < self.webhooks.retry_base_ms {
            return Err(ConfigError::Invalid {
                key: "webhooks.retry_max_ms",
                message: "must not be less than webhooks.retry_base_ms".into(),
            });
        }
        positive("plugins.deadline_ms", self.plugins.deadline_ms)?;
        positive("plugins.memory_mib", self.plugins.memory_mib as u64)?;
        positive("sandbox.tps", self.sandbox.tps as u64)?;
        positive("sandbox.window", self.sandbox.window as u64)?;
        if !self.sandbox.settings.is_object() {
            return Err(ConfigError::Invalid {
                key: "sandbox.settings",
                message: "must be a table".into(),
            });
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "public_url",
                message: "must start with http:// or https://".into(),
            });
        }
        positive("policies.deadline_ms", self.policies.deadline_ms)?;
        let mut names = std::collections::HashSet::new();
        for carrier in &self.carriers {
            carrier.validate()?;
            if !names.insert(carrier.name.as_str()) {
                return Err(ConfigError::Carrier {
                    carrier: carrier.name.clone(),
                    key: "name",
                    message: "two carriers have this name".into(),
                });
            }
        }
        if let Some(unknown) = self
            .policies
            .fallback_carriers
            .iter()
            .find(|name| !names.contains(name.as_str()) && *name != SANDBOX_CARRIER)
        {
            return Err(ConfigError::Invalid {
                key: "policies.fallback_carriers",
                message: format!("no carrier is named `{unknown}`"),
            });
        }
        if self.dispatch.retry_max_ms < self.dispatch.retry_base_ms {
            return Err(ConfigError::Invalid {
                key: "dispatch.retry_max_ms",
                message: "must not be less than dispatch.retry_base_ms".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let err = Config::from_toml("[server]\ntls_cert = \"c.pem\"\n").unwrap_err();
        assert!(err.contains("server.tls_key"), "{err}");
        let err = Config::from_toml("[server]\ntls_key = \"k.pem\"\n").unwrap_err();
        assert!(err.contains("server.tls_cert"), "{err}");
        let both = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        assert!(Config::from_toml(both).is_ok());
    }

    #[test]
    fn empty_file_gives_the_embedded_defaults() {
        let config = Config::from_toml("").unwrap();
        assert!(config.senders.require_owned);
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.store.synchronous, Synchronous::Full);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[dispatch]\nconcurency = 4\n").unwrap_err();
        assert!(err.contains("concurency"), "{err}");
        let err = Config::from_toml("listen = 8080\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = Config::from_toml("[dispatch]\nconcurrency = 0\n").unwrap_err();
        assert!(err.contains("dispatch.concurrency"), "{err}");
    }

    #[test]
    fn webhook_settings_are_checked() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.webhooks.timeout_ms, 10_000);
        assert_eq!(config.webhooks.max_attempts, 12);
        assert!(!config.webhooks.allow_private_networks);
        let config = Config::from_toml("[webhooks]\nallow_private_networks = true\n").unwrap();
        assert!(config.webhooks.allow_private_networks);
        for (toml, key) in [
            ("[webhooks]\ntimeout_ms = 0\n", "webhooks.timeout_ms"),
            ("[webhooks]\nconcurrency = 0\n", "webhooks.concurrency"),
            ("[webhooks]\nmax_attempts = 0\n", "webhooks.max_attempts"),
            ("[webhooks]\nretry_max_ms = 1\n", "webhooks.retry_max_ms"),
            ("[webhooks]\nurl = \"x\"\n", "url"),
        ] {
            let err = Config::from_toml(toml).unwrap_err();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn carriers_are_read_and_checked() {
        let config = Config::from_toml(
            r#"
            [[carriers]]
            name = "vonage-vn"
            plugin = "vonage"
            base_url = "https://rest.nexmo.com"
            settings = { api_key = "k", api_secret = "s" }
            tps = 30
            countries = ["VN", "HK"]
            price = { VN = 0.03, default = 0.05 }
            "#,
        )
        .unwrap();
        let carrier = &config.carriers[0];
        assert_eq!(carrier.window, 64);
        assert_eq!(carrier.settings["api_key"], "k");
        assert!(carrier.serves(Some("HK")) && !carrier.serves(Some("US")));
        assert_eq!(carrier.price_for(Some("VN")), Some(0.03));
        assert_eq!(carrier.price_for(Some("US")), Some(0.05));

        for (toml, needle) in [
            ("name = \"Big\"\nplugin = \"simulator\"", "`name`"),
            ("name = \"sandbox\"\nplugin = \"simulator\"", "built-in"),
            ("name = \"a\"\nplugin = \"kannel\"", "`base_url`"),
            ("name = \"a\"\nplugin = \"simulator\"\ntps = 0", "`tps`"),
            (
                "name = \"a\"\nplugin = \"simulator\"\ncountries = [\"vn\"]",
                "`countries`",
            ),
            (
                "name = \"a\"\nplugin = \"simulator\"\nprice = { VN = -1.0 }",
                "`price`",
            ),
            (
                "name = \"a\"\nplugin = \"simulator\"\ncallback_secret = \"short\"",
                "`callback_secret`",
            ),
            (
                "name = \"a\"\nplugin = \"simulator\"\nsettngs = {}",
                "settngs",
            ),
        ] {
            let err = Config::from_toml(&format!("[[carriers]]\n{toml}\n")).unwrap_err();
            assert!(err.contains(needle), "{toml}: {err}");
        }
        let twice = "[[carriers]]\nname = \"a\"\nplugin = \"simulator\"\n".repeat(2);
        assert!(
            Config::from_toml(&twice)
                .unwrap_err()
                .contains("two carriers")
        );
    }

    #[test]
    fn retention_durations_are_read_and_named() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.retention.otp_body.to_string(), "1h");
        assert_eq!(config.retention.sweep_interval.to_string(), "1m");
        let config =
            Config::from_toml("[retention]\notp_body = \"1s\"\nsweep_interval = \"1s\"\n").unwrap();
        assert_eq!(config.retention.otp_body.as_millis(), 1000);
        for (toml, needle) in [
            ("otp_body = \"an hour\"", "retention.otp_body"),
            ("message_body = \"0d\"", "retention.message_body"),
            ("events = 30", "events"),
            ("bodies = \"1d\"", "bodies"),
        ] {
            let err = Config::from_toml(&format!("[retention]\n{toml}\n")).unwrap_err();
            assert!(err.contains(needle), "{toml}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../pigeon.example.toml");
        Config::from_toml(text).unwrap();
    }
}
