//! A gateway under test: its home directory (config, data, log, unique index
//! prefix, admin port) and the binary run as a child process (so that tests
//! can kill -9 it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::GatewayConfig;
use super::es::{delete_indices, http};
use super::files::read_or_empty;
use super::metrics::{metric, wait_for_metric};
use super::wait::poll;
use super::{free_port, unique};

/// A temporary directory for one gateway: `gateway.yaml`, `data/`,
/// `gateway.log`; indices `<prefix>-<kind>-*`; an admin listener address.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    /// `127.0.0.1:<port>` of the admin listener (/readyz, /metrics).
    pub admin: String,
}

impl Home {
    pub fn new(name: &str) -> Home {
        Home { dir: tempfile::tempdir().unwrap(), prefix: unique(name), admin: format!("127.0.0.1:{}", free_port()) }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("gateway.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path().join("gateway.log")
    }

    /// What the gateway logged so far (all runs).
    pub fn log(&self) -> String {
        read_or_empty(&self.log_path())
    }

    /// The last `n` lines of [`Home::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The index pattern for a kind (`audit`, `containers`, …): `<prefix>-<kind>-%Y.%m.%d`.
    pub fn index(&self, kind: &str) -> String {
        format!("{}-{kind}-%Y.%m.%d", self.prefix)
    }

    /// Every index of a kind: `<prefix>-<kind>-*`.
    pub fn indices(&self, kind: &str) -> String {
        format!("{}-{kind}-*", self.prefix)
    }

    /// Writes `config` to `gateway.yaml`; returns its path.
    pub fn write_config(&self, config: &GatewayConfig) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, config.to_yaml()).unwrap();
        path
    }

    /// Writes `config` and starts the gateway with it (its admin listener must
    /// be this home's `admin`).
    pub fn start(&self, config: &GatewayConfig) -> Gateway {
        Gateway::start(&self.write_config(config), &self.admin, &self.log_path())
    }

    /// Like [`Home::start`], with the gateway running as user and group `uid`
    /// (the tests run as root, to whom every file is readable). The home becomes
    /// world-writable so that user can use it.
    pub fn start_as(&self, config: &GatewayConfig, uid: u32) -> Gateway {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Gateway::spawn(&self.write_config(config), &self.admin, &self.log_path(), Some(uid))
    }

    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        metric(&self.admin, name, labels).await
    }

    /// Waits until the running gateway's metric satisfies `done`; returns it.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        labels: &str,
        timeout: Duration,
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        wait_for_metric(&self.admin, name, labels, timeout, done).await
    }

    /// The admin listener's /readyz: status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let resp = http().get(format!("http://{}/readyz", self.admin)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Waits until both spool gauges (`klg_spool_entries`, `klg_spool_bytes`)
    /// are 0: every acknowledged batch delivered or quarantined. Panics with
    /// the last values and the log after `timeout`.
    pub async fn wait_spool_empty(&self, timeout: Duration) {
        let gauges = || async {
            (metric(&self.admin, "klg_spool_entries", "").await, metric(&self.admin, "klg_spool_bytes", "").await)
        };
        let (last, empty) = poll(timeout, Duration::from_millis(200), gauges, |g| *g == (0.0, 0.0)).await;
        assert!(empty, "spool not empty after {timeout:?}: (entries, bytes) {last:?}: {}", self.log());
    }

    /// Waits until a line of the gateway's log satisfies `matches`; returns it.
    /// Panics with the log after `timeout`.
    pub async fn wait_for_log_line(&self, what: &str, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let find = || async { self.log().lines().find(|l| matches(l)).map(str::to_string) };
        let (line, found) = poll(timeout, Duration::from_millis(100), find, Option::is_some).await;
        assert!(found, "no log line {what} after {timeout:?}: {}", self.log());
        line.unwrap()
    }

    /// Every index of this home, of any kind: `<prefix>-*`.
    pub fn all_indices(&self) -> String {
        format!("{}-*", self.prefix)
    }

    /// Deletes every index of this home (`<prefix>-*`).
    pub async fn delete_indices(&self) {
        delete_indices(&self.all_indices()).await;
    }
}

/// The gateway binary under test, running as a child process.
pub struct Gateway {
    pub child: Child,
    /// `127.0.0.1:<port>` of its admin listener.
    pub admin: String,
}

impl Gateway {
    /// Starts `kube-log-gateway serve --config <config>` and waits for /readyz.
    /// The config must set `admin.listen` to `admin_addr`.
    pub fn start(config: &Path, admin_addr: &str, log: &Path) -> Gateway {
        Gateway::spawn(config, admin_addr, log, None)
    }

    fn spawn(config: &Path, admin_addr: &str, log: &Path, uid: Option<u32>) -> Gateway {
        use std::os::unix::process::CommandExt;
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file));
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd.spawn().expect("start the gateway");
        let mut gw = Gateway { child, admin: admin_addr.to_string() };
        gw.wait_ready(log);
        gw
    }

    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.admin) else { return false };
        let mut buf = String::new();
        let answered = s.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
            && s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").is_ok()
            && s.read_to_string(&mut buf).is_ok();
        answered && (buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"))
    }

    fn wait_ready(&mut self, log: &Path) {
        let start = Instant::now();
        while !self.ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited with {status}: {}", read_or_empty(log));
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("gateway not ready after 60 s: {}", read_or_empty(log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        metric(&self.admin, name, labels).await
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
