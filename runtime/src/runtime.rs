//! Starting and stopping Pigeon: the store, accounts, carriers (plugins),
//! dispatcher, webhooks and HTTP API, in the order they depend on each other.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::App;
use crate::auth::{Accounts, AuthError};
use crate::carriers::{CarrierError, CarrierSet};
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::plugins::{LoadError, PluginEngine};
use crate::policies::{Policies, PolicyError, PolicyWatcher};
use crate::server::{ServerTls, TlsError};
use crate::store::{Store, StoreError, queue};
use crate::webhooks::{Deliverer, WebhookError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Webhooks(#[from] WebhookError),
    #[error(transparent)]
    Carriers(#[from] CarrierError),
    #[error("policies: {0}")]
    Policies(#[from] PolicyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Smpp(#[from] crate::smpp::SmppError),
}

/// A running Pigeon, minus its HTTP listener.
pub struct Pigeon {
    app: Arc<App>,
    store: Store,
    shutdown: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
    webhooks: JoinHandle<()>,
    /// Files long inbound messages whose parts stopped coming.
    inbound_parts: JoinHandle<()>,
    /// Redacts bodies and deletes rows whose retention ran out.
    retention_sweep: JoinHandle<()>,
    /// Sends the replies TwiML answers asked for.
    twiml_replies: JoinHandle<()>,
    /// The SMPP server, when `[smpp] enabled`, and the address it listens on.
    smpp: Option<(JoinHandle<()>, std::net::SocketAddr)>,
    plugin_reloader: Option<JoinHandle<()>>,
    /// On a shared database, keeps this node among the others (cluster.rs).
    cluster: Option<JoinHandle<()>>,
    /// Reloads the policies when their files change; stops when dropped.
    _policy_watcher: Option<PolicyWatcher>,
    server: crate::server::ServerConfig,
    tls: Option<ServerTls>,
    /// The admin key made at first start, to be shown once.
    pub generated_admin_key: Option<String>,
}

impl Pigeon {
    /// Opens the store, recovers interrupted work, loads the carriers and
    /// starts dispatching. `admin_key` becomes the first admin key on an
    /// empty database. `config.listen` must be the address the API is
    /// served on (the sandbox carrier calls back there).
    pub async fn start(config: &Config, admin_key: Option<String>) -> Result<Self, StartError> {
        crate::metrics::install();
        // First, so a bad certificate stops the start before anything runs.
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls::load(cert, key)?),
            _ => None,
        };
        let store = Store::open(&config.data_dir, &config.store)?;
        let lease_ms = config.store.node_lease_ms as i64;
        let requeued = crate::cluster::join(&store, lease_ms).await?;
        if requeued > 0 {
            tracing::info!(requeued, "parts interrupted mid-submit are queued again");
        }
        let hasher =
            crate::auth::KeyHasher::load_or_create(&config.data_dir).map_err(AuthError::from)?;
        let sealer = crate::auth::Sealer::new(hasher.derive_key("twilio auth tokens"));
        let accounts = Accounts::load(store.clone(), hasher).await?;
        let generated_admin_key = accounts.bootstrap(admin_key).await?;
        let default_pools = store
            .read(crate::store::accounts::default_pools)
            .await
            .map(crate::numbers::pools::DefaultPools::new)?;
        let compliance = store
            .read(|c| {
                use crate::store::compliance::*;
                Ok(crate::compliance::Compliance::new(
                    all_suppressions(c)?,
                    all_marketing_consents(c)?,
                    consent_required_accounts(c)?,
                ))
            })
            .await
            .map(Arc::new)?;

        let engine = PluginEngine::new().map_err(CarrierError::from)?;
        let client = crate::plugins::http_client()
            .map_err(|e| CarrierError::Load(LoadError::Engine(e.to_string())))?;
        // The sandbox calls back to this listener: over HTTPS, trusting
        // exactly the configured certificate.
        let self_client = match &tls {
            Some(tls) => crate::plugins::http_client_with_tls(tls.self_client_config())
                .map_err(|e| CarrierError::Load(LoadError::Engine(e.to_string())))?,
            None => client.clone(),
        };
        let carriers =
            Arc::new(CarrierSet::load(config, &store, &engine, client, self_client).await?);
        // The fake carrier keeps nothing across restarts: it sends again the
        // reports it still owes, from the carrier ids.
        let endpoint = carriers.sandbox_endpoint();
        for carrier in carriers.all().iter().filter(|c| endpoint.serves(c.name())) {
            let name = carrier.name().to_owned();
            let awaiting = store
                .read(move |c| queue::awaiting_reports(c, &name))
                .await?;
            endpoint.resume(carrier.name(), awaiting);
        }
        let plugin_reloader = (config.plugins.reload_interval_ms > 0).then(|| {
            crate::plugins::watch(
                carriers.plugins().to_vec(),
                Duration::from_millis(config.plugins.reload_interval_ms),
                Some(audit_plugin_reloads(&store)),
            )
        });
        let (policies, policy_watcher) = load_policies(config).await?;
        if let Some(policies) = &policies {
            policies.observe(audit_policy_reloads(&store));
        }
        let dispatcher = Dispatcher::new(
            store.clone(),
            carriers.clone(),
            policies.clone(),
            compliance.clone(),
            config.dispatch.clone(),
        );
        let accounts = Arc::new(accounts);
        let default_pools = Arc::new(default_pools);
        let submit = Arc::new(crate::submit::Submitter {
            store: store.clone(),
            accounts: accounts.clone(),
            dispatch_waker: dispatcher.waker(),
            rules: crate::submit::SubmitRules {
                default_validity_secs: config.dispatch.default_validity_secs,
                allow_private_callbacks: config.webhooks.allow_private_networks,
                require_owned_sender: config.senders.require_owned,
            },
            policies: policies.clone(),
            default_pools: default_pools.clone(),
            compliance: compliance.clone(),
        });
        let app = Arc::new(App {
            store: store.clone(),
            accounts,
            submit,
            carriers,
            policies,
            default_pools,
            compliance: compliance.clone(),
            metrics_token: config.metrics.token.clone(),
            trusted_proxies: config
                .server
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::auth::network::parse_network(p))
                .collect(),
            retention: config.retention.clone(),
            sealer: sealer.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let replies_waker = Arc::new(tokio::sync::Notify::new());
        let deliverer = Deliverer::new(
            store.clone(),
            config.webhooks.clone(),
            sealer,
            replies_waker.clone(),
        )?;
        let webhooks = tokio::spawn(deliverer.run(shutdown_rx.clone()));
        let inbound_parts = tokio::spawn(crate::tracking::release_stale_parts(
            store.clone(),
            compliance,
            std::time::Duration::from_millis(config.inbound.part_timeout_ms),
            shutdown_rx.clone(),
        ));
        let retention_sweep = tokio::spawn(crate::compliance::retention::run(
            store.clone(),
            config.retention.clone(),
            shutdown_rx.clone(),
        ));
        let twiml_replies = tokio::spawn(crate::twilio::replies::run(
            store.clone(),
            app.submit.clone(),
            replies_waker,
            shutdown_rx.clone(),
        ));
        let smpp = match config.smpp.enabled {
            false => None,
            true => {
                let listener = crate::smpp::bind(&config.smpp).await?;
                let addr = listener.local_addr().unwrap_or(config.smpp.listen);
                let server = Arc::new(crate::smpp::Smpp {
                    store: store.clone(),
                    submit: app.submit.clone(),
                    hasher: app.accounts.hasher().clone(),
                    config: config.smpp.clone(),
                    tls: tls.clone(),
                });
                let task = tokio::spawn(crate::smpp::run(listener, server, shutdown_rx.clone()));
                Some((task, addr))
            }
        };
        let cluster = crate::cluster::start(
            store.clone(),
            crate::cluster::Caches {
                accounts: app.accounts.clone(),
                compliance: app.compliance.clone(),
                default_pools: app.default_pools.clone(),
            },
            app.carriers.clone(),
            lease_ms,
        )
        .await;
        let dispatcher = tokio::spawn(dispatcher.run(shutdown_rx));
        Ok(Self {
            cluster,
            app,
            store,
            shutdown,
            dispatcher,
            webhooks,
            inbound_parts,
            retention_sweep,
            twiml_replies,
            smpp,
            plugin_reloader,
            _policy_watcher: policy_watcher,
            server: config.server.clone(),
            tls,
            generated_admin_key,
        })
    }

    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Where the SMPP server listens (the real port when configured with 0).
    pub fn smpp_addr(&self) -> Option<std::net::SocketAddr> {
        self.smpp.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves the API on `listener` until `shutdown` resolves, then stops.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let tls = self.tls.clone();
        crate::server::run(listener, self.app(), &self.server, tls, shutdown).await;
        self.stop().await;
    }

    /// Finishes submissions in flight and closes the store. Delivery reports
    /// the sandbox still owes are sent after the next start.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        // Binds are unbound first: no submit_sm is accepted after this.
        if let Some((smpp, _)) = self.smpp {
            let _ = smpp.await;
        }
        let _ = self.dispatcher.await;
        // Its claims are all seen through now: the node may leave the list.
        if let Some(cluster) = self.cluster {
            cluster.abort();
            crate::cluster::leave(&self.store).await;
        }
        if let Some(reloader) = self.plugin_reloader {
            reloader.abort();
        }
        // Webhook requests in flight finish (each within webhooks.timeout_ms)
        // and are recorded; webhooks not yet sent stay in the outbox.
        let _ = self.webhooks.await;
        let _ = self.inbound_parts.await;
        // A sweep in progress finishes its write job; the rest waits for
        // the next start.
        let _ = self.retention_sweep.await;
        let _ = self.twiml_replies.await;
        drop(self.app);
        self.store.close().await;
    }
}

/// The policies in `config.policies.dir`, compiled and tested, and their
/// watcher; none when the directory does not exist.
/// Plugin reloads go to the audit trail.
fn audit_plugin_reloads(store: &Store) -> crate::plugins::ReloadObserver {
    let (store, runtime) = (store.clone(), tokio::runtime::Handle::current());
    Arc::new(move |plugin, outcome| {
        let info = plugin.info();
        let summary = match outcome {
            Ok(()) => {
                serde_json::json!({"outcome": "loaded", "name": info.name, "version": info.version})
            }
            Err(error) => serde_json::json!({"outcome": "failed", "error": error}),
        };
        let (store, target) = (store.clone(), plugin.path().display().to_string());
        runtime.spawn(async move {
            crate::api::audit::record_system(&store, "plugin.reload", &target, summary).await;
        });
    })
}

/// Policy reloads (new sets and failures) go to the audit trail.
fn audit_policy_reloads(store: &Store) -> crate::policies::ReloadObserver {
    let (store, runtime) = (store.clone(), tokio::runtime::Handle::current());
    Box::new(move |record| {
        let summary = serde_json::json!({
            "outcome": record.outcome.as_str(),
            "digest": record.digest,
            "error": record.error,
        });
        let store = store.clone();
        runtime.spawn(async move {
            crate::api::audit::record_system(&store, "policy.reload", "policies", summary).await;
        });
    })
}

async fn load_policies(
    config: &Config,
) -> Result<(Option<Arc<Policies>>, Option<PolicyWatcher>), StartError> {
    let policies_config = config.policies.clone();
    if !policies_config.dir.is_dir() {
        tracing::warn!(
            dir = %policies_config.dir.display(),
            "no policies directory: messages are not checked, routed or paced by policies"
        );
        return Ok((None, None));
    }
    let policies = tokio::task::spawn_blocking(move || Policies::load(policies_config))
        .await
        .map_err(|e| {
            CarrierError::Load(LoadError::Engine(format!("policy loading failed: {e}")))
        })??;
    let policies = Arc::new(policies);
    let watcher = if config.policies.watch {
        Some(policies.watch()?)
    } else {
        None
    };
    Ok((Some(policies), watcher))
}
