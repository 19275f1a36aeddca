//! The SMPP 3.4 server for customers' ESMEs: a front door onto `submit/`.
//! An ESME binds with an account's SMPP credential (`system_id` and
//! password, see `api/smpp.rs`), sends `submit_sm`s that go through the
//! same accept path as `POST /v1/messages` (answered only once stored),
//! and, on receiver and transceiver binds, gets `deliver_sm`s: delivery
//! receipts and inbound messages from the SMPP outbox (`store/smpp.rs`),
//! at least once, resent when no `deliver_sm_resp` comes in time.
//!
//! `pdu.rs` is the wire format, `session.rs` one connection, `submit.rs`
//! `submit_sm` to `submit::Request` and back, `receipts.rs` the
//! `deliver_sm`s made of outbox rows. See docs/smpp.md.

pub mod pdu;
mod receipts;
mod session;
mod submit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::KeyHasher;
use crate::server::ServerTls;
use crate::store::Store;
use crate::submit::Submitter;

/// `[smpp]`: the SMPP listener and its session limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// Off: no SMPP listener at all.
    pub enabled: bool,
    /// Where ESMEs connect (2775 is SMPP's registered port). With
    /// `[server] tls_cert`/`tls_key` set, connections must use TLS.
    pub listen: SocketAddr,
    /// Most `deliver_sm`s one bind has unacknowledged at a time.
    pub window: usize,
    /// A bind that sends nothing (not even `enquire_link`) for this long
    /// is unbound and closed.
    pub idle_timeout_secs: u64,
    /// How long a `deliver_sm` waits for its `deliver_sm_resp` before it
    /// is sent again (to this or another bind of the account).
    pub response_timeout_secs: u64,
    /// Connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
}

impl Default for SmppConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: ([127, 0, 0, 1], 2775).into(),
            window: 10,
            idle_timeout_secs: 90,
            response_timeout_secs: 30,
            max_connections: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmppError {
    #[error("cannot listen for SMPP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl SmppConfig {
    /// The first bad setting: its full name and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1000).contains(&self.window) {
            return Err(("smpp.window", "must be 1 to 1000".into()));
        }
        if self.idle_timeout_secs == 0 {
            return Err(("smpp.idle_timeout_secs", "must be greater than 0".into()));
        }
        if self.response_timeout_secs == 0 {
            return Err((
                "smpp.response_timeout_secs",
                "must be greater than 0".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(("smpp.max_connections", "must be greater than 0".into()));
        }
        Ok(())
    }
}

/// What sessions share.
pub struct Smpp {
    pub store: Store,
    pub submit: Arc<Submitter>,
    /// Hashes presented passwords as credentials' were hashed.
    pub hasher: KeyHasher,
    pub config: SmppConfig,
    pub tls: Option<ServerTls>,
}

/// Binds the configured address (a start failure when taken).
pub async fn bind(config: &SmppConfig) -> Result<TcpListener, SmppError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| SmppError::Listen {
            addr: config.listen,
            source,
        })
}

/// How often what no ESME will take is looked for: parts of long messages
/// that never completed (kept a day) and receipts and inbound messages no
/// receiver bind took (kept a week).
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
const PART_KEEP_MS: i64 = 24 * 3600 * 1000;
const OUTBOX_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

async fn prune(store: &Store) {
    let now = crate::time::now_ms();
    let (parts, outbox) = (now - PART_KEEP_MS, now - OUTBOX_KEEP_MS);
    match store
        .write(move |conn| crate::store::smpp::prune(conn, parts, outbox))
        .await
    {
        Ok(0) => {}
        Ok(dropped) => tracing::info!(
            dropped,
            "SMPP parts and outbox rows past their time dropped"
        ),
        Err(err) => tracing::warn!(error = %err, "SMPP parts and outbox not pruned"),
    }
}

/// Longest wait at shutdown for binds to unbind.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves ESMEs on `listener` until `shutdown` turns true; then every
/// bind is sent an `unbind` and closed.
pub async fn run(listener: TcpListener, smpp: Arc<Smpp>, mut shutdown: watch::Receiver<bool>) {
    let acceptor = smpp.tls.as_ref().map(ServerTls::acceptor);
    let mut sessions = JoinSet::new();
    let mut prune_timer = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "SMPP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            _ = prune_timer.tick() => {
                prune(&smpp.store).await;
                continue;
            }
        };
        while sessions.try_join_next().is_some() {}
        if sessions.len() >= smpp.config.max_connections {
            tracing::warn!(%peer, "SMPP connection refused: smpp.max_connections are open");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (smpp, shutdown) = (smpp.clone(), shutdown.clone());
        match &acceptor {
            None => {
                sessions.spawn(session::serve(stream, peer, smpp, shutdown));
            }
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                sessions.spawn(async move {
                    match handshake.await {
                        Ok(Ok(stream)) => session::serve(stream, peer, smpp, shutdown).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "SMPP TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "SMPP TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("SMPP binds still open after {DRAIN_TIMEOUT:?}; closing them");
        sessions.abort_all();
    }
}

/// SMPP 3.4 passwords are C-octet strings of at most 9 octets: 8 characters.
pub const PASSWORD_LEN: usize = 8;
/// `system_id` is at most 16 octets: 15 characters.
pub const MAX_SYSTEM_ID_LEN: usize = 15;

/// The stored form of a credential's password: the server secret's HMAC
/// over the system_id and the password, so a copy of the database alone
/// cannot be used to test guesses.
pub fn password_hash(hasher: &KeyHasher, system_id: &str, password: &str) -> Vec<u8> {
    hasher
        .hash(&format!("smpp\0{system_id}\0{password}"))
        .to_vec()
}

/// A random password of [`PASSWORD_LEN`] characters from 62 (letters and
/// digits): about 47 bits, all SMPP 3.4 allows.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..PASSWORD_LEN)
        .map(|_| ALPHABET[rand::Rng::random_range(&mut rng, 0..ALPHABET.len())] as char)
        .collect()
}

/// A system_id Pigeon picks: `pg` and 10 random characters.
pub fn generate_system_id() -> String {
    format!("pg{}", crate::ids::random_secret(10).to_lowercase())
}

/// Whether `system_id` may name a credential: 1 to 15 ASCII letters,
/// digits, `_` or `-`.
pub fn valid_system_id(system_id: &str) -> bool {
    (1..=MAX_SYSTEM_ID_LEN).contains(&system_id.len())
        && system_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
