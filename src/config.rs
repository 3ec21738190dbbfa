//! User configuration: a YAML file layered with `KLG__…` environment overrides.
//!
//! Parsing happens once, at the edge: every later module gets typed, validated
//! values. Every error names the key (`server.tls.cert_file`) or file at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::index_pattern::IndexPattern;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: config::ConfigError },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.to_string(), message: message.into() }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Written to `orchestrator.cluster.name` and mixed into audit `_id`s.
    #[serde(default = "defaults::cluster_name")]
    pub cluster_name: String,
    /// Spool, journald cursor and container checkpoints live here.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// `kubernetes.node.name`; defaults to `$NODE_NAME`, then the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// The audit webhook. Absent: no webhook (node role).
    #[serde(default)]
    pub server: Option<ServerConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub elasticsearch: ElasticsearchConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    #[serde(default = "defaults::audit_path")]
    pub audit_path: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// One token per line (blank lines and `#` comments ignored).
    #[serde(default)]
    pub bearer_tokens_file: Option<PathBuf>,
    /// Accept requests with neither a client certificate nor a token (development only).
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Request body limit, checked on the wire and again after gzip inflation.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Seconds in `Retry-After` when the spool is full (1–5).
    #[serde(default = "defaults::retry_after_seconds")]
    pub retry_after_seconds: u64,
    /// How long a client may take to send one request before it is cut off.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub rate_limit: ClientRateLimit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Plain HTTP when false (a warning is logged). Only for tests behind another TLS hop.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    #[serde(default = "defaults::cert_file")]
    pub cert_file: PathBuf,
    #[serde(default = "defaults::key_file")]
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by this CA (unless a bearer token is used).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// If not empty, a client certificate's CN or a DNS/URI SAN must be in this list.
    #[serde(default)]
    pub allowed_client_names: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            cert_file: defaults::cert_file(),
            key_file: defaults::key_file(),
            client_ca_file: None,
            allowed_client_names: Vec::new(),
        }
    }
}

/// Per-client (certificate subject, token or IP) admission limit on the webhook.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRateLimit {
    /// Events per second per client; absent = unlimited.
    #[serde(default)]
    pub events_per_second: Option<u32>,
    /// Burst in events; defaults to one second's worth.
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Plain-HTTP listener for /healthz, /readyz and /metrics; null disables it.
    #[serde(default = "defaults::admin_listen")]
    pub listen: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: defaults::admin_listen() }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// journald reader (node role). Absent: off.
    #[serde(default)]
    pub journald: Option<crate::sources::journald::config::JournaldConfig>,
    /// Container log files (node role). Absent: off.
    #[serde(default)]
    pub containers: Option<crate::sources::containers::ContainersConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Replace Secret `data`/`stringData` values (and last-applied annotations) with "[REDACTED]".
    #[serde(default = "defaults::yes")]
    pub redact_secrets: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { redact_secrets: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Upper bound of spooled bytes; past it the webhook answers 429.
    #[serde(default = "defaults::spool_max_bytes")]
    pub max_bytes: u64,
    /// Spool entries handed to the sink at once (each entry is one webhook request).
    #[serde(default = "defaults::spool_max_in_flight")]
    pub max_in_flight_entries: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_bytes: defaults::spool_max_bytes(), max_in_flight_entries: defaults::spool_max_in_flight() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Tried in order; on a connection error, timeout or 5xx the next one is used.
    #[serde(default = "defaults::es_urls")]
    pub urls: Vec<String>,
    #[serde(default)]
    pub auth: EsAuth,
    #[serde(default)]
    pub tls: EsTls,
    #[serde(default)]
    pub indices: Indices,
    /// Install index templates at start-up (idempotent).
    #[serde(default = "defaults::yes")]
    pub install_templates: bool,
    #[serde(default)]
    pub template: TemplateSettings,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Bulk requests in flight at once.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// gzip bulk request bodies.
    #[serde(default = "defaults::yes")]
    pub compression: bool,
    /// One bulk request's timeout.
    #[serde(default = "defaults::es_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Global documents/s toward Elasticsearch; absent = unlimited.
    #[serde(default)]
    pub documents_per_second: Option<u32>,
    /// Bulk failures and dead letters are each logged at most once per this interval.
    #[serde(default = "defaults::log_interval", with = "humantime_serde")]
    pub dead_letter_log_interval: Duration,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        // serde's defaults are the single source of truth.
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsAuth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (takes precedence over `password`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Base64 `id:key` as returned by the create-API-key API (`encoded`).
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsTls {
    /// PEM CA bundle that signs Elasticsearch's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification entirely (never in production).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indices {
    #[serde(default = "defaults::audit_index")]
    pub audit: String,
    #[serde(default = "defaults::kubelet_index")]
    pub kubelet: String,
    #[serde(default = "defaults::containers_index")]
    pub containers: String,
    #[serde(default = "defaults::dead_letter_index")]
    pub dead_letter: String,
}

impl Default for Indices {
    fn default() -> Self {
        Indices {
            audit: defaults::audit_index(),
            kubelet: defaults::kubelet_index(),
            containers: defaults::containers_index(),
            dead_letter: defaults::dead_letter_index(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    #[serde(default = "defaults::shards")]
    pub number_of_shards: u32,
    #[serde(default = "defaults::replicas")]
    pub number_of_replicas: u32,
    #[serde(default = "defaults::refresh_interval")]
    pub refresh_interval: String,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            number_of_shards: defaults::shards(),
            number_of_replicas: defaults::replicas(),
            refresh_interval: defaults::refresh_interval(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "defaults::batch_docs")]
    pub max_documents: usize,
    #[serde(default = "defaults::batch_bytes")]
    pub max_bytes: usize,
    /// How long a partial batch waits for more documents.
    #[serde(default = "defaults::linger", with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_documents: defaults::batch_docs(),
            max_bytes: defaults::batch_bytes(),
            linger: defaults::linger(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "defaults::initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "defaults::max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { initial_backoff: defaults::initial_backoff(), max_backoff: defaults::max_backoff() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `kube_log_gateway=debug`; `RUST_LOG` wins if set.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default = "defaults::log_format")]
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: defaults::log_level(), format: defaults::log_format() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM: time to finish in-flight requests and flush; the rest stays spooled.
    #[serde(default = "defaults::grace_period", with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_period: defaults::grace_period() }
    }
}

mod defaults {
    use super::*;
    pub fn yes() -> bool {
        true
    }
    pub fn cluster_name() -> String {
        "default".into()
    }
    pub fn data_dir() -> PathBuf {
        "/var/lib/kube-log-gateway".into()
    }
    pub fn listen() -> SocketAddr {
        "0.0.0.0:8443".parse().unwrap()
    }
    pub fn admin_listen() -> Option<SocketAddr> {
        Some("0.0.0.0:9464".parse().unwrap())
    }
    pub fn audit_path() -> String {
        "/audit".into()
    }
    pub fn cert_file() -> PathBuf {
        "/etc/kube-log-gateway/tls/tls.crt".into()
    }
    pub fn key_file() -> PathBuf {
        "/etc/kube-log-gateway/tls/tls.key".into()
    }
    pub fn max_body_bytes() -> u64 {
        32 * 1024 * 1024
    }
    pub fn retry_after_seconds() -> u64 {
        2
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub fn spool_max_bytes() -> u64 {
        1024 * 1024 * 1024
    }
    pub fn spool_max_in_flight() -> usize {
        64
    }
    pub fn es_urls() -> Vec<String> {
        vec!["http://127.0.0.1:9200".into()]
    }
    pub fn audit_index() -> String {
        "audit-%Y.%m.%d".into()
    }
    pub fn kubelet_index() -> String {
        "kubelet-%Y.%m.%d".into()
    }
    pub fn containers_index() -> String {
        "containers-%Y.%m.%d".into()
    }
    pub fn dead_letter_index() -> String {
        "deadletter-%Y.%m.%d".into()
    }
    pub fn shards() -> u32 {
        1
    }
    pub fn replicas() -> u32 {
        1
    }
    pub fn refresh_interval() -> String {
        "5s".into()
    }
    pub fn batch_docs() -> usize {
        2000
    }
    pub fn batch_bytes() -> usize {
        5 * 1024 * 1024
    }
    pub fn linger() -> Duration {
        Duration::from_millis(200)
    }
    pub fn max_in_flight() -> usize {
        4
    }
    pub fn es_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn initial_backoff() -> Duration {
        Duration::from_millis(200)
    }
    pub fn max_backoff() -> Duration {
        Duration::from_secs(30)
    }
    pub fn log_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn log_level() -> String {
        "info".into()
    }
    pub fn log_format() -> String {
        "text".into()
    }
    pub fn grace_period() -> Duration {
        Duration::from_secs(20)
    }
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "elasticsearch.urls",
    "server.tls.allowed_client_names",
    "sources.containers.paths",
    "sources.containers.include_namespaces",
    "sources.containers.exclude_namespaces",
    "sources.containers.include_pods",
    "sources.containers.exclude_pods",
    "sources.containers.include_containers",
    "sources.containers.exclude_containers",
];

impl Config {
    /// Loads `path` (YAML), applies `KLG__…` overrides, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let env: config::Map<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("KLG__")).collect();
        let mut env_source = config::Environment::with_prefix("KLG")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env));
        for key in LIST_KEYS {
            env_source = env_source.with_list_parse_key(key);
        }
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Yaml).required(true))
            .add_source(env_source)
            .build()
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let cfg: Config = serde_path_to_error::deserialize(raw).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            key_error(if key == "." { "(top level)" } else { &key }, message)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checks serde cannot express. Each names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_name.trim().is_empty() {
            return Err(key_error("cluster_name", "must not be empty"));
        }
        if let Some(server) = &self.server {
            if !server.audit_path.starts_with('/') {
                return Err(key_error("server.audit_path", format!("{:?} must start with /", server.audit_path)));
            }
            if matches!(server.audit_path.as_str(), "/healthz" | "/readyz" | "/metrics") {
                return Err(key_error("server.audit_path", "must not be a reserved path"));
            }
            if !(1..=5).contains(&server.retry_after_seconds) {
                return Err(key_error(
                    "server.retry_after_seconds",
                    format!(
                        "{} is outside 1–5 (kube-apiserver waits this long before resending)",
                        server.retry_after_seconds
                    ),
                ));
            }
            if server.max_body_bytes < 1024 {
                return Err(key_error("server.max_body_bytes", "must be at least 1024"));
            }
            if server.tls.enabled {
                readable("server.tls.cert_file", &server.tls.cert_file)?;
                readable("server.tls.key_file", &server.tls.key_file)?;
                if let Some(ca) = &server.tls.client_ca_file {
                    readable("server.tls.client_ca_file", ca)?;
                }
                if !server.tls.allowed_client_names.is_empty() && server.tls.client_ca_file.is_none() {
                    return Err(key_error(
                        "server.tls.allowed_client_names",
                        "needs server.tls.client_ca_file: without it no client certificate is verified",
                    ));
                }
            } else if server.tls.client_ca_file.is_some() {
                return Err(key_error("server.tls.client_ca_file", "needs server.tls.enabled: true"));
            }
            if let Some(tokens) = &server.bearer_tokens_file {
                readable("server.bearer_tokens_file", tokens)?;
            }
            let has_auth = server.tls.client_ca_file.is_some() || server.bearer_tokens_file.is_some();
            if !has_auth && !server.allow_unauthenticated {
                return Err(key_error(
                    "server",
                    "no authentication: set server.tls.client_ca_file or server.bearer_tokens_file \
                     (or server.allow_unauthenticated: true for development)",
                ));
            }
            if server.rate_limit.events_per_second == Some(0) {
                return Err(key_error(
                    "server.rate_limit.events_per_second",
                    "must be at least 1 (omit it for no limit)",
                ));
            }
            if server.rate_limit.burst == Some(0) {
                return Err(key_error("server.rate_limit.burst", "must be at least 1"));
            }
        }
        if let Some(containers) = &self.sources.containers {
            containers.validate()?;
        }
        let es = &self.elasticsearch;
        if es.urls.is_empty() {
            return Err(key_error("elasticsearch.urls", "needs at least one URL"));
        }
        for (i, u) in es.urls.iter().enumerate() {
            let parsed = url::Url::parse(u)
                .map_err(|e| key_error(&format!("elasticsearch.urls[{i}]"), format!("{u:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(key_error(
                    &format!("elasticsearch.urls[{i}]"),
                    format!("{u:?} must be http:// or https://"),
                ));
            }
        }
        for (key, value) in [
            ("elasticsearch.indices.audit", &es.indices.audit),
            ("elasticsearch.indices.kubelet", &es.indices.kubelet),
            ("elasticsearch.indices.containers", &es.indices.containers),
            ("elasticsearch.indices.dead_letter", &es.indices.dead_letter),
        ] {
            IndexPattern::parse(value).map_err(|e| key_error(key, e.to_string()))?;
        }
        let auth = &es.auth;
        if auth.username.is_some() != (auth.password.is_some() || auth.password_file.is_some()) {
            return Err(key_error("elasticsearch.auth", "username and password (or password_file) go together"));
        }
        let methods = [
            auth.username.is_some(),
            auth.api_key.is_some() || auth.api_key_file.is_some(),
            auth.bearer_token.is_some() || auth.bearer_token_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(key_error("elasticsearch.auth", "choose one of username/password, api_key or bearer_token"));
        }
        for (key, file) in [
            ("elasticsearch.auth.password_file", &auth.password_file),
            ("elasticsearch.auth.api_key_file", &auth.api_key_file),
            ("elasticsearch.auth.bearer_token_file", &auth.bearer_token_file),
            ("elasticsearch.tls.ca_file", &es.tls.ca_file),
        ] {
            if let Some(f) = file {
                readable(key, f)?;
            }
        }
        if es.batch.max_documents == 0 {
            return Err(key_error("elasticsearch.batch.max_documents", "must be at least 1"));
        }
        if es.batch.max_bytes < 1024 {
            return Err(key_error("elasticsearch.batch.max_bytes", "must be at least 1024"));
        }
        if es.max_in_flight == 0 {
            return Err(key_error("elasticsearch.max_in_flight", "must be at least 1"));
        }
        if es.retry.initial_backoff.is_zero() || es.retry.max_backoff < es.retry.initial_backoff {
            return Err(key_error("elasticsearch.retry", "need 0 < initial_backoff <= max_backoff"));
        }
        if es.documents_per_second == Some(0) {
            return Err(key_error("elasticsearch.documents_per_second", "must be at least 1 (omit it for no limit)"));
        }
        if self.spool.max_bytes < 1024 * 1024 {
            return Err(key_error("spool.max_bytes", "must be at least 1 MiB"));
        }
        if self.spool.max_in_flight_entries == 0 {
            return Err(key_error("spool.max_in_flight_entries", "must be at least 1"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(key_error("log.format", format!("{:?} is not `text` or `json`", self.log.format)));
        }
        if let Some(journald) = &self.sources.journald {
            journald.validate()?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| key_error("log.level", format!("{:?}: {e}", self.log.level)))?;
        Ok(())
    }

    /// `kubernetes.node.name`: the config, `$NODE_NAME`, then the host name.
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(host_name)
    }

    pub fn index_patterns(&self) -> IndexPatterns {
        let i = &self.elasticsearch.indices;
        IndexPatterns {
            audit: IndexPattern::parse(&i.audit).expect("validated"),
            kubelet: IndexPattern::parse(&i.kubelet).expect("validated"),
            containers: IndexPattern::parse(&i.containers).expect("validated"),
            dead_letter: IndexPattern::parse(&i.dead_letter).expect("validated"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IndexPatterns {
    pub audit: IndexPattern,
    pub kubelet: IndexPattern,
    pub containers: IndexPattern,
    pub dead_letter: IndexPattern,
}

/// This machine's host name (`/proc/sys/kernel/hostname`, then `$HOSTNAME`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path).map(|_| ()).map_err(|e| key_error(key, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(yaml: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        f
    }

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let f = write(yaml);
        Config::load_with_env(f.path(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = load("{}", &[]).unwrap();
        assert_eq!(cfg.cluster_name, "default");
        assert!(cfg.server.is_none());
        assert_eq!(cfg.elasticsearch.urls, vec!["http://127.0.0.1:9200"]);
        assert_eq!(cfg.elasticsearch.indices.audit, "audit-%Y.%m.%d");
        assert_eq!(cfg.spool.max_bytes, 1 << 30);
    }

    #[test]
    fn environment_overrides_nested_keys_and_lists() {
        let cfg = load(
            "cluster_name: a\n",
            &[
                ("KLG__CLUSTER_NAME", "prod"),
                ("KLG__ELASTICSEARCH__URLS", "http://es-0:9200,http://es-1:9200"),
                ("KLG__DATA_DIR", "/tmp/klg"),
                ("KLG__ELASTICSEARCH__MAX_IN_FLIGHT", "7"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.cluster_name, "prod");
        assert_eq!(cfg.elasticsearch.urls, vec!["http://es-0:9200", "http://es-1:9200"]);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/klg"));
        assert_eq!(cfg.elasticsearch.max_in_flight, 7);
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = load("elasticsearch:\n  urlz: [x]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("elasticsearch"), "{err}");
        assert!(err.contains("urlz"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load("elasticsearch:\n  max_in_flight: lots\n", &[]).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.max_in_flight"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = load("elasticsearch:\n  indices:\n    audit: Audit-%Y\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("config key `elasticsearch.indices.audit`"), "{err}");
        let err =
            load("server:\n  tls:\n    enabled: false\n  retry_after_seconds: 9\n  allow_unauthenticated: true\n", &[])
                .unwrap_err()
                .to_string();
        assert!(err.contains("server.retry_after_seconds"), "{err}");
        let err = load("server:\n  tls:\n    cert_file: /nonexistent.crt\n", &[]).unwrap_err().to_string();
        assert!(err.contains("server.tls.cert_file") && err.contains("/nonexistent.crt"), "{err}");
        let err = load("server:\n  tls:\n    enabled: false\n", &[]).unwrap_err().to_string();
        assert!(err.contains("no authentication"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load_with_env(Path::new("/nonexistent/klg.yaml"), []).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/klg.yaml"), "{err}");
    }
}
