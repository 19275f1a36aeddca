//! Starting and stopping Pigeon: the store, accounts, tracker, dispatcher
//! and HTTP API, in the order they depend on each other.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::App;
use crate::auth::{Accounts, AuthError};
use crate::carriers::LoopbackCarrier;
use crate::config::Config;
use crate::dispatch::Dispatcher;
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
}

/// A running Pigeon, minus its HTTP listener.
pub struct Pigeon {
    app: Arc<App>,
    store: Store,
    shutdown: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
    tracker: JoinHandle<()>,
    webhooks: JoinHandle<()>,
    /// The admin key made at first start, to be shown once.
    pub generated_admin_key: Option<String>,
}

impl Pigeon {
    /// Opens the store, recovers interrupted work and starts dispatching.
    /// `admin_key` becomes the first admin key on an empty database.
    pub async fn start(config: &Config, admin_key: Option<String>) -> Result<Self, StartError> {
        let store = Store::open(&config.data_dir, &config.store)?;
        let now = crate::time::now_ms();
        let requeued = store
            .write(move |c| queue::requeue_interrupted(c, now))
            .await?;
        if requeued > 0 {
            tracing::info!(requeued, "parts interrupted mid-submit are queued again");
        }
        let accounts = Accounts::load(store.clone()).await?;
        let generated_admin_key = accounts.bootstrap(admin_key).await?;

        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let tracker = tokio::spawn(crate::tracking::run(store.clone(), reports_rx));
        let carrier = Arc::new(LoopbackCarrier::new(
            reports_tx,
            Duration::from_millis(config.loopback.delivery_delay_ms),
        ));
        let awaiting = store
            .read(|c| queue::awaiting_reports(c, LoopbackCarrier::NAME))
            .await?;
        carrier.report_later(awaiting);
        let dispatcher = Dispatcher::new(store.clone(), carrier, config.dispatch.clone());
        let app = Arc::new(App {
            store: store.clone(),
            accounts,
            dispatch_waker: dispatcher.waker(),
            default_validity_secs: config.dispatch.default_validity_secs,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let deliverer = Deliverer::new(store.clone(), config.webhooks.clone())?;
        let webhooks = tokio::spawn(deliverer.run(shutdown_rx.clone()));
        let dispatcher = tokio::spawn(dispatcher.run(shutdown_rx));
        Ok(Self {
            app,
            store,
            shutdown,
            dispatcher,
            tracker,
            webhooks,
            generated_admin_key,
        })
    }

    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Serves the API on `listener` until `shutdown` resolves, then stops.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        crate::server::run(listener, self.app(), shutdown).await;
        self.stop().await;
    }

    /// Finishes submissions in flight, applies the reports that come back,
    /// and closes the store.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.dispatcher.await;
        if tokio::time::timeout(Duration::from_secs(5), self.tracker)
            .await
            .is_err()
        {
            tracing::warn!("delivery reports still pending at shutdown were not applied");
        }
        // Webhook requests in flight finish (each within webhooks.timeout_ms)
        // and are recorded; webhooks not yet sent stay in the outbox.
        let _ = self.webhooks.await;
        drop(self.app);
        self.store.close().await;
    }
}
