//! The outbound HTTP client shared by carrier plugins and webhooks: HTTP/1,
//! plain http:// through hyper-util and https:// through rustls on the
//! `ring` provider with Mozilla's roots compiled in (webpki-roots). Unlike
//! aws-lc-rs, ring builds with just a C compiler (no cmake, no nasm), and
//! compiled-in roots behave the same on every machine.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::GaiResolver;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tower_service::Service;

/// A pooled client whose connections resolve names with `R`.
pub type HttpsClient<R = GaiResolver> = Client<HttpsConnector<HttpConnector<R>>, Full<Bytes>>;

/// Wraps `http` (which decides how names resolve) with TLS and pooling.
pub fn build<R>(mut http: HttpConnector<R>, idle: Duration) -> Result<HttpsClient<R>, rustls::Error>
where
    R: Clone + Send + Sync + 'static,
    HttpConnector<R>: Service<Uri, Response = TokioIo<TcpStream>> + Clone + Send + Sync + 'static,
    <HttpConnector<R> as Service<Uri>>::Future: Send + 'static,
    <HttpConnector<R> as Service<Uri>>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .build(https))
}

/// As [`build`], with `tls` in place of the provider and Mozilla's roots.
pub fn build_with_tls<R>(
    mut http: HttpConnector<R>,
    idle: Duration,
    tls: rustls::ClientConfig,
) -> HttpsClient<R>
where
    R: Clone + Send + Sync + 'static,
    HttpConnector<R>: Service<Uri, Response = TokioIo<TcpStream>> + Clone + Send + Sync + 'static,
    <HttpConnector<R> as Service<Uri>>::Future: Send + 'static,
    <HttpConnector<R> as Service<Uri>>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .build(https)
}
