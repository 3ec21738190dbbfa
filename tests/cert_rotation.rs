//! Certificate rotation without a restart, with real TLS and the gateway binary.
//!
//! The webhook's files are laid out the way the kubelet mounts a Secret, and
//! rotated the way it does when cert-manager renews one: the files are
//! symlinks into `..data`, itself a symlink to a timestamped directory, and a
//! renewal writes a new directory and renames a new `..data` over the old.
//! Every test waits on `klg_tls_reloads_total`, never on a sleep.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::certs::{make_certs, tls_client, tls_client_with};
use common::config::TlsFiles;
use common::es::require_es;
use common::webhook::{WebhookSetup, EVENTLIST};

/// How long the gateway gets to notice a swap: inotify sees it at once, the
/// poll (`server.tls.reload_interval`, 10 s) at the latest.
const WAIT: Duration = Duration::from_secs(30);

/// The files of the Secret, under the names the test config points at.
const FILES: [&str; 3] = ["server.crt", "server.key", "ca.crt"];

/// A Secret volume as the kubelet lays it out:
/// `server.crt -> ..data/server.crt`, `..data -> ..<timestamp>/`.
struct SecretVolume {
    dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    /// Mounts `server.crt`, `server.key` and `ca.crt` from `certs` into `dir`.
    fn mount(dir: &Path, certs: &Path) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        let mut volume = SecretVolume { dir: dir.to_path_buf(), generation: 0 };
        volume.swap(&files_of(certs));
        for name in FILES {
            symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
        }
        volume
    }

    /// What the kubelet does on an update (pkg/volume/util/atomic_writer.go):
    /// a new timestamped directory with the files, a `..data_tmp` symlink to
    /// it renamed over `..data` (the atomic step), then the old directory removed.
    fn swap(&mut self, files: &[(&str, Vec<u8>)]) {
        self.generation += 1;
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let name = format!("..2026_05_01_12_00_{:02}.{}", self.generation, std::process::id());
        let new = self.dir.join(&name);
        std::fs::create_dir(&new).unwrap();
        for (file, content) in files {
            std::fs::write(new.join(file), content).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }

    /// The path the gateway is configured with for `file`.
    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

fn files_of(certs: &Path) -> Vec<(&'static str, Vec<u8>)> {
    FILES.iter().map(|f| (*f, std::fs::read(certs.join(f)).unwrap())).collect()
}

/// A gateway whose webhook certificate, key and client CA come from a
/// kubelet-style Secret volume filled from `setup.certs()` (the "old" CA).
fn setup_with_volume(name: &str) -> (WebhookSetup, SecretVolume) {
    let mut setup = WebhookSetup::new(name);
    let volume = SecretVolume::mount(&setup.path().join("secret"), &setup.certs());
    setup.config.server_mut().tls = Some(TlsFiles::in_dir(&volume.dir));
    (setup, volume)
}

/// A second, unrelated CA with its server and client certificates.
fn new_ca(setup: &WebhookSetup, name: &str) -> PathBuf {
    let dir = setup.path().join(name);
    make_certs(&dir);
    dir
}

/// POSTs an EventList on a new connection of a new client trusting `certs/ca.crt`
/// and presenting `certs/client.*`; the status, or the transport error.
async fn post_fresh(setup: &WebhookSetup, certs: &Path) -> Result<u16, String> {
    post_with(&tls_client(certs, true), setup).await
}

async fn post_with(client: &reqwest::Client, setup: &WebhookSetup) -> Result<u16, String> {
    let resp = client
        .post(setup.url("/audit"))
        .header("content-type", "application/json")
        .body(EVENTLIST)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    resp.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok(status)
}

async fn reloads(setup: &WebhookSetup, result: &str) -> f64 {
    setup.metric("klg_tls_reloads_total", &format!("result=\"{result}\"")).await
}

#[tokio::test]
async fn a_renewal_with_a_new_ca_serves_new_handshakes_and_spares_open_connections() {
    require_es().await;
    let (setup, mut volume) = setup_with_volume("cert-rotate");
    let _gw = setup.start();
    let old = setup.certs();
    let new = new_ca(&setup, "certs-new");
    assert_eq!(reloads(&setup, "ok").await, 0.0);
    assert_eq!(reloads(&setup, "error").await, 0.0);

    // A kube-apiserver that connected before the renewal, and keeps its
    // connection alive (HTTP/1.1 keep-alive, one pooled connection).
    let kept = tls_client(&old, true);
    assert_eq!(post_with(&kept, &setup).await, Ok(200));

    // cert-manager renews with another CA: new server certificate, new client CA.
    volume.swap(&files_of(&new));
    setup.wait_for_metric("klg_tls_reloads_total", "result=\"ok\"", WAIT, |v| v >= 1.0).await;

    // New handshakes: the new certificate and the new client CA.
    assert_eq!(post_fresh(&setup, &new).await, Ok(200));
    let untrusted = post_fresh(&setup, &old).await;
    assert!(untrusted.is_err(), "a client trusting only the old CA still got through: {untrusted:?}");
    let old_client_cert = post_with(&tls_client_with(&new, &old), &setup).await;
    assert!(old_client_cert.is_err(), "a client certificate from the old CA still got through: {old_client_cert:?}");

    // The connection opened before the swap still gets answers. It must be
    // that connection: `kept` trusts only the old CA, so it could not open
    // a new one (just shown above).
    assert_eq!(post_with(&kept, &setup).await, Ok(200));
    assert_eq!(post_with(&kept, &setup).await, Ok(200));

    let log = setup.log();
    assert!(log.contains("webhook TLS files changed: new handshakes use them"), "{log}");
    assert!(log.contains("not_after"), "{log}");
    assert_eq!(reloads(&setup, "ok").await, 1.0, "one swap, one reload");
    assert_eq!(reloads(&setup, "error").await, 0.0);
    setup.delete_indices().await;
}

#[tokio::test]
async fn a_broken_renewal_is_refused_keeping_the_old_certificate_and_the_next_good_one_is_taken() {
    require_es().await;
    let (setup, mut volume) = setup_with_volume("cert-broken");
    let _gw = setup.start();
    let current = setup.certs();
    let other = new_ca(&setup, "certs-other");
    let next = new_ca(&setup, "certs-next");

    // A certificate with a key that is not its own.
    let mut mismatched = files_of(&other);
    mismatched[1].1 = std::fs::read(next.join("server.key")).unwrap();
    volume.swap(&mismatched);
    setup.wait_for_metric("klg_tls_reloads_total", "result=\"error\"", WAIT, |v| v >= 1.0).await;
    let log = setup.log();
    let line = log.lines().find(|l| l.contains("were refused")).unwrap_or_else(|| panic!("no refusal logged: {log}"));
    assert!(line.contains("does not fit"), "{line}");
    assert!(line.contains(&volume.path("server.key").display().to_string()), "{line}");
    assert!(line.contains(&volume.path("server.crt").display().to_string()), "{line}");
    // Still the old certificate and CA.
    assert_eq!(post_fresh(&setup, &current).await, Ok(200));
    assert!(post_fresh(&setup, &other).await.is_err());

    // A half-written certificate.
    let mut half = files_of(&next);
    let cut = half[0].1.len() / 2;
    half[0].1.truncate(cut);
    volume.swap(&half);
    setup.wait_for_metric("klg_tls_reloads_total", "result=\"error\"", WAIT, |v| v >= 2.0).await;
    let log = setup.log();
    let line = log
        .lines()
        .filter(|l| l.contains("were refused"))
        .nth(1)
        .unwrap_or_else(|| panic!("no second refusal logged: {log}"));
    assert!(line.contains("server.tls.cert_file"), "{line}");
    assert!(line.contains("not valid PEM: no \"-----END CERTIFICATE-----\" line"), "{line}");
    assert!(line.contains(&volume.path("server.crt").display().to_string()), "{line}");
    assert_eq!(post_fresh(&setup, &current).await, Ok(200));
    assert_eq!(reloads(&setup, "ok").await, 0.0);

    // Fixed: the next swap is taken.
    volume.swap(&files_of(&next));
    setup.wait_for_metric("klg_tls_reloads_total", "result=\"ok\"", WAIT, |v| v >= 1.0).await;
    assert_eq!(post_fresh(&setup, &next).await, Ok(200));
    assert!(post_fresh(&setup, &current).await.is_err(), "the old CA is still trusted after the fix");
    assert_eq!(reloads(&setup, "error").await, 2.0, "a refused change is not retried while unchanged");
    setup.delete_indices().await;
}
