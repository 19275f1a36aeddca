//! A server-certificate check for TLS clients that do not go by the Web
//! PKI: one pinned certificate (Pigeon calling its own listener, whose
//! certificate need not name the loopback address) or none at all
//! (PostgreSQL's `sslmode=prefer`/`require` without a root certificate,
//! as libpq does them). Either way the handshake's signature is checked
//! with the provider's algorithms.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
pub struct CertificateCheck {
    /// `None`: any certificate (encryption without authentication).
    pinned: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl CertificateCheck {
    /// Accepts exactly `certificate`, byte for byte.
    pub fn pinned(certificate: CertificateDer<'static>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pinned: Some(certificate),
            provider,
        }
    }

    /// Accepts any certificate: the connection is encrypted, not
    /// authenticated.
    pub fn any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            pinned: None,
            provider,
        }
    }
}

impl ServerCertVerifier for CertificateCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(pinned) if pinned.as_ref() != end_entity.as_ref() => Err(
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
