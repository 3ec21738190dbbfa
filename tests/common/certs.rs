//! Certificates (`kube-log-gateway certs`) and the TLS clients that use them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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
    let mut b = trusting(certs).timeout(Duration::from_secs(60));
    if with_cert {
        b = b.identity(client_identity(certs));
    }
    b.build().unwrap()
}

/// An HTTPS client that trusts `server_certs/ca.crt` but presents the client
/// certificate from `client_certs` (e.g. one signed by another CA).
pub fn tls_client_with(server_certs: &Path, client_certs: &Path) -> reqwest::Client {
    trusting(server_certs).identity(client_identity(client_certs)).build().unwrap()
}
