//! `kube-log-gateway certs`: a development CA with a server certificate for the
//! webhook and a client certificate for kube-apiserver. Production clusters
//! should use their own PKI (cert-manager, the cluster CA); these are for local
//! runs, tests and trying it out.

use std::net::IpAddr;

use chrono::Datelike;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("--san {0:?}: {1}")]
    San(String, String),
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The files written, in order: ca.crt, server.crt, server.key, client.crt, client.key.
pub const FILES: [&str; 5] = ["ca.crt", "server.crt", "server.key", "client.crt", "client.key"];

/// Writes a CA, a server certificate for `localhost`, `127.0.0.1` and `sans`,
/// and a client certificate with CN `client_name`, into `out`.
pub fn generate(out: &Path, sans: &[String], client_name: &str) -> Result<Vec<PathBuf>, CertsError> {
    // Valid from yesterday (clock skew) for two years.
    let today = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let now = rcgen::date_time_ymd(today.year(), today.month() as u8, today.day() as u8);
    let until = today + chrono::Months::new(24);
    let not_after = rcgen::date_time_ymd(until.year(), until.month() as u8, until.day() as u8);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.distinguished_name = dn("kube-log-gateway development CA");
    ca_params.not_before = now;
    ca_params.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server_sans =
        vec![SanType::DnsName("localhost".try_into()?), SanType::IpAddress("127.0.0.1".parse().unwrap())];
    for san in sans {
        server_sans.push(match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if !is_dns_name(san) {
                    return Err(CertsError::San(
                        san.clone(),
                        "not an IP address or a DNS name (letters, digits, '-' and '.'; '*.' only as the first label)"
                            .into(),
                    ));
                }
                SanType::DnsName(
                    san.as_str().try_into().map_err(|e: rcgen::Error| CertsError::San(san.clone(), e.to_string()))?,
                )
            }
        });
    }
    let mut server_params = CertificateParams::default();
    server_params.subject_alt_names = server_sans;
    server_params.distinguished_name = dn("kube-log-gateway");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    server_params.not_before = now;
    server_params.not_after = not_after;
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;

    let mut client_params = CertificateParams::default();
    client_params.distinguished_name = dn(client_name);
    client_params.subject_alt_names =
        vec![SanType::DnsName(client_name.try_into().unwrap_or_else(|_| "client".try_into().unwrap()))];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    client_params.not_before = now;
    client_params.not_after = not_after;
    let client_key = KeyPair::generate()?;
    let client = client_params.signed_by(&client_key, &ca)?;

    std::fs::create_dir_all(out).map_err(|source| CertsError::Write { path: out.to_path_buf(), source })?;
    let contents = [ca.pem(), server.pem(), server_key.serialize_pem(), client.pem(), client_key.serialize_pem()];
    let mut written = Vec::new();
    for (name, text) in FILES.iter().zip(contents) {
        let path = out.join(name);
        write_file(&path, &text, name.ends_with(".key"))?;
        written.push(path);
    }
    Ok(written)
}

/// RFC 1123 host names, with an optional leading `*.` wildcard label.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<(), CertsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|source| CertsError::Write { path: path.to_path_buf(), source })?;
    f.write_all(text.as_bytes()).map_err(|source| CertsError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_five_pem_files_with_private_keys_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path(), &["gw.example.svc".into(), "10.1.2.3".into()], "kube-apiserver").unwrap();
        assert_eq!(files.len(), 5);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{}", f.display());
        }
        let mode = std::fs::metadata(dir.path().join("server.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = std::fs::read(dir.path().join("server.crt")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = pem.parse_x509().unwrap();
        use x509_parser::extensions::GeneralName;
        let san = cert.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
        assert!(san.contains(&GeneralName::DNSName("localhost")), "{san:?}");
        assert!(san.contains(&GeneralName::DNSName("gw.example.svc")), "{san:?}");
        assert!(san.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])), "{san:?}");
        assert!(san.contains(&GeneralName::IPAddress(&[10, 1, 2, 3])), "{san:?}");
    }

    #[test]
    fn bad_san_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = generate(dir.path(), &["not a name".into()], "c").unwrap_err().to_string();
        assert!(err.starts_with("--san \"not a name\": not an IP address or a DNS name"), "{err}");
        assert!(generate(dir.path(), &["*.gw.svc".into(), "a-b.example".into()], "c").is_ok());
        assert!(generate(dir.path(), &["-bad.example".into()], "c").is_err());
    }
}
