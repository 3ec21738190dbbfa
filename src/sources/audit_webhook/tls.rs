//! The webhook's TLS configuration (rustls with the ring provider).
//!
//! With `client_ca_file` set, clients must present a certificate from that CA —
//! unless bearer tokens are also configured, in which case the certificate is
//! optional at the TLS layer and the request must carry a valid token instead
//! (checked in `auth`). An optional allow-list restricts which certificate
//! names (CN or DNS/URI SAN) are accepted; a certificate outside it fails the
//! handshake, like one from another CA.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use super::config::ServerConfig as ServerSettings;
use crate::server::peer::certificate_names;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {message}")]
    Pem { key: &'static str, path: String, message: String },
    #[error("{key}: {path} contains no {what}")]
    Empty { key: &'static str, path: String, what: &'static str },
    #[error("server.tls: {0}")]
    Config(String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes of the TLS files, read once: what [`build`] makes a configuration
/// of, and what the reloader compares to notice a change
/// ([`super::tls_reload`]). Reading everything first and building from the
/// bytes means the configuration in use is exactly the content that was
/// checked, even if a file changes again while it is being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    pub fn read(s: &ServerSettings) -> Result<TlsFiles, TlsError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::Pem {
                key,
                path: path.display().to_string(),
                message: e.to_string(),
            })
        };
        Ok(TlsFiles {
            cert: read("server.tls.cert_file", &s.tls.cert_file)?,
            key: read("server.tls.key_file", &s.tls.key_file)?,
            client_ca: match &s.tls.client_ca_file {
                Some(ca) => Some(read("server.tls.client_ca_file", ca)?),
                None => None,
            },
        })
    }
}

fn parse_certs(key: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| TlsError::Pem {
        key,
        path: path.display().to_string(),
        message: pem_message(&e),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { key, path: path.display().to_string(), what: "PEM certificate" });
    }
    Ok(certs)
}

/// A PEM parse error in words (rustls prints the markers as byte lists).
fn pem_message(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "not valid PEM: no \"-----END {}-----\" line (cut short, or still being written)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("not valid PEM: malformed line {:?}", String::from_utf8_lossy(line))
        }
        Error::Base64Decode(e) => format!("not valid PEM: the base64 does not decode: {e}"),
        e => format!("not valid PEM: {e}"),
    }
}

/// Reads the TLS files and builds the configuration (start-up, `check-config`).
pub fn server_config(s: &ServerSettings) -> Result<ServerConfig, TlsError> {
    build(s, &TlsFiles::read(s)?)
}

/// Builds the configuration from the files' bytes: a certificate chain, the
/// key that belongs to it, and (if `client_ca_file` is set) at least one CA.
pub fn build(s: &ServerSettings, files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = parse_certs("server.tls.cert_file", &s.tls.cert_file, &files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            key: "server.tls.key_file",
            path: s.tls.key_file.display().to_string(),
            what: "PEM private key",
        },
        e => TlsError::Pem {
            key: "server.tls.key_file",
            path: s.tls.key_file.display().to_string(),
            message: pem_message(&e),
        },
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&s.tls.client_ca_file, &files.client_ca) {
        (Some(ca), Some(ca_pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs("server.tls.client_ca_file", ca, ca_pem)? {
                roots.add(cert).map_err(|e| TlsError::Config(format!("client_ca_file {}: {e}", ca.display())))?;
            }
            if roots.is_empty() {
                return Err(TlsError::Empty {
                    key: "server.tls.client_ca_file",
                    path: ca.display().to_string(),
                    what: "usable CA certificate",
                });
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            if s.bearer_tokens_file.is_some() || s.allow_unauthenticated {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::Config(e.to_string()))?;
            let verifier: Arc<dyn ClientCertVerifier> = if s.tls.allowed_client_names.is_empty() {
                verifier
            } else {
                Arc::new(AllowListVerifier { inner: verifier, allowed: s.tls.allowed_client_names.clone() })
            };
            builder.with_client_cert_verifier(verifier)
        }
        (Some(ca), None) => {
            return Err(TlsError::Config(format!("client_ca_file {} was not read", ca.display())));
        }
        (None, _) => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "key_file {} does not fit cert_file {} (not the certificate's key, or unusable): {e}",
            s.tls.key_file.display(),
            s.tls.cert_file.display()
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The subject and not-after (RFC 3339) of the first certificate in `pem`,
/// for the log; `None` if it does not parse.
pub fn describe_certificate(pem: &[u8]) -> Option<(String, String)> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Some((cert.subject().to_string(), not_after))
}

#[derive(Debug)]
struct AllowListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowListVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let names = certificate_names(end_entity);
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            tracing::warn!(?names, "client certificate is valid but not in server.tls.allowed_client_names");
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
