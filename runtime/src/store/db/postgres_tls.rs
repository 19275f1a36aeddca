//! How a connection to PostgreSQL is secured: libpq's `sslmode` and
//! `sslrootcert`, read from the URL's query as libpq reads them.
//!
//! | `sslmode` | TLS | The server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | if the server offers it | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `require` | always | the same as `prefer` |
//! | `verify-ca` | always | signed by `sslrootcert` (or, without it, a root Mozilla trusts) |
//! | `verify-full` | always | as `verify-ca`, and issued for the host connected to |
//!
//! `sslrootcert` is a PEM file of certificates, or `system` for Mozilla's
//! roots. tokio-postgres knows only the first three modes and neither
//! parameter, so both are taken out of the URL before it reads it.

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls_verify::CertificateCheck;

/// Where to connect and how.
#[derive(Clone)]
pub(crate) struct PgTarget {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: it holds the password.
        f.debug_struct("PgTarget").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// Reads `url` (`postgres://user:password@host:port/db?sslmode=…`); the
/// error says what is wrong with it.
pub(crate) fn target(url: &str) -> Result<PgTarget, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root_cert) = (Mode::Prefer, None);
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "sslmode" => mode = Mode::parse(&value)?,
            "sslrootcert" => root_cert = Some(value.into_owned()),
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let rest = rest.finish();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{rest}")
    };
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| e.to_string())?;
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match root_cert.as_deref() {
        Some("system") | None => None,
        Some(path) => Some(read_roots(path)?),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        // As libpq does them: encrypted, the certificate not checked.
        (Mode::Disable | Mode::Prefer | Mode::Require, None) => {
            Arc::new(CertificateCheck::any(provider.clone()))
        }
        (Mode::VerifyFull, roots) => webpki(roots, &provider)?,
        (_, roots) => Arc::new(AnyName(webpki(roots, &provider)?)),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(PgTarget {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let unreadable = |reason: String| format!("sslrootcert {path}: {reason}");
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(unreadable("no CERTIFICATE block in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| unreadable(e.to_string()))?;
    }
    Ok(roots)
}

/// The verifier of certificates signed by `roots` (Mozilla's if `None`).
fn webpki(
    roots: Option<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let roots = roots.unwrap_or_else(|| RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    });
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())
}

/// `verify-ca`: the chain is checked, the name the certificate was issued
/// for is not (webpki checks the chain first, so a name error means the
/// chain passed).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_out_and_the_rest_kept() {
        let t = target("postgres://u:p@db.example/pigeon?sslmode=verify-full&application_name=x")
            .unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("x"));
        let t = target("postgres://u@localhost/pigeon").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        let t = target("postgres://u@localhost/pigeon?sslmode=disable").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
    }

    /// Against the test server, whose certificate is for 127.0.0.1 alone,
    /// from a CA of its own.
    #[test]
    fn each_sslmode_connects_as_libpq_does() {
        use crate::store::testing;
        let encrypted = |url: &str| -> Result<bool, String> {
            let conn =
                super::super::Connection::postgres(&target(url)?).map_err(|e| e.to_string())?;
            let ssl: i64 = conn
                .prepare_cached(
                    "SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl \
                     WHERE pid = pg_backend_pid()",
                )
                .and_then(|mut s| s.query_row([], |row| row.get(0)))
                .map_err(|e| e.to_string())?;
            Ok(ssl == 1)
        };
        let url = testing::postgres_url();
        let ca = testing::postgres_ca_file();
        let ca = ca.display();
        assert_eq!(encrypted(&url), Ok(true), "prefer, the default");
        assert_eq!(encrypted(&format!("{url}?sslmode=disable")), Ok(false));
        assert_eq!(encrypted(&format!("{url}?sslmode=require")), Ok(true));
        let verified = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
        assert_eq!(encrypted(&verified), Ok(true));
        // Mozilla's roots do not know the test CA.
        let error = encrypted(&format!("{url}?sslmode=verify-full")).unwrap_err();
        assert!(error.contains("certificate"), "{error}");
        // By a name the certificate was not issued for: verify-ca passes.
        let by_name = url.replace("127.0.0.1", "localhost");
        let error =
            encrypted(&format!("{by_name}?sslmode=verify-full&sslrootcert={ca}")).unwrap_err();
        assert!(error.contains("certificate"), "{error}");
        assert_eq!(
            encrypted(&format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}")),
            Ok(true)
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let error = target("postgres://u@h/db?sslmode=allow").unwrap_err();
        assert!(error.contains("sslmode \"allow\""), "{error}");
        let error =
            target("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem").unwrap_err();
        assert!(
            error.starts_with("sslrootcert /nonexistent.pem: "),
            "{error}"
        );
    }
}
