//! Certificates (`kube-log-gateway certs`) and the TLS clients that use them:
//! reqwest clients, and raw TLS connections for tests that misbehave on purpose.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// `kube-log-gateway certs --out dir`: a fresh CA with server and client certificates.
pub fn make_certs(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .args(["certs", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "kube-log-gateway certs --out {}", dir.display());
}

fn client_identity(certs: &Path) -> reqwest::Identity {
    let mut pem = std::fs::read(certs.join("client.crt")).unwrap();
    pem.extend(std::fs::read(certs.join("client.key")).unwrap());
    reqwest::Identity::from_pem(&pem).unwrap()
}

fn trusting(certs: &Path) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca)
}

/// An HTTPS client trusting `certs/ca.crt`, presenting `certs/client.*` if `with_cert`.
pub fn tls_client(certs: &Path, with_cert: bool) -> reqwest::Client {
    tls_client_builder(certs, with_cert).build().unwrap()
}

/// [`tls_client`] before it is built, to set more (e.g. `http1_only`).
pub fn tls_client_builder(certs: &Path, with_cert: bool) -> reqwest::ClientBuilder {
    let b = trusting(certs).timeout(Duration::from_secs(60));
    match with_cert {
        true => b.identity(client_identity(certs)),
        false => b,
    }
}

/// An HTTPS client that trusts `server_certs/ca.crt` but presents the client
/// certificate from `client_certs` (e.g. one signed by another CA).
pub fn tls_client_with(server_certs: &Path, client_certs: &Path) -> reqwest::Client {
    trusting(server_certs).identity(client_identity(client_certs)).build().unwrap()
}

/// A rustls client config for raw TLS connections to the webhook (what
/// reqwest does not let a test do: stay silent, hang up mid-request, pick
/// the ALPN protocol): trusts `certs/ca.crt`, presents `certs/client.*` if
/// `with_cert`, offers `alpn`.
pub fn rustls_client_config(certs: &Path, with_cert: bool, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if with_cert {
        let chain: Vec<_> =
            CertificateDer::pem_file_iter(certs.join("client.crt")).unwrap().map(Result::unwrap).collect();
        builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(certs.join("client.key")).unwrap()).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `localhost:port` (127.0.0.1) with `config`.
pub async fn tls_connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    TlsConnector::from(config).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// Writes a whole HTTP/1.1 `POST path` of JSON `body` on `stream`, without reading the answer.
pub async fn write_post(stream: &mut TlsStream<TcpStream>, path: &str, body: &[u8]) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
}
