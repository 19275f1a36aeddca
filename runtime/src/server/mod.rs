//! The HTTP server: accepts connections until `shutdown` resolves, then
//! stops accepting and lets requests in flight finish. What one client may
//! hold is bounded: connections (`max_connections`, refused past it with a
//! JSON 503), time without a request (`idle_timeout_ms`), time to send a
//! request head (`header_read_timeout_ms`) and its size
//! (`max_header_bytes`); see `connection`. With `tls_cert` and `tls_key`
//! it serves HTTPS instead (see `tls`).

mod connection;
mod tls;

pub use tls::{ServerTls, TlsError};

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{self, App};
use crate::log_limit::LogLimiter;
use connection::{GuardedStream, Timeouts};

/// Longest wait for open connections at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `[server]`: what one client may hold of the HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Connections open at once; past it a new one gets a 503 and is
    /// closed. Keep it below the process's open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// How long a connection may wait for the first byte of a request,
    /// after opening or after the previous response.
    pub idle_timeout_ms: u64,
    /// How long a request head may take to arrive, from its first byte.
    pub header_read_timeout_ms: u64,
    /// Largest request head (request line and headers), in bytes; larger
    /// ones get a 431.
    pub max_header_bytes: usize,
    /// PEM file with the server's certificate chain (leaf first); with
    /// `tls_key`, the API is served over HTTPS (HTTP/2 or HTTP/1.1 by ALPN).
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` is believed:
    /// behind them, the client's address is the header's, for keys'
    /// `allowed_ips` and the audit trail. Empty: the peer's address.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            idle_timeout_ms: 60_000,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 32 * 1024,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Refused connections and failed accepts: a few lines a minute at most.
static REFUSED_LOG: LogLimiter = LogLimiter::new(10_000, 1);
static ACCEPT_LOG: LogLimiter = LogLimiter::new(10_000, 1);

/// The front door a request is for: the Twilio-compatible API under its
/// own prefix, Pigeon's API for everything else.
async fn front_door(
    app: Arc<App>,
    request: hyper::Request<hyper::body::Incoming>,
    peer: std::net::IpAddr,
) -> api::Response {
    if request.uri().path().starts_with(crate::twilio::PREFIX) {
        let forwarded_for = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let client_ip = crate::auth::network::client_ip(peer, forwarded_for, &app.trusted_proxies);
        crate::twilio::handle(app, request, client_ip).await
    } else {
        api::handle(app, request, peer).await
    }
}

/// Serves the API on `listener` until `shutdown` resolves: HTTPS when
/// `tls` is given, else plain HTTP/1.1.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    config: &ServerConfig,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) {
    if tls.is_none()
        && let Ok(addr) = listener.local_addr()
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            %addr,
            "serving plain HTTP on a non-loopback address: API keys cross the network unencrypted; set server.tls_cert and server.tls_key"
        );
    }
    let acceptor = tls.as_ref().map(ServerTls::acceptor);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .max_header_size(config.max_header_bytes)
        // hyper's read buffer: a whole head must fit, bodies stream through.
        .max_buf_size((config.max_header_bytes + 1024).max(64 * 1024));
    let timeouts = Timeouts {
        idle: Duration::from_millis(config.idle_timeout_ms),
        header: Duration::from_millis(config.header_read_timeout_ms),
        max_header_bytes: config.max_header_bytes,
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    if let Some(suppressed) = ACCEPT_LOG.allow() {
                        tracing::warn!(error = %err, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Refused at once, so the client learns it now, not at a timeout
            // (a TLS client gets no readable answer before its handshake).
            if acceptor.is_none() {
                let _ = stream.try_write(&connection::refusal(503, config.max_header_bytes));
            }
            if let Some(suppressed) = REFUSED_LOG.allow() {
                tracing::warn!(
                    max_connections = config.max_connections,
                    suppressed,
                    "connection refused: as many connections are open as server.max_connections allows"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(front_door(app, request, peer.ip()).await) }
        });
        let Some(acceptor) = &acceptor else {
            let io = TokioIo::new(GuardedStream::new(stream, timeouts));
            let connection = graceful.watch(builder.serve_connection(io, service));
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        // The handshake runs in the connection's task, so a slow one does
        // not hold up the accept loop; it has the head's deadline.
        let handshake = tokio::time::timeout(timeouts.header, acceptor.accept(stream));
        let watcher = graceful.watcher();
        let http1 = builder.clone();
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        tokio::spawn(async move {
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let negotiated_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let result = if negotiated_h2 {
                let io = TokioIo::new(GuardedStream::http2(stream, timeouts));
                watcher.watch(http2.serve_connection(io, service)).await
            } else {
                let io = TokioIo::new(GuardedStream::new(stream, timeouts));
                watcher.watch(http1.serve_connection(io, service)).await
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}
