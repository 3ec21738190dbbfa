//! Certificate rotation without a restart: the webhook's TLS files are watched,
//! and a changed certificate, key or client CA becomes the configuration of
//! every handshake from then on.
//!
//! cert-manager renews the Secret in place and the kubelet swaps the mounted
//! files atomically: `..data` is a symlink to a timestamped directory, and
//! `tls.crt` is a symlink to `..data/tls.crt`; a renewal writes a new
//! directory and renames a new `..data` over the old one. The files
//! themselves are never written, so the reloader does not watch them: it
//! watches their directories (inotify, through `notify`) and, because such
//! swaps are easy to miss (a watch lost with its directory, a filesystem
//! without inotify), also reads the files every `server.tls.reload_interval`.
//! Either way it compares the files' content with what it saw last and builds
//! a new configuration only when something changed.
//!
//! A change that does not build (unreadable, not PEM, a key that is not the
//! certificate's, a CA file without a CA) is refused with an error naming the
//! file, counted as `klg_tls_reloads_total{result="error"}`, and the previous
//! configuration stays in use. The same content is not tried twice; the next
//! change (the rest of a half-written file, the matching key) is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;

use super::config::ServerConfig as ServerSettings;
use super::tls::{self, TlsError, TlsFiles};
use crate::server::TlsConfigSource;
use crate::shutdown::Shutdown;
use crate::telemetry::{ReloadLabels, ReloadResult};

/// After a directory event, how long to wait for the rest of the change (a
/// kubelet swap is several events; a copy writes a file in pieces) before
/// reading the files.
const SETTLE: Duration = Duration::from_millis(200);

/// The webhook's TLS configuration, replaced whole when its files change.
///
/// The whole `rustls::ServerConfig` is swapped, rather than only the
/// certificate through rustls's `ResolvesServerCert`, because the client CA
/// rotates too, and it lives in the config's client certificate verifier,
/// which a certificate resolver cannot change. One swap keeps certificate,
/// key and CA consistent with each other, and a new config brings a new
/// session cache, so a session resumed after a rotation was verified against
/// the CA in use. The listener reads the current config once per accepted
/// connection (a read lock and an `Arc` clone, far cheaper than the
/// handshake that follows); a connection keeps the config it was accepted
/// with for its whole life, so rotation never disturbs one already open.
/// `std`'s `RwLock` is enough for that rate of reads and needs no new crate.
pub struct ReloadingTls {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsConfigSource for ReloadingTls {
    fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ReloadingTls {
    fn replace(&self, config: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

/// Reads and builds the TLS configuration, then keeps it up to date with its
/// files until shutdown. Fails only if the files do not build now.
pub fn start(settings: &ServerSettings, shutdown: Shutdown) -> Result<Arc<ReloadingTls>, TlsError> {
    let files = TlsFiles::read(settings)?;
    let config = tls::build(settings, &files)?;
    log_certificate("webhook TLS certificate loaded", &files, None);
    let shared = Arc::new(ReloadingTls { current: RwLock::new(Arc::new(config)) });
    let metrics = crate::telemetry::metrics();
    for result in [ReloadResult::ok, ReloadResult::error] {
        // Exported as 0 from the start, not only after the first reload.
        let _ = metrics.tls_reloads.get_or_create(&ReloadLabels { result });
    }
    let reloader =
        Reloader { settings: settings.clone(), shared: shared.clone(), in_use: files.clone(), last: Ok(files) };
    tokio::spawn(reloader.run(shutdown));
    Ok(shared)
}

struct Reloader {
    settings: ServerSettings,
    shared: Arc<ReloadingTls>,
    /// The files the configuration in use was built from.
    in_use: TlsFiles,
    /// What the files held at the last look (or why they could not be read):
    /// a look that finds the same does nothing.
    last: Result<TlsFiles, String>,
}

impl Reloader {
    async fn run(mut self, shutdown: Shutdown) {
        let wake = Arc::new(tokio::sync::Notify::new());
        let _watcher = watch(&self.directories(), wake.clone());
        let mut poll = tokio::time::interval(self.settings.tls.reload_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await; // the first tick is now: the files were just read
        loop {
            tokio::select! {
                _ = wake.notified() => {
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE) => {}
                        _ = shutdown.stopping() => return,
                    }
                }
                _ = poll.tick() => {}
                _ = shutdown.stopping() => return,
            }
            self = match tokio::task::spawn_blocking(move || {
                self.check();
                self
            })
            .await
            {
                Ok(this) => this,
                Err(e) => {
                    tracing::error!("webhook TLS reloader stopped, certificates are no longer reloaded: {e}");
                    return;
                }
            };
        }
    }

    /// The directories holding the files: where the kubelet swaps `..data`.
    fn directories(&self) -> BTreeSet<PathBuf> {
        let tls = &self.settings.tls;
        [Some(&tls.cert_file), Some(&tls.key_file), tls.client_ca_file.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect()
    }

    /// Reads the files; if they changed since the last look, builds and
    /// installs a new configuration, or refuses the change and keeps the old one.
    fn check(&mut self) {
        let now = TlsFiles::read(&self.settings).map_err(|e| e.to_string());
        if now == self.last {
            return;
        }
        let changed = changed_files(&self.in_use, &now);
        self.last = now.clone();
        let built = now.and_then(|files| match tls::build(&self.settings, &files) {
            Ok(config) => Ok((files, config)),
            Err(e) => Err(e.to_string()),
        });
        let metrics = crate::telemetry::metrics();
        match built {
            Ok((files, config)) => {
                // In use before it is counted: whoever sees the count gets the new config.
                self.shared.replace(Arc::new(config));
                log_certificate("webhook TLS files changed: new handshakes use them", &files, Some(&changed));
                self.in_use = files;
                metrics.tls_reloads.get_or_create(&ReloadLabels { result: ReloadResult::ok }).inc();
            }
            Err(e) => {
                tracing::error!(
                    changed,
                    "webhook TLS files changed but were refused, still serving the previous certificate and CA: {e}"
                );
                metrics.tls_reloads.get_or_create(&ReloadLabels { result: ReloadResult::error }).inc();
            }
        }
    }
}

/// Which of cert_file, key_file, client_ca_file differ from the files in use
/// (all of them if the files could not be read).
fn changed_files(b: &TlsFiles, now: &Result<TlsFiles, String>) -> String {
    let Ok(n) = now else { return "cert_file,key_file,client_ca_file".into() };
    let mut changed = Vec::new();
    if b.cert != n.cert {
        changed.push("cert_file");
    }
    if b.key != n.key {
        changed.push("key_file");
    }
    if b.client_ca != n.client_ca {
        changed.push("client_ca_file");
    }
    changed.join(",")
}

/// Logs `message` at info with the certificate's subject and not-after (and
/// which files changed, for a reload).
fn log_certificate(message: &str, files: &TlsFiles, changed: Option<&str>) {
    match tls::describe_certificate(&files.cert) {
        Some((subject, not_after)) => tracing::info!(%subject, %not_after, changed, "{message}"),
        None => tracing::info!(changed, "{message}"),
    }
}

/// Watches `dirs` and wakes the reloader on any change in them. Without
/// inotify (or a directory that cannot be watched) the poll alone remains.
fn watch(dirs: &BTreeSet<PathBuf>, wake: Arc<tokio::sync::Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Opening and reading (our own reads among them) changes nothing.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            wake.notify_one();
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("inotify unavailable, TLS files are checked every server.tls.reload_interval only: {e}");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(Path::new(dir), notify::RecursiveMode::NonRecursive) {
            tracing::warn!(
                dir = %dir.display(),
                "cannot watch with inotify, TLS files there are checked every server.tls.reload_interval only: {e}"
            );
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(cert: &str, key: &str, ca: Option<&str>) -> TlsFiles {
        TlsFiles { cert: cert.into(), key: key.into(), client_ca: ca.map(Into::into) }
    }

    #[test]
    fn changed_files_names_what_differs() {
        let a = files("c1", "k1", Some("ca1"));
        assert_eq!(changed_files(&a, &Ok(files("c2", "k2", Some("ca1")))), "cert_file,key_file");
        assert_eq!(changed_files(&a, &Ok(files("c1", "k1", Some("ca2")))), "client_ca_file");
        assert_eq!(changed_files(&a, &Err("gone".into())), "cert_file,key_file,client_ca_file");
    }
}
