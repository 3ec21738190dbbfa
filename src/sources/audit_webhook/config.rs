//! `server` (the webhook listener, TLS, authentication, limits) and `audit`
//! (what is done to each event): the audit webhook source's options, with
//! their defaults and the checks serde cannot express. Errors name the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::document::ecs::Namespace;
use crate::setting::{key_error, readable, ConfigError};

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
    /// Bytes that request bodies (inflated) and their decoded documents may
    /// hold at once, over all requests; a request that does not fit waits
    /// `memory_budget_wait`, then gets 503 with `Retry-After`.
    #[serde(default = "defaults::memory_budget_bytes")]
    pub memory_budget_bytes: u64,
    /// How long a request waits for room in the memory budget.
    #[serde(default = "defaults::memory_budget_wait", with = "humantime_serde")]
    pub memory_budget_wait: Duration,
    /// Seconds in `Retry-After` when the spool is full (1–5).
    #[serde(default = "defaults::retry_after_seconds")]
    pub retry_after_seconds: u64,
    /// How long a client may take to send one request before it is cut off.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed (also one
    /// that completed the TLS handshake and never sent a request).
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections open at once, TLS handshakes included; more are closed at accept.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// After an early refusal (401, 404, 413, 415 …), at most this many bytes of
    /// the unread body are read and discarded so the client gets the answer
    /// instead of a reset; past that the connection is closed.
    #[serde(default = "defaults::refusal_drain_bytes")]
    pub refusal_drain_bytes: u64,
    /// ... and for at most this long.
    #[serde(default = "defaults::refusal_drain_timeout", with = "humantime_serde")]
    pub refusal_drain_timeout: Duration,
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
    #[serde(default, deserialize_with = "crate::setting::list")]
    pub allowed_client_names: Vec<String>,
    /// How often the certificate, key and client CA files are read to see if
    /// they changed (besides watching their directories): a rotated Secret is
    /// taken at the latest this long after the kubelet swaps it in.
    #[serde(default = "defaults::reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            cert_file: defaults::cert_file(),
            key_file: defaults::key_file(),
            client_ca_file: None,
            allowed_client_names: Vec::new(),
            reload_interval: defaults::reload_interval(),
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
pub struct AuditConfig {
    /// Replace Secret `data`/`stringData` values (and last-applied annotations) with "[REDACTED]".
    #[serde(default = "defaults::yes")]
    pub redact_secrets: bool,
    /// `data_stream.namespace` of audit documents, and the end of the alias
    /// `logs-kubernetes.audit_logs-<namespace>` on the audit indices.
    #[serde(default)]
    pub data_stream_namespace: Namespace,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { redact_secrets: true, data_stream_namespace: Namespace::default() }
    }
}

impl ServerConfig {
    /// The checks serde cannot express, under the key `server`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.audit_path.starts_with('/') {
            return Err(key_error("server.audit_path", format!("{:?} must start with /", self.audit_path)));
        }
        if matches!(self.audit_path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            return Err(key_error("server.audit_path", "must not be a reserved path"));
        }
        if !(1..=5).contains(&self.retry_after_seconds) {
            return Err(key_error(
                "server.retry_after_seconds",
                format!(
                    "{} is outside 1–5 (kube-apiserver waits this long before resending)",
                    self.retry_after_seconds
                ),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(key_error("server.idle_timeout", "must be more than 0"));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(key_error("server.max_connections", format!("{} is outside 1–1000000", self.max_connections)));
        }
        if self.max_body_bytes < 1024 {
            return Err(key_error("server.max_body_bytes", "must be at least 1024"));
        }
        if self.memory_budget_bytes < 1024 * 1024 {
            return Err(key_error("server.memory_budget_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if self.memory_budget_wait >= self.request_timeout {
            return Err(key_error(
                "server.memory_budget_wait",
                format!(
                    "{:?} must be shorter than server.request_timeout ({:?})",
                    self.memory_budget_wait, self.request_timeout
                ),
            ));
        }
        if self.tls.enabled {
            readable("server.tls.cert_file", &self.tls.cert_file)?;
            readable("server.tls.key_file", &self.tls.key_file)?;
            if let Some(ca) = &self.tls.client_ca_file {
                readable("server.tls.client_ca_file", ca)?;
            }
            if self.tls.reload_interval.is_zero() {
                return Err(key_error("server.tls.reload_interval", "must be more than 0"));
            }
            if !self.tls.allowed_client_names.is_empty() && self.tls.client_ca_file.is_none() {
                return Err(key_error(
                    "server.tls.allowed_client_names",
                    "needs server.tls.client_ca_file: without it no client certificate is verified",
                ));
            }
        } else if self.tls.client_ca_file.is_some() {
            return Err(key_error("server.tls.client_ca_file", "needs server.tls.enabled: true"));
        }
        if let Some(tokens) = &self.bearer_tokens_file {
            readable("server.bearer_tokens_file", tokens)?;
        }
        let has_auth = self.tls.client_ca_file.is_some() || self.bearer_tokens_file.is_some();
        if !has_auth && !self.allow_unauthenticated {
            return Err(key_error(
                "server",
                "no authentication: set server.tls.client_ca_file or server.bearer_tokens_file \
                 (or server.allow_unauthenticated: true for development)",
            ));
        }
        if self.rate_limit.events_per_second == Some(0) {
            return Err(key_error("server.rate_limit.events_per_second", "must be at least 1 (omit it for no limit)"));
        }
        if self.rate_limit.burst == Some(0) {
            return Err(key_error("server.rate_limit.burst", "must be at least 1"));
        }
        Ok(())
    }
}

mod defaults {
    use super::*;
    pub fn yes() -> bool {
        true
    }
    pub fn listen() -> SocketAddr {
        "0.0.0.0:8443".parse().unwrap()
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
    pub fn reload_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_body_bytes() -> u64 {
        32 * 1024 * 1024
    }
    /// Fits the shipped 512Mi memory limit with the rest of the process.
    pub fn memory_budget_bytes() -> u64 {
        256 * 1024 * 1024
    }
    pub fn memory_budget_wait() -> Duration {
        Duration::from_secs(1)
    }
    pub fn retry_after_seconds() -> u64 {
        2
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> usize {
        2048
    }
    pub fn refusal_drain_bytes() -> u64 {
        4 * 1024 * 1024
    }
    pub fn refusal_drain_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::load_with_env(&path, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map_err(|e| e.to_string())
    }

    const DEV: &str = "server:\n  tls:\n    enabled: false\n  allow_unauthenticated: true\n";

    #[test]
    fn memory_budget_keys_from_the_file_and_the_environment_and_their_errors() {
        let server = load(DEV, &[]).unwrap().server.unwrap();
        assert_eq!(server.memory_budget_bytes, 256 * 1024 * 1024);
        assert_eq!(server.memory_budget_wait, std::time::Duration::from_secs(1));
        let env = [("KLG__SERVER__MEMORY_BUDGET_BYTES", "4194304"), ("KLG__SERVER__MEMORY_BUDGET_WAIT", "250ms")];
        let server = load(DEV, &env).unwrap().server.unwrap();
        assert_eq!(server.memory_budget_bytes, 4 * 1024 * 1024);
        assert_eq!(server.memory_budget_wait, std::time::Duration::from_millis(250));

        let err = load(&format!("{DEV}  memory_budget_bytes: 1000\n"), &[]).unwrap_err();
        assert!(err.contains("server.memory_budget_bytes") && err.contains("at least 1048576"), "{err}");
        let err = load(&format!("{DEV}  memory_budget_wait: 30s\n"), &[]).unwrap_err();
        assert!(
            err.contains("server.memory_budget_wait") && err.contains("shorter than server.request_timeout"),
            "{err}"
        );
    }
}
