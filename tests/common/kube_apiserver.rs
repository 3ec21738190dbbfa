//! A real kube-apiserver (and its etcd), run by `scripts/kube-apiserver.sh` with
//! its audit webhook pointed at a gateway, and its two records of what it audited:
//! its own audit log (`--audit-log-path`, the ground truth) and the events it
//! reports it could not deliver to the webhook. Events are compared as
//! [`Pair`]s, (auditID, stage), with the gateway's audit index ([`es_pairs`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::es::all_docs;
use super::webhook::WebhookSetup;

pub const KUBE_APISERVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kube-apiserver.sh");

/// The environment variable that lets these tests skip when the binaries are not built.
pub const KUBE_APISERVER_SKIP_VAR: &str = "KLG_SKIP_KUBE_APISERVER_TESTS";

/// (auditID, stage)
pub type Pair = (String, String);

/// Whether `scripts/kube-apiserver.sh build` has built the binaries. When not: the
/// test fails, unless `KLG_SKIP_KUBE_APISERVER_TESTS=1` says to skip (returns false).
pub fn binaries_built_or_skip() -> bool {
    let out = Command::new("bash")
        .arg(KUBE_APISERVER_SCRIPT)
        .arg("built")
        .output()
        .expect("run scripts/kube-apiserver.sh built");
    if out.status.success() {
        return true;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let var = KUBE_APISERVER_SKIP_VAR;
    let skip = std::env::var(var).map(|v| matches!(v.as_str(), "1" | "true" | "yes")).unwrap_or(false);
    assert!(
        skip,
        "kube-apiserver and kubectl are not built in {dir}: run `bash scripts/kube-apiserver.sh build` \
         (once, about 15-35 minutes), or set {var}=1 to skip these tests"
    );
    eprintln!("SKIPPED: kube-apiserver/kubectl not built in {dir} and {var} is set");
    false
}

/// A webhook gateway set up as the chart's gateway role configures it for kube-apiserver:
/// only kube-apiserver's client certificate (CN kube-apiserver) is allowed.
pub fn kube_webhook_setup(name: &str) -> WebhookSetup {
    let mut setup = WebhookSetup::new(name);
    setup.config.cluster_name = Some("kube-e2e".into());
    setup.config.server_mut().allowed_client_names = vec!["kube-apiserver".into()];
    setup
}

/// Where kube-apiserver's audit webhook points.
pub struct Webhook {
    pub url: String,
    /// ca.crt (the gateway's CA), client.crt and client.key (kube-apiserver's).
    pub certs: PathBuf,
}

impl Webhook {
    /// The `/audit` endpoint of `setup`'s gateway, by IP (the server certificate
    /// names 127.0.0.1, and the gateway listens on it only).
    pub fn of(setup: &WebhookSetup) -> Webhook {
        Webhook { url: format!("https://127.0.0.1:{}/audit", setup.port), certs: setup.certs() }
    }
}

/// A kube-apiserver + etcd started by `scripts/kube-apiserver.sh start` in `<tmp>/kube`,
/// `<tmp>` a temporary directory under `KLG_KUBE_TEST_ROOT` when scripts/test.sh sets it
/// (it stops whatever is left there). `stop` on drop, so nothing outlives the test (a
/// panic included).
pub struct KubeApiserver {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    /// (kube-apiserver, etcd client, etcd peer) ports, picked once by the test
    /// process (see [`super::free_port`]), so that a restart keeps its URL.
    ports: (u16, u16, u16),
    webhook: Option<Webhook>,
    /// More kube-apiserver flags (`KUBE_APISERVER_EXTRA_ARGS`), kept across restarts.
    extra_args: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl KubeApiserver {
    pub fn start(webhook: Option<Webhook>) -> KubeApiserver {
        Self::start_with_args(webhook, &[])
    }

    /// Like [`KubeApiserver::start`], with more kube-apiserver flags
    /// (e.g. `--etcd-compaction-interval=1s`), used again on every restart.
    pub fn start_with_args(webhook: Option<Webhook>, extra_args: &[&str]) -> KubeApiserver {
        let builder = tempfile::Builder::new().prefix("klg-kube-").to_owned();
        let tmp = match std::env::var_os("KLG_KUBE_TEST_ROOT") {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .unwrap();
        let dir = tmp.path().join("kube");
        // Constructed before the start, so a start that fails half-way is stopped too.
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let ports = (super::free_port(), super::free_port(), super::free_port());
        let mut api = KubeApiserver { dir, env: HashMap::new(), ports, webhook, extra_args, _tmp: tmp };
        api.restart();
        api
    }

    /// Runs `scripts/kube-apiserver.sh start` (again): etcd's data and the
    /// certificates in `dir` are kept, so a killed kube-apiserver comes back with
    /// the same objects at the same URL.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(KUBE_APISERVER_SCRIPT).arg("start").env("KUBE_DIR", &self.dir);
        for v in [
            "KLG_WEBHOOK_URL",
            "KLG_WEBHOOK_CA",
            "KLG_WEBHOOK_CERT",
            "KLG_WEBHOOK_KEY",
            "KUBE_PORT",
            "ETCD_PORT",
            "ETCD_PEER_PORT",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("KUBE_APISERVER_EXTRA_ARGS", self.extra_args.join(" "));
        let (kube, etcd, peer) = self.ports;
        cmd.env("KUBE_PORT", kube.to_string())
            .env("ETCD_PORT", etcd.to_string())
            .env("ETCD_PEER_PORT", peer.to_string());
        if let Some(w) = &self.webhook {
            cmd.env("KLG_WEBHOOK_URL", &w.url)
                .env("KLG_WEBHOOK_CA", w.certs.join("ca.crt"))
                .env("KLG_WEBHOOK_CERT", w.certs.join("client.crt"))
                .env("KLG_WEBHOOK_KEY", w.certs.join("client.key"));
        }
        let out = cmd.output().expect("run scripts/kube-apiserver.sh start");
        assert!(
            out.status.success(),
            "scripts/kube-apiserver.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(self.dir.join("env")).expect("the instance's env file");
        self.env = env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// SIGKILL to kube-apiserver only (etcd stays): watches break mid-stream.
    pub fn kill_apiserver(&self) {
        let pid = std::fs::read_to_string(self.dir.join("kube-apiserver.pid")).unwrap();
        let status = Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
        assert!(status.success(), "kill -9 kube-apiserver {pid}");
    }

    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).unwrap_or_else(|| panic!("{name} not in {}/env", self.dir.display()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.var("KUBE_URL"), path)
    }

    /// An HTTPS client that trusts this kube-apiserver's CA; tokens go per request.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.var("KUBE_CA")).unwrap()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// `kubectl` as the admin (system:masters).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.var("KUBECTL"))
            .args(args)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kube-apiserver.log")).unwrap_or_default()
    }

    /// Every event of kube-apiserver's own audit log (for assertions on what the
    /// traffic produced).
    pub fn audit_log_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.var("AUDIT_LOG")).unwrap();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Every (auditID, stage) in kube-apiserver's own audit log (--audit-log-path, json):
    /// the ground truth. A last line still being written is left for the next read.
    pub fn audit_log_pairs(&self) -> BTreeSet<Pair> {
        let text = std::fs::read_to_string(self.var("AUDIT_LOG")).unwrap_or_default();
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let Ok(ev) = serde_json::from_str::<Value>(line) else {
                assert!(!text.ends_with('\n') && text.ends_with(line), "unparsable audit log line: {line}");
                continue;
            };
            out.insert((ev["auditID"].as_str().unwrap().to_string(), ev["stage"].as_str().unwrap().to_string()));
        }
        out
    }

    /// The events kube-apiserver reports it could not deliver to the webhook (after its
    /// 5 attempts, or at once for an answer it does not retry, e.g. a 400). A refused
    /// connection is retried by v1.36.3 (observed: with nothing listening, no error for
    /// over 75 s, i.e. the backoff 10 s × 1.5 runs), so a gateway down for a few seconds
    /// loses nothing. On giving up, k8s.io/apiserver's
    /// `HandlePluginError` logs "Error in audit plugin 'webhook'"
    /// followed by one `AUDIT: id="…" stage="…"` line per impacted event.
    pub fn webhook_dropped_pairs(&self) -> BTreeSet<Pair> {
        let log = self.server_log();
        let mut out = BTreeSet::new();
        let mut in_webhook_error = false;
        for line in log.lines() {
            // A klog header (`E1125 10:00:00.000000 ...`) starts a new message.
            let b = line.as_bytes();
            if b.len() > 5 && b"IWEF".contains(&b[0]) && b[1..5].iter().all(u8::is_ascii_digit) {
                in_webhook_error = line.contains("Error in audit plugin '") && line.contains("webhook");
                continue;
            }
            if !in_webhook_error {
                continue;
            }
            let Some((_, rest)) = line.split_once("AUDIT: id=\"") else { continue };
            let id = rest.split('"').next().unwrap().to_string();
            let stage = rest.split_once("stage=\"").map(|(_, r)| r.split('"').next().unwrap().to_string()).unwrap();
            out.insert((id, stage));
        }
        out
    }

    /// How many times the webhook reported an error (retried or not).
    pub fn webhook_error_lines(&self) -> Vec<String> {
        self.server_log().lines().filter(|l| l.contains("Error in audit plugin 'webhook'")).map(String::from).collect()
    }

    pub fn stop(&mut self) {
        let out = Command::new("bash").arg(KUBE_APISERVER_SCRIPT).arg("stop").env("KUBE_DIR", &self.dir).output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("scripts/kube-apiserver.sh stop: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

impl Drop for KubeApiserver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The (auditID, stage) of each audit document in `index`, with how often each occurs.
pub async fn es_pairs(index: &str) -> BTreeMap<Pair, usize> {
    let mut out = BTreeMap::new();
    for (_, doc) in all_docs(index).await {
        let a = &doc["kubernetes"]["audit"];
        let pair = (
            a["auditID"].as_str().unwrap_or_else(|| panic!("no kubernetes.audit.auditID: {doc}")).to_string(),
            a["stage"].as_str().unwrap_or_else(|| panic!("no kubernetes.audit.stage: {doc}")).to_string(),
        );
        *out.entry(pair).or_insert(0) += 1;
    }
    out
}
