//! HTTPS for the API (`[server] tls_cert`, `tls_key`): the certificate and
//! key are read once at start, and a bad file stops the start with its name
//! and the reason. rustls on the `ring` provider, as the outbound client
//! uses (one TLS stack; ring builds with just a C compiler). ALPN offers
//! `h2` and `http/1.1`; the accept loop picks hyper's builder by what was
//! negotiated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls_verify::CertificateCheck;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert `{}`: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("server.tls_key `{}`: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("server.tls_cert and server.tls_key cannot be used together: {0}")]
    Rejected(rustls::Error),
}

/// The server's TLS settings, and its certificate for Pigeon's own calls
/// to itself (the sandbox's delivery reports).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    certificate: CertificateDer<'static>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Reads the PEM certificate chain (leaf first) and private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let certificate_error = |reason: String| TlsError::Certificate {
            path: cert_path.to_owned(),
            reason,
        };
        let key_error = |reason: String| TlsError::Key {
            path: key_path.to_owned(),
            reason,
        };
        let cert_pem = std::fs::read(cert_path).map_err(|e| certificate_error(e.to_string()))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| certificate_error(format!("not valid PEM: {e}")))?;
        let Some(leaf) = chain.first().cloned() else {
            return Err(certificate_error("no CERTIFICATE block in the file".into()));
        };
        let key_pem = std::fs::read(key_path).map_err(|e| key_error(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                key_error("no PRIVATE KEY block in the file".into())
            }
            e => key_error(format!("not valid PEM: {e}")),
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rejected)?
            .with_no_client_auth()
            // Also checks that the key belongs to the certificate.
            .with_single_cert(chain, key)
            .map_err(TlsError::Rejected)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            certificate: leaf,
        })
    }

    /// The acceptor for a listener using this certificate (the API's, and SMPP's).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// A client config that trusts exactly this server's certificate,
    /// whatever name it was issued for: Pigeon calls its own listener by
    /// its loopback address, which a real certificate does not name. The
    /// handshake's signature is still checked, so only the holder of the
    /// key passes.
    pub fn self_client_config(&self) -> rustls::ClientConfig {
        let provider = provider();
        // The provider's own protocol versions: cannot fail.
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"))
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CertificateCheck::pinned(
                self.certificate.clone(),
                provider,
            )))
            .with_no_client_auth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let err = ServerTls::load(&cert, &key).unwrap_err().to_string();
        assert!(
            err.contains("server.tls_cert") && err.contains("cert.pem"),
            "{err}"
        );
        std::fs::write(&cert, "hello").unwrap();
        let err = ServerTls::load(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
