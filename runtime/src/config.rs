//! Configuration: embedded defaults, optionally a TOML file, then command-line
//! and environment overrides. Unknown keys are an error that names the key.

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Directory holding the SQLite database.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub dispatch: DispatchConfig,
    pub loopback: LoopbackConfig,
    pub webhooks: WebhooksConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            data_dir: PathBuf::from("data"),
            store: StoreConfig::default(),
            dispatch: DispatchConfig::default(),
            loopback: LoopbackConfig::default(),
            webhooks: WebhooksConfig::default(),
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
    pub synchronous: Synchronous,
    /// Most write operations grouped into one commit.
    pub max_batch: usize,
    /// Read-only connections for API reads.
    pub readers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_batch: 1024,
            readers: 4,
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

/// The built-in loopback carrier: acknowledges every part and reports it
/// delivered, so a fresh `pigeon serve` works with no real carrier. Numbers
/// ending in 0001 are reported undeliverable, 0002 fail permanently and 0003
/// fail once with a retryable error, so every path can be tried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopbackConfig {
    /// Delay before the delivery report comes back.
    pub delivery_delay_ms: u64,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        Self {
            delivery_delay_ms: 50,
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
            concurrency: 32,
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
        positive("store.max_batch", self.store.max_batch as u64)?;
        positive("store.readers", self.store.readers as u64)?;
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
        positive("webhooks.poll_interval_ms", self.webhooks.poll_interval_ms)?;
        if self.webhooks.retry_max_ms < self.webhooks.retry_base_ms {
            return Err(ConfigError::Invalid {
                key: "webhooks.retry_max_ms",
                message: "must not be less than webhooks.retry_base_ms".into(),
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
    fn empty_file_gives_the_embedded_defaults() {
        let config = Config::from_toml("").unwrap();
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
    fn the_shipped_example_parses() {
        let text = include_str!("../../pigeon.example.toml");
        Config::from_toml(text).unwrap();
    }
}
