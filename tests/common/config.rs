//! The one way tests write a gateway config: a typed description rendered to
//! YAML. Tests change a field (`config.elasticsearch.urls = …`) instead of
//! editing YAML text.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A gateway config. `None` / empty fields are left out (the gateway's default).
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    pub cluster_name: Option<String>,
    pub node_name: Option<String>,
    pub data_dir: PathBuf,
    pub server: Option<Server>,
    pub admin: Admin,
    pub containers: Option<Containers>,
    pub journald: Option<Journald>,
    pub events: Option<Events>,
    pub elasticsearch: Elasticsearch,
    pub spool_max_bytes: Option<u64>,
    /// `spool.max_in_flight_bytes`.
    pub spool_max_in_flight_bytes: Option<u64>,
    pub shutdown_grace_period: Option<String>,
}

/// `admin.listen`.
#[derive(Clone, Debug, Default)]
pub enum Admin {
    /// Not set: the gateway's default.
    #[default]
    Default,
    /// `null`: no admin listener (in-process runs).
    Off,
    /// `host:port`.
    Listen(String),
}

/// The audit webhook (`server:`).
#[derive(Clone, Debug, Default)]
pub struct Server {
    pub listen: String,
    /// mTLS with these files; `None`: `tls.enabled: false`.
    pub tls: Option<TlsFiles>,
    pub allowed_client_names: Vec<String>,
    pub allow_unauthenticated: bool,
    pub bearer_tokens_file: Option<PathBuf>,
    pub max_body_bytes: Option<u64>,
    /// `(events_per_second, burst)`.
    pub rate_limit: Option<(u32, u32)>,
    pub idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    /// `server.memory_budget_wait`: must stay under `request_timeout`.
    pub memory_budget_wait: Option<String>,
    pub max_connections: Option<u32>,
    pub refusal_drain_bytes: Option<u64>,
    pub refusal_drain_timeout: Option<String>,
    pub retry_after_seconds: Option<u32>,
}

/// `server.tls`: the webhook's certificate, key and the CA its clients' certificates are checked against.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: PathBuf,
}

impl TlsFiles {
    /// `server.crt`, `server.key` and `ca.crt` in `dir` (`kube-log-gateway certs --out dir`).
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            client_ca_file: dir.join("ca.crt"),
        }
    }
}

/// `sources.containers`.
#[derive(Clone, Debug, Default)]
pub struct Containers {
    pub paths: Vec<String>,
    pub poll_interval: String,
    pub rotated_grace: String,
    pub exclude_namespaces: Vec<String>,
    /// Optional settings, left out when None (the gateway's default).
    pub inotify: Option<bool>,
    pub rotated_max_open: Option<String>,
    pub max_message_bytes: Option<u64>,
    pub start_at_first_run: Option<String>,
    /// `kubernetes:` (key, YAML value) pairs; empty = the section left out.
    pub kubernetes: Vec<(String, String)>,
}

/// `sources.journald`.
#[derive(Clone, Debug, Default)]
pub struct Journald {
    pub directories: Vec<PathBuf>,
    pub start_at: String,
    pub identifiers: Vec<String>,
    pub batch_size: Option<u32>,
    pub checkpoint_interval: Option<String>,
}

/// `sources.events`.
#[derive(Clone, Debug, Default)]
pub struct Events {
    pub kubeconfig: PathBuf,
    pub watch_timeout: Option<String>,
    pub retry_max_backoff: Option<String>,
    pub checkpoint_interval: Option<String>,
}

/// `elasticsearch:`.
#[derive(Clone, Debug, Default)]
pub struct Elasticsearch {
    pub urls: Vec<String>,
    /// `(kind, pattern)`: `("audit", "<prefix>-audit-%Y.%m.%d")`.
    pub indices: Vec<(String, String)>,
    pub install_templates: Option<bool>,
    /// `data_stream:`; `None`: left out (the gateway's default, off).
    pub data_stream: Option<DataStream>,
    pub auth: Option<EsAuth>,
    pub ca_file: Option<PathBuf>,
    /// `template: {number_of_replicas: 0, refresh_interval: 1s}`: one node, documents searchable soon.
    pub test_template: bool,
    /// With `test_template`: `number_of_replicas` instead of 0 (a test on a cluster).
    pub replicas: Option<u32>,
    /// With `test_template`: `total_fields_limit`.
    pub total_fields_limit: Option<u32>,
    /// With `test_template`: `ignore_dynamic_beyond_limit`.
    pub ignore_dynamic_beyond_limit: Option<bool>,
    pub linger: Option<String>,
    /// `batch.max_documents`.
    pub max_documents: Option<usize>,
    /// `concurrency`: `adaptive` or `fixed`.
    pub concurrency: Option<String>,
    pub max_in_flight: Option<usize>,
    /// `adaptive.initial`.
    pub adaptive_initial: Option<usize>,
    /// `(initial_backoff, max_backoff)`.
    pub retry: Option<(String, String)>,
    pub documents_per_second: Option<u32>,
    /// `compression`: gzip bulk bodies (the gateway's default: on).
    pub compression: Option<bool>,
    pub max_document_bytes: Option<u64>,
    pub dead_letter_max_original_bytes: Option<u64>,
    pub dead_letter_log_interval: Option<String>,
}

/// `elasticsearch.data_stream`.
#[derive(Clone, Debug, Default)]
pub struct DataStream {
    pub enabled: bool,
    /// `resend_check_margin`, e.g. `5m`; `None`: the gateway's default.
    pub resend_check_margin: Option<String>,
}

/// `elasticsearch.auth`.
#[derive(Clone, Debug)]
pub enum EsAuth {
    Basic { username: String, password: Secret },
    BearerToken(Secret),
    ApiKey(Secret),
}

/// A credential, in the config or in a file.
#[derive(Clone, Debug)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl GatewayConfig {
    /// What every end-to-end test runs with: cluster `test`, the suite's
    /// Elasticsearch at `es`, quick batches and retries, one replica-less shard.
    pub fn for_test(data_dir: &Path, es: &str) -> GatewayConfig {
        GatewayConfig {
            cluster_name: Some("test".into()),
            data_dir: data_dir.to_path_buf(),
            elasticsearch: Elasticsearch {
                urls: vec![es.to_string()],
                test_template: true,
                linger: Some("50ms".into()),
                retry: Some(("50ms".into(), "1s".into())),
                ..Elasticsearch::default()
            },
            ..GatewayConfig::default()
        }
    }

    /// Only the sink: `data_dir` and `urls`, with very short linger and retries.
    pub fn sink_only(data_dir: &Path, urls: &[String]) -> GatewayConfig {
        GatewayConfig {
            data_dir: data_dir.to_path_buf(),
            elasticsearch: Elasticsearch {
                urls: urls.to_vec(),
                linger: Some("10ms".into()),
                retry: Some(("10ms".into(), "50ms".into())),
                ..Elasticsearch::default()
            },
            ..GatewayConfig::default()
        }
    }

    /// Adds an index pattern (`kind`: audit, kubelet, containers, events, dead_letter).
    pub fn index(mut self, kind: &str, pattern: &str) -> GatewayConfig {
        self.elasticsearch.indices.push((kind.into(), pattern.into()));
        self
    }

    pub fn server_mut(&mut self) -> &mut Server {
        self.server.as_mut().expect("a config with server:")
    }

    pub fn containers_mut(&mut self) -> &mut Containers {
        self.containers.as_mut().expect("a config with sources.containers")
    }

    pub fn journald_mut(&mut self) -> &mut Journald {
        self.journald.as_mut().expect("a config with sources.journald")
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        if let Some(c) = &self.cluster_name {
            line(&mut y, 0, "cluster_name", &q(c));
        }
        if let Some(n) = &self.node_name {
            line(&mut y, 0, "node_name", &q(n));
        }
        line(&mut y, 0, "data_dir", &p(&self.data_dir));
        if let Some(s) = &self.server {
            y.push_str("server:\n");
            line(&mut y, 1, "listen", &q(&s.listen));
            y.push_str("  tls:\n");
            match &s.tls {
                Some(t) => {
                    line(&mut y, 2, "cert_file", &p(&t.cert_file));
                    line(&mut y, 2, "key_file", &p(&t.key_file));
                    line(&mut y, 2, "client_ca_file", &p(&t.client_ca_file));
                }
                None => line(&mut y, 2, "enabled", "false"),
            }
            if !s.allowed_client_names.is_empty() {
                line(&mut y, 2, "allowed_client_names", &list(&s.allowed_client_names));
            }
            if s.allow_unauthenticated {
                line(&mut y, 1, "allow_unauthenticated", "true");
            }
            if let Some(f) = &s.bearer_tokens_file {
                line(&mut y, 1, "bearer_tokens_file", &p(f));
            }
            if let Some(n) = s.max_body_bytes {
                line(&mut y, 1, "max_body_bytes", &n.to_string());
            }
            if let Some((rate, burst)) = s.rate_limit {
                y.push_str("  rate_limit:\n");
                line(&mut y, 2, "events_per_second", &rate.to_string());
                line(&mut y, 2, "burst", &burst.to_string());
            }
            if let Some(t) = &s.idle_timeout {
                line(&mut y, 1, "idle_timeout", &q(t));
            }
            if let Some(t) = &s.request_timeout {
                line(&mut y, 1, "request_timeout", &q(t));
            }
            if let Some(t) = &s.memory_budget_wait {
                line(&mut y, 1, "memory_budget_wait", &q(t));
            }
            if let Some(n) = s.max_connections {
                line(&mut y, 1, "max_connections", &n.to_string());
            }
            if let Some(n) = s.refusal_drain_bytes {
                line(&mut y, 1, "refusal_drain_bytes", &n.to_string());
            }
            if let Some(t) = &s.refusal_drain_timeout {
                line(&mut y, 1, "refusal_drain_timeout", &q(t));
            }
            if let Some(n) = s.retry_after_seconds {
                line(&mut y, 1, "retry_after_seconds", &n.to_string());
            }
        }
        match &self.admin {
            Admin::Default => {}
            Admin::Off => y.push_str("admin:\n  listen: null\n"),
            Admin::Listen(a) => {
                y.push_str("admin:\n");
                line(&mut y, 1, "listen", &q(a));
            }
        }
        if self.containers.is_some() || self.journald.is_some() || self.events.is_some() {
            y.push_str("sources:\n");
        }
        if let Some(c) = &self.containers {
            y.push_str("  containers:\n");
            line(&mut y, 2, "paths", &list(&c.paths));
            line(&mut y, 2, "poll_interval", &q(&c.poll_interval));
            line(&mut y, 2, "rotated_grace", &q(&c.rotated_grace));
            if !c.exclude_namespaces.is_empty() {
                line(&mut y, 2, "exclude_namespaces", &list(&c.exclude_namespaces));
            }
            if let Some(b) = c.inotify {
                line(&mut y, 2, "inotify", &b.to_string());
            }
            if let Some(d) = &c.rotated_max_open {
                line(&mut y, 2, "rotated_max_open", &q(d));
            }
            if let Some(n) = c.max_message_bytes {
                line(&mut y, 2, "max_message_bytes", &n.to_string());
            }
            if let Some(s) = &c.start_at_first_run {
                line(&mut y, 2, "start_at_first_run", &q(s));
            }
            if !c.kubernetes.is_empty() {
                y.push_str("    kubernetes:\n");
                for (k, v) in &c.kubernetes {
                    line(&mut y, 3, k, v);
                }
            }
        }
        if let Some(j) = &self.journald {
            y.push_str("  journald:\n");
            let dirs: Vec<String> = j.directories.iter().map(|d| d.display().to_string()).collect();
            line(&mut y, 2, "directories", &list(&dirs));
            line(&mut y, 2, "start_at", &q(&j.start_at));
            if !j.identifiers.is_empty() {
                line(&mut y, 2, "identifiers", &list(&j.identifiers));
            }
            if let Some(n) = j.batch_size {
                line(&mut y, 2, "batch_size", &n.to_string());
            }
            if let Some(i) = &j.checkpoint_interval {
                line(&mut y, 2, "checkpoint_interval", &q(i));
            }
        }
        if let Some(e) = &self.events {
            y.push_str("  events:\n");
            line(&mut y, 2, "kubeconfig", &p(&e.kubeconfig));
            for (key, value) in [
                ("watch_timeout", &e.watch_timeout),
                ("retry_max_backoff", &e.retry_max_backoff),
                ("checkpoint_interval", &e.checkpoint_interval),
            ] {
                if let Some(v) = value {
                    line(&mut y, 2, key, &q(v));
                }
            }
        }
        let es = &self.elasticsearch;
        y.push_str("elasticsearch:\n");
        line(&mut y, 1, "urls", &list(&es.urls));
        if !es.indices.is_empty() {
            y.push_str("  indices:\n");
            for (kind, pattern) in &es.indices {
                line(&mut y, 2, kind, &q(pattern));
            }
        }
        if let Some(b) = es.install_templates {
            line(&mut y, 1, "install_templates", &b.to_string());
        }
        if let Some(ds) = &es.data_stream {
            y.push_str("  data_stream:\n");
            line(&mut y, 2, "enabled", &ds.enabled.to_string());
            if let Some(m) = &ds.resend_check_margin {
                line(&mut y, 2, "resend_check_margin", &q(m));
            }
        }
        if let Some(auth) = &es.auth {
            y.push_str("  auth:\n");
            let secret = |y: &mut String, key: &str, s: &Secret| match s {
                Secret::Inline(v) => line(y, 2, key, &q(v)),
                Secret::File(f) => line(y, 2, &format!("{key}_file"), &p(f)),
            };
            match auth {
                EsAuth::Basic { username, password } => {
                    line(&mut y, 2, "username", &q(username));
                    secret(&mut y, "password", password);
                }
                EsAuth::BearerToken(s) => secret(&mut y, "bearer_token", s),
                EsAuth::ApiKey(s) => secret(&mut y, "api_key", s),
            }
        }
        if let Some(ca) = &es.ca_file {
            y.push_str("  tls:\n");
            line(&mut y, 2, "ca_file", &p(ca));
        }
        if es.test_template {
            let replicas = es.replicas.unwrap_or(0);
            writeln!(y, "  template:\n    number_of_replicas: {replicas}\n    refresh_interval: 1s").unwrap();
            if let Some(limit) = es.total_fields_limit {
                writeln!(y, "    total_fields_limit: {limit}").unwrap();
            }
            if let Some(ignore) = es.ignore_dynamic_beyond_limit {
                writeln!(y, "    ignore_dynamic_beyond_limit: {ignore}").unwrap();
            }
        }
        if es.linger.is_some() || es.max_documents.is_some() {
            y.push_str("  batch:\n");
        }
        if let Some(l) = &es.linger {
            line(&mut y, 2, "linger", &q(l));
        }
        if let Some(n) = es.max_documents {
            line(&mut y, 2, "max_documents", &n.to_string());
        }
        if let Some(c) = &es.concurrency {
            line(&mut y, 1, "concurrency", c);
        }
        if let Some(n) = es.max_in_flight {
            line(&mut y, 1, "max_in_flight", &n.to_string());
        }
        if let Some(n) = es.adaptive_initial {
            y.push_str("  adaptive:\n");
            line(&mut y, 2, "initial", &n.to_string());
        }
        if let Some((initial, max)) = &es.retry {
            y.push_str("  retry:\n");
            line(&mut y, 2, "initial_backoff", &q(initial));
            line(&mut y, 2, "max_backoff", &q(max));
        }
        if let Some(n) = es.documents_per_second {
            line(&mut y, 1, "documents_per_second", &n.to_string());
        }
        if let Some(b) = es.compression {
            line(&mut y, 1, "compression", &b.to_string());
        }
        if let Some(n) = es.max_document_bytes {
            line(&mut y, 1, "max_document_bytes", &n.to_string());
        }
        if let Some(n) = es.dead_letter_max_original_bytes {
            line(&mut y, 1, "dead_letter_max_original_bytes", &n.to_string());
        }
        if let Some(i) = &es.dead_letter_log_interval {
            line(&mut y, 1, "dead_letter_log_interval", &q(i));
        }
        if self.spool_max_bytes.is_some() || self.spool_max_in_flight_bytes.is_some() {
            y.push_str("spool:\n");
        }
        if let Some(n) = self.spool_max_bytes {
            line(&mut y, 1, "max_bytes", &n.to_string());
        }
        if let Some(n) = self.spool_max_in_flight_bytes {
            line(&mut y, 1, "max_in_flight_bytes", &n.to_string());
        }
        if let Some(g) = &self.shutdown_grace_period {
            y.push_str("shutdown:\n");
            line(&mut y, 1, "grace_period", &q(g));
        }
        y
    }
}

fn line(y: &mut String, depth: usize, key: &str, value: &str) {
    writeln!(y, "{}{key}: {value}", "  ".repeat(depth)).unwrap();
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn p(path: &Path) -> String {
    q(&path.display().to_string())
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}
