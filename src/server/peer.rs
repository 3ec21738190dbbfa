//! What a connection told us about the peer before any request: its address
//! and, with mutual TLS, the names of its verified client certificate. The
//! server attaches it to every request of the connection as an extension.

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;

#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Names of the verified client certificate, if one was presented.
    pub certificate: Option<Vec<String>>,
}

/// The names a client certificate answers to: subject CN, then DNS and URI SANs.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> =
        parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_string).collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => names.push(n.to_string()),
                x509_parser::extensions::GeneralName::URI(u) => names.push(u.to_string()),
                _ => {}
            }
        }
    }
    names
}
