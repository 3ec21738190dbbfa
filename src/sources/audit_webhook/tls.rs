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

pub fn load_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Pem { key, path: path.display().to_string(), message: e.to_string() })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { key, path: path.display().to_string(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { key, path: path.display().to_string(), what: "PEM certificate" });
    }
    Ok(certs)
}

pub fn server_config(s: &ServerSettings) -> Result<ServerConfig, TlsError> {
    let certs = load_certs("server.tls.cert_file", &s.tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&s.tls.key_file).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            key: "server.tls.key_file",
            path: s.tls.key_file.display().to_string(),
            what: "PEM private key",
        },
        e => TlsError::Pem {
            key: "server.tls.key_file",
            path: s.tls.key_file.display().to_string(),
            message: e.to_string(),
        },
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &s.tls.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs("server.tls.client_ca_file", ca)? {
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
        None => builder.with_no_client_auth(),
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
